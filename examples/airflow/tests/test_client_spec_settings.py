"""Tests of the HTTP client, the spec builder and the settings (no Airflow needed except for one test)."""

import json

import pytest

from airflow_mesos_executor.client import DaemonClient, DaemonError, DaemonUnavailable
from airflow_mesos_executor.settings import execution_api_server_url, load, read_token_file, resolve_secret, token_file
from airflow_mesos_executor.spec import (
    WORKLOAD_COMMAND,
    SpecBuildError,
    build_spec,
    external_key,
    parse_template,
)

KEY = ("etl", "load", "manual__2026-01-01T00:00:00+00:00", 2, -1)


# -- client --------------------------------------------------------------------------------


def test_client_sends_bearer_token_and_round_trips(daemon):
    c = DaemonClient(daemon.url, daemon.token)
    [view] = c.submit([{"command": ["true"], "name": "x"}])
    assert view["state"] == "queued"
    assert c.get(view["id"])["id"] == view["id"]
    assert c.get("t-nope") is None
    assert all(r["auth"] == f"Bearer {daemon.token}" for r in daemon.requests)
    page = c.events(since=0)
    assert [e["task_id"] for e in page["events"]] == [view["id"]]
    assert page["cursor"] == page["events"][-1]["seq"]


def test_client_wrong_token_is_an_error_without_the_token(daemon):
    c = DaemonClient(daemon.url, "not-the-token-123")
    with pytest.raises(DaemonError) as e:
        c.list()
    assert e.value.status == 401
    assert "not-the-token-123" not in str(e.value)
    assert "not-the-token-123" not in repr(c)


def test_client_bad_spec_names_the_field(daemon):
    c = DaemonClient(daemon.url, daemon.token)
    with pytest.raises(DaemonError) as e:
        c.submit([{"command": "true"}, {"command": "true", "cpu": 1}])
    assert e.value.status == 400
    assert e.value.field == "tasks[1].cpu"
    assert "tasks[1].cpu" in str(e.value)


def test_client_kill_of_ended_task_is_none(daemon):
    c = DaemonClient(daemon.url, daemon.token)
    [view] = c.submit([{"command": "true"}])
    assert c.kill(view["id"])["state"] == "killing"
    daemon.transition(view["id"], "killed")
    assert c.kill(view["id"]) is None
    assert c.kill("t-unknown") is None


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 8, 9, 1000])
def test_head_cursor_finds_the_newest_event_without_reading_history(daemon, n):
    for _ in range(n):
        daemon.create({"command": "true"})
    c = DaemonClient(daemon.url, daemon.token)
    before = len(daemon.requests)
    assert c.head_cursor() == n
    assert len(daemon.requests) - before <= 2 * max(n, 1).bit_length() + 2


def test_client_unreachable_daemon():
    c = DaemonClient("http://127.0.0.1:9", timeout=2)
    with pytest.raises(DaemonUnavailable) as e:
        c.list()
    assert "127.0.0.1:9" in str(e.value)


def test_client_with_several_daemons_goes_to_one_that_answers(daemon):
    from fake_daemon import FakeDaemon

    # The first daemon is down (nothing listens): even a write goes on, it was never sent.
    c = DaemonClient(f"http://127.0.0.1:9, {daemon.url}", daemon.token, timeout=2)
    [view] = c.submit([{"command": ["true"]}])
    assert c.api_url == daemon.url
    assert c.get(view["id"])["id"] == view["id"]
    # A standby with no leader yet answers 503: the next daemon is asked.
    standby = FakeDaemon(token=daemon.token).start()
    try:
        standby.down = True
        c = DaemonClient(f"{standby.url},{daemon.url}", daemon.token, timeout=2)
        assert len(c.submit([{"command": ["true"]}])) == 1
        assert c.api_url == daemon.url
        # Every daemon refusing: the 503 is the caller's to see.
        daemon.down = True
        with pytest.raises(DaemonError) as e:
            c.list()
        assert e.value.status == 503
    finally:
        standby.stop()


def test_client_rejects_bad_url():
    with pytest.raises(ValueError, match="api_url"):
        DaemonClient("127.0.0.1:11000")


