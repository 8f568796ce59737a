"""A small in-memory stand-in for the airflow-mesos daemon's HTTP API (threading http.server).

It implements the routes the shim uses with the documented shapes (tasks, change feed with
cursors, kill, logs, bearer auth, 400 with ``field`` for unknown spec fields) and records every
request, so tests can assert on what the shim sent. Tests drive state changes with
:meth:`FakeDaemon.transition`.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

SPEC_FIELDS = {
    "name", "command", "image", "cpus", "mem", "disk", "ports", "env", "volumes", "network",
    "force_pull", "privileged", "constraints", "labels", "kill_grace_period", "retries",
    "external_key", "containerizer", "user", "files", "executor_config",
}
AIRFLOW_STATE = {
    "queued": "queued", "launching": "queued", "starting": "running", "running": "running",
    "killing": "running", "unknown": "running", "succeeded": "success", "failed": "failed",
    "killed": "failed",
}
TERMINAL = {"succeeded", "failed", "killed"}


class FakeDaemon:
    def __init__(self, token: Optional[str] = None):
        self.token = token
        self.lock = threading.Lock()
        self.tasks: Dict[str, Dict[str, Any]] = {}
        self.events: List[Dict[str, Any]] = []
        self.seq = 0
        self.requests: List[Dict[str, Any]] = []
        self.logs: Dict[str, Dict[str, str]] = {}
        # Test hooks.
        self.fail_next_submit_after_create = 0  # create the tasks, then answer 500
        self.down = False  # answer 503 to everything
        self._next = 0
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeDaemon":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- state ----------------------------------------------------------------------------

    def _event(self, task: Dict[str, Any]) -> None:
        self.seq += 1
        task["seq"] = self.seq
        self.events.append(
            {
                "seq": self.seq,
                "task_id": task["id"],
                "state": task["state"],
                "airflow_state": task["airflow_state"],
                "attempt": task["attempts"],
                "message": task.get("message"),
                "at": "2026-01-01T00:00:00Z",
                "external_key": task.get("external_key"),
            }
        )

    def create(self, spec: Dict[str, Any]) -> Dict[str, Any]:
        self._next += 1
        task = {
            "id": f"t-{self._next:04d}",
            "name": spec.get("name"),
            "state": "queued",
            "airflow_state": "queued",
            "external_key": spec.get("external_key"),
            "attempts": 0,
            "labels": spec.get("labels") or {},
            "message": None,
            "kill_requested": False,
            "spec": spec,
        }
        self.tasks[task["id"]] = task
        self._event(task)
        return task

    def transition(self, task_id: str, state: str, message: Optional[str] = None) -> None:
        with self.lock:
            task = self.tasks[task_id]
            task["state"] = state
            task["airflow_state"] = AIRFLOW_STATE[state]
            task["message"] = message
            if state in ("starting", "running"):
                task["attempts"] = max(task["attempts"], 1)
            self._event(task)

    @staticmethod
    def view(task: Dict[str, Any]) -> Dict[str, Any]:
        v = dict(task)
        spec = dict(task["spec"])
        if "files" in spec:
            spec["files"] = [{"path": f["path"], "content": "***"} for f in spec["files"]]
        v["spec"] = spec
        return v

    def submitted_specs(self) -> List[Dict[str, Any]]:
        return [t["spec"] for t in self.tasks.values()]

    def requests_to(self, method: str, prefix: str) -> List[Dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"].startswith(prefix)]

    # -- HTTP -----------------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _dispatch(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                with fake.lock:
                    fake.requests.append(
                        {
                            "method": method,
                            "path": url.path,
                            "query": query,
                            "auth": self.headers.get("Authorization"),
                            "body": body,
                        }
                    )
                if fake.down:
                    return self._send(503, {"error": "down for the test"})
                if fake.token and self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._send(401, {"error": "missing or wrong bearer token"})
                parts = [p for p in url.path.split("/") if p]
                with fake.lock:
                    status, answer = fake.route(method, parts, query, body)
                self._send(status, answer)

            def do_GET(self):
                self._dispatch("GET")

            def do_POST(self):
                self._dispatch("POST")

        return Handler

    def route(self, method: str, parts: List[str], query: Dict[str, str], body: Any):
        if parts[:2] != ["v1", "tasks"] and parts[:2] != ["v1", "events"]:
            return 404, {"error": "no such route"}
        if parts == ["v1", "tasks"] and method == "POST":
            specs = body["tasks"] if isinstance(body, dict) and "tasks" in body else [body]
            for i, spec in enumerate(specs):
                for k in spec:
                    if k not in SPEC_FIELDS:
                        return 400, {"error": f"unknown field `{k}`", "field": f"tasks[{i}].{k}"}
                if not spec.get("command"):
                    return 400, {"error": "command is required", "field": f"tasks[{i}].command"}
            created = [self.create(s) for s in specs]
            if self.fail_next_submit_after_create:
                self.fail_next_submit_after_create -= 1
                return 500, {"error": "lost the answer"}
            return 201, {"tasks": [self.view(t) for t in created]}
        if parts == ["v1", "tasks"] and method == "GET":
            tasks = sorted(self.tasks.values(), key=lambda t: t["seq"])
            if "since" in query:
                tasks = [t for t in tasks if t["seq"] > int(query["since"])]
            if "state" in query:
                wanted = set(query["state"].split(","))
                tasks = [t for t in tasks if t["state"] in wanted]
            if "external_key" in query:
                tasks = [t for t in tasks if t.get("external_key") == query["external_key"]]
            if "label" in query:
                k, _, v = query["label"].partition("=")
                tasks = [t for t in tasks if t["labels"].get(k) == v]
            if "limit" in query:
                tasks = tasks[: int(query["limit"])]
            # As the daemon: the cursor is the seq of the last task listed (or `since`, or 0).
            cursor = tasks[-1]["seq"] if tasks else int(query.get("since", 0))
            return 200, {"tasks": [self.view(t) for t in tasks], "cursor": cursor}
        if parts == ["v1", "events"]:
            since = int(query.get("since", 0))
            limit = int(query.get("limit", 100))
            evs = [e for e in self.events if e["seq"] > since][:limit]
            cursor = evs[-1]["seq"] if evs else max(since, 0)
            return 200, {"events": evs, "cursor": cursor}
        if len(parts) >= 3:
            task = self.tasks.get(parts[2])
            if task is None:
                return 404, {"error": f"no task {parts[2]}"}
            if len(parts) == 3 and method == "GET":
                return 200, self.view(task)
            if parts[3:] == ["kill"] and method == "POST":
                if task["state"] in TERMINAL:
                    return 409, {"error": "task already ended"}
                task["kill_requested"] = True
                task["state"] = "killing"
                task["airflow_state"] = "running"
                self._event(task)
                return 200, {"id": task["id"], "state": task["state"]}
            if parts[3:] == ["logs"] and method == "GET":
                stream = query.get("stream", "stdout")
                data = self.logs.get(task["id"], {}).get(stream, "")
                offset = int(query.get("offset", 0))
                length = int(query.get("length", 1 << 20))
                chunk = data[offset : offset + length]
                return 200, {
                    "id": task["id"],
                    "stream": stream,
                    "offset": offset,
                    "next_offset": offset + len(chunk),
                    "data": chunk,
                    "terminal": task["state"] in TERMINAL,
                }
        return 404, {"error": "no such route"}
