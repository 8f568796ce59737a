"""Drives pymesos (PyPI), a Mesos client nobody on this project wrote, against the fake master.

Usage: pymesos_smoke.py HOST:PORT

Subscribes a framework, launches one task on the first offer, declines later offers,
acknowledges every status update that carries a uuid (explicitly, not implicitly), asks for an
explicit reconciliation of an unknown task once the launched task is terminal, and prints one
JSON summary line on stdout. Exits 0 when the task reached TASK_FINISHED and the
reconciliation answer arrived, 1 on timeout or error.
"""

import json
import logging
import sys
import threading

from pymesos import MesosSchedulerDriver, Scheduler

TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR",
            "TASK_LOST", "TASK_DROPPED", "TASK_GONE"}
TASK_ID = "pymesos-task-1"


class SmokeScheduler(Scheduler):
    def __init__(self):
        self.lock = threading.Lock()
        self.framework_id = None
        self.launched = False
        self.offers_seen = 0
        self.updates = []
        self.done = threading.Event()
        self.error_message = None

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id["value"]

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                self.offers_seen += 1
                if self.launched:
                    driver.declineOffer(offer["id"], {"refuse_seconds": 60.0})
                    continue
                self.launched = True
            # Copy the offered cpus/mem entries (keeps role and allocation_info) with new values.
            resources = []
            for r in offer["resources"]:
                if r["name"] in ("cpus", "mem"):
                    r = dict(r)
                    r["scalar"] = {"value": 0.1 if r["name"] == "cpus" else 32.0}
                    resources.append(r)
            task = {
                "name": "pymesos smoke task",
                "task_id": {"value": TASK_ID},
                "agent_id": {"value": offer["agent_id"]["value"]},
                "resources": resources,
                "command": {"shell": True, "value": "echo hello"},
            }
            driver.launchTasks(offer["id"], [task], {"refuse_seconds": 1.0})

    def statusUpdate(self, driver, update):
        with self.lock:
            self.updates.append({
                "task_id": update["task_id"]["value"],
                "state": update["state"],
                "source": update.get("source"),
                "reason": update.get("reason"),
                "has_uuid": "uuid" in update,
            })
        if "uuid" in update:
            driver.acknowledgeStatusUpdate(update)
        if update["task_id"]["value"] == TASK_ID and update["state"] in TERMINAL:
            driver.reconcileTasks([{"task_id": {"value": "pymesos-no-such-task"}}])
        if update["task_id"]["value"] == "pymesos-no-such-task":
            self.done.set()

    def error(self, driver, message):
        self.error_message = message
        self.done.set()


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    master = sys.argv[1]
    framework = {
        "user": "root",
        "name": "pymesos-fidelity",
        "roles": ["*"],
        "capabilities": [{"type": "MULTI_ROLE"}],
        "failover_timeout": 60.0,
    }
    sched = SmokeScheduler()
    driver = MesosSchedulerDriver(sched, framework, master,
                                  use_addict=False, implicit_acknowledgements=False)
    driver.start()
    ok = sched.done.wait(30)
    driver.stop(failover=True)
    driver.join()
    summary = {
        "framework_id": sched.framework_id,
        "offers_seen": sched.offers_seen,
        "updates": sched.updates,
        "error": sched.error_message,
        "timed_out": not ok,
    }
    print(json.dumps(summary))
    finished = any(u["task_id"] == TASK_ID and u["state"] == "TASK_FINISHED"
                   for u in sched.updates)
    sys.exit(0 if ok and finished and sched.error_message is None else 1)


if __name__ == "__main__":
    main()
