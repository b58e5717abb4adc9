"""The one place where the server extension turns an exception into an HTTP status and a JSON body.

::

    OutsideRootError (UsageError)     403  a path, or a run's recorded notebook, outside the server root
    UsageError, ConfigError           400  a parameter or the body is missing or malformed, or a run
                                           id prefix matches several runs (the message names them)
    RunNotFoundError                  404  no such run in the store the request resolves to
    NotFoundError                     404  no such job, or the run lacks the artifact asked for
    PendingUploadError (StoreError)   409  the run is still in the local spool (diff with a server run,
                                           replay): `nbtrack sync` uploads it
    StoreError                        502  the MLflow store failed or cannot be reached
    SnapshotError, CannotReplay       409  the run exists but has no usable snapshot / cannot be replayed
    TooManyJobsError                  429  too many replays queued, or the server is stopping
    any other NbtrackError            500  its one-line message
    anything else                     500  a fixed one-line message; the traceback goes to the server log
    tornado HTTPError (403 auth, ...) its own status, ``error: "HTTPError"``

The body is ``{"error": <family>, "message": <one line>, "exit_code": <the CLI's code>}``
(``exit_code`` only for nbtrack's own errors). A traceback is never sent, nor the HTTP library's
account of a failed connection (``HTTPConnectionPool(...)``, urllib3's objects): :func:`plain` says
"the tracking server X is unreachable (connection refused)" instead.
"""

from __future__ import annotations

import re
from http.client import responses
from typing import Any

from tornado.web import HTTPError

from nbtrack.errors import (
    CannotReplay,
    ConfigError,
    NbtrackError,
    RunNotFoundError,
    SnapshotError,
    StoreError,
    UsageError,
)
from nbtrack.runs.service import PendingUploadError


class OutsideRootError(UsageError):
    """A path the request names, or a run's recorded notebook, lies outside the server's root."""


class NotFoundError(NbtrackError):
    """A job, or the artifact of a run the request asks for, does not exist."""


class TooManyJobsError(NbtrackError):
    """More replay jobs are queued or running than the server keeps, or the server is stopping."""


#: First match wins: subclasses come before their families.
STATUS: tuple[tuple[type[NbtrackError], int], ...] = (
    (OutsideRootError, 403),
    (RunNotFoundError, 404),
    (NotFoundError, 404),
    (TooManyJobsError, 429),
    (PendingUploadError, 409),
    (StoreError, 502),
    (UsageError, 400),
    (ConfigError, 400),
    (SnapshotError, 409),
    (CannotReplay, 409),
    (NbtrackError, 500),
)


#: What requests/urllib3 put in a failed call's message; none of it helps a person.
_LIBRARY_NOISE = re.compile(
    r"HTTPS?ConnectionPool|urllib3|Max retries exceeded|NewConnectionError|ConnectTimeout|ReadTimeout"
    r"|Caused by|Traceback"
)
_API_REQUEST = re.compile(r"API request to (?P<url>https?://[^\s/]+)\S*")
_REASONS = (
    (re.compile(r"Connection refused", re.I), "connection refused"),
    (re.compile(r"timed out|timeout", re.I), "no reply in time"),
    (re.compile(r"Name or service not known|nodename nor servname|getaddrinfo failed", re.I), "unknown host"),
    (re.compile(r"No route to host", re.I), "no route to host"),
    (re.compile(r"Connection reset", re.I), "connection reset"),
    (re.compile(r"certificate verify failed|SSLError", re.I), "TLS certificate not trusted"),
)


def _one_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:1000]


def plain(text: str) -> str:
    """One line of ``text`` for a person: a failed HTTP call to the tracking server becomes
    "<what>: the tracking server <url> is unreachable (<reason>); ...", without the HTTP library's
    internals; any other text is kept (its first line).

    Example:
        >>> plain("searching runs: API request to http://h:5000/api/2.0/mlflow/runs/search failed with "
        ...       "exception HTTPConnectionPool(host='h', port=5000): Max retries exceeded (Caused by "
        ...       "NewConnectionError('...: [Errno 111] Connection refused'))")
        'searching runs: the tracking server http://h:5000 is unreachable (connection refused); \
start it or check `tracking_uri`'
    """
    line = _one_line(text)
    found = unreachable_server(line)
    if found is None:
        return line
    what, sep, _rest = line.partition(": ")
    prefix = f"{what}: " if sep and len(what) < 80 and not _LIBRARY_NOISE.search(what) else ""
    server, reason = found
    return f"{prefix}{server} is unreachable ({reason}); start it or check `tracking_uri`"


def unreachable_server(text: str) -> tuple[str, str] | None:
    """("the tracking server URL", a short reason) when ``text`` is a failed HTTP call's account,
    else None.

    Example:
        >>> unreachable_server("API request to http://h:5000/api failed: HTTPConnectionPool(...) refused")
        ('the tracking server http://h:5000', 'no connection')
    """
    if not _LIBRARY_NOISE.search(text):
        return None
    api = _API_REQUEST.search(text)
    server = f"the tracking server {api.group('url')}" if api else "the tracking server"
    reason = next((label for pattern, label in _REASONS if pattern.search(text)), "no connection")
    return server, reason


def error_reply(exc: BaseException | None, status: int) -> tuple[int, dict[str, Any]]:
    """The status and JSON body for ``exc`` (``status`` is tornado's, used for its own HTTP errors).

    Example:
        >>> error_reply(RunNotFoundError("run 3f2a not found"), 500)
        (404, {'error': 'RunNotFoundError', 'message': 'run 3f2a not found', 'exit_code': 15})
    """
    if isinstance(exc, NbtrackError):
        code = next(code for family, code in STATUS if isinstance(exc, family))
        message = plain(str(exc)) or type(exc).__name__
        return code, {"error": type(exc).__name__, "message": message, "exit_code": exc.exit_code}
    if isinstance(exc, HTTPError):
        reason = exc.reason or responses.get(exc.status_code, "HTTP error")
        message = _one_line(
            exc.log_message % exc.args if exc.log_message and exc.args else exc.log_message or ""
        )
        return exc.status_code, {"error": "HTTPError", "message": message or reason}
    if exc is None:
        return status, {"error": "HTTPError", "message": responses.get(status, "HTTP error")}
    return 500, {
        "error": "InternalError",
        "message": f"unexpected {type(exc).__name__} in nbtrack's server extension; see the server log",
    }
