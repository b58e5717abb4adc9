"""The local spool: runs bound for a tracking server, kept durably on this machine first.

With a tracking server, a kernel tracks each run into the spool, an embedded MLflow store of its
own (one per server, under ``NbtrackConfig.spool_dir``), and the run is uploaded when it ends, in
the background, or by ``nbtrack sync`` when the server could not be reached. The kernel's MLflow
tracking URI points at the spool while the run is active, so the user's own ``mlflow.log_*`` calls
land there too and never wait for the network.

SQLite commits are durable (its rollback journal, ``fsync`` on commit); the artifact files nbtrack
logs are written atomically (a temporary file renamed over the old one, ``fsync``-ed: a full disk or
a killed kernel leaves the previous ``snapshot.json``, never a truncated one), and their sizes and
hashes are recorded in the :data:`MANIFEST` tag; an upload refuses files that differ from it or do
not parse (:meth:`Spool.check_artifacts`). A full spool disk is one line naming the folder and the fix.

A spool run carries ``nbtrack.sync.state`` (``pending`` until the server has all of it, then
``uploaded``) and, once the server run exists, ``nbtrack.sync.server_run_id``; the server run
carries ``nbtrack.spool_run_id``, which is what makes an interrupted upload resumable without a
duplicate.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from nbtrack import tags
from nbtrack.errors import StoreError
from nbtrack.models import RunRecord
from nbtrack.redact import strip_url_credentials
from nbtrack.store.mlflow_store import ARTIFACT_DIR, MlflowStore, fsync_folder, write_atomic

SYNC_STATE = "nbtrack.sync.state"
SERVER_RUN_ID = "nbtrack.sync.server_run_id"
LAST_ERROR = "nbtrack.sync.last_error"
SPOOL_RUN_ID = "nbtrack.spool_run_id"
TARGET = "nbtrack.sync.target"
PENDING, UPLOADED = "pending", "uploaded"
UPLOAD_PENDING = tags.UPLOAD_PENDING
MANIFEST = tags.SYNC_FILES
#: Tags that describe the spool copy only, never copied to the server.
LOCAL_TAGS = (SYNC_STATE, SERVER_RUN_ID, LAST_ERROR, TARGET, MANIFEST)


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
            self.folder.mkdir(parents=True, exist_ok=True)
            about = self.folder / "server.json"
            if not about.exists():
                text = json.dumps({"server": strip_url_credentials(self.server_uri)}, indent=1)
                write_atomic(about, text.encode(), durable=True)
            self._store = SpoolStore(self.uri, artifact_root=self.folder / "artifacts")
            self._store.spool = self
        return self._store

    def full_message(self, what: str) -> str:
        """The line a user reads when the spool's disk is full."""
        return (
            f"{what}: no space left in the local spool {self.folder}; free space on that disk "
            "(then `nbtrack sync` uploads the runs waiting there)"
        )

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
        from nbtrack.store.reading import before_mlflow

        before_mlflow()
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

    def check_artifacts(self, run_id: str, root: Path | None, tags: dict[str, str]) -> None:
        """Refuse to upload a run whose nbtrack files are damaged: a size or hash other than the
        one recorded when they were logged, a notebook or ``snapshot.json`` that does not parse.

        Raises:
            StoreError: naming the file and why (the run stays pending).
        """
        recorded = json.loads(tags.get(MANIFEST) or "{}")
        for name, (size, digest) in recorded.items():
            path = root / name if root is not None else None
            data = path.read_bytes() if path is not None and path.is_file() else None
            if data is None or len(data) != size or hashlib.sha256(data).hexdigest() != digest:
                got = "missing" if data is None else f"{len(data)} bytes"
                raise StoreError(
                    f"run {run_id}: {name} in the spool {self.folder} is damaged ({got}, {size} bytes "
                    "were logged); it is not uploaded: record the run again"
                )
        for path in sorted((root / ARTIFACT_DIR).glob("*")) if root is not None else []:
            if path.suffix in (".ipynb", ".json") and path.is_file():
                try:
                    doc = json.loads(path.read_bytes())
                except ValueError as exc:
                    raise StoreError(
                        f"run {run_id}: {ARTIFACT_DIR}/{path.name} in the spool {self.folder} does not "
                        f"parse ({exc}); it is not uploaded: record the run again"
                    ) from None
                if path.suffix == ".ipynb" and not isinstance(doc.get("cells"), list):
                    raise StoreError(
                        f"run {run_id}: {ARTIFACT_DIR}/{path.name} in the spool {self.folder} is not a "
                        "notebook; it is not uploaded: record the run again"
                    )

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
            fsync_folder(Path(folder))


