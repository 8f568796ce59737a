#!/usr/bin/env bash
# Failover at full size: 2,000 tasks through three daemons on PostgreSQL (and two on MariaDB)
# while the leader is SIGKILLed 5 times and paused once past its lease (tests/ha.rs). Prints the
# `failover_ms` lines recorded in BENCHMARKS.md ("Failover"). Needs the services of .ci/run
# (source .ci/test-env*.sh first).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for f in .ci/test-env*.sh; do [ -f "$f" ] && . "$f"; done
export CI=true AM_HA_TASKS="${AM_HA_TASKS:-2000}" AM_HA_KILLS="${AM_HA_KILLS:-5}"
cargo test --release --locked --test ha -- --nocapture --test-threads 1 2>&1 | grep -E 'failover_ms|test result|panicked'
