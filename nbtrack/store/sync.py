"""Upload spooled runs to their tracking server: in the background after ``%track stop``, by ``nbtrack sync``.

Uploading one run is idempotent and resumable: under a lock per run (two uploaders never copy the same
run at once), the server run is found by its ``nbtrack.spool_run_id`` tag or created with it, its id is
remembered in the spool, then params, tags, the metric histories, dataset inputs and every artifact are
copied (and its MLflow 3 logged models: :mod:`nbtrack.store.sync_models`), what the server already has
is skipped, the run is ended with its status and end time; only then is the spool run marked
``uploaded``. A crash (or a server dying) anywhere in between leaves the run pending; the next upload
resumes it, with no duplicate run. Until then the server copy carries :data:`UPLOAD_PENDING` (which
host's spool holds the rest), so that listings and replay say "pending upload, run `nbtrack sync`"
instead of "artifacts missing" (:func:`~nbtrack.store.spool.pending_upload_message`). Artifacts that
fail validation (:meth:`Spool.check_artifacts`: a notebook or snapshot that does not parse, a size other
than the one recorded) are never uploaded: the run stays pending with the reason.

Threads: the uploader runs on a thread of its own in a kernel, where the user's code imports MLflow
too. Python's per-module import locks turn two threads importing MLflow's circular package at once
into ``partially initialized module 'mlflow.tracking'`` (or a protobuf ``Couldn't build proto
file``), so :func:`preload` imports everything an upload needs in the calling (main) thread before
the uploader thread starts, and the thread itself imports nothing new.

Example:
    >>> report = sync(Spool.for_server(uri, config), MlflowStore(uri))  # doctest: +SKIP
    >>> report.uploaded  # doctest: +SKIP
    [('0f3c...', '9a41...')]
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nbtrack.errors import NbtrackError, StoreError
from nbtrack.store.orphans import hostname
from nbtrack.store.spool import MANIFEST, UPLOAD_PENDING, Spool, artifact_folder
from nbtrack.store.sync_models import MODEL_MODULES, copy_logged_models
from nbtrack.tags import (
    LAST_ERROR,
    OWNER_PREFIX,
    PENDING,
    RUN_NAME,
    SERVER_RUN_ID,
    SPOOL_ONLY,
    SPOOL_RUN_ID,
    SYNC_STATE,
    UPLOADED,
)

log = logging.getLogger("nbtrack.store.sync")

#: MLflow's log_batch limits.
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS = 1000, 100, 100
#: Seconds an uploader waits for another one that is uploading the same run.
LOCK_TIMEOUT = 600.0
#: What an upload imports (MLflow's client, its REST and artifact stores, the spool's store); see
#: :func:`preload`.
_UPLOAD_MODULES = (
    "filelock",
    "mlflow",
    "mlflow.entities",
    "mlflow.exceptions",
    "mlflow.tracking",
    "mlflow.tracking.fluent",
    "mlflow.tracking._tracking_service.utils",
    "mlflow.tracking.request_header.registry",
    "mlflow.store.tracking.rest_store",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.artifact.artifact_repository_registry",
    "mlflow.store.artifact.mlflow_artifacts_repo",
    "mlflow.store.artifact.http_artifact_repo",
    "mlflow.store.artifact.local_artifact_repo",
    "mlflow.utils.rest_utils",
    "mlflow.artifacts",
    "nbtrack.redact",
    "nbtrack.store.mlflow_store",
    "nbtrack.store.http",
    *MODEL_MODULES,
)
_preloaded = False
#: Test hook: ``NBTRACK_SYNC_FAULT=<stage>`` ends the process abruptly once ``stage`` is done,
#: which is how the tests crash an upload halfway (a real process death at a chosen point);
#: ``<stage>+hang`` blocks the upload there instead (the kernel then exits while its upload runs).
FAULT_ENV = "NBTRACK_SYNC_FAULT"


@dataclass
class SyncReport:
    uploaded: list[tuple[str, str]] = field(default_factory=list)  # (spool run id, server run id)
    already: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (spool run id, why)
    running: list[str] = field(default_factory=list)  # still being tracked: uploaded once ended

    def to_dict(self) -> dict[str, Any]:
        return {
            "uploaded": [{"run_id": a, "server_run_id": b} for a, b in self.uploaded],
            "already_uploaded": [{"run_id": a, "server_run_id": b} for a, b in self.already],
            "failed": [{"run_id": a, "reason": b} for a, b in self.failed],
            "running": self.running,
        }


def preload() -> None:
    """Import, in the calling thread, every module an upload uses; call it before starting a thread
    that uploads (Python's import of MLflow is not safe from two threads at once: see the module's
    docstring). Idempotent and cheap once done.

    Example:
        >>> preload()  # doctest: +SKIP
        >>> "mlflow.tracking" in sys.modules  # doctest: +SKIP
        True
    """
    global _preloaded
    if _preloaded:
        return
    for name in _UPLOAD_MODULES:
        importlib.import_module(name)
    _preloaded = True


def _fault(stage: str) -> None:
    fault = os.environ.get(FAULT_ENV)
    if fault == stage:
        os._exit(75)
    if fault == f"{stage}+hang":  # a server that stops answering there: the process exits meanwhile
        threading.Event().wait()


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def sync(
    spool: Spool,
    target: Any,
    *,
    run_ids: list[str] | None = None,
    say: Callable[[str], None] = lambda _line: None,
) -> SyncReport:
    """Upload the spool's pending runs (or just ``run_ids``) to ``target``, oldest first."""
    report = SyncReport()
    if not spool.exists():
        return report
    runs = list(reversed(spool.pending()))
    if run_ids is not None:
        runs = [r for r in runs if r.run_id in set(run_ids)]
    for run in runs:
        run_id = run.run_id
        if run.status in ("RUNNING", "SCHEDULED"):
            report.running.append(run_id)
            continue
        try:
            server_id, copied = upload_run(spool, target, run_id)
        except Exception as exc:  # noqa: BLE001 - one run's failure must not stop the others
            from nbtrack.redact import redact_text

            why = str(exc) if isinstance(exc, NbtrackError) else f"{type(exc).__name__}: {exc}"
            why = redact_text(" ".join(why.split()))
            report.failed.append((run_id, why))
            _remember_error(spool, run_id, why)
            say(f"nbtrack sync: {run_id} not uploaded: {why}")
            continue
        (report.uploaded if copied else report.already).append((run_id, server_id))
        if copied:
            say(f"nbtrack sync: uploaded {run_id} as run {server_id} on {target.display_uri}")
    return report


