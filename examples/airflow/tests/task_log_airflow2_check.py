"""Airflow 2.10: the reason a try never started, in its task log, with a real metadata DB.

Run by ``tests/airflow_e2e.rs`` (``task_log_in_airflow_2``) with the Airflow 2.10 virtualenv's
Python, the provider on PYTHONPATH and a fresh, migrated AIRFLOW_HOME (SQLite)::

    python task_log_airflow2_check.py

A DAG run with one task instance; the executor is told that try 1 failed at the daemon:

* still queued at try 1 (it never reported in): Airflow's own log reader (TaskLogReader, what the
  webserver and the REST API use) shows the reason for try 1, with the registry and the
  authentication error, and ``[mesos] docker_registry_password`` replaced by ``***``;
* running (it reported in): nothing is written.

Exit status 0 = the checks held; the reason is printed otherwise.
"""

from __future__ import annotations

import datetime
import json
import os
import sys

REGISTRY = "registry.example:5000"
PASSWORD = os.environ["AIRFLOW__MESOS__DOCKER_REGISTRY_PASSWORD"]
REASON = (
    "airflow-mesos task 0193-test failed: attempt 1 did not start on its agent: image is not on "
    f"this machine and pulling `{REGISTRY}/team/airflow:1` failed: unauthorized: authentication "
    f"required (leaked {PASSWORD}); no launch retries left (0 allowed)"
)


def main() -> int:
    import airflow
    from airflow.models.dag import DAG
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.operators.empty import EmptyOperator
    from airflow.utils.log.log_reader import TaskLogReader
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunType

    from airflow_mesos_executor import AirflowMesosExecutor

    if not airflow.__version__.startswith("2."):
        print(f"needs Airflow 2, found {airflow.__version__}")
        return 1
    when = datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)
    with DAG("etl", start_date=when, schedule=None) as dag:
        EmptyOperator(task_id="extract")
        EmptyOperator(task_id="load")
    DAG.bulk_write_to_db([dag])
    SerializedDagModel.write_dag(dag)
    run = dag.create_dagrun(
        run_id="manual__1",
        run_type=DagRunType.MANUAL,
        execution_date=when,
        state=DagRunState.RUNNING,
        data_interval=(when, when),
    )

    def set_state(task_id: str, state: str):
        with create_session() as session:
            ti = run.get_task_instance(task_id, session=session)
            ti.state = state
            ti.try_number = 1
            return ti.key

    def read(task_id: str) -> str:
        with create_session() as session:
            ti = run.get_task_instance(task_id, session=session)
            logs, _ = TaskLogReader().read_log_chunks(ti, 1, {"download_logs": True})
            return json.dumps(logs, default=str)

    executor = AirflowMesosExecutor()
    queued = set_state("extract", TaskInstanceState.QUEUED)
    running = set_state("load", TaskInstanceState.RUNNING)
    executor._fail_try(queued, REASON)
    executor._fail_try(running, "airflow-mesos task 0193-other failed: exit code 1")
    set_state("extract", TaskInstanceState.FAILED)
    set_state("load", TaskInstanceState.FAILED)

    extract, load = read("extract"), read("load")
    print(f"extract's task log of try 1: {extract[-600:]}")
    failures = []
    if REGISTRY not in extract or "authentication required" not in extract:
        failures.append("extract's task log lacks the registry and the authentication error")
    if "ended before the task reached Airflow" not in extract:
        failures.append("extract's task log lacks the executor's line")
    if PASSWORD in extract:
        failures.append("the registry password is in extract's task log")
    if "exit code 1" in load:
        failures.append(f"load reported in (running), yet the executor wrote into its log: {load[-600:]}")
    if executor.get_event_buffer().get(queued, (None,))[0] != TaskInstanceState.FAILED:
        failures.append("the executor did not report extract failed")
    for f in failures:
        print(f"FAIL: {f}")
    if not failures:
        print("PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
