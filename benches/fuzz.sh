#!/usr/bin/env bash
# The full fuzzing run of SECURITY.md: every target of tests/fuzz.rs for AM_FUZZ_EXECS
# executions (default 1,000,000 each; CI runs 20,000), one line of figures per target.
# Usage: bash benches/fuzz.sh [EXECS] [SEED]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export AM_FUZZ_EXECS="${1:-1000000}"
[ -n "${2:-}" ] && export AM_FUZZ_SEED="$2"
cargo test --locked --test fuzz -- --nocapture --test-threads 1 2>&1 | grep -oE 'fuzz [a-z-]+: .*panics|test result.*|panicked.*|inputs that panic.*'
