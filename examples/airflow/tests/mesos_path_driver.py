"""The executor against the airflow-mesos daemon on a (fake) Mesos master: states only.

Run by ``tests/airflow_e2e.rs`` (``airflow_executor_mesos_path_fake_master``), which starts the
fake master (whose agent scripts each task by its ``airflow.task_id`` label: ``ok`` finishes,
``doomed`` fails, ``slow`` finishes after some seconds) and the daemon with ``master = ...``.
Nothing runs the Airflow command there, so this drives ``AirflowMesosExecutor`` directly with
real Airflow 3 ``ExecuteTask`` workloads whose token is ``$AM_TEST_WORKLOAD_TOKEN``:

1. the three workloads go out in one heartbeat; the states come back through the change feed
   (``running`` with the daemon task id, then ``success`` / ``failed``);
2. the executor ends while ``slow`` runs (``end()`` must not kill it), a new executor adopts
   ``slow`` by its external executor id and reports its success;
3. exactly one daemon task exists per workload.

Prints ``RESULT {json}`` (the daemon task ids by task) and exits 0 when all of that held.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
import urllib.request
import uuid

if "AIRFLOW_HOME" not in os.environ:  # the Rust test passes one inside its temporary directory
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="am-mesos-path-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", uuid.uuid4().hex)

from airflow.executors.workloads import BundleInfo, ExecuteTask, TaskInstance  # noqa: E402
from airflow.utils.state import TaskInstanceState  # noqa: E402

from airflow_mesos_executor import AirflowMesosExecutor  # noqa: E402

DAG_ID = "mesos_path"


def workload(task_id: str, token: str) -> ExecuteTask:
    return ExecuteTask(
        token=token,
        ti=TaskInstance(
            id=uuid.uuid4(),
            dag_version_id=uuid.uuid4(),
            task_id=task_id,
            dag_id=DAG_ID,
            run_id="manual__mesos",
            try_number=1,
            pool_slots=1,
            queue="default",
            priority_weight=1,
            executor_config={"cpus": 0.5, "mem_limit": "128m"},
        ),
        dag_rel_path="mesos_path.py",
        bundle_info=BundleInfo(name="dags-folder"),
        log_path=f"dag_id={DAG_ID}/task_id={task_id}/attempt=1.log",
    )


def pump(ex, until, deadline: float, seen: dict) -> None:
    """Heartbeats ``ex`` and collects its events into ``seen[key] = [(state, info), ...]``."""
    while not until(seen):
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: timed out; events so far: {seen}")
        ex.heartbeat()
        for key, (state, info) in ex.get_event_buffer().items():
            seen.setdefault(key.task_id, []).append((state, info))
        time.sleep(0.3)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout
    token = os.environ["AM_TEST_WORKLOAD_TOKEN"]
    wls = {name: workload(name, token) for name in ("ok", "doomed", "slow")}

    ex = AirflowMesosExecutor(parallelism=8)
    ex.start()
    for w in wls.values():
        ex.queue_workload(w, session=None)
    seen: dict = {}

    def first_phase(s):
        return (
            any(st == TaskInstanceState.SUCCESS for st, _ in s.get("ok", []))
            and any(st == TaskInstanceState.FAILED for st, _ in s.get("doomed", []))
            and any(st == TaskInstanceState.RUNNING for st, _ in s.get("slow", []))
        )

    pump(ex, first_phase, deadline, seen)
    ids = {}
    # `ok` may start and finish between two syncs: then only its success (with the task id as
    # info) reaches the event buffer, which keeps one state per key.
    for name, state in (("ok", TaskInstanceState.SUCCESS), ("slow", TaskInstanceState.RUNNING)):
        infos = [info for st, info in seen[name] if st == state]
        if not infos or not str(infos[0]).startswith("t-"):
            raise SystemExit(f"FAIL: {name} was not reported {state} with its daemon task id: {seen[name]}")
        ids[name] = infos[0]
    if any(st == TaskInstanceState.SUCCESS for st, _ in seen["slow"]):
        raise SystemExit("FAIL: slow finished before the executor restart; the test cannot show adoption")
    failed = [info for st, info in seen["doomed"] if st == TaskInstanceState.FAILED]
    print(f"doomed failed: {failed[0]}", flush=True)
    ex.end()  # must leave `slow` running

    ex2 = AirflowMesosExecutor(parallelism=8)
    ex2.start()
    slow_ti = types.SimpleNamespace(key=wls["slow"].ti.key, external_executor_id=ids["slow"], try_number=1)
    left = ex2.try_adopt_task_instances([slow_ti])
    if left:
        raise SystemExit(f"FAIL: the new executor did not adopt slow ({ids['slow']})")
    if wls["slow"].ti.key not in ex2.running:
        raise SystemExit("FAIL: adopted slow is not in running")
    seen2: dict = {}
    pump(ex2, lambda s: any(st == TaskInstanceState.SUCCESS for st, _ in s.get("slow", [])), deadline, seen2)
    ex2.end()

    req = urllib.request.Request(
        f"{ex2.client.api_url}/v1/tasks?label=airflow.dag_id={DAG_ID}&limit=100",
        headers={"Authorization": f"Bearer {os.environ['AIRFLOW__MESOS__API_TOKEN']}"},
    )
    tasks = json.loads(urllib.request.urlopen(req, timeout=10).read())["tasks"]
    keys = sorted(t["external_key"] for t in tasks)
    if len(keys) != 3 or len(set(keys)) != 3:
        raise SystemExit(f"FAIL: expected one daemon task per workload, got {keys}")
    states = {t["labels"]["airflow.task_id"]: t["state"] for t in tasks}
    if states != {"ok": "succeeded", "doomed": "failed", "slow": "succeeded"}:
        raise SystemExit(f"FAIL: daemon task states {states}")
    for t in tasks:
        ids[t["labels"]["airflow.task_id"]] = t["id"]
    print("RESULT " + json.dumps(ids), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
