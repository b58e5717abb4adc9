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

A store that cannot be used fails every front-end with one line naming the file and the fix
(:func:`check_store`, :func:`sqlite_problem`; :class:`~nbtrack.errors.StoreError`, exit 14):

- damaged: not a SQLite file, or shorter than its header says (a truncated copy): "restore it or move
  it aside"; nothing is written into it (MLflow would otherwise create its tables in it);
- locked by another process (``BEGIN EXCLUSIVE``, a long write): nbtrack waits up to
  ``NBTRACK_STORE_LOCK_TIMEOUT`` seconds (default 20, MLflow's own busy timeout), then names the
  processes holding the lock (from ``/proc/locks``);
- read-only (a read-only mount, a folder without write permission): names the folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from nbtrack.errors import StoreDamagedError, StoreError, StoreLockedError, StoreReadOnlyError
from nbtrack.store.sqlite_damage import damage

T = TypeVar("T")
log = logging.getLogger("nbtrack.store")

#: Seconds a process waits for another one creating or migrating the store's tables.
INIT_LOCK_TIMEOUT = 300.0
#: Attempts of one nbtrack store call that finds the database locked, and the first back-off.
LOCKED_ATTEMPTS = 6
LOCKED_FIRST_DELAY = 0.2
#: Seconds nbtrack waits for another process's lock on an embedded store before it gives up.
LOCK_TIMEOUT_ENV = "NBTRACK_STORE_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 20.0
#: The first 16 bytes of every SQLite 3 database file.
#: The byte range SQLite's POSIX locks cover (its pending, reserved and shared bytes).
_LOCK_BYTES = range(0x40000000, 0x40000000 + 512)


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

    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise read_only_error(db, exc) from exc
    check_store(db)  # a damaged file gets no tables created in it; a locked one a bounded wait
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


# --- a store that cannot be used: damaged, locked, read-only --------------------------------------
def lock_timeout() -> float:
    """Seconds to wait for another process's lock on an embedded store (``NBTRACK_STORE_LOCK_TIMEOUT``).

    Example:
        >>> lock_timeout()  # doctest: +SKIP
        20.0
    """
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_LOCK_TIMEOUT
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT
    return value if value >= 0 and value == value else DEFAULT_LOCK_TIMEOUT  # (value == value: not NaN)


def damaged_error(db: Path, reason: str) -> StoreDamagedError:
    """The one-line error of a damaged store file."""
    return StoreDamagedError(
        f"{db} is not a readable MLflow store ({reason}): restore it from a backup or move it aside "
        "(nbtrack then starts a new, empty store there)"
    )


def read_only_error(db: Path, exc: BaseException | str) -> StoreReadOnlyError:
    """The one-line error of a store nbtrack cannot write (a read-only folder, file or mount)."""
    reason = exc if isinstance(exc, str) else getattr(exc, "strerror", None) or str(exc)
    folder = db.parent
    while not folder.exists() and folder.parent != folder:  # a store to be created: where it cannot be
        folder = folder.parent
    # Name what is read-only: the folder, else the file itself (a folder that is writable is not
    # called read-only; SQLite needs both, for its journal beside the file).
    what = db if _writable(folder) and db.exists() and not _writable(db) else folder
    return StoreReadOnlyError(
        f"store {db} cannot be written ({reason}): {what} is read-only; make it writable "
        "(chmod u+w, or mount it read-write) or point NBTRACK_STORE_DIR at a writable folder"
    )


def locked_error(db: Path, waited: float) -> StoreLockedError:
    """The one-line error of a store another process kept locked for ``waited`` seconds."""
    holders = lock_holders(db)
    who = f"process {', '.join(map(str, holders))}" if holders else "another process"
    return StoreLockedError(
        f"store {db} is locked by {who} (waited {waited:g} s); let it finish or stop it, then try "
        f"again (set {LOCK_TIMEOUT_ENV} to wait longer)"
    )


def lock_holders(db: Path) -> list[int]:
    """Pids of other processes holding SQLite's locks on ``db`` (Linux ``/proc/locks``), else [].

    Example:
        >>> lock_holders(Path("/nonexistent.db"))
        []
    """
    try:
        st = db.stat()
        text = Path("/proc/locks").read_text()
    except OSError:
        return []
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    found: list[int] = []
    for line in text.splitlines():
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        try:
            pid, where, start = int(fields[4]), fields[5], int(fields[6])
        except (IndexError, ValueError):
            continue
        if where == device and start in _LOCK_BYTES and pid != os.getpid() and pid not in found:
            found.append(pid)
    return found


def sqlite_problem(db: Path, exc: BaseException) -> StoreError | None:
    """The one-line error for a SQLite error (``exc`` or what caused it: SQLAlchemy wraps them) that
    says the store is damaged, locked or read-only; None for any other error."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None or isinstance(seen, sqlite3.Error):
            break
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "orig", None)
    if not isinstance(seen, sqlite3.Error):
        return None
    name = getattr(seen, "sqlite_errorname", "") or ""
    text = str(seen)
    damaged = "malformed" in text or "not a database" in text
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or damaged:
        return damaged_error(db, damage(db) or text)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or is_locked_error(seen):
        return locked_error(db, lock_timeout())
    if name.startswith(("SQLITE_READONLY", "SQLITE_PERM")) or "readonly database" in text:
        return read_only_error(db, text)
    if name.startswith("SQLITE_CANTOPEN") and db.exists() and not _writable(db.parent):
        return read_only_error(db, text)
    if name.startswith("SQLITE_FULL"):
        return StoreError(f"store {db}: the disk is full ({text}); free space on it, then try again")
    return None


def _writable(folder: Path) -> bool:
    try:
        return os.access(folder, os.W_OK) and not os.statvfs(folder).f_flag & os.ST_RDONLY
    except OSError:
        return False


def check_store(db: Path, *, write: bool = False, timeout: float | None = None) -> None:
    """Raise the one-line :class:`StoreError` when the store at ``db`` is damaged, stays locked by
    another process longer than ``timeout`` (default :func:`lock_timeout`), or (``write``) cannot be
    written. A missing file passes (MLflow creates it). Costs ~0.5 ms when fine.

    Example:
        >>> check_store(Path("/work/p/.nbtrack/mlflow.db"), write=True)  # doctest: +SKIP
        Traceback (most recent call last):
        StoreError: store /work/p/.nbtrack/mlflow.db is locked by process 4242 (waited 20 s); ...
    """
    reason = damage(db)
    if reason is not None:
        raise damaged_error(db, reason)
    if not db.is_file():
        return
    wait = lock_timeout() if timeout is None else timeout
    exc = _probe(db, write=write, wait=wait)
    if exc is not None and not write and _needs_recovery(exc) and _writable(db.parent) and _writable(db):
        # A writer was killed mid-transaction (its hot journal is beside the file) or the WAL needs
        # recovery: a read-only connection cannot roll it back (SQLITE_READONLY_ROLLBACK/RECOVERY,
        # "attempt to write a readonly database"). A read-write one does, as SQLite's recovery
        # always does: committed data is kept, the interrupted transaction undone.
        log.info("store %s: rolling back an interrupted write", db)
        exc = _probe(db, write=False, wait=wait, mode="rw")
    if exc is None:
        return
    problem = sqlite_problem(db, exc)
    if isinstance(problem, StoreLockedError):
        problem = locked_error(db, wait)
    if problem is not None:
        raise problem from None
    log.debug("checking %s: %s", db, exc)


def _needs_recovery(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_READONLY_ROLLBACK", "SQLITE_READONLY_RECOVERY")


def _probe(db: Path, *, write: bool, wait: float, mode: str | None = None) -> sqlite3.Error | None:
    """Open ``db`` and take the lock a read (or ``write``) needs; the SQLite error, None when fine."""
    try:
        # mode=rw still opens a write-protected file (read-only): BEGIN IMMEDIATE then says so.
        con = sqlite3.connect(
            f"file:{quote(str(db.absolute()))}?mode={mode or ('rw' if write else 'ro')}",
            uri=True,
            timeout=wait,
            isolation_level=None,
        )
    except sqlite3.Error as exc:
        raise sqlite_problem(db, exc) or StoreError(f"store {db}: {exc}") from None
    try:
        # A read needs SQLite's shared lock, a write its reserved one: waited for up to `wait` s.
        # (schema_version reads the header only: sqlite_master would parse MLflow's schema, ~7 ms.)
        con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        if not write:
            con.execute("PRAGMA schema_version").fetchone()
        con.execute("ROLLBACK")
    except sqlite3.Error as exc:
        return exc
    finally:
        con.close()
    return None