class SpoolStore(MlflowStore):
    """The spool's embedded store: nbtrack's files written atomically and recorded (size, hash), and
    a full disk reported as one line naming the spool (:meth:`Spool.full_message`)."""

    spool: Spool

    @contextlib.contextmanager
    def _guard(self, what: str, **options: Any) -> Iterator[None]:
        try:
            with super()._guard(what, **options):
                yield
        except (StoreError, OSError) as exc:
            if not disk_full(exc):
                raise
            raise StoreError(self.spool.full_message(what)) from exc

    def log_files(self, run_id: str, files: dict[str, bytes]) -> None:
        """Write ``files`` under ``nbtrack/`` in the run's artifact folder, each atomically, and
        record their sizes and hashes in :data:`MANIFEST`."""
        run = self.get_run(run_id)
        root = artifact_folder(run.artifact_uri)
        if root is None or not files:  # not a local folder: MLflow's way
            return super().log_files(run_id, files)
        manifest = json.loads(run.tags.get(MANIFEST) or "{}")
        with self._guard(f"logging artifacts of run {run_id}"):
            for name, data in files.items():
                write_atomic(root / ARTIFACT_DIR / name, data, durable=True)
                manifest[f"{ARTIFACT_DIR}/{name}"] = [len(data), hashlib.sha256(data).hexdigest()]
        self.set_tags(run_id, {MANIFEST: json.dumps(manifest, sort_keys=True)})


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the disk is full: ``ENOSPC``, or SQLite's text."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "disk is full" in str(seen) or "No space left" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def pending_upload_message(run: Any) -> str | None:
    """What a person reads about a run whose upload has not finished, else None.

    ``run`` is a :class:`~nbtrack.models.RunRecord` of the tracking server (a half-uploaded copy,
    tagged :data:`UPLOAD_PENDING`) or of the local spool (``nbtrack.sync.state`` pending).

    Example:
        >>> pending_upload_message(RunRecord("3f2a", tags={UPLOAD_PENDING: "ws-7"}))  # doctest: +SKIP
        'run 3f2a is pending upload from the spool on ws-7 ...: run `nbtrack sync` on ws-7'
    """
    tags = run.tags
    host = tags.get(UPLOAD_PENDING)
    if host:
        return (
            f"run {run.run_id} is pending upload from the spool on {host}: its upload stopped before "
            f"the server had all of it (metrics, artifacts or its end); run `nbtrack sync` on {host}"
        )
    if tags.get(SYNC_STATE) == PENDING:
        why = tags.get(LAST_ERROR) or (
            "its upload was interrupted" if tags.get(SERVER_RUN_ID) else "not uploaded yet"
        )
        return f"run {run.run_id} is pending upload in the local spool ({why}); run `nbtrack sync`"
    return None


def incomplete_upload(run: Any) -> str | None:
    """Why a tracking server's run is incomplete (its upload stopped halfway) and what to run, else
    None: what replay says instead of "artifacts missing". A run of the local spool is never one.

    Example:
        >>> incomplete_upload(RunRecord("3f2a", tags={UPLOAD_PENDING: "ws-7"}))  # doctest: +SKIP
        'run 3f2a is pending upload from the spool on ws-7: ... run `nbtrack sync` on ws-7'
    """
    return pending_upload_message(run) if run.tags.get(UPLOAD_PENDING) else None


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
