"""The MLflow adapter: the only module that talks to MLflow's client API.

The default store is an embedded SQLite database per project (``<project root>/.nbtrack/mlflow.db``,
artifacts beside it), the same one for the magics, the CLI and the server, rather than MLflow's bare
default, which is relative to the current directory. ``MLFLOW_TRACKING_URI`` (or
``NbtrackConfig.tracking_uri``) points nbtrack at any MLflow store instead, a server included.
MLflow errors are translated into :mod:`nbtrack.errors` here, at the boundary.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nbtrack.errors import ConfigError, RunNotFoundError, SnapshotError, StoreError
from nbtrack.models import RunRecord, Snapshot
from nbtrack.redact import strip_url_credentials
from nbtrack.store.sqlite import is_locked_error, retry_locked

#: Artifacts nbtrack writes live under this folder of a run.
ARTIFACT_DIR = "nbtrack"
_KNOWN_SCHEMES = {"", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks"}


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


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn MLflow and connection errors into one-line :class:`StoreError`s."""
    from mlflow.exceptions import MlflowException  # heavy; only once a run is being logged

    from nbtrack.redact import redact_text

    try:
        yield
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        # (MLflow quotes the request URL, credentials included)
        message = redact_text(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        bad_id = code == "INVALID_PARAMETER_VALUE" and "run_id" in message.lower()
        if code == "RESOURCE_DOES_NOT_EXIST" or "not found" in message.lower() or bad_id:
            raise RunNotFoundError(f"{what}: {message}; list runs with `nbtrack runs`") from exc
        raise StoreError(f"{what}: {message}") from exc
    except (ConnectionError, OSError) as exc:
        reason = redact_text(str(exc))
        raise StoreError(f"{what}: {reason}; check that the tracking server is reachable") from exc


def to_record(run: Any) -> RunRecord:
    """An MLflow ``Run`` as nbtrack's :class:`RunRecord` (the boundary: no MLflow object leaves)."""
    info, data = run.info, run.data
    metric_objs = getattr(data, "_metric_objs", None) or []
    return RunRecord(
        run_id=str(info.run_id),
        name=info.run_name,
        experiment_id=str(info.experiment_id),
        status=str(info.status),
        start_time=info.start_time,
        end_time=info.end_time,
        artifact_uri=info.artifact_uri or "",
        tags=dict(data.tags),
        params=dict(data.params),
        metrics=dict(data.metrics),
        last_metric_ms=max((int(m.timestamp) for m in metric_objs), default=None),
    )


class MlflowStore:
    """One MLflow tracking store (embedded SQLite or a server).

    Example:
        >>> store = MlflowStore.for_project(Path("."), NbtrackConfig())  # doctest: +SKIP
        >>> store.search_runs(notebook="train.ipynb")  # doctest: +SKIP
    """

    def __init__(self, uri: str, *, artifact_root: Path | None = None, timeout: float = 5.0) -> None:
        scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
        if scheme not in _KNOWN_SCHEMES:
            raise ConfigError(
                f"tracking URI {strip_url_credentials(uri)!r} has an unknown scheme {scheme!r}; use "
                "sqlite:///PATH, http(s)://HOST, postgresql://... or unset MLFLOW_TRACKING_URI"
            )
        self.uri = uri
        self.artifact_root = artifact_root
        #: Seconds one call to a tracking server may take (``NbtrackConfig.tracking_timeout``).
        self.timeout = timeout
        self._client: Any = None
        #: The :class:`~nbtrack.store.spool.Spool` this store is the local store of, if it is one.
        self.spool: Any = None

    @classmethod
    def for_project(cls, project_root: Path, config: Any) -> MlflowStore:
        """The configured store, else the project's embedded one."""
        if config.tracking_uri:
            return cls(config.tracking_uri, timeout=config.tracking_timeout)
        uri, folder = embedded_uri(project_root, config.store_dir)
        return cls(uri, artifact_root=folder / "artifacts")

    @property
    def display_uri(self) -> str:
        return strip_url_credentials(self.uri)

    @property
    def is_server(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """MLflow errors as :class:`StoreError`; a server's calls bounded by ``timeout`` (MLflow's
        own retries wait ~4 minutes for a dead server)."""
        from nbtrack.store.http import bounded

        with translate_errors(what), bounded(self.timeout) if self.is_server else contextlib.nullcontext():
            yield

    @property
    def client(self) -> Any:
        if self._client is None:
            from nbtrack.store.sqlite import open_client

            # A SQLite store is created and migrated under a file lock (kernels starting together).
            self._client = open_client(self.uri)
        return self._client

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
        import mlflow

        with self._guard(f"ending run {run_id}"):
            active = mlflow.active_run()
            if active is not None and active.info.run_id == run_id:
                try:
                    mlflow.end_run(status=status)  # leaves the fluent API's run stack, then ends it
                    return
                except Exception as exc:
                    if not is_locked_error(exc):
                        raise
            # (end_run has already left the stack when its write found the database locked)
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

    # --- reading ---------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord:
        with self._guard(f"run {run_id}"):
            return to_record(self.client.get_run(run_id))

    def load_snapshot(self, run_id: str) -> Snapshot:
        """Read a run's ``nbtrack/snapshot.json``."""
        run = self.get_run(run_id)  # a clear RunNotFoundError before any artifact error
        text = self.read_artifact(run_id, "snapshot.json")
        if text is None and "nbtrack.schema_version" in run.tags:
            raise SnapshotError(
                f"run {run_id} was tracked by nbtrack but its artifacts are missing from "
                f"{strip_url_credentials(run.artifact_uri)}; restore them from a backup or "
                "record the run again"
            )
        if text is None:
            raise SnapshotError(
                f"run {run_id} has no {ARTIFACT_DIR}/snapshot.json; it was not tracked by nbtrack "
                "or its artifacts were deleted"
            )
        return Snapshot.from_json(text, source=f"run {run_id} snapshot.json")

    def read_artifact(self, run_id: str, name: str) -> str | None:
        """Text of ``nbtrack/<name>`` of a run, or None when it is missing."""
        data = self.read_artifact_bytes(run_id, name)
        return None if data is None else data.decode("utf-8", "replace")

    def read_artifact_bytes(self, run_id: str, name: str) -> bytes | None:
        """Bytes of ``nbtrack/<name>`` of a run (a binary patch stays intact), or None when missing."""
        from mlflow.artifacts import download_artifacts

        # MLflow draws a progress bar per download; reading one small file (CLI, server) needs none.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

        with tempfile.TemporaryDirectory(prefix="nbtrack-") as tmp:
            try:
                self.client  # noqa: B018 - opens the store safely before MLflow's own lookup
                with self._guard(f"reading {name} of run {run_id}"):
                    path = download_artifacts(
                        run_id=run_id,
                        artifact_path=f"{ARTIFACT_DIR}/{name}",
                        dst_path=tmp,
                        tracking_uri=self.uri,
                    )
            except Exception:  # noqa: BLE001 - missing artifact: caller decides
                return None
            return Path(path).read_bytes()

    def list_artifacts(self, run_id: str, limit: int = 500) -> list[str]:
        """Paths of a run's artifact files (walked breadth-first, at most ``limit``)."""
        with self._guard(f"listing artifacts of run {run_id}"):
            found: list[str] = []
            folders: list[str | None] = [None]
            while folders and len(found) < limit:
                for info in self.client.list_artifacts(run_id, folders.pop(0)):
                    if info.is_dir:
                        folders.append(info.path)
                    else:
                        found.append(info.path)
            return sorted(found[:limit])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        run_tags = [RunTag(k, v[:8000]) for k, v in tags.items()]
        with self._guard(f"tagging run {run_id}"):
            retry_locked(lambda: self.client.log_batch(run_id, tags=run_tags), f"tagging run {run_id}")

    def search_runs(
        self,
        *,
        notebook: str | None = None,
        experiment: str | None = None,
        max_results: int = 100,
        page_token: str | None = None,
        tags: dict[str, str] | None = None,
        status: str | None = None,
        experiment_ids: list[str] | None = None,
    ) -> tuple[list[RunRecord], str | None]:
        """Runs tracked by nbtrack, newest first, filtered server-side (never a scan of all runs).

        ``experiment_ids`` (instead of ``experiment``'s name, or all active experiments) saves a query.
        """
        from mlflow.entities import ViewType

        with self._guard("searching runs"):
            if experiment_ids is not None:
                ids = list(experiment_ids)
            elif experiment:
                exp = self.client.get_experiment_by_name(experiment)
                if exp is None:
                    return [], None
                ids = [exp.experiment_id]
            else:
                ids = [
                    e.experiment_id for e in self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
                ]
            if not ids:
                return [], None
            filters = ["tags.`nbtrack.schema_version` != ''"]
            if status:
                filters.append(f"attributes.status = '{status}'")
            wanted = {**(tags or {}), **({"mlflow.source.name": notebook} if notebook else {})}
            for key, value in wanted.items():
                if "'" in value or "`" in key:
                    raise ConfigError(f"{key}={value!r} contains a quote; MLflow's search cannot match it")
                filters.append(f"tags.`{key}` = '{value}'")
            page = self.client.search_runs(
                ids,
                filter_string=" and ".join(filters),
                max_results=max_results,
                order_by=["attributes.start_time DESC"],
                page_token=page_token,
            )
            return [to_record(r) for r in page], page.token

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
