"""Why a try never started, written into Airflow's task log of that try.

Airflow shows a try's log (UI, REST API ``.../taskInstances/{task}/logs/{try}``, ``airflow tasks
logs``) through the task handler of the ``airflow.task`` logger (``FileTaskHandler`` or a
subclass). For a try that is not running it reads the files under ``[logging] base_log_folder``
whose names start with the path the handler renders for that try (``log_filename_template``); it
asks the executor (``get_task_log``) only while the task instance is running (Airflow 2.10 and 3.1
alike). A try whose command never started (its image could not be pulled, the daemon refused
its spec, ...) has no such file: the daemon's reason reached Airflow only as the executor's
"Extra info" in its audit log (event ``state mismatch``).

So the executor writes the reason into ``<rendered path>.airflow-mesos.log`` next to where the
try's own log would be, the way Airflow itself relays messages from outside a task
(``set_context(ti, identifier=...)``): the handler's own filename rendering, folders and file made
with ``[logging] file_task_handler_new_folder_permissions`` / ``..._new_file_permissions``. One
line: a JSON record as Airflow 3's task logs have them, or a line in the handler's format on
Airflow 2.

Standard library and Airflow only.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Optional

IDENTIFIER = "airflow-mesos"
LOGGER_NAME = "airflow_mesos_executor"


def task_handler(logger_name: str = "airflow.task") -> Optional[logging.Handler]:
    """The file task handler configured on Airflow's ``airflow.task`` logger, if any."""
    for handler in logging.getLogger(logger_name).handlers:
        if callable(getattr(handler, "_render_filename", None)) and getattr(handler, "local_base", None):
            return handler
    return None


def log_path(handler: Any, ti: Any, try_number: int) -> str:
    """Where the reason goes: the handler's path for this try plus ``.airflow-mesos.log``."""
    relative = handler._render_filename(ti, try_number)
    return os.path.join(handler.local_base, relative) + f".{IDENTIFIER}.log"


def _structured() -> bool:
    import airflow

    return int(str(airflow.__version__).split(".")[0]) >= 3


def _mode(key: str, default: str) -> int:
    from airflow.configuration import conf

    return int(conf.get("logging", key, fallback=default), 8)


def redact(text: str, secrets: Iterable[Optional[str]]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def format_line(handler: Any, text: str, structured: Optional[bool] = None) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    if structured is None:
        structured = _structured()
    if structured:
        record = {"timestamp": now.isoformat(), "level": "error", "event": text, "logger": LOGGER_NAME}
        return json.dumps(record) + "\n"
    record = logging.LogRecord(LOGGER_NAME, logging.ERROR, __file__, 0, text, None, None)
    formatter = getattr(handler, "formatter", None) or logging.Formatter(
        "[%(asctime)s] %(levelname)s - %(message)s"
    )
    return formatter.format(record).replace("\n", " ") + "\n"


def write(handler: Any, ti: Any, try_number: int, text: str, structured: Optional[bool] = None) -> str:
    """Appends ``text`` as one error line to try ``try_number``'s log of ``ti``; returns the file."""
    path = log_path(handler, ti, try_number)
    folder = Path(path).parent
    folder_mode = _mode("file_task_handler_new_folder_permissions", "0o775")
    prepare = getattr(handler, "_prepare_log_folder", None)
    if callable(prepare):
        prepare(folder, folder_mode)
    else:
        folder.mkdir(mode=folder_mode, parents=True, exist_ok=True)
    line = format_line(handler, text, structured)
    created = not os.path.exists(path)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
    if created:
        try:
            os.chmod(path, _mode("file_task_handler_new_file_permissions", "0o664"))
        except OSError:
            pass  # as Airflow: the file is written, its mode is a nicety
    return path
