"""End-to-end run: real Apache Airflow 3 + the executor shim + the airflow-mesos daemon (local Docker).

Run by ``tests/airflow_e2e.rs`` with the virtualenv's Python (``.ci/setup-airflow.sh``)::

    python e2e_driver.py --daemon-bin target/debug/airflow-mesos --image am-test/debian:bookworm

It makes a temporary AIRFLOW_HOME from ``examples/airflow/airflow.cfg`` and the example DAG, starts
the daemon (``backend = docker``), ``airflow api-server``, ``airflow dag-processor`` and
``airflow scheduler`` (SQLite metadata DB), triggers ``mesos_example``, restarts the scheduler while
the ``slow`` task runs, waits for the run to finish and then checks:

* Airflow's database: every task's final state (``flaky`` succeeded on try 2, ``doomed`` failed)
  and executor (``[core] executor = LocalExecutor,...AirflowMesosExecutor``: the DAG's tasks choose
  the airflow-mesos executor, ``on_scheduler`` runs with LocalExecutor, on this host, not in a
  container, and never reaches the daemon);
* no task try ran twice or got lost: one daemon task per try (by ``external_key``), one mark file
  per try written by the task itself (created with O_EXCL), the restarted scheduler adopted the
  running task;
* the workload tokens (read from the sandbox files) appear neither in the daemon's log, nor in
  ``docker inspect`` of the task containers (env, command, labels), nor in the API's task views.

The task containers get Airflow by bind-mounting this virtualenv, its base Python and the few host
libraries Python needs (read-only, same paths; host and image are both Debian 12).

With Airflow 2.10 (the virtualenv's Airflow decides): no api-server or dag-processor; the tasks are
``airflow tasks run --local`` and reach the SQLite metadata DB through a bind mount of
AIRFLOW_HOME (SQLite with several processes is what Airflow's own tests do, with
``_AIRFLOW__SKIP_DATABASE_EXECUTOR_COMPATIBILITY_CHECK``; a real setup uses PostgreSQL or MySQL),
without the tasks' own "mini scheduler" (which SQLite cannot keep apart from the scheduler, see
``airflow2_sqlite_env``); the checks on workload tokens have no token to look for and the task output is read from
Airflow's task log.
Every process started here is killed and every container removed at the end, also on failure.
Exit status 0 = all checks held; the reason is printed otherwise.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.dirname(HERE)
DAG_ID = "mesos_example"
RUN_ID = "e2e_run"
EXPECTED = {
    "extract": ("success", 1),
    "transform": ("success", 1),
    "load": ("success", 1),
    "flaky": ("success", 2),
    "doomed": ("failed", 1),
    "slow": ("success", 1),
    "on_scheduler": ("success", 1),
    "report": ("success", 1),
}
# Tasks left with the default executor (the first of [core] executor): they run on this host.
LOCAL_TASKS = {"on_scheduler"}
MESOS_EXECUTOR = "airflow_mesos_executor.AirflowMesosExecutor"
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
HOST_LIBS = ["libssl.so.3", "libcrypto.so.3", "libsqlite3.so.0"]


def airflow_major() -> int:
    import importlib.metadata

    return int(importlib.metadata.version("apache-airflow").split(".")[0])


# Airflow 2.10: the scheduler parses the DAGs itself, tasks run `airflow tasks run --local` and
# talk to the metadata DB directly (no api-server, no workload token).
AIRFLOW2 = airflow_major() == 2
# Airflow 2.10's "mini scheduler": a task that ends schedules its downstream tasks itself
# (DagRun.schedule_tis: state=scheduled, try_number+1, whatever the state is). The scheduler does
# the same, and on PostgreSQL/MySQL a row lock on the DAG run keeps the two apart; SQLite has no row
# locks, so both may schedule one task instance: its try number jumps, and one already queued as
# try N is set back to scheduled and queued again as try N+1 -- two containers for one task
# instance (seen: `report` as tries 1 and 2). The tasks (in containers and the LocalExecutor one)
# and the scheduler run without it here.
def airflow2_sqlite_env(home: str) -> dict:
    """Airflow 2.10 on the shared SQLite file: no mini scheduler (above), and the metadata DB's
    URL with a 60 s busy timeout: the task processes write their state into the file the scheduler
    writes too, and with sqlite3's default 5 s a task that finished while the restarted scheduler
    held the write lock failed its own commit ("database is locked") and was then failed as a
    zombie."""
    return {
        "AIRFLOW__SCHEDULER__SCHEDULE_AFTER_TASK_EXECUTION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db?timeout=60",
    }


class Failure(Exception):
    pass


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    def __init__(self, args):
        self.args = args
        self.deadline = time.monotonic() + args.timeout
        self.home = tempfile.mkdtemp(prefix="am-airflow-e2e-")
        self.procs = {}
        self.tag = uuid.uuid4().hex[:12]
        self.api_port = free_port()
        self.daemon_port = free_port()
        # Airflow's worker log server (8793 by default) is bound by every scheduler that runs a
        # LocalExecutor; the e2e runs of one test file run side by side, so each has its own.
        self.log_server_port = free_port()
        self.daemon_token = "am-e2e-" + secrets.token_hex(16)
        self.started = int(time.time())
        self.env = self._env()

    # -- set-up ---------------------------------------------------------------------------

    def _template(self, venv: str, base_python: str, marks: str) -> dict:
        vols = [
            {"container_path": f"{self.home}/dags", "host_path": f"{self.home}/dags", "mode": "ro"},
            {"container_path": f"{self.home}/logs", "host_path": f"{self.home}/logs", "mode": "rw"},
            {"container_path": marks, "host_path": marks, "mode": "rw"},
        ]
        env = {
            "AIRFLOW__CORE__DAGS_FOLDER": f"{self.home}/dags",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": f"{self.home}/logs",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AM_EXAMPLE_MARK_DIR": marks,
            "AM_EXAMPLE_SLOW_SECONDS": str(self.args.slow_seconds),
        }
        if AIRFLOW2:
            # The metadata DB (and airflow.cfg) in AIRFLOW_HOME, the provider as the scheduler has it.
            vols.append({"container_path": self.home, "host_path": self.home, "mode": "rw"})
            env["AIRFLOW_HOME"] = self.home
            env["_AIRFLOW__SKIP_DATABASE_EXECUTOR_COMPATIBILITY_CHECK"] = "1"
            env.update(airflow2_sqlite_env(self.home))
            paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            for p in paths:
                vols.append({"container_path": p, "host_path": p, "mode": "ro"})
            if paths:
                env["PYTHONPATH"] = os.pathsep.join(paths)
        if not self.args.pushed:
            # Airflow from this virtualenv, bind-mounted (the pushed image has its own).
            vols.append({"container_path": venv, "host_path": venv, "mode": "ro"})
            vols.append({"container_path": base_python, "host_path": base_python, "mode": "ro"})
            env["PATH"] = f"{venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        libdir = "/usr/lib/x86_64-linux-gnu"
        for lib in HOST_LIBS if not self.args.pushed else []:
            path = os.path.join(libdir, lib)
            if os.path.exists(path):
                vols.append({"container_path": path, "host_path": os.path.realpath(path), "mode": "ro"})
        return {
            "network": "host",
            "cpus": 0.25,
            "mem": 1024,
            "volumes": vols,
            "env": env,
            "labels": {"am-e2e": self.tag},
        }

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        venv = sys.prefix
        marks = os.path.join(self.home, "marks")
        template = self._template(venv, sys.base_prefix, marks)
        env.update(
            {
                "AIRFLOW_HOME": self.home,
                "AIRFLOW_CONFIG": os.path.join(self.home, "airflow.cfg"),
                "PATH": f"{venv}/bin:" + env.get("PATH", "/usr/bin:/bin"),
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_server_port),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__MESOS__API_TOKEN": self.daemon_token,
                "AIRFLOW__MESOS__API_LISTEN": f"127.0.0.1:{self.daemon_port}",
                "AIRFLOW__MESOS__API_URL": f"http://127.0.0.1:{self.daemon_port}",
                "AIRFLOW__MESOS__DOCKER_IMAGE_SLAVE": self.args.image,
                "AIRFLOW__MESOS__LOCAL_CPUS": "8",
                "AIRFLOW__MESOS__LOCAL_MEMORY": "12000",
                "AIRFLOW__MESOS_EXECUTOR__TASK_TEMPLATE": json.dumps(template),
                # The daemon's policy lets the tasks mount exactly the host paths they need.
                # The LocalExecutor task (on this host) marks its try too.
                "AM_EXAMPLE_MARK_DIR": marks,
                "AM_EXAMPLE_TRANSFORM_IMAGE": self.args.transform_image,
                "AIRFLOW__MESOS__ALLOWED_HOST_PATHS": ", ".join(
                    sorted({v["host_path"] for v in template["volumes"]})
                ),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if AIRFLOW2:
            env["_AIRFLOW__SKIP_DATABASE_EXECUTOR_COMPATIBILITY_CHECK"] = "1"
            env.update(airflow2_sqlite_env(self.home))
        if self.args.pushed:
            # The daemon pulls the task image from the registry with these, as an agent would.
            env["AIRFLOW__MESOS__DOCKER_REGISTRY"] = self.args.registry
            env["AIRFLOW__MESOS__DOCKER_REGISTRY_USERNAME"] = os.environ.get("AM_TEST_REGISTRY_USER", "")
            env["AIRFLOW__MESOS__DOCKER_REGISTRY_PASSWORD"] = os.environ.get("AM_TEST_REGISTRY_PASSWORD", "")
        return env

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait_for(self, what: str, check, limit: float = None, every: float = 1.0):
        end = time.monotonic() + min(limit or self.remaining(), self.remaining())
        while True:
            for name, p in self.procs.items():
                if p.poll() is not None and not name.startswith("old-"):
                    raise Failure(f"{name} exited with {p.returncode} while waiting for {what}; see {self.home}/{name}.log")
            value = check()
            if value:
                return value
            if time.monotonic() > end:
                raise Failure(f"timed out waiting for {what}")
            time.sleep(every)

    def start(self, name: str, argv: list) -> subprocess.Popen:
        out = open(os.path.join(self.home, f"{name}.log"), "ab")
        p = subprocess.Popen(argv, env=self.env, cwd=self.home, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = p
        log(f"started {name} (pid {p.pid})")
        return p

    def stop(self, name: str, grace: float = 30, again_after: float = 10) -> None:
        """SIGTERM, a second SIGTERM after ``again_after`` s (Airflow's LocalExecutor waits for
        its workers on the first one, "Signal again if you don't want to wait", and on a loaded
        machine that wait can outlast a task the test needs still running), SIGKILL after
        ``grace`` s."""
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return
        first = min(again_after, grace)
        steps = [
            (signal.SIGTERM, first, f"{name} still running {first}s after SIGTERM; signalling again"),
            (signal.SIGTERM, max(grace - first, 1), f"{name} ignored SIGTERM for {grace}s; killing"),
            (signal.SIGKILL, 10, None),
        ]
        for sig, wait, if_still_running in steps:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                return
            try:
                p.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                if if_still_running is None:
                    raise
                log(if_still_running)

    def airflow(self, *argv: str, timeout: float = 120) -> str:
        r = subprocess.run(
            [os.path.join(sys.prefix, "bin", "airflow"), *argv],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=min(timeout, max(self.remaining(), 1)),
        )
        if r.returncode != 0:
            raise Failure(f"airflow {' '.join(argv)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r.stdout

    def db(self, sql: str, params=()):
        con = sqlite3.connect(os.path.join(self.home, "airflow.db"), timeout=10)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def api(self, path: str):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.daemon_port}{path}", headers={"Authorization": f"Bearer {self.daemon_token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read().decode()

    def daemon_tasks(self) -> list:
        body = json.loads(self.api(f"/v1/tasks?label=airflow.dag_id={DAG_ID}&limit=1000"))
        return [t for t in body["tasks"] if (t.get("labels") or {}).get("am-e2e") == self.tag]

    # -- the run --------------------------------------------------------------------------

    def prepare(self) -> None:
        shutil.copy(os.path.join(EXAMPLE, "airflow.cfg"), os.path.join(self.home, "airflow.cfg"))
        shutil.copytree(os.path.join(EXAMPLE, "dags"), os.path.join(self.home, "dags"))
        for d in ("logs", "marks"):
            os.makedirs(os.path.join(self.home, d))
        os.chmod(os.path.join(self.home, "marks"), 0o777)
        if self.args.pushed:
            # The pushed image runs tasks as the airflow user (uid 50000, gid 0), as the official
            # image does; they write their logs into folders Airflow's processes (root here) make
            # group-writable (Airflow's 0o775, so a umask that keeps the group's write bit).
            os.chmod(os.path.join(self.home, "logs"), 0o777)
            os.umask(0o002)
        log(f"Airflow {'2' if AIRFLOW2 else '3'}; AIRFLOW_HOME={self.home}; migrating the metadata DB")
        self.airflow("db", "migrate", timeout=240)

    def start_daemon(self) -> None:
        self.start("daemon", [self.args.daemon_bin, "--config", os.path.join(self.home, "airflow.cfg"), "scheduler"])

        def up():
            try:
                self.api("/v1/tasks?limit=1")
                return True
            except Exception:
                return False

        self.wait_for("the daemon's API", up, limit=60, every=0.5)

    def start_airflow(self) -> None:
        if not AIRFLOW2:
            self.start("api-server", [os.path.join(sys.prefix, "bin", "airflow"), "api-server", "--port", str(self.api_port)])
            self.start("dag-processor", [os.path.join(sys.prefix, "bin", "airflow"), "dag-processor"])
        self.start("scheduler", [os.path.join(sys.prefix, "bin", "airflow"), "scheduler"])

        def parsed():
            errs = self.db("select filename, stacktrace from import_error") if self._has_table("import_error") else []
            if errs:
                raise Failure(f"the example DAG does not import: {errs}")
            return self._has_table("serialized_dag") and self.db("select 1 from serialized_dag where dag_id=?", (DAG_ID,))

        self.wait_for("the DAG to be parsed", parsed, limit=120)
        if AIRFLOW2:
            return

        def api_up():
            try:
                with socket.create_connection(("127.0.0.1", self.api_port), timeout=1):
                    return True
            except OSError:
                return False

        self.wait_for("the api-server", api_up, limit=120)

    def _has_table(self, name: str) -> bool:
        return bool(self.db("select 1 from sqlite_master where type='table' and name=?", (name,)))

    def ti_states(self) -> dict:
        rows = self.db("select task_id, state, try_number from task_instance where dag_id=? and run_id=?", (DAG_ID, RUN_ID))
        return {r[0]: (r[1], r[2]) for r in rows}

    def ti_executors(self) -> dict:
        rows = self.db("select task_id, executor from task_instance where dag_id=? and run_id=?", (DAG_ID, RUN_ID))
        return dict(rows)

    def run_dag(self) -> None:
        self.airflow("dags", "trigger", DAG_ID, "--run-id", RUN_ID)
        log("triggered; waiting for `slow` to run")
        self.wait_for("`slow` to be running", lambda: self.ti_states().get("slow", (None,))[0] == "running", limit=150)
        self.inspect_containers()
        log(f"restarting the scheduler mid-run (states: {self.ti_states()})")
        self.stop("scheduler", grace=60)
        self.procs["old-scheduler"] = self.procs.pop("scheduler")
        self.start("scheduler", [os.path.join(sys.prefix, "bin", "airflow"), "scheduler"])

        def finished():
            rows = self.db("select state from dag_run where dag_id=? and run_id=?", (DAG_ID, RUN_ID))
            return rows and rows[0][0] in ("success", "failed") and rows[0][0]

        state = self.wait_for("the DAG run to finish", finished, limit=240, every=2)
        log(f"DAG run finished: {state}; task instances: {self.ti_states()}")
        # `report` (trigger_rule all_done) is the only leaf and succeeds, so the run succeeds.
        if state != "success":
            raise Failure(f"the run should end success (its only leaf `report` succeeds), got {state}")

    def run_dag_pull_refused(self) -> None:
        """With a wrong registry password: no task container starts, every airflow-mesos task
        fails, and Airflow records why (the registry, the authentication error), never the password,
        in its audit log and in the task log of each such try (REST API)."""
        self.airflow("dags", "trigger", DAG_ID, "--run-id", RUN_ID)

        def finished():
            rows = self.db("select state from dag_run where dag_id=? and run_id=?", (DAG_ID, RUN_ID))
            return rows and rows[0][0] in ("success", "failed") and rows[0][0]

        state = self.wait_for("the DAG run to finish", finished, limit=240, every=2)
        states = self.ti_states()
        log(f"DAG run finished: {state}; task instances: {states}")
        failed = [t for t in EXPECTED if t not in LOCAL_TASKS and states.get(t, (None,))[0] in ("failed", "upstream_failed")]
        if state != "failed" or "extract" not in failed or states.get("on_scheduler", (None,))[0] != "success":
            raise Failure(f"expected the airflow-mesos tasks to fail and on_scheduler to succeed: {state} {states}")
        marks = [m for m in os.listdir(os.path.join(self.home, "marks")) if m.split(".")[0] not in LOCAL_TASKS]
        if marks:
            raise Failure(f"tasks ran although their image could not be pulled: {marks}")
        # Airflow keeps the executor's reason with the task instance (its audit log, "state mismatch":
        # the task failed while queued).
        rows = self.db("select task_id, extra from log where dag_id=? and event='state mismatch'", (DAG_ID,))
        reasons = {t: e for t, e in rows}
        why = reasons.get("extract") or ""
        log(f"Airflow's record for extract: {why[-300:]}")
        registry = self.args.registry
        if registry not in why or "authentication required" not in why:
            raise Failure(f"extract's failure does not name the registry {registry} and the authentication error: {reasons}")
        password = os.environ.get("AM_TEST_REGISTRY_PASSWORD", "")
        # ... and in the try's task log, where the UI and the REST API show it: Airflow reads a
        # finished try's log from files only, and the executor wrote the reason there.
        texts = {"Airflow's records": json.dumps(rows), "the daemon's log": open(os.path.join(self.home, "daemon.log"), errors="replace").read()}
        # flaky's last try (its first one failed the same way; Airflow 3.1.8 keeps no history row
        # for a try failed while queued, so its API answers 404 for that earlier try).
        tries = [("extract", states["extract"][1]), ("flaky", states["flaky"][1])]
        for task_id, try_number in tries:
            text = self.task_log(task_id, try_number)
            where = f"{task_id}'s task log of try {try_number}"
            log(f"{where}: {text[-400:]!r}")
            if registry not in text or "authentication required" not in text:
                raise Failure(f"{where} does not name the registry {registry} and the authentication error: {text[-2000:]!r}")
            texts[where] = text
        texts["the API's task list"] = self.api(f"/v1/tasks?label=airflow.dag_id={DAG_ID}&limit=1000")
        for where, text in texts.items():
            if password and password in text:
                raise Failure(f"the registry password appears in {where}")

    def task_log(self, task_id: str, try_number: int) -> str:
        """A try's task log as Airflow 3's REST API serves it (logged in as the simple auth
        manager's admin)."""
        base = f"http://127.0.0.1:{self.api_port}"
        with open(os.path.join(self.home, "simple_auth_manager_passwords.json.generated")) as f:
            admin = json.load(f)["admin"]
        req = urllib.request.Request(
            f"{base}/auth/token",
            data=json.dumps({"username": "admin", "password": admin}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            jwt = json.load(r)["access_token"]
        req = urllib.request.Request(
            f"{base}/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances/{task_id}/logs/{try_number}?full_content=true",
            headers={"Authorization": f"Bearer {jwt}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                content = json.load(r).get("content") or []
        except urllib.error.HTTPError as e:
            raise Failure(f"Airflow's API answered {e.code} for {task_id}'s log of try {try_number}: {e.read()[:500]!r}")
        return "\n".join(c.get("event", "") if isinstance(c, dict) else str(c) for c in content)

    def inspect_containers(self) -> None:
        ids = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=am-e2e={self.tag}"], capture_output=True, text=True
        ).stdout.split()
        if not ids:
            raise Failure("no task container is running while `slow` runs")
        info = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout)
        self.inspected = info
        for c in info:
            if self.args.pushed:
                if c["Config"]["Image"] != self.args.image:
                    raise Failure(f"container {c['Id'][:12]} runs {c['Config']['Image']}, not {self.args.image}")
                host = [m.get("Source", "") for m in c.get("Mounts") or []]
                python = [h for h in host if h.startswith((sys.prefix, sys.base_prefix, "/usr/lib"))]
                if python:
                    raise Failure(f"container {c['Id'][:12]} mounts the host's Python: {python}")
            if AIRFLOW2:
                break
            env = c["Config"].get("Env") or []
            if not any(e.startswith("AIRFLOW__CORE__EXECUTION_API_SERVER_URL=") for e in env):
                raise Failure(f"container {c['Id'][:12]} lacks AIRFLOW__CORE__EXECUTION_API_SERVER_URL: {env}")
        log(f"inspected {len(info)} running task container(s)")

    # -- checks ---------------------------------------------------------------------------

    def check(self) -> None:
        states = self.ti_states()
        cli = json.loads(self.airflow("tasks", "states-for-dag-run", DAG_ID, RUN_ID, "-o", "json"))
        cli_states = {row["task_id"]: row["state"] for row in cli}
        for task_id, (state, tries) in EXPECTED.items():
            if cli_states.get(task_id) != state:
                raise Failure(f"{task_id}: Airflow says {cli_states.get(task_id)}, expected {state} ({cli_states})")
            # Airflow 2.10 counts a try when it schedules the task instance, and a restarted
            # scheduler resets scheduled ones: a try number may be skipped without anything run.
            if states[task_id][1] != tries and not AIRFLOW2:
                raise Failure(f"{task_id}: try_number {states[task_id][1]}, expected {tries}")
        log(f"Airflow's DB: {cli_states}")

        executors = self.ti_executors()
        for task_id in EXPECTED:
            want = "LocalExecutor" if task_id in LOCAL_TASKS else MESOS_EXECUTOR
            if executors.get(task_id) != want:
                raise Failure(f"{task_id}: executor {executors.get(task_id)!r}, expected {want!r} ({executors})")
        log(f"executors: {executors}")

        expected_marks = sorted(f"{t}.{n}" for t, (_, tries) in EXPECTED.items() for n in range(1, tries + 1))
        marks = sorted(os.listdir(os.path.join(self.home, "marks")))
        if AIRFLOW2:
            # As many tries ran as expected, the last one being the task instance's try number.
            ran = {}
            for m in marks:
                t, n = m.rsplit(".", 1)
                ran.setdefault(t, []).append(int(n))
            for task_id, (_, tries) in EXPECTED.items():
                numbers = sorted(ran.get(task_id, []))
                if len(numbers) != tries or numbers[-1] != states[task_id][1]:
                    raise Failure(f"{task_id}: tries that ran {numbers}, expected {tries} ending at try {states[task_id][1]}")
            expected_marks = marks
        if marks != expected_marks:
            raise Failure(f"task tries that ran (mark files) {marks}, expected exactly {expected_marks}")
        host_pid_ns = os.readlink("/proc/self/ns/pid")
        for mark in marks:
            pid_ns = open(os.path.join(self.home, "marks", mark)).read().split()[0]
            where = "host" if pid_ns == host_pid_ns else "container"
            want = "host" if mark.split(".")[0] in LOCAL_TASKS else "container"
            if where != want:
                raise Failure(f"task try {mark} ran in a {where}, expected a {want}")
        expected_marks = [m for m in expected_marks if m.split(".")[0] not in LOCAL_TASKS]

        # A task reports its state through the API before its container exits: let them end.
        ended = lambda: all(t["state"] in ("succeeded", "failed", "killed") for t in self.daemon_tasks())  # noqa: E731
        self.wait_for("every daemon task to end", ended, limit=60)
        tasks = self.daemon_tasks()
        by_key = {}
        for t in tasks:
            by_key.setdefault(t["external_key"], []).append(t)
        dupes = {k: [t["id"] for t in v] for k, v in by_key.items() if len(v) != 1}
        if dupes:
            raise Failure(f"more than one daemon task for one try: {dupes}")
        if len(tasks) != len(expected_marks):
            raise Failure(f"{len(tasks)} daemon tasks, expected {len(expected_marks)}: {[t['external_key'] for t in tasks]}")
        for t in tasks:
            if t["state"] not in ("succeeded", "failed", "killed"):
                raise Failure(f"daemon task {t['id']} is still {t['state']}")
            if t.get("attempts", 1) != 1:
                raise Failure(f"daemon task {t['id']} was launched {t['attempts']} times")
        # The last try handed to the daemon is the try Airflow ran last (a try number that moved
        # without the scheduler handing the task out again means two schedulers raced).
        handed = {}
        for t in tasks:
            k = json.loads(t["external_key"])
            handed.setdefault(k["task_id"], []).append(k["try_number"])
        for task_id in EXPECTED:
            if task_id not in LOCAL_TASKS and max(handed.get(task_id, [0])) != states[task_id][1]:
                raise Failure(
                    f"{task_id}: Airflow's try number is {states[task_id][1]}, but the daemon got tries {handed.get(task_id)}"
                )
        if any(t["labels"].get("airflow.task_id") in LOCAL_TASKS for t in tasks):
            raise Failure(f"a LocalExecutor task reached the daemon: {[t['external_key'] for t in tasks]}")
        log(f"daemon: {len(tasks)} tasks, one per try, all ended")

        # executor_config (AVENTER keys) reached the daemon and beat the site template.
        transform = [t for t in tasks if t["labels"].get("airflow.task_id") == "transform"][0]["spec"]
        if (transform.get("cpus"), transform.get("mem")) != (1.0, 256.0):
            raise Failure(f"transform's executor_config did not set cpus=1, mem=256: {transform}")
        if self.args.transform_image:
            # transform ran in its own image, every other task in docker_image_slave.
            for t in tasks:
                want = self.args.transform_image if t["labels"].get("airflow.task_id") == "transform" else None
                if t["spec"].get("image") != want:
                    raise Failure(f"{t['external_key']}: image {t['spec'].get('image')!r}, expected {want!r}")
            # The image each task container was created from (they are removed once they end).
            events = subprocess.run(
                ["docker", "events", "--since", str(self.started), "--until", str(int(time.time()) + 1),
                 "--filter", "type=container", "--filter", "event=create",
                 "--filter", f"label=am-e2e={self.tag}", "--format", "{{json .}}"],
                capture_output=True, text=True, check=True,
            ).stdout
            airflow_task = {t["id"]: t["labels"].get("airflow.task_id") for t in tasks}
            images_run = {}
            for line in events.splitlines():
                attrs = json.loads(line)["Actor"]["Attributes"]
                images_run[airflow_task.get(attrs.get("airflow-mesos.task-id"))] = attrs.get("image")
            for task_id, image in images_run.items():
                want = self.args.transform_image if task_id == "transform" else self.args.image
                if image != want:
                    raise Failure(f"{task_id}'s container was created from {image!r}, expected {want!r} ({images_run})")
            if "transform" not in images_run:
                raise Failure(f"no container of transform among the engine's events: {images_run}")
            log(f"transform ran in {self.args.transform_image}")
        extract_spec = [t for t in tasks if t["labels"].get("airflow.task_id") == "extract"][0]["spec"]
        if (extract_spec.get("cpus"), extract_spec.get("mem")) != (0.25, 1024.0):
            raise Failure(f"extract did not get the template's resources: {extract_spec}")

        sched2 = open(os.path.join(self.home, "scheduler.log"), errors="replace").read()
        if "airflow-mesos executor: adopted" not in sched2:
            raise Failure("the restarted scheduler adopted no task (see scheduler.log)")

        extract = [t for t in tasks if t["labels"].get("airflow.task_id") == "extract"][0]
        out = json.loads(self.api(f"/v1/tasks/{extract['id']}/logs?stream=stdout&offset=0&length=1000000"))
        if AIRFLOW2:
            # `airflow tasks run --local` sends the task's output to Airflow's task log.
            logs = glob.glob(os.path.join(self.home, "logs", "**", "task_id=extract", "**", "*.log"), recursive=True)
            text = "".join(open(p, errors="replace").read() for p in logs)
            if "running extract try 1" not in text:
                raise Failure(f"extract's Airflow task log ({logs}) lacks its output: {text[-500:]!r}")
        elif "running extract try 1" not in out["data"]:
            raise Failure(f"extract's stdout from the logs API lacks its output: {out['data'][-500:]!r}")

        self.check_tokens(tasks)
        # Not checked, reported: Airflow's execute_workload itself logs the workload (token
        # included) to the task's stdout, which the logs API serves.
        if any(tok in out["data"] for tok in self.tokens):
            log("note: the task's stdout holds its workload token (Airflow's execute_workload logs it)")

    def check_tokens(self, tasks: list) -> None:
        tokens = set()
        for path in glob.glob(os.path.join(self.home, "**", "workload.json"), recursive=True):
            try:
                tokens.add(json.load(open(path))["token"])
            except (ValueError, KeyError, OSError):
                pass
        self.tokens = tokens
        log(f"checking {len(tokens)} workload token(s) found in sandboxes, and JWT-shaped strings")
        places = {}
        daemon_log = os.path.join(self.home, "daemon.log")
        if os.path.exists(daemon_log):
            places["the daemon's log"] = open(daemon_log, errors="replace").read()
        places["docker inspect of the running task containers"] = json.dumps(self.inspected)
        ended = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=am-e2e={self.tag}"], capture_output=True, text=True
        ).stdout.split()
        if ended:
            places["docker inspect of all task containers"] = subprocess.run(
                ["docker", "inspect", *ended], capture_output=True, text=True
            ).stdout
        places["the API's task views"] = "\n".join(self.api(f"/v1/tasks/{t['id']}") for t in tasks)
        places["the API's task list"] = self.api(f"/v1/tasks?label=airflow.dag_id={DAG_ID}&limit=1000")
        places["the API's event feed"] = self.api("/v1/events?since=0&limit=10000")
        for where, text in places.items():
            for tok in tokens:
                if tok in text:
                    raise Failure(f"a workload token appears in {where}")
            m = JWT_RE.search(text)
            if m:
                raise Failure(f"a JWT-shaped string appears in {where}: {m.group(0)[:20]}...")

    # -- teardown -------------------------------------------------------------------------

    def cleanup(self, ok: bool) -> None:
        for name in list(self.procs):
            try:
                self.stop(name, grace=15)
            except Exception as e:  # keep cleaning up
                log(f"stopping {name}: {e}")
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=am-e2e={self.tag}"], capture_output=True, text=True
        ).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        if ok and not self.args.keep:
            shutil.rmtree(self.home, ignore_errors=True)
        else:
            log(f"kept {self.home} (logs: *.log)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon-bin", help="the airflow-mesos binary")
    ap.add_argument("--image", default=os.environ.get("AM_TEST_BASE_IMAGE", "am-test/debian:bookworm"))
    ap.add_argument("--timeout", type=float, default=280)
    ap.add_argument("--slow-seconds", type=int, default=25)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument(
        "--pushed",
        action="store_true",
        help="--image is in a registry (--registry, AM_TEST_REGISTRY_USER/PASSWORD) and has Airflow: no host Python mounted",
    )
    ap.add_argument("--registry", default=os.environ.get("AM_TEST_REGISTRY", ""))
    ap.add_argument(
        "--transform-image",
        default="",
        help="the image `transform` names in its executor_config (AM_EXAMPLE_TRANSFORM_IMAGE)",
    )
    ap.add_argument(
        "--expect-pull-refused",
        action="store_true",
        help="with --pushed and a wrong AM_TEST_REGISTRY_PASSWORD: the tasks fail, Airflow records why",
    )
    args = ap.parse_args()
    if args.expect_pull_refused and AIRFLOW2:
        # Airflow 2.10's side of it: examples/airflow/tests/task_log_airflow2_check.py.
        ap.error("--expect-pull-refused needs Airflow 3 (the task log is read through its REST API)")
    if not args.daemon_bin:
        ap.error("give --daemon-bin")
    run = Run(args)
    ok = False

    def on_term(signum, frame):
        raise Failure(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        run.prepare()
        run.start_daemon()
        run.start_airflow()
        if args.expect_pull_refused:
            run.run_dag_pull_refused()
        else:
            run.run_dag()
            run.check()
        ok = True
        log("PASS")
        return 0
    except Failure as e:
        log(f"FAIL: {e}")
        try:
            log(f"task instances (state, try): {run.ti_states()}")
            for t in run.daemon_tasks():
                log(f"daemon task {t['id']} {t['state']} attempts={t.get('attempts')} {t['external_key']}")
        except Exception as e2:  # diagnostics only
            log(f"(no diagnostics: {e2})")
        for name in ("daemon", "scheduler", "old-scheduler", "dag-processor", "api-server"):
            path = os.path.join(run.home, f"{name}.log")
            if os.path.exists(path):
                tail = open(path, errors="replace").read()[-2500:]
                print(f"----- tail of {name}.log -----\n{tail}", flush=True)
        return 1
    finally:
        run.cleanup(ok)


if __name__ == "__main__":
    sys.exit(main())
