"""The MLflow adapter: one tracking store, written through MLflow's client API.

The default store is an embedded SQLite database per project (``<project root>/.nbtrack/mlflow.db``,
artifacts beside it), the same one for the magics, the CLI and the server, rather than MLflow's bare
default, which is relative to the current directory. ``MLFLOW_TRACKING_URI`` (or
``NbtrackConfig.tracking_uri``) points nbtrack at any MLflow store instead, a server included.
Reads live in :mod:`nbtrack.store.reading` (an embedded store's are answered without importing
MLflow); MLflow errors are translated into :mod:`nbtrack.errors` there, at the boundary.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from nbtrack.errors import StoreError
from nbtrack.models import RunRecord
from nbtrack.store.read_sqlite import Unsupported
from nbtrack.store.reading import (
    ARTIFACT_DIR,
    UPLOADING_PREFIX,
    StoreReads,
    local_artifacts,
    to_record,
    translate_errors,
)
from nbtrack.store.sqlite import is_locked_error, retry_locked

__all__ = [
    "ARTIFACT_DIR",
    "MlflowStore",
    "embedded_uri",
    "fsync_folder",
    "to_record",
    "translate_errors",
    "write_atomic",
]

#: The process's umask, read once at import (reading it means setting it: not from a thread later).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
#: Test hook (:func:`_fault`): the stage at which this process kills itself.
FAULT_ENV = "NBTRACK_STORE_FAULT"


def embedded_uri(project_root: Path, store_dir: str = ".nbtrack", *, create: bool = True) -> tuple[str, Path]:
    """The embedded store's tracking URI and folder for a project; creates the folder.

    The folder gets a ``.gitignore`` of ``*`` so the store never shows up as untracked code.
    ``create=False`` only names them (readers that must not create a store by looking).
    """
    folder = (project_root / store_dir).resolve()
    if not create:
        return f"sqlite:///{folder / 'mlflow.db'}", folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# nbtrack's embedded MLflow store\n*\n")
    except OSError as exc:
        from nbtrack.store.sqlite import read_only_error

        raise read_only_error(folder / "mlflow.db", exc) from exc
    return f"sqlite:///{folder / 'mlflow.db'}", folder


def write_atomic(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write ``path`` whole or not at all: a hidden temporary file beside it (named as MLflow names
    an upload in progress, so listings skip it), then renamed over it. ``durable`` also ``fsync``-s
    the file before the rename and its folder after (the spool: a full disk fails the write, not a
    later upload).

    Example:
        >>> write_atomic(Path("/tmp/nbtrack-example/snapshot.json"), b"{}")  # doctest: +SKIP
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{UPLOADING_PREFIX}{path.name}.", dir=path.parent)
    tmp = Path(name)
    try:
        # No fsync: the rename is atomic for a killed process (the page cache survives it), ext4
        # flushes a file renamed over another (auto_da_alloc), and a spooled run is made durable
        # before its end commit (Spool.make_durable); six fsyncs would cost %track stop ~10-60 ms.
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # (mkstemp makes it 0600; MLflow's files follow the umask)
        _fault(f"rename:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a full disk: give back what the partial copy took
        raise
    if durable:
        fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """``fsync`` a folder, so that the names renamed or created in it last across a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fault(stage: str) -> None:
    """Test hook: ``NBTRACK_STORE_FAULT=<stage>`` (``rename:snapshot.json``: the new snapshot is
    written, not yet renamed over the old one) kills this process there (SIGKILL, as the OOM
    killer would), so a test can check what a crash at that moment leaves behind."""
    if os.environ.get(FAULT_ENV) == stage:
        os.kill(os.getpid(), signal.SIGKILL)