def _remember_error(spool: Spool, run_id: str, reason: str) -> None:
    with contextlib.suppress(NbtrackError):
        spool.store.set_tags(run_id, {LAST_ERROR: reason[:500]})


def upload_run(spool: Spool, target: Any, run_id: str) -> tuple[str, bool]:
    """Upload one spool run; returns its server run id and whether anything was copied now."""
    from filelock import FileLock, Timeout

    # MLflow prints "View run ... at ..." to stdout when a server run ends: not into `--json` output
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    try:
        with FileLock(str(spool.lock_path(run_id)), timeout=LOCK_TIMEOUT):
            return _upload_locked(spool, target, run_id)
    except Timeout as exc:
        raise StoreError(
            f"run {run_id} is being uploaded by another process for over {LOCK_TIMEOUT:.0f} s; "
            "run `nbtrack sync` again later"
        ) from exc


def _upload_locked(spool: Spool, target: Any, run_id: str) -> tuple[str, bool]:
    from nbtrack.store.mlflow_store import translate_errors

    local = spool.store.client
    run = local.get_run(run_id)  # again, under the lock: another uploader may have finished it
    tags = run.data.tags
    if tags.get(SYNC_STATE) == UPLOADED and tags.get(SERVER_RUN_ID):
        return tags[SERVER_RUN_ID], False
    experiment = local.get_experiment(run.info.experiment_id).name
    spool.check_artifacts(run_id, artifact_folder(run.info.artifact_uri), tags)  # before any copy
    with translate_errors(f"uploading run {run_id} to {target.display_uri}"):
        server = target.client
        exp_id = target.experiment_id(experiment)
        server_id = tags.get(SERVER_RUN_ID) or _find_on_server(target, exp_id, run_id)
        if server_id is None:
            copied_tags = _server_tags(tags)
            copied_tags[SPOOL_RUN_ID] = run_id
            copied_tags[UPLOAD_PENDING] = hostname()
            created = server.create_run(
                exp_id, start_time=run.info.start_time, tags=copied_tags, run_name=run.info.run_name
            )
            server_id = created.info.run_id
            _fault("create")
        spool.store.set_tags(run_id, {SERVER_RUN_ID: server_id})
        remote = server.get_run(server_id)
        tagged = UPLOAD_PENDING in remote.data.tags
        if not tagged and remote.info.status == "RUNNING":  # made by an older nbtrack
            server.set_tag(server_id, UPLOAD_PENDING, hostname())
            tagged = True
        _copy_values(local, server, run, remote)
        _fault("values")
        _copy_inputs(server, run, remote)
        _copy_artifacts(server, run, server_id)
        copy_logged_models(local, server, run, server_id, exp_id)  # (MLflow 3 models: their own folders)
        _fault("artifacts")
        server.set_terminated(server_id, status=run.info.status, end_time=run.info.end_time)
        if tagged:
            server.delete_tag(server_id, UPLOAD_PENDING)  # after the end: never RUNNING untagged
        spool.store.set_tags(run_id, {SYNC_STATE: UPLOADED, LAST_ERROR: ""})
    return server_id, True


