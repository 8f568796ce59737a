"""The shim's settings, read from the same ``airflow.cfg`` as the daemon's.

``[mesos] api_url`` (default ``http://127.0.0.1:11000``) and ``[mesos] api_token`` (optional; also
``api_token_cmd`` / ``api_token_secret``, each also as ``AIRFLOW__MESOS__...`` env vars, with
Airflow's precedence: env, env ``_CMD``, env ``_SECRET``, file value, file ``_cmd``, file
``_secret``). Without ``api_token``, the token the daemon generated is read from
``[mesos] api_token_file`` (default ``$AIRFLOW_HOME/airflow-mesos/api-token``). Airflow itself
honours ``_cmd``/``_secret`` only for options declared sensitive; the provider declares
``api_token`` so (``provider_info.py``), but Airflow applies that only once it has loaded the
providers' configuration, so this module resolves them itself, with Airflow's own helpers.

``[mesos_executor]`` holds what only the shim uses: ``task_template`` (JSON object of spec fields
given to every task), ``events_wait`` (seconds ``sync()`` long-polls the change feed, default 0),
``request_timeout`` (seconds, default 10).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

from airflow_mesos_executor.spec import parse_template

DEFAULT_API_URL = "http://127.0.0.1:11000"


@dataclass
class Settings:
    api_url: str = DEFAULT_API_URL
    api_token: Optional[str] = field(default=None, repr=False)
    template: Dict[str, Any] = field(default_factory=dict)
    events_wait: float = 0.0
    request_timeout: float = 10.0
    execution_api_server_url: Optional[str] = None
    # [core] executor, passed to every task: a task parses its DAG, and Airflow refuses a DAG whose
    # tasks name an executor that this setting does not list.
    core_executor: Optional[str] = None


def _run_command(command: str) -> str:
    from airflow.configuration import run_command

    return run_command(command)


def _secret_backend_value(path: str) -> Optional[str]:
    try:
        from airflow.configuration import _get_config_value_from_secret_backend

        return _get_config_value_from_secret_backend(path)
    except ImportError:
        from airflow.configuration import get_custom_secret_backend

        backend = get_custom_secret_backend()
        return backend.get_config(path) if backend else None


def resolve_secret(
    section: str,
    key: str,
    get: Callable[..., Optional[str]],
    environ: Optional[Dict[str, str]] = None,
    run_command: Callable[[str], str] = _run_command,
    secret_value: Callable[[str], Optional[str]] = _secret_backend_value,
) -> Optional[str]:
    """Resolves ``[section] key`` with ``_cmd`` / ``_secret`` variants in Airflow's order.

    ``get(section, key, fallback=None)`` reads the file (Airflow's ``conf.get`` also consults the
    plain env var, which comes first anyway).
    """
    env = os.environ if environ is None else environ
    var = f"AIRFLOW__{section.upper()}__{key.upper()}"
    if env.get(var):
        return env[var]
    if env.get(var + "_CMD"):
        return run_command(env[var + "_CMD"]).strip()
    if env.get(var + "_SECRET"):
        return secret_value(env[var + "_SECRET"])
    value = get(section, key, fallback=None)
    if value:
        return value
    cmd = get(section, key + "_cmd", fallback=None)
    if cmd:
        return run_command(cmd).strip()
    path = get(section, key + "_secret", fallback=None)
    if path:
        return secret_value(path)
    return None


def execution_api_server_url(get: Callable[..., Optional[str]]) -> str:
    """``[core] execution_api_server_url``, defaulting the way the task SDK does."""
    base_url = get("api", "base_url", fallback="/") or "/"
    if base_url.startswith("/"):
        base_url = f"http://localhost:8080{base_url}"
    default = f"{base_url.rstrip('/')}/execution/"
    return get("core", "execution_api_server_url", fallback=default) or default


def _float(get: Callable[..., Optional[str]], section: str, key: str, default: float) -> float:
    raw = get(section, key, fallback=None)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"[{section}] {key} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"[{section}] {key} must not be negative, got {raw!r}")
    return value


def token_file(get: Callable[..., Optional[str]], environ: Optional[Dict[str, str]] = None) -> str:
    """``[mesos] api_token_file``, defaulting the way the daemon does."""
    env = os.environ if environ is None else environ
    configured = env.get("AIRFLOW__MESOS__API_TOKEN_FILE") or get("mesos", "api_token_file", fallback=None)
    if configured and configured.strip():
        return os.path.expanduser(configured.strip())
    home = env.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, "airflow-mesos", "api-token")


def read_token_file(path: str) -> Optional[str]:
    """The daemon's generated token; None when the file does not exist (yet)."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ValueError(
            f"cannot read the API token file {path} ([mesos] api_token_file): {e.strerror}; it is "
            "readable by the daemon's user only: run Airflow as that user or set [mesos] api_token"
        ) from None
    if not token:
        raise ValueError(f"the API token file {path} ([mesos] api_token_file) is empty")
    return token


def load(get: Optional[Callable[..., Optional[str]]] = None, environ: Optional[Dict[str, str]] = None) -> Settings:
    """Reads the settings through ``get`` (default: Airflow's ``conf.get``)."""
    if get is None:
        from airflow.configuration import conf

        get = conf.get
    return Settings(
        api_url=(get("mesos", "api_url", fallback=None) or DEFAULT_API_URL).strip(),
        api_token=resolve_secret("mesos", "api_token", get, environ)
        or read_token_file(token_file(get, environ)),
        template=parse_template(get("mesos_executor", "task_template", fallback=None)),
        events_wait=_float(get, "mesos_executor", "events_wait", 0.0),
        request_timeout=_float(get, "mesos_executor", "request_timeout", 10.0),
        execution_api_server_url=execution_api_server_url(get),
        core_executor=(get("core", "executor", fallback=None) or "").strip() or None,
    )
