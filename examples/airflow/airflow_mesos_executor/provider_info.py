"""Provider information for Airflow's ``apache_airflow_provider`` entry point.

Airflow calls :func:`get_provider_info` to list this package in ``airflow providers list`` /
``airflow info``, its executor in ``airflow providers executors``, and its configuration sections
in ``airflow config list`` (with the defaults below, which match what the executor falls back to
when an option is not set). Standard library only: Airflow loads this at start-up.

Only the options the executor reads are declared. ``[mesos]`` also holds the airflow-mesos
daemon's own options (``master``, ``docker_image_slave``, ``api_listen``, ...; see the daemon's
``config/airflow.cfg``); Airflow shows those as read from the file.
"""

from __future__ import annotations

from typing import Any, Dict

from airflow_mesos_executor import __version__

PACKAGE_NAME = "airflow-mesos-provider"
EXECUTOR = "airflow_mesos_executor.AirflowMesosExecutor"


def _option(description: str, type_: str, default: Any, example: Any, **extra: Any) -> Dict[str, Any]:
    return {
        "description": description,
        "version_added": "0.1.0",
        "type": type_,
        "default": default,
        "example": example,
        **extra,
    }


def get_provider_info() -> Dict[str, Any]:
    return {
        "package-name": PACKAGE_NAME,
        "name": "airflow-mesos",
        "description": (
            "Runs Airflow task instances as Docker containers on Apache Mesos (or a local Docker "
            "engine) through the airflow-mesos daemon's HTTP API. Not an Apache Airflow project "
            "package."
        ),
        "versions": [__version__],
        "executors": [EXECUTOR],
        "config": {
            "mesos": {
                "description": (
                    "Shared by the airflow-mesos daemon and its Airflow executor; the executor reads "
                    "the options declared here, the daemon reads the whole section."
                ),
                "options": {
                    "api_url": _option(
                        "Base URL of the airflow-mesos daemon's HTTP API, as the scheduler reaches it; several, "
                        "comma-separated, for daemons standing by on one state database.",
                        "string",
                        "http://127.0.0.1:11000",
                        "http://airflow-mesos.internal:11000",
                    ),
                    "api_token": _option(
                        "Bearer token of the daemon's HTTP API (the daemon's own api_token). Like "
                        "other sensitive options it may instead be given as api_token_cmd (a command "
                        "printing it) or api_token_secret (a secrets-backend path), or as "
                        "AIRFLOW__MESOS__API_TOKEN / _CMD / _SECRET in the environment. Empty: the "
                        "token the daemon generated is read from api_token_file.",
                        "string",
                        None,
                        None,
                        sensitive=True,
                    ),
                    "api_token_file": _option(
                        "File holding the token the daemon generated when no api_token is set (the "
                        "daemon writes it, readable by its user only); read when api_token is empty.",
                        "string",
                        "$AIRFLOW_HOME/airflow-mesos/api-token",
                        "/var/lib/airflow-mesos/airflow-mesos/api-token",
                    ),
                },
            },
            "mesos_executor": {
                "description": "Options only the airflow-mesos executor reads.",
                "options": {
                    "task_template": _option(
                        "Task spec fields given to every task (a JSON object; a task's "
                        "executor_config wins field by field). command, files, external_key and "
                        "executor_config cannot be set here.",
                        "string",
                        "",
                        '{"network": "host", "volumes": [{"container_path": "/opt/airflow/logs", '
                        '"host_path": "/srv/airflow/logs", "mode": "rw"}]}',
                    ),
                    "events_wait": _option(
                        "Seconds sync() may long-poll the daemon's change feed on each scheduler "
                        "heartbeat (0: never block the scheduler loop).",
                        "float",
                        "0",
                        "2",
                    ),
                    "request_timeout": _option(
                        "Seconds one HTTP request to the daemon may take.",
                        "float",
                        "10",
                        "30",
                    ),
                },
            },
        },
    }