def _server_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags a server copy gets: not the spool's own, not the run name (set on creation), and not
    the owner's pid (on the server the run is ended by the upload, never by the orphan search)."""
    return {
        k: v
        for k, v in tags.items()
        if k not in SPOOL_ONLY and k not in (RUN_NAME, MANIFEST) and not k.startswith(OWNER_PREFIX)
    }


def _find_on_server(target: Any, exp_id: str, run_id: str) -> str | None:
    """The server run an earlier, interrupted upload of ``run_id`` created, if any."""
    runs, _ = target.search_runs(experiment_ids=[exp_id], tags={SPOOL_RUN_ID: run_id}, max_results=5)
    return runs[0].run_id if runs else None


def _copy_values(local: Any, server: Any, run: Any, remote: Any) -> None:
    """Params, tags and metric histories the server run lacks (MLflow limits each batch)."""
    from mlflow.entities import Param, RunTag

    have_params = remote.data.params
    params = [Param(k, v) for k, v in run.data.params.items() if k not in have_params]
    have_tags = remote.data.tags
    tags = [RunTag(k, v) for k, v in _server_tags(run.data.tags).items() if have_tags.get(k) != v]
    for chunk in _chunks(params, _MAX_PARAMS):
        server.log_batch(remote.info.run_id, params=chunk)
    for chunk in _chunks(tags, _MAX_TAGS):
        server.log_batch(remote.info.run_id, tags=chunk)
    for key in run.data.metrics:
        history = local.get_metric_history(run.info.run_id, key)
        if key in remote.data.metrics:
            there = server.get_metric_history(remote.info.run_id, key)
            seen = {(m.timestamp, m.step, m.value) for m in there}
            history = [m for m in history if (m.timestamp, m.step, m.value) not in seen]
        for chunk in _chunks(history, _MAX_METRICS):
            server.log_batch(remote.info.run_id, metrics=chunk)


def _copy_inputs(server: Any, run: Any, remote: Any) -> None:
    inputs = run.inputs.dataset_inputs if run.inputs else []
    there = remote.inputs.dataset_inputs if remote.inputs else []
    have = {(d.dataset.name, d.dataset.digest) for d in there}
    missing = [d for d in inputs if (d.dataset.name, d.dataset.digest) not in have]
    if missing:
        server.log_inputs(remote.info.run_id, datasets=missing)


