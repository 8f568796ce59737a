"""A stand-in for the airflow-mesos daemon that really runs tasks with ``docker run``.

Only for developing the end-to-end driver while the daemon is not available
(``e2e_driver.py --stand-in``); the end-to-end test proper runs the real daemon. It speaks the same
HTTP API as :class:`fake_daemon.FakeDaemon` (which it extends) and gives each task a sandbox
directory mounted at ``/mnt/mesos/sandbox`` (its working directory), where the spec's ``files`` are
written, as the daemon's local Docker backend does.
"""

from __future__ import annotations

import os
import subprocess
import threading
from typing import Any, Dict

from fake_daemon import FakeDaemon

SANDBOX = "/mnt/mesos/sandbox"


class DockerStandIn(FakeDaemon):
    def __init__(self, token: str, sandbox_root: str, default_image: str):
        super().__init__(token=token)
        self.sandbox_root = sandbox_root
        self.default_image = default_image
        self.containers: Dict[str, str] = {}

    def create(self, spec: Dict[str, Any]) -> Dict[str, Any]:
        task = super().create(spec)
        threading.Thread(target=self._run, args=(task,), daemon=True).start()
        return task

    def _run(self, task: Dict[str, Any]) -> None:
        spec = task["spec"]
        sandbox = os.path.join(self.sandbox_root, task["id"])
        os.makedirs(sandbox, exist_ok=True)
        for f in spec.get("files") or []:
            with open(os.path.join(sandbox, f["path"]), "w") as out:
                out.write(f["content"])
        argv = ["docker", "run", "-d", "--workdir", SANDBOX, "-v", f"{sandbox}:{SANDBOX}:rw"]
        if spec.get("network") == "host":
            argv += ["--network", "host"]
        for v in spec.get("volumes") or []:
            argv += ["-v", f"{v['host_path']}:{v['container_path']}:{v.get('mode', 'rw')}"]
        for k, v in (spec.get("env") or {}).items():
            argv += ["-e", f"{k}={v}"]
        for k, v in (spec.get("labels") or {}).items():
            argv += ["--label", f"{k}={v}"]
        argv.append(spec.get("image") or (spec.get("executor_config") or {}).get("image") or self.default_image)
        cmd = spec["command"]
        argv += cmd if isinstance(cmd, list) else ["sh", "-c", cmd]
        try:
            cid = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
        except subprocess.CalledProcessError as e:
            self.transition(task["id"], "failed", f"docker run failed: {e.stderr.strip()}")
            return
        self.containers[task["id"]] = cid
        self.transition(task["id"], "starting")
        self.transition(task["id"], "running")
        code = subprocess.run(["docker", "wait", cid], capture_output=True, text=True).stdout.strip()
        out = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
        with self.lock:
            self.logs[task["id"]] = {"stdout": out.stdout, "stderr": out.stderr}
            task["exit_code"] = int(code or -1)
        if task.get("kill_requested"):
            self.transition(task["id"], "killed")
        elif code == "0":
            self.transition(task["id"], "succeeded")
        else:
            self.transition(task["id"], "failed", f"exit code {code}")

    def route(self, method, parts, query, body):
        if len(parts) == 4 and parts[3] == "kill" and method == "POST":
            cid = self.containers.get(parts[2])
            if cid:
                subprocess.Popen(["docker", "stop", "-t", "5", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return super().route(method, parts, query, body)
