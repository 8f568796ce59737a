"""Example DAG for the airflow-mesos executor (Airflow 3 task SDK, or Airflow 2.10).

Airflow runs it with several executors (``[core] executor = LocalExecutor,
airflow_mesos_executor.AirflowMesosExecutor``): the DAG's tasks choose the airflow-mesos executor
with ``executor=`` (through ``default_args``), each runs in its own container through airflow-mesos;
``on_scheduler`` stays with the default executor (LocalExecutor, on the scheduler's host). The final
states are deterministic:

* ``extract`` -> ``transform`` (1 cpu, 256 MB via the AVENTER-style executor_config, and its own
  image when ``AM_EXAMPLE_TRANSFORM_IMAGE`` is set where the DAG is parsed) -> ``load``
* ``flaky`` fails on its first try and succeeds on the retry (``retries=1``)
* ``doomed`` always fails (``retries=0``)
* ``slow`` sleeps for ``AM_EXAMPLE_SLOW_SECONDS`` (default 20) so that a scheduler restart can
  happen while it runs
* ``on_scheduler`` runs with LocalExecutor
* ``report`` runs after everything (``trigger_rule="all_done"``); it is the only leaf, so the run
  ends ``success``

If ``AM_EXAMPLE_MARK_DIR`` is set in the task environment, each try creates
``<dir>/<task_id>.<try_number>`` exclusively (a try that ran twice would fail on the second run),
holding the try's PID namespace (a container has its own), host name and process id.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.sdk import dag, get_current_context, task
except ImportError:  # Airflow 2.10
    from airflow.decorators import dag, task
    from airflow.operators.python import get_current_context

# The executor the tasks choose, by its class path as in [core] executor (Airflow 3.1.8 parses a
# DAG naming the bare class name but its scheduler then never queues those tasks).
MESOS = "airflow_mesos_executor.AirflowMesosExecutor"


# One task with its own size, and its own image when one is given: executor_config is how a DAG
# gives a task what the site template does not.
TRANSFORM_CONFIG: dict = {"cpus": 1.0, "mem_limit": "256m"}
if os.environ.get("AM_EXAMPLE_TRANSFORM_IMAGE"):
    TRANSFORM_CONFIG["image"] = os.environ["AM_EXAMPLE_TRANSFORM_IMAGE"]


def _mark() -> int:
    ctx = get_current_context()
    ti = ctx["ti"]
    mark_dir = os.environ.get("AM_EXAMPLE_MARK_DIR")
    if mark_dir:
        path = os.path.join(mark_dir, f"{ti.task_id}.{ti.try_number}")
        # O_EXCL: the same try running twice fails here.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.readlink('/proc/self/ns/pid')} {os.uname().nodename} pid {os.getpid()}\n")
    print(f"running {ti.task_id} try {ti.try_number} in {os.getcwd()}")
    return ti.try_number


@dag(
    dag_id="mesos_example",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 0, "retry_delay": timedelta(seconds=1), "executor": MESOS},
    tags=["airflow-mesos"],
)
def mesos_example():
    @task
    def extract() -> list[int]:
        _mark()
        return [1, 2, 3]

    @task(executor_config=TRANSFORM_CONFIG)
    def transform(values: list[int]) -> int:
        _mark()
        return sum(v * 10 for v in values)

    @task
    def load(total: int) -> None:
        _mark()
        print(f"loaded {total}")
        if total != 60:
            raise ValueError(f"expected 60, got {total}")

    @task(retries=1, retry_delay=timedelta(seconds=1))
    def flaky() -> str:
        if _mark() == 1:
            raise RuntimeError("first try fails on purpose")
        return "ok on retry"

    @task
    def doomed() -> None:
        _mark()
        raise RuntimeError("this task always fails")

    @task
    def slow() -> None:
        _mark()
        time.sleep(float(os.environ.get("AM_EXAMPLE_SLOW_SECONDS", "20")))

    @task(executor="LocalExecutor")
    def on_scheduler() -> None:
        _mark()

    @task(trigger_rule="all_done")
    def report() -> None:
        _mark()

    loaded = load(transform(extract()))
    [loaded, flaky(), doomed(), slow(), on_scheduler()] >> report()


mesos_example()
