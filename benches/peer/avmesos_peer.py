#!/usr/bin/env python3
"""Headless benchmark peer: the AVENTER provider's MesosExecutor (`avmesos-airflow-provider`).

Drives `avmesos_airflow_provider.executors.mesos_executor.MesosExecutor` (PyPI 0.4.0, with its
`avmesos` client) exactly as Airflow's scheduler would, minus the scheduler: `start()`, then N
`execute_async(key, command, executor_config={})` calls, then `sync()` in a loop until the
executor's event buffer has a terminal state (success or failed) for every key. Nothing of the
provider is patched; it runs its own threads (the avmesos subscription loop, which
acknowledges every update before its callback, one new HTTP connection per call), its Flask API
on port 11000 and its Prometheus exporter on port 8100 (both hard-coded by the provider).

Airflow must be importable (apache-airflow 3.x: the provider imports `airflow.executors.workloads`);
its config comes from the environment set below and a throwaway AIRFLOW_HOME, so no metadata
database is needed: `[mesos] checkpoint = False` skips the one query `start()` makes (the
framework-id lookup, which the provider only logs anyway).

The clock starts when the avmesos client reports SUBSCRIBED with the N commands already queued
(they are queued before `start()`, so that the provider does not SUPPRESS at its first heartbeat
and then wait 15 s for the next one to REVIVE), and stops when `sync()` has delivered N terminal
states. `sync()` is called every --sync-interval seconds (Airflow's scheduler loop calls it once
per loop; the default 0.01 s is far more generous than a real scheduler). Prints one JSON line.

Usage: avmesos_peer.py --master 127.0.0.1:5050 --tasks 2000 [--timeout 600]
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--master", required=True, help="host:port of the Mesos master (JSON v1 API)")
    p.add_argument("--tasks", type=int, default=2000, help="number of commands to run (N)")
    p.add_argument("--task-cpu", type=float, default=0.1, help="[mesos] task_cpu")
    p.add_argument("--task-mem", type=float, default=256.0, help="[mesos] task_memory in MB")
    p.add_argument("--task-disk", type=float, default=1.0, help="[mesos] task_disk in MB (must be > 0)")
    p.add_argument("--image", default="busybox", help="[mesos] docker_image_slave")
    p.add_argument("--command", default="true", help="command each task runs")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    p.add_argument("--sync-interval", type=float, default=0.01, help="seconds between sync() calls")
    return p.parse_args(argv)


def configure_airflow(args, home):
    """Everything the provider reads without a fallback, as AIRFLOW__SECTION__KEY variables."""
    env = {
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:///" + os.path.join(home, "airflow.db"),
        "AIRFLOW__CORE__FERNET_KEY": "",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:8080/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "bench-not-a-secret",
        "AIRFLOW__API_AUTH__JWT_ALGORITHM": "HS512",
        "AIRFLOW__API_AUTH__JWT_AUDIENCE": "urn:airflow.apache.org:task",
        "AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": "600",
        "AIRFLOW__LOGGING__LOG_FILENAME_TEMPLATE": "{{ ti.dag_id }}/{{ ti.task_id }}.log",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__MESOS__MASTER": args.master,
        "AIRFLOW__MESOS__FRAMEWORK_NAME": "Airflow",
        "AIRFLOW__MESOS__FRAMEWORK_ROLE": "airflow",
        "AIRFLOW__MESOS__CHECKPOINT": "False",
        "AIRFLOW__MESOS__FAILOVER_TIMEOUT": "604800",
        "AIRFLOW__MESOS__AUTHENTICATE": "False",
        "AIRFLOW__MESOS__TASK_CPU": str(args.task_cpu),
        "AIRFLOW__MESOS__TASK_MEMORY": str(args.task_mem),
        "AIRFLOW__MESOS__TASK_DISK": str(args.task_disk),
        "AIRFLOW__MESOS__DOCKER_IMAGE_SLAVE": args.image,
        "AIRFLOW__MESOS__DOCKER_VOLUME_DRIVER": "local",
        "AIRFLOW__MESOS__DOCKER_VOLUME_DAG_NAME": "airflowdags",
        "AIRFLOW__MESOS__DOCKER_VOLUME_DAG_CONTAINER_PATH": "/home/airflow/airflow/dags",
        "AIRFLOW__MESOS__DOCKER_VOLUME_LOGS_NAME": "airflowlogs",
        "AIRFLOW__MESOS__DOCKER_VOLUME_LOGS_CONTAINER_PATH": "/home/airflow/airflow/logs",
        "AIRFLOW__MESOS__DOCKER_SOCK": "/var/run/docker.sock",
        "AIRFLOW__MESOS__DOCKER_USER_GROUP_ID": "0",
        "AIRFLOW__MESOS__DOCKER_NETWORK_MODE": "HOST",
        "AIRFLOW__MESOS__COMMAND_SHELL": "True",
        "AIRFLOW__MESOS__MESOS_ATTRIBUTES": "[]",
    }
    os.environ.update(env)


def main(argv):
    args = parse_args(argv)
    if args.tasks <= 0:
        print("avmesos_peer: --tasks must be positive, got %d" % args.tasks, file=sys.stderr)
        return 2
    home = tempfile.mkdtemp(prefix="avmesos-peer-")
    configure_airflow(args, home)

    import logging

    # Imported only now: Airflow reads its configuration at import time.
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.utils.state import State
    from avmesos_airflow_provider.executors import mesos_executor as mex

    logging.getLogger("avmesos").setLevel(logging.WARNING)

    executor = mex.MesosExecutor()
    keys = []
    for i in range(args.tasks):
        key = TaskInstanceKey("bench_dag", "task_%d" % i, "manual__2026-01-01T00:00:00", 1, -1)
        keys.append(key)
        executor.running.add(key)
        # A one-element command is taken for an Airflow 3 workload; give an argv of three.
        executor.execute_async(key=key, command=["sh", "-c", args.command], executor_config={})

    started = time.monotonic()
    executor.start()
    # Observe (not alter) the updates: remember how many ended how, and the first failure.
    update_states = {}
    first_failure = {}

    def observe(update):
        status = update.get("status", {})
        state = status.get("state", "?")
        update_states[state] = update_states.get(state, 0) + 1
        if state in ("TASK_FAILED", "TASK_ERROR", "TASK_KILLED", "TASK_LOST", "TASK_DROPPED") and not first_failure:
            first_failure.update(
                {k: status.get(k) for k in ("state", "message", "reason", "source")}
            )

    executor.client.on(mex.MesosClient.UPDATE, observe)
    deadline = started + args.timeout

    # The provider's SUBSCRIBED callback stores the avmesos driver; poll for it (1 ms).
    def is_subscribed():
        return executor.driver is not None and executor.driver.driver is not None

    while not is_subscribed() and time.monotonic() < deadline:
        time.sleep(0.001)
    if not is_subscribed():
        print("avmesos_peer: not subscribed to %s within %.0f s" % (args.master, args.timeout), file=sys.stderr)
        os._exit(1)
    t0 = time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_SELF)

    terminal = {}
    while len(terminal) < args.tasks and time.monotonic() < deadline:
        executor.sync()
        for key, (state, _info) in list(executor.event_buffer.items()):
            if state in (State.SUCCESS, State.FAILED):
                terminal[key] = state
        executor.event_buffer.clear()
        if len(terminal) < args.tasks:
            time.sleep(args.sync_interval)
    t1 = time.monotonic()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)

    succeeded = sum(1 for s in terminal.values() if s == State.SUCCESS)
    failed = len(terminal) - succeeded
    complete = len(terminal) == args.tasks
    elapsed = t1 - t0
    result = {
        "peer": "avmesos-airflow-provider-0.4.0",
        "tasks": args.tasks,
        "complete": complete,
        "terminal": len(terminal),
        "succeeded": succeeded,
        "failed": failed,
        "seconds": round(elapsed, 6),
        "tasks_per_s": round(len(terminal) / elapsed, 3) if elapsed > 0 else None,
        "subscribe_seconds": round(t0 - started, 6),
        "updates_by_state": update_states,
        # User + system CPU of the whole process (every thread) from SUBSCRIBED to the end.
        "cpu_seconds": round(cpu, 6),
        "cpu_us_per_task": round(cpu / len(terminal) * 1e6, 1) if terminal else None,
    }
    if first_failure:
        result["first_failure"] = first_failure
    print(json.dumps(result), flush=True)
    # end() would TEARDOWN (killing the framework's tasks); the provider's threads (waitress,
    # Prometheus, avmesos loop) are not daemon-safe to join, so leave without waiting for them.
    try:
        executor.end()
    except Exception as exc:  # the bench result is already printed
        print("avmesos_peer: end() failed: %s" % exc, file=sys.stderr)
    sys.stdout.flush()
    os._exit(0 if complete else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
