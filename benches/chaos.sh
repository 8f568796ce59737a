#!/usr/bin/env bash
# The chaos test of tests/chaos.rs at full size: 5,000 tasks against the fake master with 20
# SIGKILLs of the daemon, 10 master failovers, 10 connections cut around an ACCEPT and a 30 s
# database outage (a PostgreSQL server stopped, and a full disk under SQLite). Prints one
# `chaos ...` line per database (faults, seconds, attempts that were sent more than once and
# never ran). Needs root and the services of .ci/run (PostgreSQL). Knobs: AM_CHAOS_TASKS,
# AM_CHAOS_KILLS, AM_CHAOS_FAILOVERS, AM_CHAOS_CUTS, AM_CHAOS_OUTAGE_SECS, AM_CHAOS_SEED.
set -euo pipefail
# A missing service fails the run instead of skipping a database.
export CI=true
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for f in .ci/test-env*.sh; do
    [ -f "$f" ] && . "$f"
done
export AM_CHAOS_TASKS="${AM_CHAOS_TASKS:-5000}"
export AM_CHAOS_KILLS="${AM_CHAOS_KILLS:-20}"
export AM_CHAOS_FAILOVERS="${AM_CHAOS_FAILOVERS:-10}"
export AM_CHAOS_CUTS="${AM_CHAOS_CUTS:-10}"
export AM_CHAOS_OUTAGE_SECS="${AM_CHAOS_OUTAGE_SECS:-30}"
cargo test --release --test chaos -- --nocapture --test-threads 1 "$@" 2>&1 | grep -E '^chaos |chaos kind=|test result|panicked|FAILED'
