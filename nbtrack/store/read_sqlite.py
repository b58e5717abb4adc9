"""Reading an embedded MLflow store straight from its SQLite tables, without importing MLflow.

``import mlflow`` takes 1-5 s on this kind of machine; ``nbtrack runs`` and ``nbtrack show`` need a
few milliseconds of SQL. For a ``sqlite:///`` store, :class:`SqliteReader` answers the reads nbtrack
makes (find a run, search runs, the experiments behind them) with the standard library's
``sqlite3``, on a read-only connection (``mode=ro``) that waits for a writer's lock as long as MLflow's writes
do (:func:`~nbtrack.store.sqlite.lock_timeout`); the writes stay on
MLflow. It reproduces what MLflow's ``SqlAlchemyStore`` returns for the same calls, down to the SQL
it issues (see ``mlflow/store/tracking/sqlalchemy_store.py``, ``_search_runs`` and ``get_run``):

- runs of the experiments asked for (any stage when named or given by id; else MLflow's
  ``search_experiments()`` default: the first 1,000 active ones), ``lifecycle_stage = 'active'``
  (a deleted run is hidden; deleting an experiment deletes its runs), the filter clauses joined
  as tag subqueries, ordered by start time (newest first, unknown last) then run id; page tokens
  in MLflow's own format (base64 of ``{"offset": N}``), so either path continues the other's pages;
- a run by id whatever its stage, as ``MlflowClient.get_run`` finds it, with MLflow's errors for
  an unknown or malformed id (:class:`ReadMiss`);
- tags, params and latest metrics (a NaN metric as ``nan``), loaded with the queries SQLAlchemy's
  ``selectinload`` issues, so they come back in the same order.

Anything else raises :class:`Unsupported` and the caller asks MLflow: a schema revision
(``alembic_version``) not in :data:`VERIFIED_REVISIONS` (a newer or older MLflow; a store being
created or migrated), a database MLflow has not created yet, MLflow's workspaces switched on, a
filter or page token the fast path cannot match exactly. A damaged file, or one locked longer
than the lock timeout, raises the one-line :class:`~nbtrack.errors.StoreError` MLflow's path would.

Example:
    >>> reader = SqliteReader.for_uri("sqlite:////work/p/.nbtrack/mlflow.db")  # doctest: +SKIP
    >>> listed = Filter("tag", "nbtrack.schema_version", "!=", "")
    >>> runs, token = reader.search_runs([listed], max_results=50)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from nbtrack.errors import StoreDamagedError, StoreLockedError
from nbtrack.models import RunRecord
from nbtrack.store.sqlite import lock_timeout, locked_error, sqlite_path, sqlite_problem

log = logging.getLogger("nbtrack.store")

#: MLflow schema revisions whose ``experiments``, ``runs``, ``tags``, ``params``, ``latest_metrics``
#: and ``alembic_version`` columns this module reads: MLflow 3.x from ``1b5f0d9ad7c1`` (workspace
#: columns) to ``dc11669786a5`` (MLflow 3.17's head, the one the tests run). The migrations between
#: them touch none of the columns read here (checked in ``mlflow/store/db_migrations/versions``).
VERIFIED_REVISIONS = frozenset(
    {
        "1b5f0d9ad7c1", "e1f2a3b4c5d6", "76601a5f987d", "c3d6457b6d8a", "a5b4c3d2e1f0",
        "ae8bbe7743c9", "7d34483879f0", "da6fb0208061", "89d3d66ed43f", "b7e4c1a90f23",
        "a8b9c0d1e2f3", "c1d2e3f4a5b6", "c3d9e7f1a2b4", "6f8d9c3b2a1e", "1971f2d9a75b",
        "17e22815139b", "b7e2c1a4d9f3", "75868b020152", "dc11669786a5",
    }
)  # fmt: skip
#: MLflow's limits: ``SEARCH_MAX_RESULTS_THRESHOLD``; ``search_experiments``' default page.
MAX_RESULTS = 50_000
EXPERIMENTS_PAGE = 1000
#: Ids per ``IN (...)`` query, as SQLAlchemy's ``selectinload`` batches them.
CHUNK = 500
#: ``mlflow.utils.validation._RUN_ID_REGEX``: MLflow refuses any other run id before looking it up.
RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
#: Tag keys the fast path filters on (MLflow's filter parser is the authority on anything else).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.\-/]+")
_ATTRIBUTES = {"status": "runs.status", "run_id": "runs.run_uuid"}
_RUN_COLUMNS = (
    "runs.run_uuid, runs.name, runs.status, runs.start_time, runs.end_time, runs.artifact_uri, "
    "runs.experiment_id"
)


class Unsupported(Exception):
    """The fast path cannot answer this exactly; ask MLflow."""


class ReadMiss(Exception):
    """What MLflow would raise (``error_code`` and message) for an unknown or malformed run id."""

    def __init__(self, message: str, error_code: str) -> None:
        super().__init__(message)
        self.error_code = error_code


def check_run_id(run_id: str) -> None:
    """Raise the :class:`ReadMiss` MLflow raises for a malformed run id, before looking it up.

    Example:
        >>> check_run_id("0f3c41e0b84d")
    """
    if RUN_ID.match(run_id) is None:
        shown = json.dumps(run_id, sort_keys=True, separators=(",", ":"))
        raise ReadMiss(f"Invalid value {shown} for parameter 'run_id' supplied.", "INVALID_PARAMETER_VALUE")


@dataclass(frozen=True)
class Filter:
    """One clause of an MLflow run search: ``tags.`key` <op> value`` or ``attributes.key <op> value``.

    Example:
        >>> Filter("tag", "mlflow.source.name", "=", "train.ipynb").mlflow()
        "tags.`mlflow.source.name` = 'train.ipynb'"
    """

    kind: Literal["tag", "attribute"]
    key: str
    op: Literal["=", "!=", "LIKE", "IN"]
    value: str | tuple[str, ...]

    def mlflow(self) -> str:
        """The clause in MLflow's search syntax (the slow path's filter string)."""
        values = self.value if isinstance(self.value, tuple) else (self.value,)
        # MLflow's parser reads either quote and has no escape: a value with an apostrophe (a
        # notebook named "it's.ipynb") goes in double quotes.
        quoted = ", ".join(f'"{v}"' if "'" in v else f"'{v}'" for v in values)
        value = f"({quoted})" if self.op == "IN" else quoted
        key = f"tags.`{self.key}`" if self.kind == "tag" else f"attributes.{self.key}"
        return f"{key} {self.op} {value}"

    def plain(self) -> bool:
        """Whether MLflow's parser takes the clause as written (no quoting or escaping involved).

        Example:
            >>> Filter("tag", "note", "=", "it's").plain()
            False
        """
        values = self.value if isinstance(self.value, tuple) else (self.value,)
        if any("'" in v or "\\" in v for v in values):
            return False
        return self.key in _ATTRIBUTES if self.kind == "attribute" else bool(_PLAIN_KEY.fullmatch(self.key))


def token_for(offset: int) -> str:
    """MLflow's page token for a search continuing at ``offset``.

    Example:
        >>> token_for(50)
        'eyJvZmZzZXQiOiA1MH0='
    """
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode("ascii")


def token_offset(token: str | bytes | None) -> int:
    """The offset of a page token this module or MLflow made; :class:`Unsupported` for any other
    (MLflow then accepts it or raises its own error).

    Example:
        >>> token_offset("eyJvZmZzZXQiOiA1MH0="), token_offset(None)
        (50, 0)
    """
    if not token:
        return 0
    try:
        text = token.decode("ascii") if isinstance(token, bytes) else token
        offset = json.loads(base64.b64decode(text, validate=True))["offset"]
    except (ValueError, TypeError, KeyError) as exc:
        raise Unsupported(f"page token {token!r}") from exc
    if type(offset) is not int or offset < 1 or token_for(offset) != text:
        raise Unsupported(f"page token {token!r}")
    return offset


def _workspaces_on() -> bool:
    """Whether MLflow would scope every query to a workspace (``MLFLOW_ENABLE_WORKSPACES``)."""
    value = os.environ.get("MLFLOW_ENABLE_WORKSPACES")
    return value is not None and value.lower() not in ("false", "0")


class SqliteReader:
    """Reads of one embedded MLflow store, answered from its SQLite file.

    Example:
        >>> SqliteReader.for_uri("http://mlflow:5000") is None
        True
    """

    def __init__(self, db: Path) -> None:
        self.db = db

    @classmethod
    def for_uri(cls, uri: str) -> SqliteReader | None:
        """A reader for a ``sqlite:///`` tracking URI; None for any other store."""
        db = sqlite_path(uri)
        return None if db is None else cls(db)

    @contextlib.contextmanager
    def session(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection in one read transaction (every query sees the same commit)."""
        if _workspaces_on():
            raise Unsupported("MLflow workspaces are enabled")
        try:
            con = sqlite3.connect(
                f"file:{quote(str(self.db.absolute()))}?mode=ro",
                uri=True,
                timeout=lock_timeout(),
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:  # no such file (MLflow creates it), a folder we cannot read
            raise Unsupported(f"{self.db}: {exc}") from exc
        try:
            con.execute("PRAGMA case_sensitive_like = true")  # as MLflow's sessions: LIKE is exact
            con.execute("BEGIN")
            revisions = [row[0] for row in con.execute("SELECT version_num FROM alembic_version")]
            if len(revisions) != 1 or revisions[0] not in VERIFIED_REVISIONS:
                raise Unsupported(f"{self.db} is at MLflow schema revision {revisions}")
            yield con
        except sqlite3.Error as exc:  # busy past the timeout, no tables yet, a hot journal, damaged
            self._give_up(exc)
            raise Unsupported(f"{self.db}: {exc}") from exc
        finally:
            con.close()

    def _give_up(self, exc: sqlite3.Error) -> None:
        """Raise the one-line error of a damaged store (MLflow would fail on it too, after a slow
        import) or of one locked for the whole lock timeout; else return (MLflow is asked)."""
        problem = sqlite_problem(self.db, exc)
        if isinstance(problem, StoreDamagedError):
            raise problem from None
        if isinstance(problem, StoreLockedError):
            raise locked_error(self.db, lock_timeout()) from None

    # --- runs ------------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, whatever its stage, as ``MlflowClient.get_run`` finds it.

        Raises:
            ReadMiss: MLflow's error for a malformed or unknown id.
            Unsupported: ask MLflow.
        """
        check_run_id(run_id)
        with self.session() as con:
            sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE runs.run_uuid = ?"
            rows = con.execute(sql, (run_id,)).fetchall()
            if not rows:
                raise ReadMiss(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
            return records(con, rows)[0]

    def search_runs(
        self,
        filters: Sequence[Filter],
        max_results: int,
        *,
        experiment: str | None = None,
        experiment_ids: Sequence[str] | None = None,
        page_token: str | bytes | None = None,
    ) -> tuple[list[RunRecord], str | None]:
        """Active runs matching every filter, newest first, one page: what ``MlflowStore.search_runs``
        gets from MLflow for the experiment named ``experiment`` (none: no runs), the experiments
        ``experiment_ids``, or (neither) every active experiment. Raises :class:`Unsupported`."""
        with self.session() as con:
            ids = _experiment_ids(con, experiment, experiment_ids)
            if not ids:
                return [], None
            if not 1 <= max_results <= MAX_RESULTS or not all(f.plain() for f in filters):
                raise Unsupported("a search MLflow must check or parse itself")
            offset = token_offset(page_token)
            rows = _search(con, ids, filters, max_results + 1, offset)
            more = len(rows) > max_results
            return records(con, rows[:max_results]), token_for(offset + max_results) if more else None


def _experiment_ids(con: sqlite3.Connection, name: str | None, given: Sequence[str] | None) -> list[int]:
    """The experiments a search covers, as MlflowStore.search_runs picks them through MLflow."""
    if given is not None:
        if not all(isinstance(i, str) and i.isdecimal() and i.isascii() for i in given):
            raise Unsupported(f"experiment ids {given!r}")  # MLflow's own error
        return [int(i) for i in given]
    if name:  # get_experiment_by_name: any stage
        found = con.execute(
            "SELECT experiments.experiment_id FROM experiments WHERE experiments.name = ? "
            "AND experiments.lifecycle_stage IN ('active', 'deleted')",
            (name,),
        ).fetchall()
        if len(found) > 1:
            raise Unsupported(f"{len(found)} experiments named {name!r}")
        return [int(found[0][0])] if found else []
    # search_experiments(view_type=ACTIVE_ONLY): its first page, in its order
    rows = con.execute(
        "SELECT experiments.experiment_id FROM experiments WHERE experiments.lifecycle_stage IN ('active') "
        "ORDER BY experiments.creation_time DESC, experiments.experiment_id ASC LIMIT ?",
        (EXPERIMENTS_PAGE,),
    )
    return [int(row[0]) for row in rows]


def _search(
    con: sqlite3.Connection, ids: list[int], filters: Sequence[Filter], limit: int, offset: int
) -> list[Any]:
    """The run rows of one page: ``SqlAlchemyStore._search_runs``' query (tag clauses as joined
    subqueries, attribute clauses in the WHERE), newest first, unknown start times last."""
    joins: list[str] = []
    join_args: list[Any] = []
    where = [f"runs.experiment_id IN ({', '.join('?' * len(ids))})", "runs.lifecycle_stage IN ('active')"]
    where_args: list[Any] = list(ids)
    for n, f in enumerate(filters, 1):
        values = list(f.value) if isinstance(f.value, tuple) else [f.value]
        test = f"IN ({', '.join('?' * len(values))})" if f.op == "IN" else f"{f.op} ?"
        if f.kind == "attribute":
            where.append(f"{_ATTRIBUTES[f.key]} {test}")
            where_args += values
        else:
            joins.append(
                "JOIN (SELECT tags.run_uuid AS run_uuid FROM tags "
                f'WHERE tags."key" = ? AND tags.value {test}) AS anon_{n} '
                f"ON runs.run_uuid = anon_{n}.run_uuid"
            )
            join_args += [f.key, *values]
    sql = (
        f"SELECT DISTINCT {_RUN_COLUMNS} FROM runs {' '.join(joins)} WHERE {' AND '.join(where)} "
        "ORDER BY CASE WHEN (runs.start_time IS NULL) THEN 1 ELSE 0 END, runs.start_time DESC, runs.run_uuid "
        "LIMIT ? OFFSET ?"
    )
    return con.execute(sql, [*join_args, *where_args, limit, offset]).fetchall()


def _children(con: sqlite3.Connection, table: str, columns: str, ids: list[str]) -> dict[str, list[Any]]:
    """Rows of ``table`` per run, read as SQLAlchemy's ``selectinload`` reads them (same order)."""
    out: dict[str, list[Any]] = {run_id: [] for run_id in ids}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT {table}.run_uuid, {columns} FROM {table} WHERE {table}.run_uuid IN ({marks})"
        for row in con.execute(sql, chunk):
            out[row[0]].append(row[1:])
    return out


def records(con: sqlite3.Connection, rows: list[Any]) -> list[RunRecord]:
    """Run rows (:data:`_RUN_COLUMNS`) as records, with their tags, params and latest metrics.

    Example:
        >>> records(con, con.execute(f"SELECT {_RUN_COLUMNS} FROM runs LIMIT 1").fetchall())  # doctest: +SKIP
        [RunRecord(run_id='3f2a9c41...', ...)]
    """
    ids = [row[0] for row in rows]
    tags = _children(con, "tags", 'tags."key", tags.value', ids)
    params = _children(con, "params", 'params."key", params.value', ids)
    metrics = _children(
        con,
        "latest_metrics",
        'latest_metrics."key", latest_metrics.value, latest_metrics.timestamp, latest_metrics.step, '
        "latest_metrics.is_nan",
        ids,
    )
    out = []
    for run_id, name, status, start, end, artifact_uri, experiment_id in rows:
        run_tags = {key: value for key, value in tags[run_id]}
        latest = metrics[run_id]
        out.append(
            RunRecord(
                run_id=run_id,
                # RunInfo falls back on the mlflow.runName tag (runs of MLflow <= 1.29 have no name)
                name=name or run_tags.get("mlflow.runName") or name,
                experiment_id=str(experiment_id),
                status=status,
                start_time=start,
                end_time=end,
                artifact_uri=artifact_uri or "",
                tags=run_tags,
                params={key: value for key, value in params[run_id]},
                metrics={key: float("nan") if nan else float(v) for key, v, _ts, _step, nan in latest},
                last_metric_ms=max((int(ts) for _key, _value, ts, _step, _nan in latest), default=None),
            )
        )
    return out
