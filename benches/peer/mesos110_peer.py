#!/usr/bin/env python3
"""Headless benchmark peer: Airflow 1.10's contrib MesosExecutor algorithm on pymesos.

Airflow 1.10's `airflow/contrib/executors/mesos_executor.py` drove Mesos through the native
libmesos bindings (`mesos.native.MesosSchedulerDriver`), which cannot be installed today. This
script re-states that executor's algorithm line by line (Airflow 1.10's airflow/contrib/executors/mesos_executor.py) on
top of pymesos, the pure-Python driver that speaks the same v1 HTTP scheduler API in JSON that
our fake master serves, so that the end-to-end benchmark can compare like with like:

* a stdlib `Queue` of `(key, command)` pairs filled by `execute_async`;
* on every offer: sum every `cpus` and `mem` scalar of the offer (any role), then pop tasks
  while the queue is not empty and both the remaining cpus and mem fit `task_cpu`/`task_mem`;
  each popped task becomes a TaskInfo with id `str(counter)`, name `AirflowTask <n>`,
  resources cpus+mem, a shell `CommandInfo` (the command list joined with spaces) and a DOCKER
  `ContainerInfo` with `docker_image_slave` (force_pull false, BRIDGE network);
* `launchTasks(offer_id, tasks)` is called for every offer, even with an empty task list
  (pymesos turns an empty launch into a DECLINE without filters, which the master treats the
  same way as the native driver's empty LAUNCH: a decline with the default 5 s filter);
* status updates: TASK_FINISHED -> success; TASK_LOST, TASK_KILLED, TASK_FAILED -> failed; every
  other state is ignored (as in 1.10); updates are acknowledged implicitly by the driver right
  after the callback returns;
* no SUPPRESS, no REVIVE, no filters, no reconciliation.

The clock starts when the framework is SUBSCRIBED with the N commands already queued (the
moment our daemon's clock starts too: a subscribed scheduler with N tasks submitted) and stops
when the executor has seen N terminal results, read from its result queue without the delay of
Airflow's scheduler loop (the most generous reading for the peer). Prints one JSON line.

With `--rate R`, the commands are not queued up front: a feeder thread queues them at R per
second (a batch every `--tick` seconds), from SUBSCRIBED on, as an Airflow scheduler hands tasks
to its executor. The result then also reports the process's CPU time (user + system, every
thread) from SUBSCRIBED until the last terminal result: `cpu_seconds` and `cpu_us_per_task`
(reported in both modes).

Usage: mesos110_peer.py --master 127.0.0.1:5050 --tasks 10000 [--task-cpu 1] [--task-mem 256]
       [--image busybox] [--command true] [--timeout 600] [--log-file /dev/null]
       [--rate 1000 [--tick 0.1]]
"""

import argparse
import json
import logging
import queue
import resource
import sys
import threading
import time

from pymesos import MesosSchedulerDriver, Scheduler

LOG = logging.getLogger("airflow.contrib.executors.mesos_executor")

SUCCESS = "success"
FAILED = "failed"


