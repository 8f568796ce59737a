#!/usr/bin/env bash
# The main job on one machine, no Mesos needed: builds airflow-mesos, starts the daemon with the
# embedded defaults (SQLite state, the local Docker engine), submits examples/jobs/hello.yaml,
# waits for it, prints its output, and stops the daemon (running tasks would keep running).
#
#   bash examples/quickstart.sh            # everything under ./.quickstart/ (AIRFLOW_HOME)
#   PORT=11001 bash examples/quickstart.sh # another API port
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
port="${PORT:-11000}"
home="$PWD/.quickstart"
image="${QUICKSTART_IMAGE:-am-local/busybox}"

echo "== building (cargo build --release)"
cargo build --release --quiet
bin="$PWD/target/release/airflow-mesos"

echo "== task image $image"
if ! docker image inspect "$image" >/dev/null 2>&1; then
    docker pull busybox:stable >/dev/null 2>&1 && docker tag busybox:stable "$image" \
        || bash examples/make-busybox-image.sh "$image"
fi

mkdir -p "$home"
cat >"$home/airflow.cfg" <<CFG
[mesos]
# No master: the local Docker engine runs the tasks.
backend = docker
docker_image_slave = $image
task_cpu = 0.1
task_memory = 64
api_listen = 127.0.0.1:$port
CFG
export AIRFLOW_HOME="$home"
export AIRFLOW_CONFIG="$home/airflow.cfg"

echo "== starting the daemon (log: $home/scheduler.log)"
"$bin" scheduler >"$home/scheduler.log" 2>&1 &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 $daemon 2>/dev/null || { cat "$home/scheduler.log"; exit 1; }
    sleep 0.2
done

echo "== submitting examples/jobs/hello.yaml and waiting"
out="$("$bin" submit -f examples/jobs/hello.yaml --wait --json)"
id="$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tasks"][0]["id"])')"
"$bin" status "$id"

echo "== its output (airflow-mesos logs $id)"
"$bin" logs "$id"
