"""``AirflowMesosExecutor``: an Airflow executor that runs task instances through airflow-mesos.

Configure it with ``[core] executor = airflow_mesos_executor.AirflowMesosExecutor``. Each task
instance becomes one daemon task:

* Airflow 3: ``python -m airflow.sdk.execution_time.execute_workload --json-path workload.json``,
  the workload JSON (it holds the task's JWT) delivered as the sandbox file ``workload.json`` (the
  daemon never shows file contents), ``AIRFLOW__CORE__EXECUTION_API_SERVER_URL`` in the env.
* Airflow 2.10: the ``airflow tasks run ...`` argv, run without a shell.

States come back through the daemon's change feed (``GET /v1/events``) in ``sync()``; the daemon
task id becomes the task instance's ``external_executor_id`` (``running_state``), which is how a
restarted scheduler re-attaches (``try_adopt_task_instances``); tasks whose running state never
reached Airflow are found by their ``external_key`` (the serialized TaskInstanceKey).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from airflow.executors.base_executor import BaseExecutor
from airflow.utils.state import TaskInstanceState

from airflow_mesos_executor import settings as settings_mod
from airflow_mesos_executor import task_log
from airflow_mesos_executor.client import DaemonClient, DaemonError, DaemonUnavailable
from airflow_mesos_executor.spec import (
    WORKLOAD_COMMAND,
    WORKLOAD_FILE,
    SpecBuildError,
    build_spec,
    external_key_of,
    key_fields,
)

try:  # Airflow 3
    from airflow.executors import workloads as _workloads

    _EXECUTE_TASK = _workloads.ExecuteTask
except ImportError:  # Airflow 2.x
    _workloads = None
    _EXECUTE_TASK = None

# Daemon states from which a task does not come back.
TERMINAL_STATES = {"succeeded", "failed", "killed"}
# Answers to POST /v1/tasks that refuse the spec itself (the task fails); other errors (401, 5xx,
# no connection) leave the task queued for a later heartbeat.
REFUSED = {400, 413, 422}
EVENTS_PAGE = 500
LOG_CHUNK = 256 * 1024
LOG_MAX = 4 * 1024 * 1024


class AirflowMesosExecutor(BaseExecutor):
    """Hands Airflow's task instances to the airflow-mesos daemon and reports their states back."""

    supports_ad_hoc_ti_run: bool = True
    is_local: bool = False
    is_production: bool = True
    serve_logs: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings: Optional[settings_mod.Settings] = None
        self.client: Optional[DaemonClient] = None
        # Change-feed position: every event with a larger seq is still to be read.
        self._cursor: Optional[int] = None
        self._task_ids: Dict[Any, str] = {}  # TaskInstanceKey -> daemon task id
        self._keys: Dict[str, Any] = {}  # daemon task id -> TaskInstanceKey
        self._reported_running: Set[str] = set()
        # Keys whose submission may have reached the daemon although we saw an error.
        self._uncertain: Set[Any] = set()
        # (key, reason) failures to report at the next sync (Airflow 2.x submission path).
        self._pending_failures: List[Tuple[Any, str]] = []
        # Airflow 2.x: key -> spec of a submission that did not get through (the key stays in
        # `running`); sync() submits it again, looking it up first if it may exist already.
        self._resubmit: Dict[Any, Dict[str, Any]] = {}
        # Adopted keys the daemon could not be asked about: claimed (not handed back for a reset,
        # which would run the try again next to its daemon task) and looked up at the next sync.
        self._unresolved: Set[Any] = set()

    # -- set-up ---------------------------------------------------------------------------

    def _conf_get(self, section: str, key: str, fallback: Any = None) -> Any:
        conf = getattr(self, "conf", None)
        if conf is not None and hasattr(conf, "get") and type(conf).__name__ == "ExecutorConf":
            return conf.get(section, key, fallback=fallback)
        from airflow.configuration import conf as airflow_conf

        return airflow_conf.get(section, key, fallback=fallback)

    def _ensure_client(self) -> DaemonClient:
        if self.client is None:
            self.settings = settings_mod.load(self._conf_get)
            self.client = DaemonClient(
                self.settings.api_url, self.settings.api_token, timeout=self.settings.request_timeout
            )
        return self.client

    def _ensure_cursor(self) -> int:
        """Learns the head of the change feed once, before the first submission."""
        if self._cursor is None:
            self._cursor = self._ensure_client().head_cursor()
        return self._cursor

    def start(self) -> None:
        client = self._ensure_client()
        self.log.info("airflow-mesos executor: daemon API at %s", client.api_url)
        try:
            self._ensure_cursor()
        except (DaemonUnavailable, DaemonError) as e:
            # Not fatal: the first submission or sync tries again.
            self.log.error("airflow-mesos executor: the daemon is not reachable yet: %s", e)

    # -- building specs -------------------------------------------------------------------

    def _core_env(self) -> Dict[str, str]:
        """``[core] executor`` as the scheduler has it: the task parses its DAG, and Airflow refuses
        a DAG whose tasks choose (``executor=``) an executor that setting does not list."""
        assert self.settings is not None
        if not self.settings.core_executor:
            return {}
        return {"AIRFLOW__CORE__EXECUTOR": self.settings.core_executor}

    def _workload_env(self) -> Dict[str, str]:
        assert self.settings is not None
        return {
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": self.settings.execution_api_server_url or "",
            "AIRFLOW_IS_EXECUTOR_CONTAINER": "true",
            **self._core_env(),
        }

    def _spec_for_workload(self, workload: Any) -> Dict[str, Any]:
        self._ensure_client()
        assert self.settings is not None
        ti = workload.ti
        return build_spec(
            key=key_fields(ti.key),
            command=WORKLOAD_COMMAND,
            files=[{"path": WORKLOAD_FILE, "content": workload.model_dump_json()}],
            env=self._workload_env(),
            executor_config=getattr(ti, "executor_config", None),
            template=self.settings.template,
        )

    def _spec_for_command(self, key: Any, command: Sequence[str], executor_config: Any) -> Dict[str, Any]:
        self._ensure_client()
        assert self.settings is not None
        argv = [str(a) for a in command]
        if argv[:3] != ["airflow", "tasks", "run"]:
            raise SpecBuildError(f"expected an 'airflow tasks run' command, got {argv[:3]!r}")
        return build_spec(
            key=key_fields(key),
            command=argv,
            env=self._core_env() or None,
            executor_config=executor_config,
            template=self.settings.template,
        )

    # -- submission -----------------------------------------------------------------------

    def _register(self, key: Any, task_id: str) -> None:
        self._task_ids[key] = task_id
        self._keys[task_id] = key

    def _forget(self, key: Any) -> None:
        task_id = self._task_ids.pop(key, None)
        if task_id is not None:
            self._keys.pop(task_id, None)
            self._reported_running.discard(task_id)

    def _find_by_external_key(self, key: Any, live_only: bool = False) -> Optional[Dict[str, Any]]:
        """The newest daemon task made for exactly this task instance try, if any."""
        client = self._ensure_client()
        tasks = client.list(external_key=external_key_of(key)).get("tasks") or []
        if live_only:
            tasks = [t for t in tasks if t.get("state") not in TERMINAL_STATES]
        if not tasks:
            return None
        return max(tasks, key=lambda t: (t.get("seq") or 0, t.get("created_at") or ""))

    def _submit(self, items: List[Tuple[Any, Dict[str, Any]]]) -> List[Any]:
        """Submits specs; returns per item a TaskView, a DaemonError (refused) or DaemonUnavailable."""
        results: List[Any] = [None] * len(items)
        todo = []
        for i, (key, spec) in enumerate(items):
            if key in self._uncertain:
                # An earlier attempt may have created it: never create a second one.
                try:
                    found = self._find_by_external_key(key)
                except (DaemonUnavailable, DaemonError) as e:
                    results[i] = DaemonUnavailable(str(e))
                    continue
                if found is not None:
                    results[i] = found
                    self._uncertain.discard(key)
                    continue
            todo.append(i)
        if not todo:
            return results
        client = self._ensure_client()
        try:
            self._ensure_cursor()
            views = client.submit([items[i][1] for i in todo])
            for i, view in zip(todo, views):
                results[i] = view
            return results
        except (DaemonError, DaemonUnavailable) as e:
            if not (isinstance(e, DaemonError) and e.status in REFUSED) or len(todo) == 1:
                for i in todo:
                    results[i] = self._classify(items[i][0], e)
                return results
        # A batch was refused (one bad spec refuses the batch): submit one by one to find it.
        for i in todo:
            try:
                results[i] = client.submit([items[i][1]])[0]
            except (DaemonError, DaemonUnavailable) as e:
                results[i] = self._classify(items[i][0], e)
        return results

    def _classify(self, key: Any, e: Exception) -> Exception:
        """A refused spec stays a DaemonError (the task fails); anything else is retried later.

        After a 5xx or a lost connection the task may exist anyway: the key is marked so that the
        retry looks it up by external key instead of creating a second one.
        """
        if isinstance(e, DaemonError) and e.status in REFUSED:
            return e
        if not isinstance(e, DaemonError) or e.status >= 500:
            self._uncertain.add(key)
        return e if isinstance(e, DaemonUnavailable) else DaemonUnavailable(str(e))

    def _process_workloads(self, workloads: Sequence[Any]) -> None:
        items: List[Tuple[Any, Dict[str, Any]]] = []
        for workload in workloads:
            key = workload.ti.key
            try:
                spec = self._spec_for_workload(workload)
            except (SpecBuildError, ValueError) as e:
                self.log.error("airflow-mesos executor: cannot run %s: %s", key, e)
                self.queued_tasks.pop(key, None)
                self._fail_try(key, str(e))
                continue
            items.append((key, spec))
        if not items:
            return
        for (key, _), result in zip(items, self._submit(items)):
            if isinstance(result, dict):
                self.queued_tasks.pop(key, None)
                self.running.add(key)
                self._uncertain.discard(key)
                self._register(key, result["id"])
                self.log.info("airflow-mesos executor: %s is daemon task %s", key, result["id"])
            elif isinstance(result, DaemonError):
                self.log.error("airflow-mesos executor: the daemon refused %s: %s", key, result)
                self.queued_tasks.pop(key, None)
                self._fail_try(key, str(result))
            else:
                # Left in queued_tasks: the next heartbeat tries again.
                self.log.warning("airflow-mesos executor: %s not submitted yet: %s", key, result)

    def execute_async(
        self,
        key: Any,
        command: Any,
        queue: Optional[str] = None,
        executor_config: Optional[Any] = None,
    ) -> None:
        """Airflow 2.x entry point (3.x goes through ``_process_workloads``)."""
        try:
            if command and _EXECUTE_TASK is not None and isinstance(command[0], _EXECUTE_TASK):
                spec = self._spec_for_workload(command[0])
            else:
                spec = self._spec_for_command(key, command, executor_config)
        except (SpecBuildError, ValueError) as e:
            self.log.error("airflow-mesos executor: cannot run %s: %s", key, e)
            self._pending_failures.append((key, str(e)))
            return
        self._submit_command(key, spec)

    def _submit_command(self, key: Any, spec: Dict[str, Any]) -> None:
        """Airflow 2.x: submits one task; what does not get through is kept for the next sync."""
        result = self._submit([(key, spec)])[0]
        if isinstance(result, dict):
            self._uncertain.discard(key)
            self._resubmit.pop(key, None)
            self._register(key, result["id"])
        elif isinstance(result, DaemonError):
            # Refused: no task exists. The caller adds the key to `running` after we return; the
            # failure is reported at the next sync, which removes it again.
            self._resubmit.pop(key, None)
            self.log.error("airflow-mesos executor: the daemon refused %s: %s", key, result)
            self._pending_failures.append((key, str(result)))
        else:
            # Not failed: Airflow would run the next try while this one may exist at the daemon
            # (a 5xx or a lost answer), and an `airflow tasks run` argv names no try, so a late
            # container would run that next try too. Kept in `running`, submitted again at the
            # next sync (after a lookup by external key if it may exist).
            if key not in self._resubmit:
                self.log.warning("airflow-mesos executor: %s not submitted yet: %s", key, result)
            self._resubmit[key] = spec

    # -- state feedback -------------------------------------------------------------------

    def _report_running(self, key: Any, task_id: str) -> None:
        if task_id in self._reported_running:
            return
        self._reported_running.add(task_id)
        running_state = getattr(self, "running_state", None)
        if running_state is not None:
            running_state(key, task_id)
        else:  # very old BaseExecutor
            self.change_state(key, TaskInstanceState.RUNNING, task_id, remove_running=False)

    def _fail_try(self, key: Any, info: str) -> None:
        """Reports the try failed; if it never reached Airflow, says why in the try's task log."""
        self._write_why_in_task_log(key, info)
        self.fail(key, info=info)

    def _queued_task_instance(self, session: Any, key: Any) -> Any:
        """Airflow's task instance of ``key`` if it is still queued at this try (Airflow's own test
        for "the executor ended a try that never reported in"), else None."""
        from airflow.models.taskinstance import TaskInstance

        ti = (
            session.query(TaskInstance)
            .filter(
                TaskInstance.dag_id == key.dag_id,
                TaskInstance.task_id == key.task_id,
                TaskInstance.run_id == key.run_id,
                TaskInstance.map_index == key.map_index,
            )
            .one_or_none()
        )
        if ti is None or ti.try_number != key.try_number or ti.state != TaskInstanceState.QUEUED:
            return None
        return ti

    def _write_why_in_task_log(self, key: Any, info: str) -> None:
        """Writes ``info`` into the task log of a try that never reached Airflow (see task_log).

        Airflow reads a finished try's log from files only (not from the executor), and a try whose
        command never started (or died before reporting in) has none: without this, the reason is
        only in Airflow's audit log. Never raises: the failure is reported either way.
        """
        try:
            handler = task_log.task_handler()
            if handler is None:
                return
            from airflow.utils.session import create_session

            with create_session() as session:
                ti = self._queued_task_instance(session, key)
                if ti is None:
                    return  # the task ran far enough to report in: its own log says what happened
                text = task_log.redact(
                    f"airflow-mesos: try {key.try_number} ended before the task reached Airflow: {info}",
                    [self._conf_get("mesos", "docker_registry_password")],
                )
                path = task_log.write(handler, ti, key.try_number, text)
            self.log.info("airflow-mesos executor: wrote why %s failed into its task log %s", key, path)
        except Exception as e:
            self.log.warning("airflow-mesos executor: cannot write why %s failed into its task log: %s", key, e)

    def _apply(self, task_id: str, airflow_state: Optional[str], state: Optional[str], message: Any) -> None:
        key = self._keys.get(task_id)
        if key is None:
            return  # not ours (another scheduler's, or already finished)
        if airflow_state == "running":
            self._report_running(key, task_id)
        elif airflow_state == "success":
            self._forget(key)
            self.success(key, info=task_id)
        elif airflow_state == "failed":
            self._forget(key)
            detail = f": {message}" if message else ""
            self._fail_try(key, f"airflow-mesos task {task_id} {state}{detail}")

    def sync(self) -> None:
        for key, reason in self._pending_failures:
            self._fail_try(key, reason)
        self._pending_failures = []
        for key, spec in list(self._resubmit.items()):
            if key not in self.running:
                self._resubmit.pop(key, None)  # revoked or ended meanwhile
                continue
            self._submit_command(key, spec)
        self._resolve_adopted()
        try:
            client = self._ensure_client()
            since = self._ensure_cursor()
            wait = self.settings.events_wait if self.settings else 0
            while True:
                page = client.events(since=since, limit=EVENTS_PAGE, wait=wait)
                events = page.get("events") or []
                for ev in events:
                    self._apply(ev.get("task_id", ""), ev.get("airflow_state"), ev.get("state"), ev.get("message"))
                    seq = ev.get("seq")
                    if isinstance(seq, int) and seq > since:
                        since = seq
                cursor = page.get("cursor")
                if isinstance(cursor, int) and cursor > since:
                    since = cursor
                self._cursor = since
                if len(events) < EVENTS_PAGE:
                    break
                wait = 0
        except (DaemonUnavailable, DaemonError) as e:
            self.log.warning("airflow-mesos executor: sync could not read the change feed: %s", e)

    # -- adoption, revoke, shutdown -------------------------------------------------------

    def try_adopt_task_instances(self, tis: Sequence[Any]) -> Sequence[Any]:
        not_adopted = []
        try:
            client = self._ensure_client()
            self._ensure_cursor()
            reachable = True
        except (DaemonUnavailable, DaemonError) as e:
            self.log.error("airflow-mesos executor: the daemon is not reachable for the adoption: %s", e)
            reachable = False
        for ti in tis:
            key = ti.key
            if self._holds(key):
                # Ours already: a scheduler whose own job was taken for dead (a heartbeat late by
                # more than scheduler_health_check_threshold) is handed its own task instances,
                # some perhaps still in queued_tasks. Handing them back would reset them while
                # their try is (or is about to be) at the daemon.
                self.log.info("airflow-mesos executor: %s is already this executor's", key)
                continue
            if not reachable:
                self._claim_unresolved(key)
                continue
            view = None
            try:
                eid = getattr(ti, "external_executor_id", None)
                if eid:
                    view = client.get(eid)
                    if view is not None and view.get("external_key") != external_key_of(key):
                        self.log.warning(
                            "airflow-mesos executor: %s names daemon task %s, which belongs to %s",
                            key,
                            eid,
                            view.get("external_key"),
                        )
                        view = None
                if view is None:
                    view = self._find_by_external_key(key)
            except (DaemonUnavailable, DaemonError) as e:
                self.log.error("airflow-mesos executor: cannot look up %s: %s", key, e)
                self._claim_unresolved(key)
                continue
            if view is None:
                not_adopted.append(ti)
                continue
            self._adopt_view(key, view)
        return not_adopted

    def _holds(self, key: Any) -> bool:
        return key in self._task_ids or key in self.queued_tasks or key in self.running

    def _adopt_view(self, key: Any, view: Dict[str, Any]) -> None:
        task_id = view["id"]
        self._register(key, task_id)
        self.running.add(key)
        self.log.info("airflow-mesos executor: adopted %s (daemon task %s, %s)", key, task_id, view.get("state"))
        if view.get("state") in TERMINAL_STATES or view.get("airflow_state") in ("running", "success", "failed"):
            self._apply(task_id, view.get("airflow_state"), view.get("state"), view.get("message"))

    def _claim_unresolved(self, key: Any) -> None:
        """Adopts a task instance the daemon could not be asked about; resolved at a later sync.

        Handing it back would make Airflow reset it and run the try again, perhaps next to its
        daemon task; kept, it waits until the daemon answers.
        """
        self.log.warning("airflow-mesos executor: %s adopted unchecked; looked up when the daemon answers", key)
        self._unresolved.add(key)
        self.running.add(key)

    def _resolve_adopted(self) -> None:
        for key in list(self._unresolved):
            if key not in self.running:
                self._unresolved.discard(key)
                continue
            try:
                view = self._find_by_external_key(key)
            except (DaemonUnavailable, DaemonError) as e:
                self.log.warning("airflow-mesos executor: %s still unchecked: %s", key, e)
                return
            self._unresolved.discard(key)
            if view is not None:
                self._adopt_view(key, view)
            else:
                # Never submitted (its scheduler stopped first): reported failed, so that Airflow
                # gives it a new try (if it has retries left) instead of waiting for it forever.
                self._fail_try(
                    key,
                    "airflow-mesos: the daemon has no task for this try (its scheduler stopped "
                    "before submitting it)",
                )

    def revoke_task(self, *, ti: Any) -> None:
        key = ti.key
        task_id = self._task_ids.get(key)
        self.queued_tasks.pop(key, None)
        self.running.discard(key)
        self._forget(key)
        self._resubmit.pop(key, None)
        self._unresolved.discard(key)
        try:
            eid = getattr(ti, "external_executor_id", None)
            if task_id is None and eid:
                # Only if it is this very try's task (never kill another try's).
                view = self._ensure_client().get(eid)
                if view is not None and view.get("external_key") == external_key_of(key):
                    task_id = eid
            if task_id is None:
                found = self._find_by_external_key(key, live_only=True)
                task_id = found["id"] if found else None
            if task_id is None:
                self.log.info("airflow-mesos executor: revoke %s: no daemon task", key)
                return
            answer = self._ensure_client().kill(task_id)
            self.log.info(
                "airflow-mesos executor: revoked %s (daemon task %s: %s)",
                key,
                task_id,
                answer.get("state") if answer else "already ended",
            )
        except Exception as e:  # revoke_task must not raise
            self.log.error("airflow-mesos executor: revoke %s failed: %s", key, e)

    def cleanup_stuck_queued_tasks(self, tis: Sequence[Any]) -> List[str]:
        """Airflow 2.x: kills tasks stuck in queued (the scheduler then fails them); 3.x uses revoke_task."""
        readable = []
        for ti in tis:
            self.revoke_task(ti=ti)
            readable.append(repr(ti))
        return readable

    def end(self) -> None:
        """Reports what already finished and leaves running tasks alone (a new scheduler adopts them)."""
        self.sync()
        if self._task_ids:
            self.log.info(
                "airflow-mesos executor: leaving %d task(s) running in airflow-mesos", len(self._task_ids)
            )

    def terminate(self) -> None:
        """Kills every task this executor started that is still running."""
        client = self._ensure_client()
        for key, task_id in list(self._task_ids.items()):
            try:
                client.kill(task_id)
                self.log.info("airflow-mesos executor: killed %s (daemon task %s)", key, task_id)
            except (DaemonUnavailable, DaemonError) as e:
                self.log.error("airflow-mesos executor: kill of %s failed: %s", task_id, e)
        self.end()

    # -- logs -----------------------------------------------------------------------------

    def _read_stream(self, task_id: str, stream: str) -> str:
        client = self._ensure_client()
        chunks: List[str] = []
        offset = 0
        total = 0
        while total < LOG_MAX:
            page = client.logs(task_id, stream=stream, offset=offset, length=LOG_CHUNK)
            data = page.get("data") or ""
            chunks.append(data)
            total += len(data)
            nxt = page.get("next_offset")
            if not data or not isinstance(nxt, int) or nxt <= offset:
                break
            offset = nxt
        return "".join(chunks)

    def get_task_log(self, ti: Any, try_number: int) -> Tuple[List[str], List[str]]:
        """The daemon task's stdout and stderr: ``(sources, logs)``."""
        try:
            key = ti.key
            if hasattr(key, "with_try_number"):
                key = key.with_try_number(try_number)
            task_id = self._task_ids.get(key)
            if task_id is None and getattr(ti, "external_executor_id", None) and ti.try_number == try_number:
                task_id = ti.external_executor_id
            if task_id is None:
                found = self._find_by_external_key(key)
                task_id = found["id"] if found else None
            if task_id is None:
                return [], []
            sources: List[str] = []
            logs: List[str] = []
            for stream in ("stdout", "stderr"):
                text = self._read_stream(task_id, stream)
                if text:
                    sources.append(f"airflow-mesos task {task_id} {stream}")
                    logs.append(text)
            return sources, logs
        except Exception as e:
            return [f"airflow-mesos executor: could not read the task's logs: {e}"], []
