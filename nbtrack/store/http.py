"""Bounded calls to a tracking server.

MLflow retries a failing HTTP call 7 times with exponential back-off and waits up to 120 s for each
reply: a dead server holds a call for ~4 minutes (measured: 247 s). Its retry settings are only
environment variables (``MLFLOW_HTTP_REQUEST_*``), read at each call, so nbtrack bounds its own
calls by setting them where nbtrack owns the process (the CLI, the uploader, the server extension:
:func:`bound_process`) or around its own calls in a kernel, where the user's code also runs
(:func:`bounded`). A value the user set is always kept.

Example:
    >>> with bounded(2.0):
    ...     os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    '1'
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0  # blocks inside bounded(), all threads: the variables go when the last one leaves
_added: list[str] = []


def limits(timeout: float) -> dict[str, str]:
    """The MLflow settings that keep one call within about ``timeout`` seconds.

    One retry (a blip is ridden out) with a short back-off; each attempt waits at most half the
    bound for a reply.
    """
    return {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",  # an int for MLflow
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(timeout / 2))),
    }


def bound_process(timeout: float) -> None:
    """Bound every MLflow HTTP call of this process (one nbtrack owns), keeping the user's values."""
    for name, value in limits(timeout).items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def bounded(timeout: float) -> Iterator[None]:
    """Bound the MLflow HTTP calls made inside the block; the environment is restored after."""
    global _depth
    with _lock:
        if _depth == 0:
            _added[:] = [name for name in limits(timeout) if name not in os.environ]
            for name in _added:
                os.environ[name] = limits(timeout)[name]
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for name in _added:
                    os.environ.pop(name, None)


def unreachable(uri: str, timeout: float) -> str | None:
    """Why the tracking server at ``uri`` cannot take a run now, or None when it answers.

    Asks ``/health`` once, within ``timeout`` seconds. Any reply below 500 (even 401/403/404: a
    server is there) counts as reachable; a 5xx, a refused connection or no reply does not.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]  # urllib cannot send user:password@ (and none is needed)
    url = f"{parts.scheme}://{host}{parts.path.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            reply.read(64)
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}" if exc.code >= 500 else None
    except urllib.error.URLError as exc:
        return str(getattr(exc.reason, "strerror", None) or exc.reason)
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
