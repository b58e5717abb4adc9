"""What the panel's API does, below the HTTP layer: one service object kept in the server settings.

The handlers parse a request and call one method here; the blocking ones (MLflow queries, artifact
downloads) run in the service's own thread pool (:meth:`NbtrackService.call`), never on the
server's event loop. Errors are nbtrack's own (:mod:`nbtrack.errors`, :mod:`nbtrack.server.errors`);
the handlers turn them into HTTP replies in one place.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import re
import shlex
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from nbtrack import __version__
from nbtrack.config import NbtrackConfig
from nbtrack.errors import NotebookError, UsageError
from nbtrack.replay.replayer import ENVS, MODES
from nbtrack.runs.ids import FULL_LENGTH, MIN_PREFIX, Found
from nbtrack.runs.service import Runs, Target
from nbtrack.server.errors import NotFoundError, OutsideRootError, plain, unreachable_server
from nbtrack.server.jobs import JobManager, ReplaySpec
from nbtrack.server.stores import StoreResolver

T = TypeVar("T")

_RUN_ID = re.compile(rf"^[0-9a-fA-F]{{{MIN_PREFIX},{FULL_LENGTH}}}$")
#: ``kind`` of ``GET /nbtrack/runs/{id}/notebook`` -> artifact under ``nbtrack/`` (replay: see below).
NOTEBOOK_ARTIFACTS = {
    "live": "notebook.live.ipynb",
    "saved": "notebook.ipynb",
    "history": "history.ipynb",
    "replay": "replay/output.ipynb",
}
NOTEBOOK_KINDS = ("best", *NOTEBOOK_ARTIFACTS)
_REPLAY_FIELDS = ("mode", "environment", "parameters")


def check_run_id(run_id: str, what: str = "run id") -> str:
    """``run_id`` when it looks like an MLflow run id or a prefix of one (6 to 32 hex digits), else a
    :class:`UsageError`.

    Example:
        >>> check_run_id("3f2a9c")
        '3f2a9c'
    """
    if not _RUN_ID.match(run_id or ""):
        raise UsageError(
            f"{what} {run_id!r} is not a run id or a prefix of one "
            f"({MIN_PREFIX} to {FULL_LENGTH} hexadecimal digits)"
        )
    return run_id


def replay_options(body: Any) -> tuple[str, str, dict[str, Any]]:
    """Mode, environment and parameter overrides from a ``ReplayRequest`` body (None: defaults)."""
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise UsageError("the replay request body must be a JSON object: {mode, environment, parameters}")
    unknown = sorted(set(body) - set(_REPLAY_FIELDS))
    if unknown:
        raise UsageError(f"unknown field(s) {', '.join(unknown)} in the replay request; use {_REPLAY_FIELDS}")
    mode, env = body.get("mode", "auto"), body.get("environment", "current")
    if mode not in MODES:
        raise UsageError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if env not in ENVS:
        raise UsageError(f"environment {env!r}: use one of {', '.join(ENVS)}")
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise UsageError(
            "parameters must be a JSON object of name -> value, like `nbtrack replay -p NAME VALUE`"
        )
    bad = [name for name in parameters if not name.isidentifier()]
    if bad:
        raise UsageError(f"parameter name(s) {', '.join(map(repr, bad))} are not Python identifiers")
    return mode, env, parameters


def outage_warning(error: str, pending: int) -> str:
    """The one line the panel shows above the pending runs when the store could not be searched.

    Example:
        >>> outage_warning("searching runs: API request to http://h:5000/x: urllib3 said", 2)[:60]
        'While searching runs, the tracking server http://h:5000 was '
    """
    runs = f"the {pending} run{'s' if pending != 1 else ''}"
    found = unreachable_server(error)
    if found is None:
        why = f"Searching runs failed ({plain(error)})"
    else:
        why = f"While searching runs, {found[0]} was unreachable ({found[1]})"
    return (
        f"{why}: only {runs} waiting in this machine's spool are listed; "
        "`nbtrack sync` uploads them once it is back"
    )


def plain_upload(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its upload error (a spooled run's last one: MLflow's raw message, urllib3's
    account included) said plainly, in ``upload_error`` and in ``upload_note``.

    Example:
        >>> plain_upload({"upload_error": None})
        {'upload_error': None}
    """
    raw = row.get("upload_error")
    if raw:
        row["upload_error"] = plain(raw)
        if row.get("upload_note"):
            row["upload_note"] = str(row["upload_note"]).replace(raw, row["upload_error"])
    return row


