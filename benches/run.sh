#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md in one go and prints the figures:
#   1. the machine (cores, CPU model, memory);
#   2. `cargo bench --bench matching` (criterion: matching 10k tasks x 1k offers, growth 1k..100k);
#   3. `cargo bench --bench store`: the state store alone (changes committed per second on SQLite,
#      PostgreSQL and MySQL/MariaDB, the end-to-end workload without daemon or master);
#   4. `cargo bench --bench e2e`: the daemon against the in-process fake master (launch rate with
#      SQLite and PostgreSQL, status updates/s, peak RSS with 100k tasks) and the Python peers
#      (Airflow 1.10's MesosExecutor algorithm on pymesos; the AVENTER provider) on the same fake.
# Services: PostgreSQL via .ci/setup-databases.sh (AM_TEST_PG_URL), the pymesos venv via
# .ci/setup-python.sh (AM_TEST_PYTHON), and a venv with apache-airflow + avmesos-airflow-provider
# for the AVENTER peer (AM_BENCH_AVMESOS_VENV, default /opt/am-avmesos-venv; built here, several
# minutes the first time; AM_BENCH_SKIP_AVMESOS=1 skips it).
# Knobs (environment): AM_BENCH_TASKS (default 10000), AM_BENCH_RSS_TASKS (100000),
# AM_BENCH_PEER_TASKS (= AM_BENCH_TASKS), AM_BENCH_AVMESOS_TASKS (300), AM_BENCH_ONLY
# (comma list of sqlite,postgres,rss,peer,avmesos), AM_BENCH_SKIP_MATCHING=1, AM_BENCH_LOADS (offered
# loads: comma list of `flat` and tasks/s, default flat,1000,100), AM_BENCH_LOAD_SECONDS (10).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log() { printf '\n=== %s\n' "$*"; }

log "machine"
echo "cores: $(nproc)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "kernel: $(uname -r)"
rustc --version

log "services"
if [ -f .ci/setup-databases.sh ]; then
    bash .ci/setup-databases.sh
fi
for f in .ci/test-env*.sh; do
    [ -f "$f" ] && . "$f"
done
if [ -f .ci/setup-python.sh ]; then
    bash .ci/setup-python.sh
fi
export AM_TEST_PYTHON="${AM_TEST_PYTHON:-/opt/am-venv/bin/python}"

if [ "${AM_BENCH_SKIP_AVMESOS:-0}" != 1 ]; then
    avenv="${AM_BENCH_AVMESOS_VENV:-/opt/am-avmesos-venv}"
    if ! "${avenv}/bin/python" -c 'import avmesos_airflow_provider.executors.mesos_executor' 2>/dev/null; then
        echo "building ${avenv} (apache-airflow 3.1.8 + avmesos-airflow-provider 0.4.0; several minutes)"
        python3 -m venv "${avenv}"
        "${avenv}/bin/python" -m pip install --quiet --disable-pip-version-check \
            'apache-airflow==3.1.8' 'avmesos-airflow-provider==0.4.0'
    fi
    export AM_BENCH_AVMESOS_PYTHON="${avenv}/bin/python"
else
    export AM_BENCH_AVMESOS_PYTHON=/nonexistent
fi

log "cargo build --release"
cargo build --release --bin airflow-mesos

if [ "${AM_BENCH_SKIP_MATCHING:-0}" != 1 ]; then
    log "cargo bench --bench matching"
    cargo bench --bench matching
fi

log "cargo bench --bench store"
cargo bench --bench store

log "cargo bench --bench e2e"
cargo bench --bench e2e
echo "(machine-readable copy: target/bench-e2e.json)"