class MlflowStore(StoreReads):
    """One MLflow tracking store (embedded SQLite or a server): its reads (:class:`StoreReads`) and
    writes.

    Example:
        >>> store = MlflowStore.for_project(Path("."), NbtrackConfig())  # doctest: +SKIP
        >>> store.search_runs(notebook="train.ipynb")  # doctest: +SKIP
    """

    @classmethod
    def for_project(cls, project_root: Path, config: Any) -> MlflowStore:
        """The configured store, else the project's embedded one."""
        if config.tracking_uri:
            return cls(config.tracking_uri, timeout=config.tracking_timeout)
        uri, folder = embedded_uri(project_root, config.store_dir)
        return cls(uri, artifact_root=folder / "artifacts")

    # --- writing ---------------------------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        """The id of the named experiment, created (with artifacts beside the store) if needed."""
        with self._guard(f"experiment {name!r}", write=True):
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                if exp.lifecycle_stage == "deleted":
                    raise StoreError(
                        f"experiment {name!r} is deleted; restore it (mlflow experiments restore) "
                        "or pick another name with --experiment"
                    )
                return str(exp.experiment_id)
            location = self.artifact_root.as_uri() if self.artifact_root else None
            try:
                created = retry_locked(
                    lambda: self.client.create_experiment(name, artifact_location=location), name
                )
                return str(created)
            except Exception:
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                return str(exp.experiment_id)

    def start_active_run(self, experiment_id: str, run_name: str | None, tags: dict[str, str]) -> str:
        """Start the *active* MLflow run, so the user's own ``mlflow.log_*`` calls land in it."""
        import mlflow

        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        with self._guard("starting the MLflow run", write=True):
            self.client  # noqa: B018 - opens (creates, migrates) the store safely before the fluent API
            mlflow.set_tracking_uri(self.uri)
            active = mlflow.active_run()
            if active is not None:
                from nbtrack.errors import UsageError

                raise UsageError(
                    f"MLflow run {active.info.run_id} is already active; end it with "
                    "mlflow.end_run() before %track start"
                )
            run = retry_locked(
                lambda: mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags),
                "starting the MLflow run",
            )
            return str(run.info.run_id)

    def end_active_run(self, run_id: str, status: str) -> None:
        """End the tracked run: through MLflow's fluent API when it is the active run of this store,
        else (the notebook's own runs above it, or MLflow pointed at another store) taken off the
        fluent stack and ended through this store's client."""
        import mlflow

        from nbtrack.store.adopt import detach

        with self._guard(f"ending run {run_id}", write=True):
            active = mlflow.active_run()
            if active is not None and active.info.run_id == run_id and mlflow.get_tracking_uri() == self.uri:
                try:
                    mlflow.end_run(status=status)  # leaves the fluent API's run stack, then ends it
                    return
                except Exception as exc:
                    if not is_locked_error(exc):
                        raise
            # (end_run has already left the stack when its write found the database locked)
            detach(run_id)
            retry_locked(lambda: self.client.set_terminated(run_id, status=status), f"ending run {run_id}")

    def log_params_and_tags(
        self, run_id: str, params: dict[str, str], tags: dict[str, str], existing: dict[str, str]
    ) -> None:
        """Log in one batch; params the run already has (``existing``, logged by the user) are kept."""
        from mlflow.entities import Param, RunTag

        with self._guard(f"logging params of run {run_id}", write=True):
            new = [Param(k[:250], v[:6000]) for k, v in params.items() if k[:250] not in existing]
            run_tags = [RunTag(k, v[:8000]) for k, v in tags.items()]
            retry_locked(lambda: self.client.log_batch(run_id, params=new, tags=run_tags), "logging params")

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        """Log ``metrics`` (name -> value, step 0) in one batch."""
        if not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k[:250], float(v), now, 0) for k, v in metrics.items()]
        with self._guard(f"logging metrics of run {run_id}", write=True):
            retry_locked(lambda: self.client.log_batch(run_id, metrics=batch), "logging metrics")

    def log_files(self, run_id: str, files: dict[str, bytes]) -> None:
        """Log ``files`` (name -> bytes) as artifacts under ``nbtrack/``, in one call.

        An embedded store's artifacts are written in place, each atomically (:func:`write_atomic`):
        a kernel killed while ``%track stop`` rewrites ``snapshot.json`` leaves the start snapshot,
        never an empty or half-written file (MLflow's local repository copies over the old file).
        """
        if not files:
            return
        folder = self._local_artifacts(run_id)
        if folder is not None:
            try:
                for name, data in files.items():
                    write_atomic(folder / ARTIFACT_DIR / name, data)
            except OSError as exc:
                from nbtrack.store.sqlite import read_only_error

                db = self.reader.db if self.reader is not None else folder
                if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
                    raise read_only_error(db, exc) from exc
                raise StoreError(f"logging artifacts of run {run_id} into {folder}: {exc}") from exc
            return
        with (
            tempfile.TemporaryDirectory(prefix="nbtrack-") as tmp,
            self._guard(f"logging artifacts of run {run_id}"),
        ):
            for name, data in files.items():
                target = Path(tmp) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            self.client.log_artifacts(run_id, tmp, ARTIFACT_DIR)

    def _local_artifacts(self, run_id: str) -> Path | None:
        """The local artifact folder of a run of an embedded store, else None (MLflow writes)."""
        if self.reader is None:
            return None
        try:
            run = self._fast_run(run_id, f"logging artifacts of run {run_id}")
            return local_artifacts(run.artifact_uri) if run is not None else None
        except Unsupported:
            return None

    def delete_run(self, run_id: str) -> None:
        """Move a run to MLflow's trash (hidden from every listing; ``mlflow gc`` purges it)."""
        with self._guard(f"deleting run {run_id}", write=True):
            retry_locked(lambda: self.client.delete_run(run_id), f"deleting run {run_id}")

    def log_datasets(self, run_id: str, datasets: list[dict[str, str]]) -> None:
        """Log DVC outputs as MLflow dataset inputs (digest = the DVC hash), shown in MLflow's UI."""
        if not datasets:
            return
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [
            DatasetInput(
                Dataset(d["name"], d["digest"][:36], d["source_type"], d["source"]),
                [InputTag("mlflow.data.context", d.get("context", "dvc"))],
            )
            for d in datasets
        ]
        with self._guard(f"logging datasets of run {run_id}", write=True):
            retry_locked(lambda: self.client.log_inputs(run_id, datasets=inputs), "logging datasets")

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        run_tags = [RunTag(k, v[:8000]) for k, v in tags.items()]
        with self._guard(f"tagging run {run_id}", write=True):
            retry_locked(lambda: self.client.log_batch(run_id, tags=run_tags), f"tagging run {run_id}")

    def mark_killed(self, run_id: str, end_time_ms: int, reason: str) -> None:
        """End a run whose kernel died: ``KILLED`` at ``end_time_ms``, with ``nbtrack.killed_reason``.

        The tag goes first: a process dying between the two leaves a RUNNING run the next look ends.
        """
        from mlflow.entities import RunTag

        with self._guard(f"ending orphaned run {run_id}", write=True):
            retry_locked(
                lambda: self.client.log_batch(run_id, tags=[RunTag("nbtrack.killed_reason", reason[:8000])]),
                f"tagging run {run_id}",
            )
            retry_locked(
                lambda: self.client.set_terminated(run_id, status="KILLED", end_time=end_time_ms),
                f"ending run {run_id}",
            )

    def run_url(self, run: RunRecord) -> str:
        """Where a person sees the run: the server's page, or the command that opens the UI."""
        exp_id, run_id = run.experiment_id, run.run_id
        if self.is_server:
            return f"{self.display_uri.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"
        return f"mlflow ui --backend-store-uri {self.display_uri}  (then open run {run_id})"
