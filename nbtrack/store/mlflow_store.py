"""The MLflow adapter: one tracking store, written through MLflow's client API.

The default store is an embedded SQLite database per project (``<project root>/.nbtrack/mlflow.db``,
artifacts beside it), the same one for the magics, the CLI and the server, rather than MLflow's bare
default, which is relative to the current directory. ``MLFLOW_TRACKING_URI`` (or
``NbtrackConfig.tracking_uri``) points nbtrack at any MLflow store instead, a server included.
Reads live in :mod:`nbtrack.store.reading` (an embedded store's are answered without importing
MLflow); MLflow errors are translated into :mod:`nbtrack.errors` there, at the boundary.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from nbtrack.errors import StoreError
from nbtrack.models import RunRecord
from nbtrack.store.reading import ARTIFACT_DIR, StoreReads, to_record, translate_errors
from nbtrack.store.sqlite import is_locked_error, retry_locked

__all__ = ["ARTIFACT_DIR", "MlflowStore", "embedded_uri", "to_record", "translate_errors"]


def embedded_uri(project_root: Path, store_dir: str = ".nbtrack", *, create: bool = True) -> tuple[str, Path]:
    """The embedded store's tracking URI and folder for a project; creates the folder.

    The folder gets a ``.gitignore`` of ``*`` so the store never shows up as untracked code.
    ``create=False`` only names them (readers that must not create a store by looking).
    """
    folder = (project_root / store_dir).resolve()
    if not create:
        return f"sqlite:///{folder / 'mlflow.db'}", folder
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# nbtrack's embedded MLflow store\n*\n")
    return f"sqlite:///{folder / 'mlflow.db'}", folder


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
        with self._guard(f"experiment {name!r}"):
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
        with self._guard("starting the MLflow run"):
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

        with self._guard(f"ending run {run_id}"):
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

        with self._guard(f"logging params of run {run_id}"):
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
        with self._guard(f"logging metrics of run {run_id}"):
            retry_locked(lambda: self.client.log_batch(run_id, metrics=batch), "logging metrics")

    def log_files(self, run_id: str, files: dict[str, bytes]) -> None:
        """Log ``files`` (name -> bytes) as artifacts under ``nbtrack/``, in one call."""
        if not files:
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

    def delete_run(self, run_id: str) -> None:
        """Move a run to MLflow's trash (hidden from every listing; ``mlflow gc`` purges it)."""
        with self._guard(f"deleting run {run_id}"):
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
        with self._guard(f"logging datasets of run {run_id}"):
            retry_locked(lambda: self.client.log_inputs(run_id, datasets=inputs), "logging datasets")

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        run_tags = [RunTag(k, v[:8000]) for k, v in tags.items()]
        with self._guard(f"tagging run {run_id}"):
            retry_locked(lambda: self.client.log_batch(run_id, tags=run_tags), f"tagging run {run_id}")

    def mark_killed(self, run_id: str, end_time_ms: int, reason: str) -> None:
        """End a run whose kernel died: ``KILLED`` at ``end_time_ms``, with ``nbtrack.killed_reason``.

        The tag goes first: a process dying between the two leaves a RUNNING run the next look ends.
        """
        from mlflow.entities import RunTag

        with self._guard(f"ending orphaned run {run_id}"):
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
