"""The local spool: runs bound for a tracking server, kept durably on this machine first.

With a tracking server, a kernel tracks each run into the spool, an embedded MLflow store of its
own (one per server, under ``NbtrackConfig.spool_dir``), and the run is uploaded when it ends, in
the background, or by ``nbtrack sync`` when the server could not be reached. The kernel's MLflow
tracking URI points at the spool while the run is active, so the user's own ``mlflow.log_*`` calls
land there too and never wait for the network.

SQLite commits are durable (its rollback journal, ``fsync`` on commit); the artifact files nbtrack
logs are ``fsync``-ed before ``%track stop`` returns (:meth:`Spool.make_durable`).

A spool run carries ``nbtrack.sync.state`` (``pending`` until the server has all of it, then
``uploaded``) and, once the server run exists, ``nbtrack.sync.server_run_id``; the server run
carries ``nbtrack.spool_run_id``, which is what makes an interrupted upload resumable without a
duplicate.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from nbtrack.models import RunRecord
from nbtrack.redact import strip_url_credentials

SYNC_STATE = "nbtrack.sync.state"
SERVER_RUN_ID = "nbtrack.sync.server_run_id"
LAST_ERROR = "nbtrack.sync.last_error"
SPOOL_RUN_ID = "nbtrack.spool_run_id"
TARGET = "nbtrack.sync.target"
PENDING, UPLOADED = "pending", "uploaded"
#: Tags that describe the spool copy only, never copied to the server.
LOCAL_TAGS = (SYNC_STATE, SERVER_RUN_ID, LAST_ERROR, TARGET)


def spool_key(server_uri: str) -> str:
    """The spool folder's name for a server: its host and a hash of its URI without credentials.

    Example:
        >>> spool_key("http://alice:pw@mlflow.example.com:5000")
        'mlflow.example.com-5000-8d6c4f16c6bb'
    """
    clean = strip_url_credentials(server_uri).rstrip("/")
    host = urlsplit(clean).netloc.rsplit("@", 1)[-1] or "server"
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", host).strip("-")[:60]
    return f"{slug}-{hashlib.sha256(clean.encode()).hexdigest()[:12]}"


class Spool:
    """The spool of one tracking server.

    Example:
        >>> spool = Spool.for_server("http://mlflow:5000", NbtrackConfig())  # doctest: +SKIP
        >>> [r.run_id for r in spool.pending()]  # doctest: +SKIP
    """

    def __init__(self, folder: Path, server_uri: str) -> None:
        self.folder = folder
        self.server_uri = server_uri
        self._store: Any = None

    @classmethod
    def for_server(cls, server_uri: str, config: Any) -> Spool:
        return cls(Path(config.spool_dir).expanduser() / spool_key(server_uri), server_uri)

    @classmethod
    def of_store(cls, store: Any, config: Any) -> Spool | None:
        """The spool of ``store`` when it is a tracking server; None for any other store."""
        return cls.for_server(store.uri, config) if getattr(store, "is_server", False) else None

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.folder / 'mlflow.db'}"

    @property
    def display(self) -> str:
        return str(self.folder)

    def exists(self) -> bool:
        return (self.folder / "mlflow.db").exists()

    @property
    def store(self) -> Any:
        """The spool's embedded MLflow store (created on first use)."""
        if self._store is None:
            from nbtrack.store.mlflow_store import MlflowStore

            self.folder.mkdir(parents=True, exist_ok=True)
            about = self.folder / "server.json"
            if not about.exists():
                text = json.dumps({"server": strip_url_credentials(self.server_uri)}, indent=1)
                _write_durably(about, text.encode())
            self._store = MlflowStore(self.uri, artifact_root=self.folder / "artifacts")
            self._store.spool = self
        return self._store

    def lock_path(self, run_id: str) -> Path:
        folder = self.folder / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{run_id}.lock"

    # --- reading ---------------------------------------------------------------------------------
    def runs(self, *, states: tuple[str, ...] = (PENDING,), max_results: int = 1000) -> list[RunRecord]:
        """Spool runs in one of ``states`` (any status), newest first; [] when there is no spool."""
        if not self.exists() or not states:
            return []
        from nbtrack.store.read_sqlite import Filter, SqliteReader, Unsupported

        reader: SqliteReader | None = self.store.reader
        if reader is not None:  # the spool is an embedded store: read without importing MLflow
            one = Filter("tag", SYNC_STATE, "=", states[0]) if len(states) == 1 else None
            with contextlib.suppress(Unsupported):
                runs, _ = reader.search_runs([one or Filter("tag", SYNC_STATE, "IN", states)], max_results)
                return runs
        from mlflow.entities import ViewType

        from nbtrack.store.mlflow_store import to_record

        client = self.store.client
        ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
        if not ids:
            return []
        wanted = " or ".join(f"tags.`{SYNC_STATE}` = '{s}'" for s in states)
        found: list[RunRecord] = []
        token = None
        while len(found) < max_results:
            page = client.search_runs(
                ids,
                filter_string=wanted if len(states) == 1 else "",
                max_results=min(1000, max_results - len(found)),
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            found.extend(to_record(r) for r in page if r.data.tags.get(SYNC_STATE) in states)
            token = page.token
            if not token:
                break
        return found

    def pending(self) -> list[RunRecord]:
        """Runs not (completely) on the server yet, the running ones included."""
        return self.runs(states=(PENDING,))

    def find(self, run_id: str) -> RunRecord | None:
        """The spool run with this id, or None."""
        if not self.exists():
            return None
        from nbtrack.store.read_sqlite import ReadMiss, SqliteReader, Unsupported

        reader: SqliteReader | None = self.store.reader
        if reader is not None:
            try:
                return reader.get_run(run_id)
            except ReadMiss:
                return None
            except Unsupported:
                pass  # MLflow answers
        from nbtrack.store.mlflow_store import to_record

        try:
            return to_record(self.store.client.get_run(run_id))
        except Exception:  # noqa: BLE001 - not a spool run
            return None

    # --- writing ---------------------------------------------------------------------------------
    def make_durable(self, run: RunRecord) -> None:
        """``fsync`` a spool run's artifact files and their folders (SQLite syncs its own commits)."""
        root = artifact_folder(run.artifact_uri)
        if root is None or not root.exists():
            return
        for folder, _dirs, files in os.walk(root):
            for name in files:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            _fsync_dir(Path(folder))


def resolve_run(store: Any, run_id: str, config: Any) -> tuple[Any, str, str | None]:
    """Where a run id is: ``store``, else (a tracking server) its local spool.

    Returns the store to read, the run id there, and a note when a spool id was translated (a spool
    run already uploaded resolves to its server copy). Raises the store's RunNotFoundError when
    neither knows the id.
    """
    from nbtrack.errors import RunNotFoundError

    try:
        store.get_run(run_id)
        return store, run_id, None
    except RunNotFoundError:
        spool = Spool.of_store(store, config)
        found = spool.find(run_id) if spool is not None else None
        if spool is None or found is None:
            raise
    tags = found.tags
    if tags.get(SYNC_STATE) == UPLOADED and tags.get(SERVER_RUN_ID):
        return store, tags[SERVER_RUN_ID], f"run {run_id} was uploaded as run {tags[SERVER_RUN_ID]}"
    return spool.store, run_id, None


def artifact_folder(uri: str | None) -> Path | None:
    """The local folder of a run's artifact URI (a ``file:`` URI or a path), else None."""
    uri = uri or ""
    if uri.startswith("file:"):
        return Path(unquote(urlsplit(uri).path))
    if uri.startswith("/"):
        return Path(uri)
    return None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    """Write ``path`` atomically (a temporary file renamed over it) and durably (fsync)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
