"""Building airflow-mesos task specs from Airflow task instances (pure functions, no Airflow import).

A spec is assembled from three layers, later ones winning field by field:

1. the site template (``[mesos_executor] task_template``: a JSON object of spec fields, e.g. the
   volumes and network every Airflow task container needs),
2. what the shim must set (command, workload file, execution API URL, labels, external key),
3. the task's ``executor_config``: the AVENTER provider's keys (``cpus``, ``mem_limit``, ``disk``,
   ``image``, ``container_type``, ``attributes``, ``force_pull``, ``network_mode``,
   ``environment``) and this project's spec fields (``volumes``, ``ports``, ``labels``, ...),
   either at the top level or under ``"airflow_mesos"``.

The AVENTER keys are handed to the daemon in the spec's ``executor_config``, which folds them (it
knows the units, e.g. ``"2g"``); a template field the task overrides through an AVENTER key is left
out so the task's value wins.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

WORKLOAD_FILE = "workload.json"
"""Name of the workload file in the task's sandbox (its working directory)."""

WORKLOAD_COMMAND = [
    "python",
    "-m",
    "airflow.sdk.execution_time.execute_workload",
    "--json-path",
    WORKLOAD_FILE,
]
"""The Airflow 3 container command: reads the workload (with its token) from the sandbox file."""

# executor_config keys of the AVENTER provider -> the spec field each one sets.
AVENTER_KEYS: Dict[str, str] = {
    "cpus": "cpus",
    "mem_limit": "mem",
    "disk": "disk",
    "image": "image",
    "container_type": "containerizer",
    "attributes": "constraints",
    "force_pull": "force_pull",
    "network_mode": "network",
    "environment": "env",
}
# AVENTER keys that only mean something to the provider itself.
AVENTER_IGNORED = {"airflow_task_id", "dag_filename"}

# Spec fields a task may set through executor_config (top level or under "airflow_mesos").
SPEC_KEYS = {
    "image",
    "cpus",
    "mem",
    "disk",
    "ports",
    "env",
    "volumes",
    "network",
    "force_pull",
    "privileged",
    "constraints",
    "labels",
    "kill_grace_period",
    "retries",
    "containerizer",
    "user",
}
# Spec fields a template may set (everything a site might want to fix for every task).
TEMPLATE_KEYS = SPEC_KEYS | {"name"}
# Fields that only the shim sets.
RESERVED_KEYS = {"command", "files", "external_key", "executor_config"}
NAMESPACE = "airflow_mesos"


class SpecBuildError(ValueError):
    """The executor_config or template cannot be turned into a spec; names the offending key."""