def _copy_artifacts(server: Any, run: Any, server_id: str) -> None:
    """Every artifact file of the spool run (a re-upload overwrites the same paths)."""
    folder = artifact_folder(run.info.artifact_uri)
    if folder is None or not folder.is_dir() or not any(folder.iterdir()):
        return
    server.log_artifacts(server_id, str(folder))


def flush(store: Any, config: Any, tags: dict[str, str]) -> None:
    """Upload now the pending spool runs carrying ``tags`` (a replay's run, which the replayer
    reads right after its kernel exits). Nothing happens for a store that is not a server."""
    spool = Spool.of_store(store, config)
    if spool is None:
        return
    from nbtrack.store.http import bounded

    wanted = [r.run_id for r in spool.pending() if all(r.tags.get(k) == v for k, v in tags.items())]
    if wanted:
        with bounded(config.tracking_timeout):
            sync(spool, store, run_ids=wanted)


# --- in a kernel: one background uploader -----------------------------------------------------------
class Uploader:
    """Uploads a spool's pending runs on a background thread, one pass per :meth:`kick`.

    ``on_done(run_id, state, detail)`` is called for each run of a pass (state ``uploaded`` with the
    server run id, or ``pending`` with the reason), from the uploader's thread.
    """

    def __init__(self, spool: Spool, target: Any, timeout: float) -> None:
        self.spool = spool
        self.target = target
        self.timeout = timeout
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._listeners: dict[str, list[Callable[[str, str], None]]] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def kick(self, run_id: str | None = None, on_done: Callable[[str, str], None] | None = None) -> None:
        """Start a pass soon; ``on_done(state, detail)`` hears how ``run_id`` ended.

        Call it from the thread that imports (a kernel's main thread): the first call imports what
        the uploader thread will need (:func:`preload`) before that thread starts.
        """
        preload()
        with self._lock:
            if run_id and on_done:
                self._listeners.setdefault(run_id, []).append(on_done)
            self._idle.clear()
            self._wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="nbtrack-upload", daemon=True)
                self._thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait until no pass is running or due; True when idle."""
        return self._idle.wait(timeout)

    def _loop(self) -> None:
        from nbtrack.store.http import bounded

        while True:
            if not self._wake.wait(60):
                continue
            self._wake.clear()
            try:
                with bounded(self.timeout):
                    report = sync(self.spool, self.target)
            except Exception as exc:  # noqa: BLE001 - a background thread must not die silently
                log.warning("nbtrack: background upload failed: %s", exc)
                report = SyncReport()
            with self._lock:
                for run_id, server_id in report.uploaded + report.already:
                    for listener in self._listeners.pop(run_id, []):
                        _call(listener, UPLOADED, server_id)
                for run_id, reason in report.failed:
                    for listener in self._listeners.pop(run_id, []):
                        _call(listener, PENDING, reason)
                if not self._wake.is_set():
                    self._idle.set()


def _call(listener: Callable[[str, str], None], state: str, detail: str) -> None:
    try:
        listener(state, detail)
    except Exception:
        log.debug("nbtrack: upload listener failed", exc_info=True)


_uploaders: dict[str, Uploader] = {}


def uploader_for(spool: Spool, target: Any, timeout: float) -> Uploader:
    """This process's uploader for a spool (created on first use; waited for at exit)."""
    key = str(spool.folder)
    if key not in _uploaders:
        if not _uploaders:
            atexit.register(_finish_at_exit)
        _uploaders[key] = Uploader(spool, target, timeout)
    return _uploaders[key]


def wait_for_uploads(timeout: float) -> bool:
    """Wait (at most ``timeout`` s in all) until this process's uploaders are idle; True if they are."""
    deadline = time.monotonic() + timeout
    return all(u.wait(max(0.0, deadline - time.monotonic())) for u in list(_uploaders.values()))


def _finish_at_exit() -> None:
    """At interpreter exit, give running uploads a bounded moment; what is left stays pending."""
    deadline = time.monotonic() + max(uploader.timeout for uploader in _uploaders.values()) * 2
    for uploader in _uploaders.values():
        uploader.wait(max(0.0, deadline - time.monotonic()))
