"""Many kernels, one SQLite file: opening an embedded store safely, and riding out a busy database.

MLflow's SQL tracking store creates and migrates its tables in ``SqlAlchemyStore.__init__`` without
any lock (its jobs and workspace stores take one; the tracking store does not, as of MLflow 3.x), so
kernels that open a fresh store at the same moment race through ``CREATE TABLE`` and the alembic
migrations and fail with ``table ... already exists``, ``duplicate column name`` or an alembic
``CommandError``, leaving a half-migrated database behind. Here the first open of a SQLite store in
a process happens under an exclusive file lock beside the database (``<db>.lock``): one process
creates and migrates, the others wait and then find the tables there. A marker beside it
(``<db>.ready``, holding the MLflow version that migrated it) lets later openers skip the lock.

Once the tables exist, writers take turns: MLflow opens every SQLite session with
``PRAGMA busy_timeout = 20000``, which was enough for eight kernels logging at once (measured with
the default rollback journal; the database is not switched to WAL, which is unsafe on the network
filesystems project folders sometimes live on and would persist in the user's file). A write of
nbtrack's own that still finds the database locked is retried a few times with back-off
(:func:`retry_locked`). Nothing here sets an environment variable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from nbtrack.errors import StoreError

T = TypeVar("T")
log = logging.getLogger("nbtrack.store")

#: Seconds a process waits for another one creating or migrating the store's tables.
INIT_LOCK_TIMEOUT = 300.0
#: Attempts of one nbtrack store call that finds the database locked, and the first back-off.
LOCKED_ATTEMPTS = 6
LOCKED_FIRST_DELAY = 0.2


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other store.

    Example:
        >>> sqlite_path("sqlite:////work/p/.nbtrack/mlflow.db")
        PosixPath('/work/p/.nbtrack/mlflow.db')
        >>> sqlite_path("http://localhost:5000") is None
        True
    """
    if not uri.startswith("sqlite:///"):
        return None
    path = unquote(urlsplit(uri).path)
    if not path or path.startswith("/:memory:") or path == "/":
        return None
    # sqlite:///rel.db is relative to the current directory, sqlite:////abs.db absolute
    return Path(path[1:])


def open_client(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri``; a SQLite store is created/migrated under a file lock first."""
    from mlflow.tracking import MlflowClient  # heavy; kept out of %load_ext

    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(tracking_uri=uri)
    # MLflow's SQL store modules take seconds to import on a busy machine: import them before the
    # lock, so kernels starting together import in parallel and only the table creation is serial.
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    from filelock import FileLock, Timeout  # beside mlflow: only when a SQLite store is opened

    db.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{db}.lock")
    deadline = time.monotonic() + INIT_LOCK_TIMEOUT
    while not _ready(db):
        try:
            # Short waits, so that a kernel queued behind the one creating the tables goes on as
            # soon as they exist, instead of taking the lock in turn.
            with lock.acquire(timeout=0.25):
                # Building the client builds MLflow's store for the URI (cached per process, shared
                # with the fluent API): table creation and migrations happen here, one process at a time.
                with _quiet("mlflow.store.db.utils", "alembic"):  # its table-creation notes
                    client = MlflowClient(tracking_uri=uri)
                _mark_ready(db)
                return client
        except Timeout:
            if time.monotonic() > deadline:
                raise StoreError(
                    f"the store {db} is being created by another process that has held "
                    f"{lock.lock_file} for {INIT_LOCK_TIMEOUT:.0f} s; if no other kernel is starting a "
                    "run, delete that lock file"
                ) from None
        except OSError as exc:  # a read-only folder: no lock file possible, nor tables to create
            log.debug("no lock beside %s (%s); opening it unguarded", db, exc)
            break
    return MlflowClient(tracking_uri=uri)


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Silence the INFO notes of ``loggers`` (printed into the user's cell) inside the block."""
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def _ready_marker(db: Path) -> Path:
    return db.with_name(db.name + ".ready")


def _ready(db: Path) -> bool:
    """Whether this MLflow version already created and migrated the store (a marker beside it)."""
    from mlflow.version import VERSION

    try:
        return db.stat().st_size > 0 and _ready_marker(db).read_text() == VERSION
    except OSError:
        return False


def _mark_ready(db: Path) -> None:
    from mlflow.version import VERSION

    marker = _ready_marker(db)
    try:
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}")
        tmp.write_text(VERSION)
        os.replace(tmp, marker)
    except OSError as exc:  # the next opener takes the lock again: slower, still correct
        log.debug("could not write %s: %s", marker, exc)


def is_locked_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is SQLite's "database is locked" / "busy"."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        text = str(seen).lower()
        if "database is locked" in text or "database table is locked" in text or "sqlite_busy" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_locked(fn: Callable[[], T], what: str) -> T:
    """``fn()``, retried with jittered back-off while SQLite says the database is locked.

    MLflow's SQLite sessions already wait up to 20 s for a lock; this covers what that wait does not
    (a transaction that must restart, a lock held past the timeout on a slow disk). A write that
    failed this way was rolled back, so calling it again does not write twice.
    """
    delay = LOCKED_FIRST_DELAY
    for attempt in range(1, LOCKED_ATTEMPTS + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == LOCKED_ATTEMPTS or not is_locked_error(exc):
                raise
            log.info("%s: database is locked (attempt %d); retrying in %.1f s", what, attempt, delay)
            time.sleep(delay * (0.5 + random.random()))
            delay *= 2
    raise AssertionError("unreachable")
