"""Tests of AirflowMesosExecutor against the fake daemon (needs Airflow 3 installed)."""

import json
import types
import uuid

import pytest

pytest.importorskip("airflow.executors.workloads")

from airflow.executors.workloads import BundleInfo, ExecuteTask, TaskInstance  # noqa: E402
from airflow.models.taskinstancekey import TaskInstanceKey  # noqa: E402
from airflow.utils.state import TaskInstanceState  # noqa: E402

from airflow_mesos_executor import AirflowMesosExecutor  # noqa: E402
from airflow_mesos_executor.client import DaemonClient  # noqa: E402
from airflow_mesos_executor.settings import Settings  # noqa: E402
from airflow_mesos_executor.spec import external_key_of  # noqa: E402

TOKEN = "eyJhbGciOi.workload-jwt-SECRET.sig"


def workload(task_id="extract", try_number=1, executor_config=None, map_index=-1):
    return ExecuteTask(
        token=TOKEN,
        ti=TaskInstance(
            id=uuid.uuid4(),
            dag_version_id=uuid.uuid4(),
            task_id=task_id,
            dag_id="etl",
            run_id="manual__1",
            try_number=try_number,
            map_index=map_index,
            pool_slots=1,
            queue="default",
            priority_weight=1,
            executor_config=executor_config,
        ),
        dag_rel_path="etl.py",
        bundle_info=BundleInfo(name="dags-folder"),
        log_path="dag_id=etl/run_id=manual__1/task_id=x/attempt=1.log",
    )


def make_executor(daemon, template=None):
    ex = AirflowMesosExecutor(parallelism=8)
    ex.settings = Settings(
        api_url=daemon.url,
        api_token=daemon.token,
        template=template or {},
        execution_api_server_url="http://127.0.0.1:8080/execution/",
        core_executor="LocalExecutor,airflow_mesos_executor.AirflowMesosExecutor",
    )
    ex.client = DaemonClient(daemon.url, daemon.token, timeout=5)
    ex.start()
    return ex


def queue(ex, *wls):
    for w in wls:
        ex.queue_workload(w, session=None)


def fake_ti(key, external_executor_id=None):
    return types.SimpleNamespace(key=key, external_executor_id=external_executor_id, try_number=key.try_number)


