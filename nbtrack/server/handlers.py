"""The REST handlers behind the JupyterLab panel (the contract: ``openapi.yaml`` beside this file).

Thin: each verb reads its parameters, calls the :class:`~nbtrack.server.service.NbtrackService` kept
in the server settings (blocking work in its thread pool) and writes JSON. Every verb requires the
server's authentication (``@tornado.web.authenticated``: no or a wrong token is a 403) and passes
jupyter_server's authorizer (resource ``nbtrack``; a replay runs code, so it needs ``execute`` on
``kernels``). Errors of every kind become JSON in :meth:`NbtrackHandler.write_error`, through the
one table in :mod:`nbtrack.server.errors`.
"""

from __future__ import annotations

import json
import os
from types import TracebackType
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from nbtrack.errors import NbtrackError, UsageError
from nbtrack.server.errors import error_reply
from nbtrack.server.service import NbtrackService

AUTH_RESOURCE = "nbtrack"
# POSIX limits (Linux: 4096 and 255); a longer ``notebook=`` would fail inside a lookup.
_PATH_MAX = 4096
_NAME_MAX = 255
DEFAULT_MAX_RESULTS = 50
MAX_RESULTS = 1000


def max_results(raw: str | None) -> int:
    """The ``max_results`` query parameter: an integer from 1 to 1000 (default 50)."""
    if raw is None or raw == "":
        return DEFAULT_MAX_RESULTS
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"max_results={raw[:40]!r}: give an integer from 1 to {MAX_RESULTS}") from None
    if not 1 <= value <= MAX_RESULTS:
        raise UsageError(f"max_results={value}: give an integer from 1 to {MAX_RESULTS}")
    return value


def check_path_length(path: str, what: str = "notebook") -> str:
    """``path`` when the file system can name it, else a one-line :class:`UsageError` (a 400, not
    the ``OSError: File name too long`` a lookup would raise).

    Example:
        >>> check_path_length("analysis/train.ipynb")
        'analysis/train.ipynb'
        >>> check_path_length("x" * 300)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        nbtrack.errors.UsageError: notebook=...: a path component is longer than 255 bytes; ...
    """
    raw = os.fsencode(path)
    longest = max((len(part) for part in raw.split(b"/")), default=0)
    problem = None
    if len(raw) >= _PATH_MAX:
        problem = f"longer than the {_PATH_MAX} bytes a path may have"
    elif longest > _NAME_MAX:
        problem = f"a path component is longer than {_NAME_MAX} bytes"
    if problem:
        raise UsageError(
            f"{what}={path[:30]!r}… ({len(raw)} bytes): {problem}; "
            "give the notebook's path under the server root"
        )
    return path


def _outputs_option(body: Any) -> str:
    """Take ``outputs`` (check, report or ignore; default check) out of a replay request's body.

    Example:
        >>> body = {"mode": "auto", "outputs": "report"}
        >>> _outputs_option(body), body
        ('report', {'mode': 'auto'})
    """
    from nbtrack.replay.result import OUTPUT_MODES

    outputs = body.pop("outputs", "check") if isinstance(body, dict) else "check"
    if outputs not in OUTPUT_MODES:
        raise UsageError(f"outputs {outputs!r}: use one of {', '.join(OUTPUT_MODES)}")
    return str(outputs)


def _allow_uncommitted_option(body: Any) -> bool:
    """Take ``allow_uncommitted`` (a boolean, default false) out of a replay request's body.

    Example:
        >>> body = {"mode": "auto", "allow_uncommitted": True}
        >>> _allow_uncommitted_option(body), body
        (True, {'mode': 'auto'})
    """
    allow = body.pop("allow_uncommitted", False) if isinstance(body, dict) else False
    if not isinstance(allow, bool):
        raise UsageError(f"allow_uncommitted {allow!r}: give true or false")
    return allow