def test_client_reads_logs(daemon):
    c = DaemonClient(daemon.url, daemon.token)
    [view] = c.submit([{"command": "true"}])
    daemon.logs[view["id"]] = {"stdout": "hello\nworld\n"}
    page = c.logs(view["id"], "stdout", offset=6, length=100)
    assert page["data"] == "world\n" and page["next_offset"] == 12
    with pytest.raises(ValueError):
        c.logs(view["id"], "stdin")


# -- spec ----------------------------------------------------------------------------------


def test_external_key_is_stable_and_distinguishes_tries():
    a = external_key("d", "t", "r", 1, -1)
    assert a == external_key("d", "t", "r", 1, -1)
    assert a != external_key("d", "t", "r", 2, -1)
    assert a != external_key("d", "t", "r", 1, 0)
    # Ids with separators cannot collide: it is JSON.
    assert external_key("a.b", "c", "r", 1, -1) != external_key("a", "b.c", "r", 1, -1)
    assert json.loads(a) == {"dag_id": "d", "task_id": "t", "run_id": "r", "try_number": 1, "map_index": -1}


def test_workload_spec_puts_the_token_only_in_the_file():
    spec = build_spec(
        key=KEY,
        command=WORKLOAD_COMMAND,
        files=[{"path": "workload.json", "content": '{"token":"jwt-secret-xyz"}'}],
        env={"AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:8080/execution/"},
    )
    assert spec["command"] == [
        "python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-path", "workload.json",
    ]
    assert spec["files"] == [{"path": "workload.json", "content": '{"token":"jwt-secret-xyz"}'}]
    without_files = {k: v for k, v in spec.items() if k != "files"}
    assert "jwt-secret-xyz" not in json.dumps(without_files)
    assert spec["env"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8080/execution/"
    assert spec["labels"]["airflow.dag_id"] == "etl" and spec["labels"]["airflow.try_number"] == "2"
    assert spec["external_key"] == external_key(*KEY)
    assert spec["name"] == "etl.load"
    assert "executor_config" not in spec


def test_aventer_keys_pass_through_and_beat_the_template():
    template = {"image": "site/airflow:1", "cpus": 0.5, "network": "host", "env": {"A": "t", "B": "t"}}
    spec = build_spec(
        key=KEY,
        command=["airflow", "tasks", "run"],
        env={"B": "shim"},
        executor_config={"image": "my/img:2", "mem_limit": "2g", "environment": {"A": "task"}, "attributes": ["gpu:true"]},
        template=template,
    )
    # The task's image wins (the template's explicit image would otherwise beat executor_config).
    assert "image" not in spec
    assert spec["executor_config"]["image"] == "my/img:2"
    assert spec["executor_config"]["mem_limit"] == "2g"
    assert spec["cpus"] == 0.5 and spec["network"] == "host"
    assert spec["env"] == {"A": "task", "B": "shim"}
    assert template["env"] == {"A": "t", "B": "t"}, "the template must not be modified"


def test_our_keys_become_spec_fields_top_level_or_namespaced():
    spec = build_spec(
        key=KEY,
        command=["x"],
        executor_config={
            "volumes": [{"container_path": "/data", "host_path": "/srv/data", "mode": "ro"}],
            "airflow_mesos": {"kill_grace_period": 5, "labels": {"team": "a", "airflow.dag_id": "spoof"}},
        },
    )
    assert spec["volumes"][0]["host_path"] == "/srv/data"
    assert spec["kill_grace_period"] == 5
    assert spec["labels"]["team"] == "a"
    assert spec["labels"]["airflow.dag_id"] == "etl", "the shim's labels cannot be overridden"
    assert "executor_config" not in spec


def test_executor_config_errors_and_foreign_values():
    with pytest.raises(SpecBuildError, match="command"):
        build_spec(key=KEY, command=["x"], executor_config={"command": "rm -rf /"})
    with pytest.raises(SpecBuildError, match="files"):
        build_spec(key=KEY, command=["x"], executor_config={"files": []})
    with pytest.raises(SpecBuildError, match="dict"):
        build_spec(key=KEY, command=["x"], executor_config=["cpus"])
    # A non-JSON value (e.g. a Kubernetes pod_override object) is dropped, not sent.
    spec = build_spec(key=KEY, command=["x"], executor_config={"pod_override": object(), "cpus": 2})
    assert spec["executor_config"] == {"cpus": 2}


def test_template_parsing():
    assert parse_template("") == {}
    assert parse_template('{"network": "host"}') == {"network": "host"}
    with pytest.raises(SpecBuildError, match="not valid JSON"):
        parse_template("{network: host}")
    with pytest.raises(SpecBuildError, match="command"):
        parse_template('{"command": "x"}')
    with pytest.raises(SpecBuildError, match="unknown field 'netwrok'"):
        parse_template('{"netwrok": "host"}')


# -- settings ------------------------------------------------------------------------------


def _getter(values):
    def get(section, key, fallback=None):
        return values.get((section, key), fallback)

    return get


def test_secret_precedence_follows_airflow():
    cfg = {("mesos", "api_token"): "file-value", ("mesos", "api_token_cmd"): "echo file-cmd"}
    run = lambda cmd: cmd.split(" ", 1)[1] + "\n"  # noqa: E731
    secret = lambda path: "from-backend:" + path  # noqa: E731
    get = _getter(cfg)
    assert resolve_secret("mesos", "api_token", get, {"AIRFLOW__MESOS__API_TOKEN": "env"}, run, secret) == "env"
    assert resolve_secret("mesos", "api_token", get, {"AIRFLOW__MESOS__API_TOKEN_CMD": "echo env-cmd"}, run, secret) == "env-cmd"
    assert resolve_secret("mesos", "api_token", get, {"AIRFLOW__MESOS__API_TOKEN_SECRET": "p"}, run, secret) == "from-backend:p"
    assert resolve_secret("mesos", "api_token", get, {}, run, secret) == "file-value"
    del cfg[("mesos", "api_token")]
    assert resolve_secret("mesos", "api_token", get, {}, run, secret) == "file-cmd"
    del cfg[("mesos", "api_token_cmd")]
    cfg[("mesos", "api_token_secret")] = "k"
    assert resolve_secret("mesos", "api_token", get, {}, run, secret) == "from-backend:k"
    del cfg[("mesos", "api_token_secret")]
    assert resolve_secret("mesos", "api_token", get, {}, run, secret) is None


def test_without_api_token_the_daemons_generated_token_file_is_read(tmp_path):
    home = tmp_path / "home"
    env = {"AIRFLOW_HOME": str(home)}
    # No file yet (the daemon has not started): no token, the daemon's 401 says why.
    assert load(_getter({}), env).api_token is None
    (home / "airflow-mesos").mkdir(parents=True)
    (home / "airflow-mesos" / "api-token").write_text("c0ffee\n")
    assert token_file(_getter({}), env) == str(home / "airflow-mesos" / "api-token")
    assert load(_getter({}), env).api_token == "c0ffee"
    # A configured token wins; a configured file path is read instead of the default.
    assert load(_getter({("mesos", "api_token"): "mine"}), env).api_token == "mine"
    other = tmp_path / "other-token"
    other.write_text("beef")
    assert load(_getter({("mesos", "api_token_file"): str(other)}), env).api_token == "beef"
    other.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        read_token_file(str(other))
    other.chmod(0)
    import os

    if os.geteuid() != 0:
        with pytest.raises(ValueError, match="api_token_file"):
            read_token_file(str(other))


def test_execution_api_url_defaults_like_the_task_sdk():
    assert execution_api_server_url(_getter({})) == "http://localhost:8080/execution/"
    assert execution_api_server_url(_getter({("api", "base_url"): "http://h:9/x/"})) == "http://h:9/x/execution/"
    assert execution_api_server_url(_getter({("core", "execution_api_server_url"): "http://e/"})) == "http://e/"


def test_load_settings():
    s = load(
        _getter(
            {
                ("mesos", "api_url"): "http://127.0.0.1:12345",
                ("mesos", "api_token"): "tok",
                ("mesos_executor", "task_template"): '{"network": "host"}',
                ("mesos_executor", "events_wait"): "1.5",
            }
        ),
        environ={},
    )
    assert s.api_url == "http://127.0.0.1:12345" and s.api_token == "tok"
    assert s.template == {"network": "host"} and s.events_wait == 1.5
    assert "tok" not in repr(s)
    with pytest.raises(ValueError, match="events_wait"):
        load(_getter({("mesos_executor", "events_wait"): "soon"}), environ={})