def external_key(dag_id: str, task_id: str, run_id: str, try_number: int, map_index: int) -> str:
    """A stable, unambiguous serialization of a TaskInstanceKey (compact JSON, sorted keys)."""
    return json.dumps(
        {
            "dag_id": dag_id,
            "map_index": int(map_index),
            "run_id": run_id,
            "task_id": task_id,
            "try_number": int(try_number),
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def key_fields(key: Any) -> Tuple[str, str, str, int, int]:
    """(dag_id, task_id, run_id, try_number, map_index) of a TaskInstanceKey-like object."""
    return (key.dag_id, key.task_id, key.run_id, int(key.try_number), int(getattr(key, "map_index", -1)))


def external_key_of(key: Any) -> str:
    """:func:`external_key` of a TaskInstanceKey-like object."""
    return external_key(*key_fields(key))


def parse_template(text: Optional[str]) -> Dict[str, Any]:
    """Parses ``[mesos_executor] task_template`` (a JSON object of spec fields; empty = none)."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise SpecBuildError(f"[mesos_executor] task_template is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise SpecBuildError("[mesos_executor] task_template must be a JSON object of task spec fields")
    for k in value:
        if k in RESERVED_KEYS:
            raise SpecBuildError(f"[mesos_executor] task_template must not set {k!r}: the executor sets it")
        if k not in TEMPLATE_KEYS:
            raise SpecBuildError(
                f"[mesos_executor] task_template has unknown field {k!r} (known: {', '.join(sorted(TEMPLATE_KEYS))})"
            )
    return value


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def split_executor_config(executor_config: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Splits a task's executor_config into (explicit spec fields, AVENTER pass-through).

    Values that are not JSON (e.g. another executor's ``pod_override`` object) are dropped with a
    warning; a ``command`` key is refused.
    """
    if executor_config is None:
        return {}, {}
    if not isinstance(executor_config, Mapping):
        raise SpecBuildError(f"executor_config must be a dict, got {type(executor_config).__name__}")
    explicit: Dict[str, Any] = {}
    passthrough: Dict[str, Any] = {}
    items = list(executor_config.items())
    ns = executor_config.get(NAMESPACE)
    if ns is not None:
        if not isinstance(ns, Mapping):
            raise SpecBuildError(f"executor_config[{NAMESPACE!r}] must be a dict of task spec fields")
        items = [(k, v) for k, v in items if k != NAMESPACE] + [(k, v) for k, v in ns.items()]
    for k, v in items:
        if k == "command":
            raise SpecBuildError("executor_config['command'] is not allowed: the command comes from Airflow")
        if k in RESERVED_KEYS:
            raise SpecBuildError(f"executor_config[{k!r}] is not allowed: the executor sets it")
        if not _json_safe(v):
            log.warning("executor_config[%r] is not JSON (%s); airflow-mesos ignores it", k, type(v).__name__)
            continue
        if k in AVENTER_KEYS:
            passthrough[k] = v
        elif k in AVENTER_IGNORED:
            continue
        elif k in SPEC_KEYS:
            explicit[k] = v
        else:
            # Keys of other executors (e.g. "KubernetesExecutor") or typos: kept for reference; the
            # daemon ignores keys it does not know inside executor_config.
            passthrough[k] = v
    return explicit, passthrough


def build_spec(
    *,
    key: Tuple[str, str, str, int, int],
    command: Sequence[str],
    files: Optional[List[Dict[str, str]]] = None,
    env: Optional[Mapping[str, str]] = None,
    executor_config: Any = None,
    template: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Builds the JSON spec of one Airflow task instance.

    ``key`` is ``(dag_id, task_id, run_id, try_number, map_index)``; ``command`` an argv list
    (run without a shell); ``files`` sandbox files; ``env`` what the shim must set.
    """
    dag_id, task_id, run_id, try_number, map_index = key
    explicit, passthrough = split_executor_config(executor_config)
    spec: Dict[str, Any] = copy.deepcopy(dict(template or {}))
    # A template field that the task sets through an AVENTER key must not win over it.
    for aventer_key, field in AVENTER_KEYS.items():
        if aventer_key in passthrough and field not in ("env", "constraints"):
            spec.pop(field, None)

    name = f"{dag_id}.{task_id}" + (f"[{map_index}]" if map_index >= 0 else "")
    spec["name"] = name
    spec["command"] = list(command)
    if files:
        spec["files"] = [dict(f) for f in files]

    merged_env: Dict[str, str] = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
    merged_env.update({str(k): str(v) for k, v in (env or {}).items()})
    task_env = passthrough.get("environment")
    if task_env is not None:
        if not isinstance(task_env, Mapping):
            raise SpecBuildError("executor_config['environment'] must be a dict of variable names to values")
        merged_env.update({str(k): str(v) for k, v in task_env.items()})
    if explicit.get("env") is not None:
        if not isinstance(explicit["env"], Mapping):
            raise SpecBuildError("executor_config['env'] must be a dict of variable names to values")
        merged_env.update({str(k): str(v) for k, v in explicit["env"].items()})
    if merged_env:
        spec["env"] = merged_env

    labels: Dict[str, str] = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
    if explicit.get("labels") is not None:
        if not isinstance(explicit["labels"], Mapping):
            raise SpecBuildError("executor_config['labels'] must be a dict")
        labels.update({str(k): str(v) for k, v in explicit["labels"].items()})
    labels.update(
        {
            "airflow.dag_id": dag_id,
            "airflow.task_id": task_id,
            "airflow.run_id": run_id,
            "airflow.try_number": str(try_number),
            "airflow.map_index": str(map_index),
        }
    )
    spec["labels"] = labels

    for k, v in explicit.items():
        if k in ("env", "labels"):
            continue
        if k == "constraints":
            if not isinstance(v, list):
                raise SpecBuildError("executor_config['constraints'] must be a list of 'name:value' strings")
            spec["constraints"] = list(spec.get("constraints") or []) + [c for c in v if c not in (spec.get("constraints") or [])]
            continue
        spec[k] = v

    spec["external_key"] = external_key(dag_id, task_id, run_id, try_number, map_index)
    if passthrough:
        spec["executor_config"] = passthrough
    return spec