class AirflowMesosScheduler(Scheduler):
    """The callbacks of Airflow 1.10's `AirflowMesosScheduler`, on pymesos's dict messages."""

    def __init__(self, task_queue, result_queue, task_cpu, task_mem, docker_image_slave):
        self.task_queue = task_queue
        self.result_queue = result_queue
        self.task_cpu = task_cpu
        self.task_mem = task_mem
        self.task_counter = 0
        self.task_key_map = {}
        self.mesos_slave_docker_image = docker_image_slave
        self.registered_at = None
        self.registered_event = threading.Event()
        self.error_message = None
        self.offers_seen = 0
        self.launch_calls = 0
        self.empty_launch_calls = 0
        self.updates_seen = 0

    def registered(self, driver, framework_id, master_info):
        LOG.info("AirflowScheduler registered to Mesos with framework ID %s", framework_id["value"])
        self.registered_at = time.monotonic()
        self.registered_event.set()

    def reregistered(self, driver, master_info):
        LOG.info("AirflowScheduler re-registered to mesos")

    def disconnected(self, driver):
        LOG.info("AirflowScheduler disconnected from mesos")

    def offerRescinded(self, driver, offer_id):
        LOG.info("AirflowScheduler offer %s rescinded", str(offer_id))

    def frameworkMessage(self, driver, executor_id, agent_id, message):
        LOG.info("AirflowScheduler received framework message %s", message)

    def executorLost(self, driver, executor_id, agent_id, status):
        LOG.warning("AirflowScheduler executor %s lost", str(executor_id))

    def slaveLost(self, driver, agent_id):
        LOG.warning("AirflowScheduler slave %s lost", str(agent_id))

    def error(self, driver, message):
        # 1.10 raises AirflowException("AirflowScheduler driver aborted %s"); the driver thread
        # would die. Record it so that the main thread fails loudly instead of waiting forever.
        LOG.error("AirflowScheduler driver aborted %s", message)
        self.error_message = str(message)
        self.result_queue.put(None)

    def resourceOffers(self, driver, offers):
        for offer in offers:
            self.offers_seen += 1
            tasks = []
            offer_cpus = 0
            offer_mem = 0
            for resource in offer.get("resources", []):
                if resource["name"] == "cpus":
                    offer_cpus += resource["scalar"]["value"]
                elif resource["name"] == "mem":
                    offer_mem += resource["scalar"]["value"]

            LOG.info(
                "Received offer %s with cpus: %s and mem: %s",
                offer["id"]["value"],
                offer_cpus,
                offer_mem,
            )

            remaining_cpus = offer_cpus
            remaining_mem = offer_mem

            while (
                not self.task_queue.empty()
                and remaining_cpus >= self.task_cpu
                and remaining_mem >= self.task_mem
            ):
                key, cmd = self.task_queue.get()
                tid = self.task_counter
                self.task_counter += 1
                self.task_key_map[str(tid)] = key

                LOG.info("Launching task %d using offer %s", tid, offer["id"]["value"])

                task = {
                    "task_id": {"value": str(tid)},
                    "agent_id": {"value": offer["agent_id"]["value"]},
                    "name": "AirflowTask %d" % tid,
                    "resources": [
                        {"name": "cpus", "type": "SCALAR", "scalar": {"value": self.task_cpu}},
                        {"name": "mem", "type": "SCALAR", "scalar": {"value": self.task_mem}},
                    ],
                    "command": {"shell": True, "value": " ".join(cmd)},
                }
                if self.mesos_slave_docker_image:
                    task["container"] = {
                        "type": "DOCKER",
                        "docker": {
                            "image": self.mesos_slave_docker_image,
                            "force_pull_image": False,
                            "network": "BRIDGE",
                        },
                    }
                tasks.append(task)
                remaining_cpus -= self.task_cpu
                remaining_mem -= self.task_mem

            self.launch_calls += 1
            if not tasks:
                self.empty_launch_calls += 1
            driver.launchTasks(offer["id"], tasks)

    def statusUpdate(self, driver, update):
        self.updates_seen += 1
        task_id = update["task_id"]["value"]
        state = update["state"]
        LOG.info("Task %s is in state %s, data %s", task_id, state, update.get("data"))

        try:
            key = self.task_key_map[task_id]
        except KeyError:
            # The map may not contain an item if the framework re-registered after a failover.
            # Discard these tasks.
            LOG.warning("Unrecognised task key %s", task_id)
            return

        if state == "TASK_FINISHED":
            self.result_queue.put((key, SUCCESS))
            self.task_queue.task_done()
        elif state in ("TASK_LOST", "TASK_KILLED", "TASK_FAILED"):
            self.result_queue.put((key, FAILED))
            self.task_queue.task_done()


