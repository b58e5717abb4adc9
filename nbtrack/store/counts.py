"""Counts over an embedded store for monitoring: a handful of aggregate SQL queries, no MLflow import.

The server extension's Prometheus collector (:mod:`nbtrack.server.metrics`) asks these at every
scrape, on the server's event loop: each is one read-only transaction of a few ``GROUP BY`` queries
over the tables MLflow created (``runs``, ``experiments``, ``tags``), at schema revisions
:data:`~nbtrack.store.read_sqlite.VERIFIED_REVISIONS` only, with a short lock wait
(:data:`SCRAPE_LOCK_TIMEOUT`: a scrape must not hold the server while a kernel writes for long;
the next scrape counts again). Only nbtrack's runs count (tagged ``nbtrack.schema_version``), and
only active ones (MLflow's trash is not counted).

- :func:`store_counts`: runs by experiment, notebook and status; replays by experiment, notebook
  (the replayed run's) and verdict, and the last REPRODUCED end time per notebook; the capture time
  of runs (tag ``nbtrack.capture.seconds``) bucketed for a histogram;
- :func:`spool_counts`: runs of a local spool waiting for upload, and since when.

Example:
    >>> counts = store_counts(Path("/work/p/.nbtrack/mlflow.db"))  # doctest: +SKIP
    >>> counts.runs[("churn", "train.ipynb", "FINISHED")]  # doctest: +SKIP
    3
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from nbtrack import tags as T
from nbtrack.errors import StoreError
from nbtrack.store.read_sqlite import VERIFIED_REVISIONS, Unsupported

#: Seconds a scrape waits for a writer's lock before it gives up (and counts a scrape error).
SCRAPE_LOCK_TIMEOUT = 1.0
#: Upper bounds of the capture-time histogram's buckets, in seconds (``+Inf`` comes last).
CAPTURE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_EXPERIMENT = "JOIN experiments ON experiments.experiment_id = runs.experiment_id "
#: An nbtrack run: tagged with its snapshot's schema version (the tag every listing filters on).
_NBTRACK_RUN = f'JOIN tags AS nb_mark ON nb_mark.run_uuid = runs.run_uuid AND nb_mark."key" = ? {_EXPERIMENT}'


@dataclass
class Histogram:
    """Cumulative bucket counts (``le`` -> count, ``+Inf`` last), the sum and the count."""

    buckets: list[tuple[str, int]] = field(default_factory=list)
    total: float = 0.0
    count: int = 0


@dataclass
class StoreCounts:
    """What one embedded store holds, aggregated.

    Attributes:
        runs: (experiment, notebook, status) -> nbtrack runs.
        replays: (experiment, notebook, verdict) -> replay runs carrying a verdict; the notebook is
            the replayed run's.
        last_reproduced: (experiment, notebook) -> unix seconds at which the latest REPRODUCED replay
            of one of its runs ended (started, while it has no end time).
        capture: experiment -> the histogram of its runs' capture time.
    """

    runs: dict[tuple[str, str, str], int] = field(default_factory=dict)
    replays: dict[tuple[str, str, str], int] = field(default_factory=dict)
    last_reproduced: dict[tuple[str, str], float] = field(default_factory=dict)
    capture: dict[str, Histogram] = field(default_factory=dict)


@dataclass(frozen=True)
class SpoolCounts:
    """A spool's runs waiting for upload, and the unix seconds the oldest of them ended (None: none)."""

    pending: int
    oldest: float | None