def test_workloads_are_submitted_in_one_batch_with_the_token_only_in_the_file(daemon):
    ex = make_executor(daemon, template={"network": "host", "image": "site/airflow:3"})
    a, b = workload("extract"), workload("load", executor_config={"cpus": 2, "mem_limit": "1g"})
    queue(ex, a, b)
    ex.heartbeat()
    posts = daemon.requests_to("POST", "/v1/tasks")
    assert len(posts) == 1 and len(posts[0]["body"]["tasks"]) == 2
    assert ex.running == {a.ti.key, b.ti.key} and not ex.queued_tasks
    specs = {s["labels"]["airflow.task_id"]: s for s in daemon.submitted_specs()}
    for w, spec in ((a, specs["extract"]), (b, specs["load"])):
        assert spec["command"][-2:] == ["--json-path", "workload.json"]
        [f] = spec["files"]
        assert f["path"] == "workload.json"
        assert json.loads(f["content"])["token"] == TOKEN
        assert json.loads(f["content"])["ti"]["id"] == str(w.ti.id)
        rest = json.dumps({k: v for k, v in spec.items() if k != "files"})
        assert TOKEN not in rest, "the token must only travel in the sandbox file"
        assert spec["env"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8080/execution/"
        # The task parses its DAG, which may choose executors: it needs the scheduler's list.
        assert spec["env"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor,airflow_mesos_executor.AirflowMesosExecutor"
        assert spec["external_key"] == external_key_of(w.ti.key)
        assert spec["network"] == "host"
    assert specs["extract"]["image"] == "site/airflow:3"
    assert specs["load"]["executor_config"] == {"cpus": 2, "mem_limit": "1g"}


def test_states_flow_back_through_the_change_feed(daemon):
    ex = make_executor(daemon)
    a, b, c = workload("a"), workload("b"), workload("c")
    queue(ex, a, b, c)
    ex.heartbeat()
    ex.get_event_buffer()
    ids = {s["labels"]["airflow.task_id"]: t for t, s in ((t, daemon.tasks[t]["spec"]) for t in daemon.tasks)}
    daemon.transition(ids["a"], "starting")
    daemon.transition(ids["a"], "running")
    daemon.transition(ids["b"], "running")
    ex.sync()
    buf = ex.get_event_buffer()
    assert buf == {
        a.ti.key: (TaskInstanceState.RUNNING, ids["a"]),
        b.ti.key: (TaskInstanceState.RUNNING, ids["b"]),
    }
    assert a.ti.key in ex.running, "running_state keeps the key running"
    daemon.transition(ids["a"], "succeeded")
    daemon.transition(ids["b"], "failed", "exit code 1")
    ex.sync()
    buf = ex.get_event_buffer()
    assert buf[a.ti.key][0] == TaskInstanceState.SUCCESS
    assert buf[b.ti.key][0] == TaskInstanceState.FAILED
    assert "exit code 1" in buf[b.ti.key][1]
    assert ex.running == {c.ti.key}
    # A sync without news reports nothing and does not re-read old events.
    n = len(daemon.requests_to("GET", "/v1/events"))
    ex.sync()
    assert ex.get_event_buffer() == {}
    assert daemon.requests_to("GET", "/v1/events")[n]["query"]["since"] == str(daemon.seq)


def test_events_of_unknown_tasks_are_ignored(daemon):
    other = DaemonClient(daemon.url, daemon.token).submit([{"command": "true"}])[0]
    ex = make_executor(daemon)
    daemon.transition(other["id"], "succeeded")
    ex.sync()
    assert ex.get_event_buffer() == {}


def test_daemon_down_keeps_tasks_queued_and_never_submits_twice(daemon):
    ex = make_executor(daemon)
    w = workload("x")
    queue(ex, w)
    daemon.down = True
    ex.heartbeat()
    assert w.ti.key in ex.queued_tasks and w.ti.key not in ex.running
    daemon.down = False
    # The daemon created the task but the answer was lost: the retry must find it, not re-create.
    daemon.fail_next_submit_after_create = 1
    ex.heartbeat()
    assert w.ti.key in ex.queued_tasks
    assert len(daemon.tasks) == 1
    ex.heartbeat()
    assert len(daemon.tasks) == 1, "a second daemon task was created for the same try"
    assert w.ti.key in ex.running and not ex.queued_tasks
    [tid] = daemon.tasks
    daemon.transition(tid, "running")
    ex.sync()
    assert ex.get_event_buffer()[w.ti.key] == (TaskInstanceState.RUNNING, tid)


def test_a_refused_spec_fails_only_its_task(daemon):
    ex = make_executor(daemon)
    good = workload("good")
    bad = workload("bad", executor_config={"airflow_mesos": {"user": "nobody"}})
    # Make the fake refuse "bad": an unknown spec field slips in through the template-free path.
    daemon_route = daemon.route

    def route(method, parts, query, body):
        if method == "POST" and any(s.get("user") == "nobody" for s in body["tasks"]):
            return 400, {"error": "user nobody is not allowed", "field": "tasks[0].user"}
        return daemon_route(method, parts, query, body)

    daemon.route = route
    queue(ex, good, bad)
    ex.heartbeat()
    assert ex.running == {good.ti.key}
    buf = ex.get_event_buffer()
    assert buf[bad.ti.key][0] == TaskInstanceState.FAILED
    assert "user nobody is not allowed" in buf[bad.ti.key][1]
    assert not ex.queued_tasks


def test_a_wrong_token_keeps_tasks_queued(daemon):
    ex = make_executor(daemon)
    ex.client = DaemonClient(daemon.url, "wrong-token", timeout=5)
    w = workload("x")
    queue(ex, w)
    ex.heartbeat()
    assert w.ti.key in ex.queued_tasks and ex.get_event_buffer() == {}
    ex.client = DaemonClient(daemon.url, daemon.token, timeout=5)
    ex.heartbeat()
    assert w.ti.key in ex.running and len(daemon.tasks) == 1


def test_executor_config_command_fails_the_task_without_submitting(daemon):
    ex = make_executor(daemon)
    w = workload("x", executor_config={"command": "rm -rf /"})
    queue(ex, w)
    ex.heartbeat()
    assert ex.get_event_buffer()[w.ti.key][0] == TaskInstanceState.FAILED
    assert daemon.tasks == {}


def test_adoption_after_a_scheduler_restart(daemon):
    old = make_executor(daemon)
    running, silent, finished, gone = workload("r"), workload("s"), workload("f"), workload("g")
    queue(old, running, silent, finished)
    old.heartbeat()
    ids = {daemon.tasks[t]["spec"]["labels"]["airflow.task_id"]: t for t in daemon.tasks}
    daemon.transition(ids["r"], "running")
    daemon.transition(ids["f"], "running")
    old.sync()
    old.end()  # leaves them running
    assert daemon.requests_to("POST", "/v1/tasks/") == [], "end() must not kill anything"
    daemon.transition(ids["f"], "failed", "container exited 137")

    new = make_executor(daemon)
    # Between the new executor's start and the adoption: seen by both the feed and the lookup.
    daemon.transition(ids["s"], "starting")
    tis = [
        fake_ti(running.ti.key, ids["r"]),
        # Its running state never reached Airflow: found by external key.
        fake_ti(silent.ti.key, None),
        fake_ti(finished.ti.key, ids["f"]),
        fake_ti(gone.ti.key, None),
        # An external id that belongs to another task instance is not trusted.
        fake_ti(TaskInstanceKey("etl", "other", "manual__1", 1, -1), ids["r"]),
    ]
    left = new.try_adopt_task_instances(tis)
    assert [t.key.task_id for t in left] == ["g", "other"]
    assert new.running == {running.ti.key, silent.ti.key}
    buf = new.get_event_buffer()
    assert buf[running.ti.key] == (TaskInstanceState.RUNNING, ids["r"])
    assert buf[finished.ti.key][0] == TaskInstanceState.FAILED
    assert buf[silent.ti.key] == (TaskInstanceState.RUNNING, ids["s"])
    # Later events of adopted tasks are reported, each once.
    daemon.transition(ids["s"], "running")
    daemon.transition(ids["r"], "succeeded")
    new.sync()
    buf = new.get_event_buffer()
    assert buf == {running.ti.key: (TaskInstanceState.SUCCESS, ids["r"])}


def test_revoke_kills_and_forgets_without_events(daemon):
    ex = make_executor(daemon)
    w = workload("x")
    queue(ex, w)
    ex.heartbeat()
    [tid] = daemon.tasks
    ex.revoke_task(ti=fake_ti(w.ti.key))
    assert daemon.requests_to("POST", f"/v1/tasks/{tid}/kill")
    assert w.ti.key not in ex.running and not ex.queued_tasks
    daemon.transition(tid, "killed")
    ex.sync()
    assert ex.get_event_buffer() == {}
    # An external executor id of another try is not killed.
    other = make_executor(daemon)
    queue(other, workload("y"))
    other.heartbeat()
    [tid_y] = [t for t in daemon.tasks if t != tid]
    ex.revoke_task(ti=fake_ti(TaskInstanceKey("etl", "y", "manual__1", 2, -1), tid_y))
    assert not daemon.requests_to("POST", f"/v1/tasks/{tid_y}/kill")
    # Revoking something unknown or with the daemon down does not raise.
    ex.revoke_task(ti=fake_ti(TaskInstanceKey("etl", "nope", "r", 1, -1)))
    daemon.down = True
    ex.revoke_task(ti=fake_ti(TaskInstanceKey("etl", "nope", "r", 1, -1), "t-9999"))


def test_cleanup_stuck_queued_tasks_kills_them(daemon):
    ex = make_executor(daemon)
    w = workload("stuck")
    queue(ex, w)
    ex.heartbeat()
    [tid] = daemon.tasks
    ti = fake_ti(w.ti.key)
    assert ex.cleanup_stuck_queued_tasks([ti]) == [repr(ti)]
    assert daemon.requests_to("POST", f"/v1/tasks/{tid}/kill")
    assert w.ti.key not in ex.running


def test_terminate_kills_live_tasks(daemon):
    ex = make_executor(daemon)
    queue(ex, workload("a"), workload("b"))
    ex.heartbeat()
    ex.terminate()
    killed = {r["path"].split("/")[3] for r in daemon.requests_to("POST", "/v1/tasks/")}
    assert killed == set(daemon.tasks)


def test_get_task_log_returns_stdout_and_stderr(daemon):
    ex = make_executor(daemon)
    w = workload("x")
    queue(ex, w)
    ex.heartbeat()
    [tid] = daemon.tasks
    daemon.logs[tid] = {"stdout": "line 1\n" * 50000, "stderr": "warning\n"}
    sources, logs = ex.get_task_log(fake_ti(w.ti.key, tid), try_number=1)
    assert sources == [f"airflow-mesos task {tid} stdout", f"airflow-mesos task {tid} stderr"]
    assert logs == ["line 1\n" * 50000, "warning\n"]
    # A fresh executor (as in the API server) finds the task by its external key.
    other = make_executor(daemon)
    sources, logs = other.get_task_log(fake_ti(w.ti.key, None), try_number=1)
    assert logs[1] == "warning\n"
    assert other.get_task_log(fake_ti(w.ti.key, None), try_number=2) == ([], [])


def test_airflow2_command_runs_as_argv(daemon):
    ex = make_executor(daemon)
    key = TaskInstanceKey("etl", "x", "manual__1", 1, -1)
    argv = ["airflow", "tasks", "run", "etl", "x", "manual__1", "--local", "--subdir", "DAGS_FOLDER/etl.py"]
    ex.execute_async(key=key, command=argv, executor_config={"image": "a2:latest"})
    [spec] = daemon.submitted_specs()
    assert spec["command"] == argv
    assert spec["executor_config"] == {"image": "a2:latest"}
    assert spec["env"] == {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor,airflow_mesos_executor.AirflowMesosExecutor"}
    ex.execute_async(key=key._replace(task_id="y"), command=["bash", "-c", "evil"])
    ex.running.add(key._replace(task_id="y"))
    ex.sync()
    assert ex.get_event_buffer()[key._replace(task_id="y")][0] == TaskInstanceState.FAILED
    assert len(daemon.tasks) == 1


def test_settings_come_from_airflow_conf(daemon, monkeypatch):
    monkeypatch.setenv("AIRFLOW__MESOS__API_URL", daemon.url)
    monkeypatch.setenv("AIRFLOW__MESOS__API_TOKEN_CMD", f"echo {daemon.token}")
    monkeypatch.setenv("AIRFLOW__MESOS_EXECUTOR__TASK_TEMPLATE", '{"network": "host"}')
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor, airflow_mesos_executor.AirflowMesosExecutor ")
    ex = AirflowMesosExecutor(parallelism=4)
    ex.start()
    queue(ex, workload("x"))
    ex.heartbeat()
    [spec] = daemon.submitted_specs()
    assert spec["network"] == "host"
    assert spec["env"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor, airflow_mesos_executor.AirflowMesosExecutor"
    assert all(r["auth"] == f"Bearer {daemon.token}" for r in daemon.requests)


def test_sync_starts_at_the_head_of_the_feed_not_its_beginning(daemon):
    for _ in range(50):
        daemon.create({"command": "true"})
    ex = make_executor(daemon)
    n = len(daemon.requests)
    ex.sync()
    [req] = daemon.requests[n:]
    assert req["path"] == "/v1/events" and req["query"]["since"] == "50"


# -- a scheduler restart must never make a try run twice -------------------------------------


def test_adoption_keeps_task_instances_this_executor_already_has(daemon):
    """A scheduler whose own job was taken for dead (its heartbeat late by more than
    scheduler_health_check_threshold) is asked to adopt its own task instances; one still in
    queued_tasks handed back would be reset and run as the next try, next to this one."""
    ex = make_executor(daemon)
    queued, submitted = workload("queued"), workload("submitted")
    queue(ex, submitted)
    ex.heartbeat()
    queue(ex, queued)
    daemon.down = True  # the lookups fail too: what the executor holds needs none
    left = ex.try_adopt_task_instances([fake_ti(queued.ti.key), fake_ti(submitted.ti.key)])
    assert left == [], "a task instance this executor holds was handed back for a reset"
    daemon.down = False
    ex.heartbeat()
    keys = sorted(t["external_key"] for t in daemon.tasks.values())
    assert keys == sorted([external_key_of(queued.ti.key), external_key_of(submitted.ti.key)])
    assert ex.running == {queued.ti.key, submitted.ti.key}


def test_adoption_while_the_daemon_is_down_claims_and_resolves_later(daemon):
    old = make_executor(daemon)
    live, never = workload("live"), workload("never")
    queue(old, live)
    old.heartbeat()
    [tid] = daemon.tasks
    daemon.transition(tid, "running")
    old.end()

    new = make_executor(daemon)
    daemon.down = True
    left = new.try_adopt_task_instances([fake_ti(live.ti.key, tid), fake_ti(never.ti.key)])
    # Handed back, both would be reset; `live` would run again next to its daemon task.
    assert left == []
    assert new.running == {live.ti.key, never.ti.key}
    new.sync()
    assert new.get_event_buffer() == {}
    daemon.down = False
    new.sync()
    buf = new.get_event_buffer()
    assert buf[live.ti.key] == (TaskInstanceState.RUNNING, tid)
    assert buf[never.ti.key][0] == TaskInstanceState.FAILED
    assert "no task for this try" in buf[never.ti.key][1]
    assert new.running == {live.ti.key}
    daemon.transition(tid, "succeeded")
    new.sync()
    assert new.get_event_buffer() == {live.ti.key: (TaskInstanceState.SUCCESS, tid)}
    assert len(daemon.tasks) == 1


AIRFLOW2_ARGV = ["airflow", "tasks", "run", "etl", "x", "manual__1", "--local", "--subdir", "DAGS_FOLDER/etl.py"]


def airflow2_submit(ex, key):
    """What Airflow 2's BaseExecutor._process_tasks does with a queued task."""
    ex.execute_async(key=key, command=AIRFLOW2_ARGV)
    ex.running.add(key)


def test_airflow2_lost_answer_is_looked_up_not_failed(daemon):
    """The daemon created the task but its answer was lost: failing the try would make Airflow run
    the next one while this one runs (the argv names no try, so it would run the next try too)."""
    ex = make_executor(daemon)
    key = TaskInstanceKey("etl", "x", "manual__1", 1, -1)
    daemon.fail_next_submit_after_create = 1
    airflow2_submit(ex, key)
    assert len(daemon.tasks) == 1
    ex.sync()
    assert ex.get_event_buffer() == {}, "a try that may exist at the daemon was reported"
    assert len(daemon.tasks) == 1, "a second daemon task was created for the same try"
    [tid] = daemon.tasks
    daemon.transition(tid, "running")
    ex.sync()
    assert ex.get_event_buffer() == {key: (TaskInstanceState.RUNNING, tid)}


def test_airflow2_daemon_down_submits_at_a_later_sync(daemon):
    ex = make_executor(daemon)
    key = TaskInstanceKey("etl", "x", "manual__1", 1, -1)
    daemon.down = True
    airflow2_submit(ex, key)
    ex.sync()
    assert ex.get_event_buffer() == {} and key in ex.running
    daemon.down = False
    ex.sync()
    assert [t["external_key"] for t in daemon.tasks.values()] == [external_key_of(key)]
    ex.sync()
    assert len(daemon.tasks) == 1
