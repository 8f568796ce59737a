"""A try whose command never started: the daemon's reason in Airflow's task log of that try.

Read back through Airflow's own FileTaskHandler.read (what the REST API and the UI use), for a
finished try, where Airflow does not ask the executor (needs Airflow 3 installed).
"""

import datetime
import logging
import os
import types

import pytest

pytest.importorskip("airflow.executors.workloads")

from airflow.configuration import conf  # noqa: E402
from airflow.utils.log.file_task_handler import FileTaskHandler  # noqa: E402
from airflow.utils.state import TaskInstanceState  # noqa: E402

from airflow_mesos_executor import task_log  # noqa: E402
from test_executor import make_executor, queue, workload  # noqa: E402

REGISTRY = "registry.example:5000"
PASSWORD = "pw-never-in-a-log-7c1d"
REASON = (
    "attempt 1 did not start on its agent: image is not on this machine and pulling "
    f"`{REGISTRY}/team/airflow:1` failed: Head \"https://{REGISTRY}/v2/team/airflow/manifests/1\": "
    "unauthorized: authentication required; no launch retries left (0 allowed)"
)


def stub_ti(task_id="extract", try_number=1, state="queued", map_index=-1):
    """What FileTaskHandler needs of a task instance: its keys, state and DAG run."""
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    template = types.SimpleNamespace(filename=conf.get("logging", "log_filename_template"))
    dag_run = types.SimpleNamespace(
        logical_date=when,
        run_after=when,
        data_interval_start=when,
        data_interval_end=when,
        get_log_template=lambda session=None: template,
    )
    return types.SimpleNamespace(
        dag_id="etl",
        task_id=task_id,
        run_id="manual__1",
        map_index=map_index,
        try_number=try_number,
        state=state,
        executor=None,
        hostname="",
        triggerer_job=None,
        task=None,
        get_dagrun=lambda session=None: dag_run,
    )


def read_back(handler, ti, try_number):
    """The try's log as Airflow's reader gives it: (events, sources)."""
    stream, _ = handler.read(ti, try_number)
    events, sources = [], []
    for m in stream:
        events.append(m.event)
        sources.extend(getattr(m, "sources", None) or [])
    return events, sources


def test_write_puts_one_error_record_where_airflow_reads_the_try(tmp_path):
    handler = FileTaskHandler(base_log_folder=str(tmp_path / "logs"))
    ti = stub_ti(try_number=2)
    path = task_log.write(handler, ti, 2, "why it never started")
    expected = os.path.join(handler.local_base, handler._render_filename(ti, 2)) + ".airflow-mesos.log"
    assert path == expected
    assert "attempt=2.log" in path and "task_id=extract" in path
    # Folders and file with Airflow's configured modes (umask aside).
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o664
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o775 & ~umask
    ti.state = TaskInstanceState.FAILED
    events, sources = read_back(handler, ti, 2)
    assert "why it never started" in events
    assert path in sources
    # Try 1 is another file: it does not show this try's reason.
    events, _ = read_back(handler, ti, 1)
    assert "why it never started" not in events


def test_airflow2_lines_use_the_handlers_format(tmp_path):
    handler = FileTaskHandler(base_log_folder=str(tmp_path))
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s - %(message)s"))
    line = task_log.format_line(handler, "pull refused\nby the registry", structured=False)
    assert line.endswith("ERROR - pull refused by the registry\n") and line.count("\n") == 1


def test_a_try_that_never_started_gets_the_daemons_reason_in_its_task_log(daemon, monkeypatch):
    monkeypatch.setenv("AIRFLOW__MESOS__DOCKER_REGISTRY_PASSWORD", PASSWORD)
    handler = task_log.task_handler()
    assert isinstance(handler, FileTaskHandler), "Airflow's airflow.task logger has its file task handler"
    ex = make_executor(daemon)
    w = workload("extract")
    queue(ex, w)
    ex.heartbeat()
    ex.get_event_buffer()
    [task_id] = list(daemon.tasks)
    ti = stub_ti("extract")
    looked_up = []

    def queued(session, key):
        looked_up.append(key)
        return ti

    monkeypatch.setattr(ex, "_queued_task_instance", queued)
    # A daemon that leaked the password: the executor still keeps it out of the task log.
    daemon.transition(task_id, "failed", f"{REASON} (with {PASSWORD})")
    ex.sync()
    assert ex.get_event_buffer()[w.ti.key][0] == TaskInstanceState.FAILED
    assert looked_up == [w.ti.key]
    ti.state = TaskInstanceState.FAILED
    events, _ = read_back(handler, ti, 1)
    [line] = [e for e in events if "authentication required" in e]
    assert REGISTRY in line and task_id in line and "ended before the task reached Airflow" in line
    assert PASSWORD not in "\n".join(events)


def test_a_try_that_reported_in_gets_nothing_written(daemon, monkeypatch):
    handler = task_log.task_handler()
    ex = make_executor(daemon)
    w = workload("load")
    queue(ex, w)
    ex.heartbeat()
    [task_id] = list(daemon.tasks)
    monkeypatch.setattr(ex, "_queued_task_instance", lambda session, key: None)
    daemon.transition(task_id, "failed", "exit code 1")
    ex.sync()
    assert ex.get_event_buffer()[w.ti.key][0] == TaskInstanceState.FAILED
    ti = stub_ti("load", state=TaskInstanceState.FAILED)
    assert not os.path.exists(task_log.log_path(handler, ti, 1))


class FakeQuery:
    def __init__(self, row):
        self.row = row

    def filter(self, *conditions):
        return self

    def one_or_none(self):
        return self.row


@pytest.mark.parametrize(
    "state, try_number, written",
    [("queued", 1, True), ("running", 1, False), ("failed", 1, False), ("queued", 2, False)],
)
def test_only_a_try_still_queued_at_that_try_counts_as_never_started(daemon, state, try_number, written):
    ex = make_executor(daemon)
    key = workload("extract").ti.key
    row = types.SimpleNamespace(try_number=try_number, state=state)
    session = types.SimpleNamespace(query=lambda model: FakeQuery(row))
    assert (ex._queued_task_instance(session, key) is row) is written
    session = types.SimpleNamespace(query=lambda model: FakeQuery(None))
    assert ex._queued_task_instance(session, key) is None