def cpu_seconds():
    """User + system CPU seconds of this process, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--master", required=True, help="host:port of the Mesos master (JSON v1 API)")
    p.add_argument("--tasks", type=int, default=10000, help="number of commands to run (N)")
    p.add_argument("--task-cpu", type=int, default=1, help="[mesos] task_cpu (1.10: an integer)")
    p.add_argument("--task-mem", type=int, default=256, help="[mesos] task_memory in MB")
    p.add_argument("--image", default="busybox", help="[mesos] docker_image_slave")
    p.add_argument("--command", default="true", help="command each task runs")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    p.add_argument("--log-file", default="/dev/null", help="where the executor's INFO log goes")
    p.add_argument("--rate", type=float, default=0.0, help="queue the commands at this many per second (0: all up front)")
    p.add_argument("--tick", type=float, default=0.1, help="with --rate: seconds between two batches queued")
    p.add_argument(
        "--no-teardown",
        action="store_true",
        help="stop the driver with failover=True (1.10's end() tears the framework down)",
    )
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    if args.tasks <= 0:
        print("mesos110_peer: --tasks must be positive, got %d" % args.tasks, file=sys.stderr)
        return 2

    handler = logging.FileHandler(args.log_file)
    handler.setFormatter(logging.Formatter("[%(asctime)s] {%(filename)s:%(lineno)d} %(levelname)s - %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    logging.getLogger("pymesos").addHandler(handler)

    task_queue = queue.Queue()
    result_queue = queue.Queue()

    # execute_async(key, command): task_queue.put((key, command)). Airflow 1.10 passed the
    # command as a list and joined it with spaces.
    def command(i):
        return (("bench_dag", "task_%d" % i, "2026-01-01T00:00:00"), [args.command])

    if args.rate <= 0:
        for i in range(args.tasks):
            task_queue.put(command(i))

    # MesosExecutor.start(): FrameworkInfo with empty user, name 'Airflow', principal 'Airflow'
    # (no authentication), checkpoint off (no failover_timeout set).
    framework = {"user": "", "name": "Airflow", "principal": "Airflow", "checkpoint": False}
    sched = AirflowMesosScheduler(task_queue, result_queue, args.task_cpu, args.task_mem, args.image)
    driver = MesosSchedulerDriver(sched, framework, args.master, implicit_acknowledgements=True)

    started = time.monotonic()
    driver.start()

    deadline = started + args.timeout
    if not sched.registered_event.wait(timeout=args.timeout):
        print("mesos110_peer: not subscribed to %s within %.0f s" % (args.master, args.timeout), file=sys.stderr)
        driver.stop(failover=True)
        return 1
    t0 = sched.registered_at
    cpu0 = cpu_seconds()

    def feed():
        # Batch k (of rate * tick commands) is queued at t0 + k * tick.
        per_tick = max(1, int(round(args.rate * args.tick)))
        queued = 0
        k = 0
        while queued < args.tasks:
            delay = t0 + k * args.tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for _ in range(min(per_tick, args.tasks - queued)):
                task_queue.put(command(queued))
                queued += 1
            k += 1

    if args.rate > 0:
        threading.Thread(target=feed, daemon=True).start()

    # sync(): drain the result queue. We block on it instead of polling once per scheduler loop.
    succeeded = 0
    failed = 0
    complete = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            item = result_queue.get(timeout=min(remaining, 1.0))
        except queue.Empty:
            continue
        if item is None:
            break
        _key, state = item
        if state == SUCCESS:
            succeeded += 1
        else:
            failed += 1
        if succeeded + failed == args.tasks:
            complete = True
            break
    t1 = time.monotonic()
    cpu = cpu_seconds() - cpu0

    # end(): 1.10 joins the task queue (only safe once every task is terminal) and stops the
    # driver without failover, which tears the framework down.
    if complete:
        task_queue.join()
    driver.stop(failover=args.no_teardown)
    driver.join()

    elapsed = t1 - t0
    done = succeeded + failed
    result = {
        "peer": "airflow-1.10-mesos-executor/pymesos",
        "tasks": args.tasks,
        "complete": complete,
        "terminal": done,
        "succeeded": succeeded,
        "failed": failed,
        "seconds": round(elapsed, 6),
        "tasks_per_s": round(done / elapsed, 3) if elapsed > 0 else None,
        "subscribe_seconds": round(t0 - started, 6),
        "rate": args.rate,
        "cpu_seconds": round(cpu, 6),
        "cpu_us_per_task": round(cpu / done * 1e6, 1) if done else None,
        "offers": sched.offers_seen,
        "launch_calls": sched.launch_calls,
        "empty_launch_calls": sched.empty_launch_calls,
        "status_updates": sched.updates_seen,
    }
    if sched.error_message is not None:
        result["error"] = sched.error_message
    print(json.dumps(result), flush=True)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
