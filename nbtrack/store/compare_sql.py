"""The store side of the compare view: every run of a scope with what its table row needs, in bulk.

For the embedded SQLite store the tables are read directly (no ``import mlflow``, a read-only
connection, as :mod:`nbtrack.store.read_sqlite` does): the runs and their tags, params and latest
metrics (:func:`~nbtrack.store.read_sqlite.records`), the minimum and maximum of every metric of
every run in ONE aggregate query over ``metrics``, the runs' DVC dataset inputs in one join, and the
replays (runs tagged ``nbtrack.replay_of``) in one query. A ``filter`` in MLflow's search syntax is
then evaluated by MLflow's own ``SearchUtils`` over those rows (measured: 1,000 runs ~25 ms), so its
semantics are MLflow's. On a tracking server (or an embedded store this module cannot read exactly)
the filter goes to MLflow's ``search_runs``; min/max then stay unknown (only each run's metric
history has them: ``histories``) and the reply says so.

Example:
    >>> scope = read_scope(store, notebook="analysis/train.ipynb")  # doctest: +SKIP
    >>> scope.runs[0].metric_min["loss"]  # doctest: +SKIP
    0.21
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nbtrack import tags as T
from nbtrack.errors import UsageError
from nbtrack.models import RunRecord
from nbtrack.store.read_sqlite import CHUNK, Unsupported

log = logging.getLogger("nbtrack.store")

#: Runs read at most per scope (MLflow's own search limit).
MAX_RUNS = 50_000
#: The internal tags a table row reads (every user tag is read too).
ROW_TAGS = (
    T.SOURCE_NAME, T.GIT_COMMIT, T.GIT_DIRTY, T.DATA_STATUS, T.OUT_OF_ORDER, T.NOTE, T.RUN_NAME,
    T.SCHEMA_VERSION, T.REPLAY_OF, T.REPLAY_VERDICT,
)  # fmt: skip
_FILTER_HINT = "use MLflow's search syntax, e.g. metrics.loss < 0.5 and params.lr = '0.01'"


@dataclass
class CompareRun:
    """A run with the facts its compare row needs beyond the record.

    Attributes:
        record: the run (tags, params, latest metrics).
        metric_min: per metric, its smallest logged value (empty when unknown: a server store).
        metric_max: per metric, its largest.
        data: the (name, digest) of its DVC input datasets, sorted.
        archived: MLflow's soft delete (lifecycle stage ``deleted``).
    """

    record: RunRecord
    metric_min: dict[str, float] = field(default_factory=dict)
    metric_max: dict[str, float] = field(default_factory=dict)
    data: list[tuple[str, str]] = field(default_factory=list)
    archived: bool = False

    @property
    def data_version(self) -> str | None:
        """A short hash naming the run's data: the DVC hash of its one input, else a hash of all.

        Example:
            >>> CompareRun(record, data=[("data/churn.csv", "3f2a9c41e0b8")]).data_version  # doctest: +SKIP
            '3f2a9c41'
        """
        if not self.data:
            return None
        if len(self.data) == 1:
            return self.data[0][1][:8]
        joined = "\n".join(f"{name}:{digest}" for name, digest in self.data)
        return hashlib.sha1(joined.encode(), usedforsecurity=False).hexdigest()[:8]


@dataclass
class Scope:
    """The runs of a scope, and the verdict of each run's newest replay.

    Attributes:
        runs: newest first.
        replays: run id -> the verdict of its newest replay that has one.
        warnings: one-line notes for the reader (what this store cannot give).
    """

    runs: list[CompareRun]
    replays: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def read_scope(
    store: Any, *, notebook: str | None = None, archived: bool = False, filter: str | None = None
) -> Scope:
    """Every nbtrack run of ``store`` (of ``notebook`` when given), matching ``filter``.

    Args:
        store: an :class:`~nbtrack.store.MlflowStore`.
        notebook: the ``mlflow.source.name`` of the runs (None: every run of the store).
        archived: the archived (soft-deleted) runs instead of the active ones.
        filter: an MLflow search filter (``metrics.loss < 0.5 and params.lr = '0.01'``).

    Raises:
        UsageError: the filter is not MLflow search syntax (one line naming it).
        StoreError: the store failed.

    Example:
        >>> len(read_scope(store, filter="params.lr = '0.1'").runs)  # doctest: +SKIP
        4
    """
    filter = (filter or "").strip() or None
    if store.reader is not None:
        try:
            scope = _read_sqlite(store.reader, notebook, archived, bool(filter and "tag" in filter.lower()))
        except Unsupported as why:
            log.debug("reading the compare scope through MLflow: %s", why)
        else:
            if filter:
                scope.runs = _filtered(scope.runs, filter)
            return scope
    return _read_mlflow(store, notebook, archived, filter)


# --- the embedded store, from its tables -------------------------------------------------------------
def _read_sqlite(reader: Any, notebook: str | None, archived: bool, all_tags: bool) -> Scope:
    with reader.session() as con:
        stage = "deleted" if archived else "active"
        args: list[Any] = [T.SCHEMA_VERSION, stage]
        where_nb = ""
        if notebook is not None:
            where_nb = (
                "AND runs.run_uuid IN (SELECT tags.run_uuid FROM tags "
                'WHERE tags."key" = ? AND tags.value = ?)'
            )
            args += [T.SOURCE_NAME, notebook]
        sql = (
            f"SELECT {_COLUMNS} FROM runs JOIN (SELECT tags.run_uuid AS run_uuid FROM tags "
            "WHERE tags.\"key\" = ? AND tags.value != '') AS tracked ON runs.run_uuid = tracked.run_uuid "
            f"WHERE runs.lifecycle_stage = ? {where_nb} "
            "ORDER BY CASE WHEN (runs.start_time IS NULL) THEN 1 ELSE 0 END, runs.start_time DESC, "
            "runs.run_uuid LIMIT ?"
        )
        rows = con.execute(sql, [*args, MAX_RUNS]).fetchall()
        runs = [CompareRun(r, archived=archived) for r in _records(con, rows, all_tags)]
        ids = [r.record.run_id for r in runs]
        _add_ranges(con, runs, ids)
        _add_datasets(con, runs, ids)
        return Scope(runs, _replays_sqlite(con))


def _records(con: sqlite3.Connection, rows: list[Any], all_tags: bool) -> list[RunRecord]:
    """The runs with their params, latest metrics and the tags a row shows: user tags and the
    internal ones in :data:`ROW_TAGS` (``all_tags``: every tag, for a filter that may name any).
    Leaving the other ``mlflow.*`` / ``nbtrack.*`` tags in the database halves the rows read."""
    ids = [row[0] for row in rows]
    tags: dict[str, dict[str, str]] = {run_id: {} for run_id in ids}
    params: dict[str, dict[str, str]] = {run_id: {} for run_id in ids}
    metrics: dict[str, dict[str, float]] = {run_id: {} for run_id in ids}
    last_ms: dict[str, int] = {}
    internal = ", ".join("?" * len(ROW_TAGS))
    keep = (
        ""
        if all_tags
        else (
            "AND (substr(tags.\"key\", 1, 7) != 'mlflow.' AND substr(tags.\"key\", 1, 8) != 'nbtrack.' "
            f'OR tags."key" IN ({internal}))'
        )
    )
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        tag_sql = f'SELECT run_uuid, "key", value FROM tags WHERE run_uuid IN ({marks}) {keep}'
        for run_id, key, value in con.execute(tag_sql, [*chunk, *([] if all_tags else ROW_TAGS)]):
            tags[run_id][key] = value
        for run_id, key, value in con.execute(
            f'SELECT run_uuid, "key", value FROM params WHERE run_uuid IN ({marks})', chunk
        ):
            params[run_id][key] = value
        metric_sql = (
            'SELECT run_uuid, "key", value, timestamp, is_nan FROM latest_metrics '
            f"WHERE run_uuid IN ({marks})"
        )
        for run_id, key, value, timestamp, is_nan in con.execute(metric_sql, chunk):
            metrics[run_id][key] = float("nan") if is_nan else float(value)
            if timestamp is not None:
                last_ms[run_id] = max(last_ms.get(run_id, 0), int(timestamp))
    return [
        RunRecord(
            run_id=run_id,
            name=name or tags[run_id].get(T.RUN_NAME) or name,
            experiment_id=str(experiment_id),
            status=status,
            start_time=start,
            end_time=end,
            artifact_uri=artifact_uri or "",
            tags=tags[run_id],
            params=params[run_id],
            metrics=metrics[run_id],
            last_metric_ms=last_ms.get(run_id),
        )
        for run_id, name, status, start, end, artifact_uri, experiment_id in rows
    ]


_COLUMNS = (
    "runs.run_uuid, runs.name, runs.status, runs.start_time, runs.end_time, runs.artifact_uri, "
    "runs.experiment_id"
)


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


def _add_ranges(con: sqlite3.Connection, runs: list[CompareRun], ids: list[str]) -> None:
    """Min and max of every metric of every run: one aggregate query (per 500 runs)."""
    by_id = {r.record.run_id: r for r in runs}
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        sql = (
            'SELECT metrics.run_uuid, metrics."key", MIN(metrics.value), MAX(metrics.value) FROM metrics '
            f"WHERE metrics.run_uuid IN ({marks}) AND metrics.is_nan = 0 "
            'GROUP BY metrics.run_uuid, metrics."key"'
        )
        for run_id, key, low, high in con.execute(sql, chunk):
            by_id[run_id].metric_min[key] = float(low)
            by_id[run_id].metric_max[key] = float(high)


def _add_datasets(con: sqlite3.Connection, runs: list[CompareRun], ids: list[str]) -> None:
    """The DVC data each run read: its dataset inputs whose context is ``input`` (or none given)."""
    by_id = {r.record.run_id: r for r in runs}
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        sql = (
            "SELECT inputs.destination_id, datasets.name, datasets.digest, input_tags.value FROM inputs "
            "JOIN datasets ON datasets.dataset_uuid = inputs.source_id "
            "LEFT JOIN input_tags ON input_tags.input_uuid = inputs.input_uuid AND input_tags.name = ? "
            f"WHERE inputs.source_type = 'DATASET' AND inputs.destination_type = 'RUN' "
            f"AND inputs.destination_id IN ({marks})"
        )
        for run_id, name, digest, context in con.execute(sql, [T.DATASET_CONTEXT, *chunk]):
            if context in (None, T.DATASET_INPUT):
                by_id[run_id].data.append((str(name), str(digest)))
    for run in runs:
        run.data.sort()


def _replays_sqlite(con: sqlite3.Connection) -> dict[str, str]:
    """Original run id -> the verdict of its newest replay (archived replays too: they happened)."""
    sql = (
        "SELECT replay_of.value, verdict.value FROM runs "
        'JOIN tags AS replay_of ON replay_of.run_uuid = runs.run_uuid AND replay_of."key" = ? '
        'JOIN tags AS verdict ON verdict.run_uuid = runs.run_uuid AND verdict."key" = ? '
        "ORDER BY runs.start_time ASC"
    )
    return {original: verdict for original, verdict in con.execute(sql, (T.REPLAY_OF, T.REPLAY_VERDICT))}


# --- MLflow's search (a tracking server) --------------------------------------------------------------
def _filtered(runs: list[CompareRun], filter: str) -> list[CompareRun]:
    """The runs MLflow's own ``SearchUtils`` keeps for ``filter`` (its parser, its comparisons).

    Each run goes to MLflow as a ``Run`` holding only the params, metrics and tags the filter
    names (building every value of 1,000 runs as MLflow entities cost more than the filtering).
    """
    from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag  # heavy; only to filter
    from mlflow.exceptions import MlflowException
    from mlflow.utils.search_utils import SearchUtils

    try:
        clauses = SearchUtils.parse_search_filter(filter)  # type: ignore[no-untyped-call]
    except MlflowException as exc:
        raise bad_filter(filter, exc) from None
    named = {
        kind: {c["key"] for c in clauses if c["type"] == kind} for kind in ("parameter", "metric", "tag")
    }
    mlflow_runs = []
    for run in runs:
        r = run.record
        info = RunInfo(
            run_id=r.run_id,
            experiment_id=r.experiment_id,
            user_id="",
            status=r.status,
            start_time=r.start_time or 0,
            end_time=r.end_time,
            lifecycle_stage="deleted" if run.archived else "active",
            artifact_uri=r.artifact_uri,
            run_name=r.name,
        )
        data = RunData(
            metrics=[Metric(k, r.metrics[k], 0, 0) for k in named["metric"] if k in r.metrics],
            params=[Param(k, r.params[k]) for k in named["parameter"] if k in r.params],
            tags=[RunTag(k, r.tags[k]) for k in named["tag"] if k in r.tags],
        )
        mlflow_runs.append(Run(info, data))
    try:
        kept = {m.info.run_id for m in SearchUtils.filter(mlflow_runs, filter)}  # type: ignore[no-untyped-call]
    except MlflowException as exc:
        raise bad_filter(filter, exc) from None
    return [run for run in runs if run.record.run_id in kept]


def bad_filter(filter: str, exc: Exception) -> UsageError:
    """The one-line error of a filter MLflow refused.

    Example:
        >>> bad_filter("loss <", ValueError("Invalid clause(s) in filter string"))  # doctest: +ELLIPSIS
        UsageError("filter 'loss <' is not valid: Invalid clause(s) in filter string; use MLflow's ...")
    """
    reason = " ".join(str(getattr(exc, "message", None) or exc).split())[:200]
    return UsageError(f"filter {filter[:80]!r} is not valid: {reason}; {_FILTER_HINT}")


def _read_mlflow(store: Any, notebook: str | None, archived: bool, filter: str | None) -> Scope:
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    from nbtrack.store.read_sqlite import Filter
    from nbtrack.store.reading import translate_errors

    clauses = [Filter("tag", T.SCHEMA_VERSION, "!=", "").mlflow()]
    if notebook is not None:
        clauses.append(Filter("tag", T.SOURCE_NAME, "=", notebook).mlflow())
    view = ViewType.DELETED_ONLY if archived else ViewType.ACTIVE_ONLY
    if filter:
        try:  # MLflow's parser first: a bad filter is the user's, not the server's, error
            from mlflow.utils.search_utils import SearchUtils

            SearchUtils.parse_search_filter(filter)  # type: ignore[no-untyped-call]
        except MlflowException as exc:
            raise bad_filter(filter, exc) from None
    with bounded_for(store), translate_errors("searching runs to compare"):
        experiments = [e.experiment_id for e in store.client.search_experiments(view_type=ViewType.ALL)]
        if not experiments:
            return Scope([], {})
        runs = _search_all(
            store.client, experiments, " and ".join([*clauses, *([filter] if filter else [])]), view
        )
        replays = _search_all(
            store.client, experiments, Filter("tag", T.REPLAY_OF, "!=", "").mlflow(), ViewType.ALL
        )
    found = [_from_mlflow(run, archived) for run in runs]
    verdicts: dict[str, str] = {}
    for replay in sorted(replays, key=lambda r: r.info.start_time or 0):
        verdict = replay.data.tags.get(T.REPLAY_VERDICT)
        if verdict:
            verdicts[replay.data.tags[T.REPLAY_OF]] = verdict
    warning = "metric min/max are not shown for this store: only the last values (select runs for histories)"
    return Scope(found, verdicts, [warning] if found else [])


def bounded_for(store: Any) -> Any:
    """``store``'s calls bounded by its timeout when it is a tracking server."""
    import contextlib

    from nbtrack.store.http import bounded

    return bounded(store.timeout) if store.is_server else contextlib.nullcontext()


def _search_all(client: Any, experiments: Sequence[str], filter: str, view: Any) -> list[Any]:
    """Every run of a search, page by page (MLflow's page limit is 50,000 anyway)."""
    out: list[Any] = []
    token = None
    while len(out) < MAX_RUNS:
        page = client.search_runs(
            list(experiments),
            filter_string=filter,
            run_view_type=view,
            max_results=5000,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        out.extend(page)
        token = page.token
        if not token:
            break
    return out


def _from_mlflow(run: Any, archived: bool) -> CompareRun:
    from nbtrack.store.reading import to_record

    data = []
    for dataset_input in getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []:
        context = {t.key: t.value for t in dataset_input.tags}.get(T.DATASET_CONTEXT)
        if context in (None, T.DATASET_INPUT):
            data.append((dataset_input.dataset.name, dataset_input.dataset.digest))
    return CompareRun(to_record(run), data=sorted(data), archived=archived)