@contextlib.contextmanager
def _session(db: Path, timeout: float) -> Iterator[sqlite3.Connection]:
    """A read-only transaction on an MLflow database at a schema revision nbtrack has verified."""
    if not db.is_file():
        raise Unsupported(f"{db}: no such store")
    try:
        con = sqlite3.connect(
            f"file:{quote(str(db.absolute()))}?mode=ro", uri=True, timeout=timeout, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise StoreError(f"the store {db} cannot be opened ({exc}); check its permissions") from exc
    try:
        con.execute("BEGIN")
        revisions = [row[0] for row in con.execute("SELECT version_num FROM alembic_version")]
        if len(revisions) != 1 or revisions[0] not in VERIFIED_REVISIONS:
            raise Unsupported(f"{db} is at MLflow schema revision {revisions}")
        yield con
    except sqlite3.Error as exc:  # locked past the timeout, no tables yet, damaged
        raise StoreError(f"the store {db} could not be read ({exc}); the next scrape tries again") from exc
    finally:
        con.close()


def store_counts(db: Path, timeout: float = SCRAPE_LOCK_TIMEOUT) -> StoreCounts:
    """Runs, replays and capture times of the embedded store ``db``, in one read transaction.

    Raises:
        Unsupported: no such database, or one at a schema revision not verified.
        StoreError: the database is locked for ``timeout`` seconds, damaged or unreadable.

    Example:
        >>> store_counts(Path("/work/p/.nbtrack/mlflow.db")).replays  # doctest: +SKIP
        {('churn', 'train.ipynb', 'REPRODUCED'): 1}
    """
    out = StoreCounts()
    with _session(db, timeout) as con:
        sql = (
            "SELECT experiments.name, COALESCE(nb.value, ''), runs.status, COUNT(*) FROM runs "
            f"{_NBTRACK_RUN}"
            'LEFT JOIN tags AS nb ON nb.run_uuid = runs.run_uuid AND nb."key" = ? '
            "WHERE runs.lifecycle_stage = 'active' GROUP BY 1, 2, 3"
        )
        for experiment, notebook, status, count in con.execute(sql, (T.SCHEMA_VERSION, T.SOURCE_NAME)):
            out.runs[(experiment, notebook, status)] = count
        _replays(con, out)
        out.capture = _capture(con)
    return out


def _replays(con: sqlite3.Connection, out: StoreCounts) -> None:
    """Replays by verdict and the last REPRODUCED time, per the replayed run's notebook."""
    sql = (
        "SELECT experiments.name, COALESCE(original_nb.value, own_nb.value, ''), verdict.value, "
        "COUNT(*), MAX(COALESCE(runs.end_time, runs.start_time)) FROM tags AS verdict "
        # only nbtrack's replays carry a verdict: starting from that tag reads nothing else
        f"JOIN runs ON runs.run_uuid = verdict.run_uuid {_EXPERIMENT}"
        'LEFT JOIN tags AS replay_of ON replay_of.run_uuid = runs.run_uuid AND replay_of."key" = ? '
        "LEFT JOIN tags AS original_nb ON original_nb.run_uuid = replay_of.value "
        'AND original_nb."key" = ? '
        'LEFT JOIN tags AS own_nb ON own_nb.run_uuid = runs.run_uuid AND own_nb."key" = ? '
        "WHERE verdict.\"key\" = ? AND runs.lifecycle_stage = 'active' GROUP BY 1, 2, 3"
    )
    keys = (T.REPLAY_OF, T.SOURCE_NAME, T.SOURCE_NAME, T.REPLAY_VERDICT)
    for experiment, notebook, verdict, count, last_ms in con.execute(sql, keys):
        out.replays[(experiment, notebook, verdict)] = count
        if verdict == "REPRODUCED" and last_ms is not None:
            out.last_reproduced[(experiment, notebook)] = last_ms / 1000.0


def _capture(con: sqlite3.Connection) -> dict[str, Histogram]:
    """The capture-time histogram per experiment, bucketed by SQL (one row per experiment)."""
    seconds = "CAST(capture.value AS REAL)"
    buckets = ", ".join(
        f"SUM(CASE WHEN {seconds} <= {bound!r} THEN 1 ELSE 0 END)" for bound in CAPTURE_BUCKETS
    )
    sql = (
        f"SELECT experiments.name, COUNT(*), SUM({seconds}), {buckets} FROM tags AS capture "
        f"JOIN runs ON runs.run_uuid = capture.run_uuid {_EXPERIMENT}"
        "WHERE capture.\"key\" = ? AND runs.lifecycle_stage = 'active' GROUP BY 1"
    )
    found = {}
    bounds = [repr(b) for b in CAPTURE_BUCKETS]
    for experiment, count, total, *cumulative in con.execute(sql, (T.CAPTURE_SECONDS,)):
        rows = [(le, int(n)) for le, n in zip(bounds, cumulative, strict=True)] + [("+Inf", int(count))]
        found[experiment] = Histogram(rows, float(total or 0.0), int(count))
    return found


def spool_counts(db: Path, timeout: float = SCRAPE_LOCK_TIMEOUT) -> SpoolCounts:
    """The runs of the spool database ``db`` still pending upload, and when the oldest one ended.

    Raises:
        Unsupported: no such database (no run was ever spooled), or an unverified schema revision.
        StoreError: locked for ``timeout`` seconds, damaged or unreadable.

    Example:
        >>> spool_counts(Path.home() / ".cache/nbtrack/spool/mlflow-5000-8d6c/mlflow.db")  # doctest: +SKIP
        SpoolCounts(pending=2, oldest=1733360000.0)
    """
    with _session(db, timeout) as con:
        sql = (
            "SELECT COUNT(*), MIN(COALESCE(runs.end_time, runs.start_time)) FROM runs "
            'JOIN tags AS state ON state.run_uuid = runs.run_uuid AND state."key" = ? AND state.value = ? '
            "WHERE runs.lifecycle_stage = 'active'"
        )
        count, oldest_ms = con.execute(sql, (T.SYNC_STATE, T.PENDING)).fetchone()
    return SpoolCounts(int(count), None if oldest_ms is None else oldest_ms / 1000.0)
