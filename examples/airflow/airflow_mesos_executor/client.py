"""A small HTTP client for the airflow-mesos daemon's API (standard library only).

Every ``/v1`` request carries ``Authorization: Bearer <token>`` when a token is configured. The
token is never part of an error message or a ``repr``.

``api_url`` may list several daemons, comma-separated (several daemons on one database, one of
them leading): a request goes to the daemon that answered last, and to the next one when a
daemon cannot be connected to or answers 503 (no leader yet). A write goes elsewhere only when
the daemon cannot have taken it (no connection was made, or it answered 503).
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterable, List, Mapping, Optional

__all__ = ["DaemonClient", "DaemonError", "DaemonUnavailable"]


class DaemonError(Exception):
    """The daemon answered with an HTTP error status.

    ``status`` is the HTTP status, ``error`` the daemon's ``error`` text and ``field`` the spec
    field it refers to (for 400 answers to a bad spec), when given.
    """

    def __init__(self, method: str, path: str, status: int, error: str, field: Optional[str] = None):
        self.method = method
        self.path = path
        self.status = status
        self.error = error
        self.field = field
        where = f" (field {field})" if field else ""
        super().__init__(f"airflow-mesos {method} {path} answered {status}: {error}{where}")


class DaemonUnavailable(Exception):
    """The daemon could not be reached (connection refused, timeout, bad answer)."""


class _NeverSent(DaemonUnavailable):
    """No connection was made: the request may go to another daemon, even a write."""


class DaemonClient:
    """Talks to ``<api_url>/v1/...``.

    ``timeout`` is the socket timeout of ordinary calls; long polls of ``/v1/events`` add their
    ``wait`` to it.
    """

    def __init__(self, api_url: str, token: Optional[str] = None, timeout: float = 10.0):
        urls = [u.strip().rstrip("/") for u in (api_url or "").split(",") if u.strip()]
        if not urls:
            raise ValueError("the airflow-mesos API URL is empty ([mesos] api_url)")
        for u in urls:
            parsed = urllib.parse.urlsplit(u)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(f"[mesos] api_url must be http(s) URLs, got {u!r}")
        self.api_urls = urls
        self._current = 0
        self._token = token or None
        self.timeout = timeout

    @property
    def api_url(self) -> str:
        """The daemon that answered last."""
        return self.api_urls[self._current]

    def __repr__(self) -> str:
        auth = "token" if self._token else "no token"
        return f"DaemonClient({','.join(self.api_urls)!r}, {auth})"

    # -- plumbing -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        query: Optional[Mapping[str, Any]] = None,
        body: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        last: Optional[Exception] = None
        n = len(self.api_urls)
        for i in range(n):
            idx = (self._current + i) % n
            try:
                answer = self._request_at(self.api_urls[idx], method, path, query, body, timeout)
            except DaemonError as e:
                if e.status != 503:
                    raise
                last = e
            except _NeverSent as e:
                last = DaemonUnavailable(str(e))
            except DaemonUnavailable as e:
                if method != "GET":
                    raise
                last = e
            else:
                self._current = idx
                return answer
        assert last is not None
        raise last

    def _request_at(
        self,
        base: str,
        method: str,
        path: str,
        query: Optional[Mapping[str, Any]],
        body: Any,
        timeout: Optional[float],
    ) -> Any:
        url = base + path
        if query:
            pairs = [(k, str(v)) for k, v in query.items() if v is not None]
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
        if body is not None or method == "POST":
            # The daemon takes writes declared JSON only (a cross-site form cannot send them).
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            err, field = _error_text(raw, e.code)
            raise DaemonError(method, path, e.code, err, field) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            message = f"airflow-mesos at {base}: {method} {path} failed: {reason}"
            if isinstance(reason, (ConnectionRefusedError, socket.gaierror)):
                raise _NeverSent(message) from None
            raise DaemonUnavailable(message) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise DaemonUnavailable(
                f"airflow-mesos at {base}: {method} {path} answered with non-JSON data"
            ) from None

    # -- API ------------------------------------------------------------------------------

    def submit(self, specs: List[Mapping[str, Any]]) -> List[Dict[str, Any]]:
        """``POST /v1/tasks`` with ``{"tasks": specs}``; returns the created TaskViews in order."""
        answer = self._request("POST", "/v1/tasks", body={"tasks": list(specs)})
        tasks = (answer or {}).get("tasks")
        if not isinstance(tasks, list) or len(tasks) != len(specs):
            raise DaemonUnavailable(
                f"airflow-mesos at {self.api_url}: POST /v1/tasks answered without the {len(specs)} created task(s)"
            )
        return tasks

    def get(self, task_id: str) -> Optional[Dict[str, Any]]:
        """``GET /v1/tasks/{id}``; ``None`` when the daemon does not know the id."""
        try:
            return self._request("GET", "/v1/tasks/" + urllib.parse.quote(task_id, safe=""))
        except DaemonError as e:
            if e.status == 404:
                return None
            raise

    def list(
        self,
        states: Optional[Iterable[str]] = None,
        labels: Optional[Mapping[str, str]] = None,
        external_key: Optional[str] = None,
        since: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> Dict[str, Any]:
        """``GET /v1/tasks``; returns ``{"tasks": [...], "cursor": seq}``."""
        query: Dict[str, Any] = {}
        if states:
            query["state"] = ",".join(states)
        if labels:
            # One label filter per request is what the API documents; several are joined.
            query["label"] = ",".join(f"{k}={v}" for k, v in labels.items())
        if external_key is not None:
            query["external_key"] = external_key
        if since is not None:
            query["since"] = since
        if limit is not None:
            query["limit"] = limit
        return self._request("GET", "/v1/tasks", query=query)

    def events(self, since: Optional[int] = None, limit: int = 500, wait: float = 0) -> Dict[str, Any]:
        """``GET /v1/events``; returns ``{"events": [...], "cursor": seq}``.

        ``wait`` > 0 long-polls up to that many seconds when no event is newer than ``since``.
        """
        query: Dict[str, Any] = {"limit": limit}
        if since is not None:
            query["since"] = since
        if wait:
            query["wait"] = wait
        return self._request("GET", "/v1/events", query=query, timeout=self.timeout + float(wait or 0))

    def head_cursor(self) -> int:
        """The seq of the newest event (0 when there is none), found with O(log n) probes.

        ``GET /v1/events?since=p&limit=1`` answers "is there an event after p?"; the answer is
        monotone in p, so an exponential then binary search finds the head without reading the
        history.
        """

        def after(p: int) -> bool:
            return bool(self.events(since=p, limit=1).get("events"))

        if not after(0):
            return 0
        lo, step = 0, 1  # invariant: an event after lo, none after hi
        hi = lo + step
        while after(hi):
            lo, step = hi, step * 2
            hi = lo + step
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if after(mid):
                lo = mid
            else:
                hi = mid
        return hi

    def kill(self, task_id: str) -> Optional[Dict[str, Any]]:
        """``POST /v1/tasks/{id}/kill``; ``None`` when the task already ended (409) or is unknown (404)."""
        try:
            return self._request("POST", "/v1/tasks/" + urllib.parse.quote(task_id, safe="") + "/kill")
        except DaemonError as e:
            if e.status in (404, 409):
                return None
            raise

    def logs(self, task_id: str, stream: str = "stdout", offset: int = 0, length: Optional[int] = None) -> Dict[str, Any]:
        """``GET /v1/tasks/{id}/logs``; returns ``{"data", "offset", "next_offset", "terminal", ...}``."""
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"stream must be stdout or stderr, got {stream!r}")
        query: Dict[str, Any] = {"stream": stream, "offset": offset}
        if length is not None:
            query["length"] = length
        return self._request("GET", "/v1/tasks/" + urllib.parse.quote(task_id, safe="") + "/logs", query=query)


def _error_text(raw: bytes, status: int):
    try:
        body = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()[:200]
        return (text or f"HTTP {status}"), None
    if isinstance(body, dict):
        return str(body.get("error") or f"HTTP {status}"), body.get("field")
    return f"HTTP {status}", None