class NbtrackService:
    """The panel's verbs over one server root and one configuration.

    Example:
        >>> service = NbtrackService("/home/me/work", load_config(serverapp.config))  # doctest: +SKIP
        >>> service.list_runs("analysis/train.ipynb", None, 50, None)["runs"][0]["status"]  # doctest: +SKIP
        'FINISHED'
    """

    def __init__(
        self,
        root_dir: str,
        config: NbtrackConfig,
        *,
        notary: Any = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.config = config
        self.log = log or logging.getLogger("nbtrack.server")
        self.runs = Runs(config)
        self.resolver = StoreResolver(root_dir, self.runs)
        self.jobs = JobManager(
            max_running=config.max_replays, timeout=config.replay_timeout, log=self.log, config=config
        )
        self._notary = notary
        # Our own pool: a slow MLflow server must not starve the threads jupyter_server itself uses.
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="nbtrack")
        #: The extension's background warm-up (:func:`nbtrack.server.start_warming`), when there is one.
        self.warm: concurrent.futures.Future[float] | None = None

    async def call(self, fn: Callable[..., T], *args: Any, after_warm: bool = True) -> T:
        """Run a blocking method in the service's thread pool, once the warm-up's imports are done:
        two threads importing one package's modules in different orders can trip importlib's
        deadlock detection, which fails one of the imports. The event loop never waits.

        ``after_warm=False``: a method that imports nothing the warm-up does (the panel's first
        look: ``info`` and ``list_runs`` read SQLite or a server's REST API) runs at once; should it
        fall back on MLflow, the store waits for the warm-up there (``store.reading.BEFORE_MLFLOW``).
        """
        if after_warm and self.warm is not None and not self.warm.done():
            await asyncio.wrap_future(self.warm)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    # --- helpers -----------------------------------------------------------------------------------
    def _ui_base(self, target: Target) -> str | None:
        if self.config.mlflow_ui_url:
            return str(self.config.mlflow_ui_url).rstrip("/")
        if target.uri.startswith(("http://", "https://")):
            return target.display_uri.rstrip("/")
        return None

    def _browse(self, target: Target) -> dict[str, Any]:
        """How to see the target's runs in MLflow's own UI: its URL for a server store, else the
        command that serves the embedded store (``mlflow ui`` is MLflow's, installed with it)."""
        base = self._ui_base(target)
        command = None
        if base is None and target.database is not None:
            command = f"mlflow ui --backend-store-uri {shlex.quote(target.uri)}"
        return {"mlflow_ui": base, "mlflow_ui_command": command}

    def _run_url(self, found: Found) -> str | None:
        """The run in the MLflow UI; none while the run is still in the local spool."""
        run = found.run
        if found.pending:
            return None
        if self.config.mlflow_ui_url:
            base = str(self.config.mlflow_ui_url).rstrip("/")
            return f"{base}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
        return str(found.store.run_url(run)) if found.store.is_server else None

    # --- the verbs (blocking: call them through :meth:`call`) --------------------------------------
    def info(self, notebook: str | None) -> dict[str, Any]:
        target = self.resolver.target(notebook)
        return {
            "version": __version__,
            "store": target.display_uri,
            "store_exists": target.store is not None,
            "project": str(target.project),
            "notebook": target.notebook,
            "root_dir": str(self.resolver.root),
            **self._browse(target),
            "max_replays": self.jobs.max_running,
            "replay_timeout": self.jobs.timeout,
        }

    def list_runs(
        self, notebook: str | None, experiment: str | None, max_results: int, page_token: str | None
    ) -> dict[str, Any]:
        """One page of runs, newest first, filtered and paged by MLflow (never a scan); the first
        page starts with the local spool's pending runs. When the tracking server is unreachable the
        page holds only those, and ``warning`` says so in one line (never the HTTP library's dump)."""
        target = self.resolver.target(notebook)
        page = self.runs.list_runs(
            target,
            experiment=experiment or None,
            max_results=max_results,
            page_token=page_token or None,
            by="the JupyterLab panel",
        )
        for row in page.rows:
            plain_upload(row)
        reply: dict[str, Any] = {
            "runs": page.rows,
            "next_page_token": page.next_page_token,
            "store": target.display_uri,
            "notebook": target.notebook,
            **self._browse(target),
        }
        if page.warning is not None:
            reply["warning"] = outage_warning(page.warning, len(page.rows))
        return reply

    def run_detail(self, run_id: str, notebook: str | None) -> dict[str, Any]:
        """The ``RunDetail`` of a run: a full id, a prefix, or a spool id (pending runs too)."""
        from nbtrack.server.summary import run_detail

        check_run_id(run_id)
        found, snap = self.runs.show(self.resolver.target(notebook), run_id)
        artifacts = found.store.list_artifacts(found.run_id)
        detail = run_detail(found.run, snap, artifacts, self._run_url(found))
        # The Markdown note the panel renders (MLflow's own tag: its UI shows the same note).
        detail["note"] = found.run.tags.get("mlflow.note.content") or None
        return plain_upload(detail)

    def diff(self, a: str | None, b: str | None, notebook: str | None) -> dict[str, Any]:
        if not a or not b:
            raise UsageError("give both runs to compare: /nbtrack/diff?a=RUN_ID&b=RUN_ID")
        check_run_id(a, "a:")
        check_run_id(b, "b:")
        return self.runs.diff(self.resolver.target(notebook), a, b)

    def recorded_notebook(self, run_id: str, notebook: str | None, kind: str) -> tuple[str, str, Any]:
        """The file name to suggest, the kind found, and the notebook (an nbformat node, untrusted)."""
        import nbformat  # ~1.3 s to import; only once a recorded notebook is opened

        check_run_id(run_id)
        if kind not in NOTEBOOK_KINDS:
            raise UsageError(f"kind {kind!r}: use one of {', '.join(NOTEBOOK_KINDS)}")
        resolved = self.runs.resolve(self.resolver.target(notebook), run_id)
        store, run, run_id = resolved.store, resolved.run, resolved.run_id
        source_id, text, found = run_id, None, kind
        if kind == "replay":
            source_id, text = self._replay_output(store, run)
        else:
            for candidate in ("live", "saved", "history") if kind == "best" else (kind,):
                text = store.read_artifact(run_id, NOTEBOOK_ARTIFACTS[candidate])
                if text is not None:
                    found = candidate
                    break
        if text is None:
            what = "no recorded notebook" if kind == "best" else f"no {NOTEBOOK_ARTIFACTS[kind]} artifact"
            hint = "replay it first" if kind == "replay" else "it was tracked before nbtrack recorded it"
            raise NotFoundError(f"run {run_id} has {what} ({hint})")
        try:
            nb = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
        except Exception as exc:  # nbformat raises several unrelated types
            raise NotebookError(
                f"the recorded notebook of run {run_id} cannot be read ({type(exc).__name__}); "
                f"download it from the run's artifacts to inspect it"
            ) from exc
        stem = PurePosixPath(run.tags.get("mlflow.source.name") or "notebook.ipynb").stem
        label = f"replay-{source_id[:8]}" if found == "replay" else f"run-{run_id[:8]}"
        suffix = {"live": ".live", "history": ".history"}.get(found, "")
        return f"{stem}.{label}{suffix}.ipynb", found, nb

    def _replay_output(self, store: Any, run: Any) -> tuple[str, str | None]:
        """A replay run's executed notebook; for an original run, that of its newest replay."""
        run_id = run.run_id
        if "nbtrack.replay_of" in run.tags:
            return run_id, store.read_artifact(run_id, NOTEBOOK_ARTIFACTS["replay"])
        replays, _ = store.search_runs(tags={"nbtrack.replay_of": run_id}, max_results=10)
        for replay_run in replays:
            text = store.read_artifact(replay_run.run_id, NOTEBOOK_ARTIFACTS["replay"])
            if text is not None:
                return replay_run.run_id, text
        return run_id, None

    def trust(self, nb: Any) -> bool:
        """Mark the cells trusted when this Jupyter's notary knows the notebook's signature.

        Call on the event loop thread: the server's notary keeps one SQLite connection, made there.
        """
        if self._notary is None:
            from nbformat.sign import NotebookNotary

            self._notary = NotebookNotary()  # type: ignore[no-untyped-call]
        trusted = bool(self._notary.check_signature(nb))
        self._notary.mark_cells(nb, trusted)
        return trusted

    def replay_spec(self, run_id: str, notebook: str | None, body: Any) -> ReplaySpec:
        """Check a replay request: the run is in this store and was tracked under the server root."""
        check_run_id(run_id)
        mode, env, parameters = replay_options(body)
        target = self.resolver.target(notebook)
        found = self.runs.on_server(target, run_id, "replay")  # RunNotFoundError first
        run_id, store = found.run_id, found.store
        snap = store.load_snapshot(run_id)  # then SnapshotError
        recorded_notebook = snap.section("notebook").data.get("path")
        recorded_project = snap.run.get("project_root")
        place = recorded_notebook or recorded_project
        if not place:
            raise OutsideRootError(
                f"run {run_id} recorded neither its notebook nor its project, so this server cannot tell "
                f"whether it lies under its root; run `nbtrack replay {run_id}` where it was tracked"
            )
        if not self.resolver.contains(Path(place)):
            where = "its notebook is" if recorded_notebook else "its project is"
            raise OutsideRootError(
                f"run {run_id} cannot be replayed from this server: {where} outside the server's root; "
                f"run `nbtrack replay {run_id}` where it was tracked"
            )
        project = Path(recorded_project) if recorded_project and Path(recorded_project).is_dir() else None
        return ReplaySpec(
            run_id=run_id,
            project=project or target.project or self.resolver.root,
            tracking_uri=store.uri,
            mode=mode,
            env=env,
            parameters=parameters,
        )

    def close(self) -> None:
        """Stop the replays (signal only) and the thread pool; for process exit."""
        self.jobs.kill_all()
        self._executor.shutdown(wait=False, cancel_futures=True)
