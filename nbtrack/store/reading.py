"""Reading runs from an MLflow store: the read half of :class:`~nbtrack.store.MlflowStore`.

Every read first tries the embedded store's fast path (:mod:`nbtrack.store.read_sqlite`: the SQLite
tables read directly, no ``import mlflow``; artifacts read from their local folder) and asks MLflow's
client when that path cannot answer exactly (a tracking server, an unverified schema revision, an
artifact URI that is no local folder, ...). Both paths return the same records and raise the same
one-line errors; MLflow errors are translated into :mod:`nbtrack.errors` here, at the boundary.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nbtrack.errors import ConfigError, NbtrackError, RunNotFoundError, SnapshotError, StoreError
from nbtrack.models import RunRecord, Snapshot
from nbtrack.redact import strip_url_credentials
from nbtrack.store.local_artifacts import UPLOADING_PREFIX, local_artifacts, local_listing, walk
from nbtrack.store.read_rest import RestReader
from nbtrack.store.read_sqlite import Filter, ReadMiss, SqliteReader, Unsupported

# (UPLOADING_PREFIX, local_artifacts, local_listing, walk: re-exported, the store's modules import them here)
__all__ = [
    "ARTIFACT_DIR", "BEFORE_MLFLOW", "SCHEMA_TAG", "UPLOADING_PREFIX", "StoreReads", "before_mlflow",
    "local_artifacts", "local_listing", "store_error", "to_record", "translate_errors", "walk",
]  # fmt: skip

log = logging.getLogger("nbtrack.store")

#: Artifacts nbtrack writes live under this folder of a run.
ARTIFACT_DIR = "nbtrack"
#: The tag every run nbtrack tracked carries (what a listing selects).
SCHEMA_TAG = "nbtrack.schema_version"
#: Files MLflow's local artifact repository is still writing (it hides them from listings).
#: Waits run before this process's MLflow calls through the store. The server extension adds its
#: warm-up's: a request read over REST needs no MLflow and does not wait, but one that falls back on
#: MLflow must not import it while the warm-up thread does (importlib's deadlock detection).
BEFORE_MLFLOW: list[Callable[[], object]] = []
_KNOWN_SCHEMES = {"", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks"}


def store_error(what: str, message: str, error_code: str = "") -> StoreError:
    """The one-line error of a failed store call, from MLflow's message and error code.

    Example:
        >>> store_error("run 0f3c", "Run with id=0f3c not found", "RESOURCE_DOES_NOT_EXIST")
        RunNotFoundError('run 0f3c: Run with id=0f3c not found; list runs with `nbtrack runs`')
    """
    from nbtrack.redact import redact_text

    message = redact_text((message.splitlines() or [""])[0])  # (MLflow quotes URLs, credentials included)
    bad_id = error_code == "INVALID_PARAMETER_VALUE" and "run_id" in message.lower()
    if error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in message.lower() or bad_id:
        return RunNotFoundError(f"{what}: {message}; list runs with `nbtrack runs`")
    return StoreError(f"{what}: {message}")


@contextlib.contextmanager
def translate_errors(what: str, db: Path | None = None) -> Iterator[None]:
    """Turn MLflow and connection errors into one-line :class:`StoreError`s; for an embedded store
    (``db``, its database file), SQLite's errors too: damaged, locked by another process, read-only.

    Example:
        >>> with translate_errors("run 0f3c"):  # doctest: +SKIP
        ...     client.get_run("0f3c")
        Traceback (most recent call last):
        RunNotFoundError: run 0f3c: Run with id=0f3c not found; list runs with `nbtrack runs`
    """
    before_mlflow()
    from mlflow.exceptions import MlflowException  # heavy; only once MLflow is asked

    from nbtrack.redact import redact_text
    from nbtrack.store.sqlite import read_only_error, sqlite_problem

    try:
        yield
    except NbtrackError:
        raise
    except MlflowException as exc:
        problem = sqlite_problem(db, exc) if db is not None else None
        if problem is not None:
            raise problem from exc
        text = str(exc) or type(exc).__name__
        raise store_error(what, text, getattr(exc, "error_code", "")) from exc
    except OSError as exc:
        if db is not None and (isinstance(exc, PermissionError) or exc.errno == errno.EROFS):
            raise read_only_error(db, exc) from exc
        reason = redact_text(str(exc))
        where = f"store {db}" if db is not None else "check that the tracking server is reachable"
        raise StoreError(f"{what}: {reason}; {where}") from exc
    except Exception as exc:
        problem = sqlite_problem(db, exc) if db is not None else None
        if problem is None:
            raise
        raise problem from exc


def before_mlflow() -> None:
    """Wait for what must happen before MLflow is used here (:data:`BEFORE_MLFLOW`)."""
    for wait in BEFORE_MLFLOW:
        wait()


def to_record(run: Any) -> RunRecord:
    """An MLflow ``Run`` as nbtrack's :class:`RunRecord` (the boundary: no MLflow object leaves).

    Example:
        >>> to_record(client.get_run("3f2a9c41e0b84d0f9b6a2c1d7e5f4a3b")).status  # doctest: +SKIP
        'FINISHED'
    """
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


class StoreReads:
    """What :class:`~nbtrack.store.MlflowStore` reads; the store's URI, client and error guard.

    Example:
        >>> store = MlflowStore("sqlite:////work/p/.nbtrack/mlflow.db")  # doctest: +SKIP
        >>> store.get_run("3f2a9c41e0b84d0f9b6a2c1d7e5f4a3b").status  # doctest: +SKIP
        'FINISHED'
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
        #: Reads an embedded store's tables without MLflow (None: every read asks MLflow's client).
        self.reader: SqliteReader | None = SqliteReader.for_uri(uri)
        #: Reads a tracking server's runs over its REST API without MLflow (None: not a server).
        self.rest: RestReader | None = RestReader.for_uri(uri, timeout)

    @property
    def display_uri(self) -> str:
        return strip_url_credentials(self.uri)

    @property
    def is_server(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    @contextlib.contextmanager
    def _guard(self, what: str, *, write: bool = False) -> Iterator[None]:
        """MLflow errors as :class:`StoreError`; a server's calls bounded by ``timeout`` (MLflow's
        own retries wait ~4 minutes for a dead server); an embedded store checked first (damaged,
        locked longer than ``NBTRACK_STORE_LOCK_TIMEOUT``, or read-only for a ``write``)."""
        from nbtrack.store.http import bounded
        from nbtrack.store.sqlite import check_store

        db = self.reader.db if self.reader is not None else None
        if db is not None:
            check_store(db, write=write)
        bound = bounded(self.timeout) if self.is_server else contextlib.nullcontext()
        with translate_errors(what, db), bound:
            yield

    @property
    def client(self) -> Any:
        if self._client is None:
            before_mlflow()
            from nbtrack.store.sqlite import open_client

            # A SQLite store is created and migrated under a file lock (kernels starting together).
            self._client = open_client(self.uri)
        return self._client

    def _fast_run(self, run_id: str, what: str) -> RunRecord | None:
        """The run read by the fast path; None when MLflow must be asked. An unknown id raises the
        error MLflow's answer would (``what`` names the call, as :meth:`_guard` does)."""
        reader = self.reader or self.rest
        if reader is None:
            return None
        try:
            return reader.get_run(run_id)
        except ReadMiss as miss:
            raise store_error(what, str(miss), miss.error_code) from None
        except Unsupported as why:
            log.debug("reading run %s through MLflow: %s", run_id, why)
            return None

    def get_run(self, run_id: str) -> RunRecord:
        fast = self._fast_run(run_id, f"run {run_id}")
        if fast is not None:
            return fast
        with self._guard(f"run {run_id}"):
            return to_record(self.client.get_run(run_id))

    def load_snapshot(self, run_id: str) -> Snapshot:
        """Read a run's ``nbtrack/snapshot.json``."""
        run = self.get_run(run_id)  # a clear RunNotFoundError before any artifact error
        text = self.read_artifact(run_id, "snapshot.json")
        if text is None and SCHEMA_TAG in run.tags:
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
        try:
            run = self._fast_run(run_id, f"reading {name} of run {run_id}")
        except StoreError:
            return None  # no such run: no artifact either
        if run is not None and ".." not in Path(name).parts and not Path(name).is_absolute():
            try:
                path = local_artifacts(run.artifact_uri) / ARTIFACT_DIR / name
                return path.read_bytes() if path.is_file() else None
            except (Unsupported, OSError) as why:
                log.debug("reading %s of run %s through MLflow: %s", name, run_id, why)
        return self._download(run_id, name)

    def _download(self, run_id: str, name: str) -> bytes | None:
        before_mlflow()
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
        what = f"listing artifacts of run {run_id}"
        run = self._fast_run(run_id, what)
        if run is not None:
            try:
                root = local_artifacts(run.artifact_uri)
                return walk(lambda folder: local_listing(root, folder), limit)
            except (Unsupported, OSError) as why:  # (MLflow then says what is wrong with the folder)
                log.debug("listing artifacts of run %s through MLflow: %s", run_id, why)
        with self._guard(what):
            return walk(
                lambda folder: [(i.path, i.is_dir) for i in self.client.list_artifacts(run_id, folder)], limit
            )

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
        """Runs tracked by nbtrack, newest first, filtered in the store (never a scan of all runs).

        ``experiment_ids`` (instead of ``experiment``'s name, or all active experiments) saves a query.
        The page token continues the listing (the same token on either read path).
        """
        filters = [Filter("tag", SCHEMA_TAG, "!=", "")]
        if status:
            filters.append(Filter("attribute", "status", "=", status))
        wanted = {**(tags or {}), **({"mlflow.source.name": notebook} if notebook else {})}
        filters += [Filter("tag", key, "=", value) for key, value in wanted.items()]
        return self._search(filters, max_results, experiment, experiment_ids, page_token)

    def runs_with_id_prefix(self, prefix: str, *, max_results: int = 6) -> list[RunRecord]:
        """Active runs (any, not only nbtrack's) whose id starts with ``prefix``, newest first.

        Example:
            >>> [r.run_id[:8] for r in store.runs_with_id_prefix("3f2a9c")]  # doctest: +SKIP
            ['3f2a9c41']
        """
        if not prefix.isalnum() or not prefix.isascii():
            raise ConfigError(f"run id prefix {prefix!r}: give letters and digits only")
        runs, _ = self._search([Filter("attribute", "run_id", "LIKE", f"{prefix}%")], max_results)
        return runs

    def _search(
        self,
        filters: list[Filter],
        max_results: int,
        experiment: str | None = None,
        experiment_ids: list[str] | None = None,
        token: str | None = None,
    ) -> tuple[list[RunRecord], str | None]:
        """One page of active runs matching ``filters``: the fast path, else MLflow's search."""
        reader = self.reader or self.rest
        if reader is not None:
            try:
                return reader.search_runs(
                    filters,
                    max_results,
                    experiment=experiment,
                    experiment_ids=experiment_ids,
                    page_token=token,
                )
            except Unsupported as why:
                log.debug("searching runs through MLflow: %s", why)
        before_mlflow()
        from mlflow.entities import ViewType

        with self._guard("searching runs"):
            if experiment_ids is not None:
                ids = list(experiment_ids)
            elif experiment:
                exp = self.client.get_experiment_by_name(experiment)
                ids = [exp.experiment_id] if exp is not None else []
            else:
                active = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
                ids = [e.experiment_id for e in active]
            if not ids:
                return [], None
            for f in filters:  # (the fast path leaves a quoted filter to this one)
                both = isinstance(f.value, str) and "'" in f.value and '"' in f.value
                if f.kind == "tag" and (both or "`" in f.key):
                    reason = (
                        "contains a quote MLflow's search cannot match (a backtick in the key, or "
                        "both ' and \" in the value)"
                    )
                    raise ConfigError(f"{f.key}={f.value!r} {reason}")
            page = self.client.search_runs(
                ids,
                filter_string=" and ".join(f.mlflow() for f in filters),
                max_results=max_results,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            following = page.token.decode("ascii") if isinstance(page.token, bytes) else page.token
            return [to_record(r) for r in page], following or None