class NbtrackHandler(APIHandler):  # type: ignore[misc]
    """Base of the nbtrack handlers: the service, JSON replies, and the one error mapping."""

    auth_resource = AUTH_RESOURCE

    @property
    def service(self) -> NbtrackService:
        service: NbtrackService = self.settings["nbtrack"]
        return service

    def arg(self, name: str) -> str | None:
        value: str | None = self.get_query_argument(name, None)
        if name == "notebook" and value:
            check_path_length(value, name)
        return value

    def json_body(self, what: str, send: str) -> Any:
        """The request's JSON body (None when empty); a body that is not JSON is a one-line 400
        saying what ``what`` (a request) wants sent."""
        raw = self.request.body.strip()
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise UsageError(f"the {what} request body is not JSON; send {send}") from None

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as ``{"error", "message", "exit_code"}`` with the status of its family."""
        exc_info = kwargs.get("exc_info") or (None, None, None)
        status, body = error_reply(exc_info[1], status_code)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """nbtrack's own errors as one log line (4xx: a warning); anything else with its traceback."""
        if not isinstance(value, NbtrackError):
            super().log_exception(typ, value, tb)
            return
        status, body = error_reply(value, 500)
        summary = self._request_summary()
        if status >= 500:
            self.log.error("nbtrack: %d %s: %s", status, summary, body["message"], exc_info=value)
        else:
            self.log.warning("nbtrack: %d %s: %s", status, summary, body["message"])


class InfoHandler(NbtrackHandler):
    """``GET /nbtrack/info``: version, the store a notebook resolves to, the server root."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.service.call(self.service.info, self.arg("notebook"), after_warm=False))


class RunsHandler(NbtrackHandler):
    """``GET /nbtrack/runs``: one page of a notebook's runs, newest first."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        limit = max_results(self.arg("max_results"))
        page = await self.service.call(
            self.service.list_runs,
            self.arg("notebook"),
            self.arg("experiment"),
            limit,
            self.arg("page_token"),
            after_warm=False,
        )
        self.reply(page)


class RunHandler(NbtrackHandler):
    """``GET /nbtrack/runs/{run_id}``: the run's row and snapshot summary (by id, unique prefix, or
    the id of a run pending in the local spool)."""

    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.reply(await self.service.call(self.service.run_detail, run_id, self.arg("notebook")))


class DiffHandler(NbtrackHandler):
    """``GET /nbtrack/diff?a=&b=``: the structured diff of two runs."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(
            await self.service.call(self.service.diff, self.arg("a"), self.arg("b"), self.arg("notebook"))
        )


class ReplayHandler(NbtrackHandler):
    """``POST /nbtrack/runs/{run_id}/replay``: start a replay job; 202 with the job."""

    @tornado.web.authenticated
    @authorized(action="execute", resource="kernels")  # type: ignore[untyped-decorator]
    async def post(self, run_id: str) -> None:
        body = self.json_body("replay", "{mode, environment, parameters, outputs}")
        outputs = _outputs_option(body)
        allow_uncommitted = _allow_uncommitted_option(body)
        spec = await self.service.call(self.service.replay_spec, run_id, self.arg("notebook"), body)
        spec.outputs, spec.allow_uncommitted = outputs, allow_uncommitted
        job = self.service.jobs.submit(spec)
        self.set_header("Location", url_path_join(self.base_url, "nbtrack", "jobs", job.job_id))
        self.reply(job.to_dict(), 202)


class JobHandler(NbtrackHandler):
    """``GET /nbtrack/jobs/{job_id}``: a replay job's state, progress, verdict and report."""

    @tornado.web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        self.reply(self.service.jobs.get(job_id).to_dict())


class NotebookHandler(NbtrackHandler):
    """``GET /nbtrack/runs/{run_id}/notebook?kind=``: a recorded notebook, trusted when signed here."""

    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        kind = self.arg("kind") or "best"
        name, found, nb = await self.service.call(
            self.service.recorded_notebook, run_id, self.arg("notebook"), kind
        )
        trusted = self.service.trust(nb)  # on the loop thread, where the notary's database lives
        self.reply({"name": name, "kind": found, "trusted": trusted, "content": nb})


def route_table(base_url: str) -> list[tuple[str, type[NbtrackHandler]]]:
    """The URL patterns under the server's base URL."""
    run = r"(?P<run_id>[^/]+)"
    routes: list[tuple[str, type[NbtrackHandler]]] = [
        ("info", InfoHandler),
        ("runs", RunsHandler),
        (f"runs/{run}", RunHandler),
        (f"runs/{run}/replay", ReplayHandler),
        (f"runs/{run}/notebook", NotebookHandler),
        ("diff", DiffHandler),
        (r"jobs/(?P<job_id>[^/]+)", JobHandler),
    ]
    # The compare view's, run actions' and headless runs' routes live beside this module (one owner each).
    from nbtrack.server import action_handlers, compare_handlers, run_handlers

    routes += compare_handlers.routes() + action_handlers.routes() + run_handlers.routes()
    return [(url_path_join(base_url, "nbtrack", pattern), handler) for pattern, handler in routes]
