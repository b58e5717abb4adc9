"""The runs table of the compare view, ``%track compare`` and :func:`nbtrack.runs_frame`.

One row per run of a scope (a notebook's runs, or every run of the project's store), one value per
column key (see ``CompareTable`` in ``nbtrack/server/openapi.yaml``): ``run.*``, ``params.<name>``,
``metrics.<name>.last|min|max``, ``tags.<name>`` (user tags only), ``data.version``, ``git.*`` and
``nbtrack.*`` facts. Built from the store's bulk read (:mod:`nbtrack.store.compare_sql`: no
artifact is read per row), then narrowed by ``q`` (text), ``only`` (reproduced, clean_git) and
``same_data``; ``varies`` says whether a column's values differ over the matching rows.

Example:
    >>> query = TableQuery(sort="metrics.loss.min", order="asc", limit=20)
    >>> page = build_table(read_scope(store, notebook="train.ipynb"), query)  # doctest: +SKIP
    >>> page["rows"][0]["values"]["metrics.loss.min"]  # doctest: +SKIP
    0.21
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nbtrack import tags as T
from nbtrack.errors import RunNotFoundError, UsageError
from nbtrack.runs.rows import duration_seconds
from nbtrack.store.compare_sql import CompareRun, Scope

GROUPS = ("run", "param", "metric", "tag", "data", "git", "nbtrack")
ONLY = ("reproduced", "clean_git")
#: Always shown, varying or not.
ALWAYS = ("run.name", "run.status")
MAX_LIMIT = 1000
#: Tags nbtrack or MLflow write: never a user's ``tags.*`` column.
_INTERNAL = ("mlflow.", "nbtrack.")

_FIXED: list[tuple[str, str, str, str]] = [  # key, label, group, kind
    ("run.name", "Name", "run", "text"),
    ("run.status", "Status", "run", "text"),
    ("run.start", "Started", "run", "time"),
    ("run.duration", "Duration (s)", "run", "number"),
    ("run.notebook", "Notebook", "run", "text"),
]
_FACTS: list[tuple[str, str, str, str]] = [
    ("data.version", "Data", "data", "text"),
    ("git.commit", "Commit", "git", "text"),
    ("git.dirty", "Git dirty", "git", "bool"),
    ("nbtrack.dirty_data", "Dirty data", "nbtrack", "bool"),
    ("nbtrack.uncommitted", "Uncommitted code", "nbtrack", "bool"),
    ("nbtrack.out_of_order", "Out of order", "nbtrack", "bool"),
    ("nbtrack.replay", "Replay", "nbtrack", "text"),
    ("nbtrack.note", "Note", "nbtrack", "bool"),
]


@dataclass
class TableQuery:
    """What a table request asks for (the ``compare`` endpoint's query parameters)."""

    q: str | None = None
    sort: str | None = None
    order: str = "desc"
    offset: int = 0
    limit: int = 100
    only: list[str] = field(default_factory=list)
    same_data: str | None = None
    columns: str = "varying"

    def check(self) -> TableQuery:
        """Refuse what cannot be answered, in one line naming the parameter."""
        if self.order not in ("asc", "desc"):
            raise UsageError(f"order={self.order!r}: use asc or desc")
        if self.columns not in ("varying", "all"):
            raise UsageError(f"columns={self.columns!r}: use varying or all")
        unknown = [o for o in self.only if o not in ONLY]
        if unknown:
            raise UsageError(f"only={','.join(unknown)!r}: use any of {', '.join(ONLY)}")
        if self.offset < 0 or not 1 <= self.limit <= MAX_LIMIT:
            raise UsageError(
                f"offset={self.offset}, limit={self.limit}: give offset >= 0, limit 1 to {MAX_LIMIT}"
            )
        return self


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags a user set (no ``mlflow.*`` / ``nbtrack.*`` internals).

    Example:
        >>> user_tags({"team": "churn", "mlflow.runName": "x", "nbtrack.git.dirty": "false"})
        {'team': 'churn'}
    """
    return {k: v for k, v in tags.items() if not k.startswith(_INTERNAL)}


def _number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


def row_values(run: CompareRun, replays: dict[str, str]) -> dict[str, Any]:
    """Every column value of one run (absent keys: no value).

    Example:
        >>> row_values(run, {})["git.commit"]  # doctest: +SKIP
        '9c41e0b'
    """
    r, tags = run.record, run.record.tags
    values: dict[str, Any] = {
        "run.name": r.name,
        "run.status": r.status,
        "run.start": r.start_time,
        "run.duration": duration_seconds(r),
        "run.notebook": tags.get(T.SOURCE_NAME),
        "data.version": run.data_version,
        "git.commit": (tags.get(T.GIT_COMMIT) or "")[:7] or None,
        "git.dirty": _flag(tags.get(T.GIT_DIRTY)),
        "nbtrack.dirty_data": None
        if T.DATA_STATUS not in tags
        else tags[T.DATA_STATUS] in ("modified", "missing"),
        "nbtrack.uncommitted": _flag(tags.get(T.GIT_DIRTY)),
        "nbtrack.out_of_order": _flag(tags.get(T.OUT_OF_ORDER)),
        "nbtrack.replay": replays.get(r.run_id),
        "nbtrack.note": bool(tags.get(T.NOTE, "").strip()),
    }
    values.update({f"params.{k}": v for k, v in r.params.items()})
    for key, value in r.metrics.items():
        values[f"metrics.{key}.last"] = _number(value)
        if key in run.metric_min:
            values[f"metrics.{key}.min"] = _number(run.metric_min[key])
            values[f"metrics.{key}.max"] = _number(run.metric_max[key])
    values.update({f"tags.{k}": v for k, v in user_tags(tags).items()})
    return values


def _flag(value: str | None) -> bool | None:
    return None if value is None else value == "true"


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def columns_of(rows: list[dict[str, Any]], metrics_range: bool) -> list[dict[str, Any]]:
    """The columns of these rows' values, with ``varies`` over them; params, metrics and tags sorted
    by name. A param whose every value reads as a number is a ``number`` column."""
    params: set[str] = set()
    metrics: set[str] = set()
    user: set[str] = set()
    for key in set().union(*rows):  # (the distinct keys first: a few dozen, not rows x keys)
        group, _, name = key.partition(".")
        if group == "params":
            params.add(name)
        elif group == "metrics":
            metrics.add(name.rsplit(".", 1)[0])
        elif group == "tags":
            user.add(name)
    specs = list(_FIXED)
    for name in sorted(params):
        key = f"params.{name}"
        numeric = all(_as_number(v[key]) is not None for v in rows if v.get(key) is not None)
        specs.append((key, name, "param", "number" if numeric else "text"))
    for name in sorted(metrics):
        for part in ("last", "min", "max") if metrics_range else ("last",):
            specs.append((f"metrics.{name}.{part}", f"{name} ({part})", "metric", "number"))
    specs += [(f"tags.{name}", name, "tag", "text") for name in sorted(user)]
    specs += _FACTS
    return [
        {"key": key, "label": label, "group": group, "kind": kind, "varies": _varies(rows, key)}
        for key, label, group, kind in specs
    ]


def _varies(rows: list[dict[str, Any]], key: str) -> bool:
    if not rows:
        return False
    first = rows[0].get(key)
    kind = type(first)
    # (type too: 1 and True, 0.0 and False are equal in Python; a column of them varies)
    return any(v.get(key) != first or type(v.get(key)) is not kind for v in rows)


def _matches(values: dict[str, Any], run_id: str, needle: str) -> bool:
    """``q``: a case-insensitive substring of the run's name, id, a param or tag (name or value)."""
    hay = [run_id, str(values.get("run.name") or "")]
    hay += [f"{k.split('.', 1)[1]}={v}" for k, v in values.items() if k.startswith(("params.", "tags."))]
    return any(needle in text.lower() for text in hay)


def select(scope: Scope, query: TableQuery) -> list[tuple[CompareRun, dict[str, Any]]]:
    """The runs of ``scope`` that pass ``q``, ``only`` and ``same_data``, with their values, sorted."""
    rows = [(run, row_values(run, scope.replays)) for run in scope.runs]
    if query.same_data:
        wanted = [v for run, v in rows if run.record.run_id.startswith(query.same_data.lower())]
        if not wanted:
            raise RunNotFoundError(
                f"same_data={query.same_data!r}: no such run in this scope; pick a listed run"
            )
        version = wanted[0]["data.version"]
        rows = [(run, v) for run, v in rows if version is not None and v["data.version"] == version]
    if "reproduced" in query.only:
        rows = [(run, v) for run, v in rows if v["nbtrack.replay"] == "REPRODUCED"]
    if "clean_git" in query.only:
        rows = [(run, v) for run, v in rows if v["git.commit"] and v["git.dirty"] is False]
    if query.q and query.q.strip():
        needle = query.q.strip().lower()
        rows = [(run, v) for run, v in rows if _matches(v, run.record.run_id, needle)]
    if query.sort:
        rows = _sorted(rows, query.sort, query.order == "desc")
    return rows


def _sorted(rows: list[tuple[CompareRun, dict[str, Any]]], key: str, desc: bool) -> list[Any]:
    """Sorted by one column: numbers as numbers, text case-insensitively, no value last either way."""
    present = [row for row in rows if row[1].get(key) is not None]
    absent = [row for row in rows if row[1].get(key) is None]
    numeric = all(_as_number(v[key]) is not None for _, v in present)

    def order(row: tuple[CompareRun, dict[str, Any]]) -> Any:
        value = row[1][key]
        return _as_number(value) if numeric else str(value).lower()

    return sorted(present, key=order, reverse=desc) + absent


def build_table(scope: Scope, query: TableQuery) -> dict[str, Any]:
    """One page of the table (the ``compare`` reply without ``store``/``scope``).

    Example:
        >>> build_table(Scope([], {}), TableQuery())["total"]
        0
    """
    query.check()
    rows = select(scope, query)
    values = [v for _, v in rows]
    columns = columns_of(values, metrics_range=_has_ranges(scope))
    if query.sort and query.sort not in {c["key"] for c in columns} and rows:
        raise UsageError(f"sort={query.sort!r} is no column of these runs; sort by a column key it lists")
    if query.columns == "varying":
        columns = [c for c in columns if c["varies"] or c["key"] in ALWAYS]
    page = rows[query.offset : query.offset + query.limit]
    return {
        "total": len(rows),
        "offset": query.offset,
        "limit": query.limit,
        "columns": columns,
        "rows": [
            {"run_id": run.record.run_id, "name": run.record.name, "status": run.record.status, "values": v}
            for run, v in page
        ],
        "warnings": list(scope.warnings),
    }


def _has_ranges(scope: Scope) -> bool:
    """Whether the store gave metric min/max (the embedded store does; a server's search does not)."""
    return any(run.metric_min for run in scope.runs) or not any(run.record.metrics for run in scope.runs)


def table_csv(scope: Scope, query: TableQuery, keys: Iterable[str] | None = None) -> str:
    """Every matching row (not one page) as CSV; header: the columns' labels.

    ``keys`` picks and orders the columns (the ones the view shows); default: the varying ones.

    Example:
        >>> table_csv(Scope([], {}), TableQuery(), ["run.name"])
        'run_id,Name\\r\\n'
    """
    query.check()
    rows = select(scope, query)
    values = [v for _, v in rows]
    columns = {c["key"]: c for c in columns_of(values, metrics_range=_has_ranges(scope))}
    if keys is None:
        chosen = [k for k, c in columns.items() if c["varies"] or k in ALWAYS]
    else:
        chosen = [k for k in keys if k]
    labels = [columns[k]["label"] if k in columns else k for k in chosen]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["run_id", *labels])
    for run, v in rows:
        writer.writerow([run.record.run_id, *(_cell(v.get(k)) for k in chosen)])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def runs_frame(
    notebook: str | None = None,
    *,
    scope: str = "notebook",
    filter: str | None = None,
    q: str | None = None,
    only: Iterable[str] = (),
    columns: str = "all",
    archived: bool = False,
) -> Any:
    """The body of :func:`nbtrack.runs_frame` (see there)."""
    import os
    from pathlib import Path

    import pandas as pd  # heavy (~0.5 s); only when a frame is asked for

    from nbtrack.config import load_config
    from nbtrack.runs.service import Runs
    from nbtrack.store.compare_sql import read_scope

    if scope not in ("notebook", "project"):
        raise UsageError(f"scope={scope!r}: use notebook or project")
    name = notebook or os.environ.get("JPY_SESSION_NAME")  # (the kernel's notebook, under Jupyter)
    path = Path(name).expanduser().absolute() if name else None
    runs = Runs(load_config())
    target = runs.locate(notebook=path) if path is not None else runs.locate(cwd=Path.cwd())
    if scope == "notebook" and target.notebook is None:
        raise UsageError("runs_frame: name the notebook (runs_frame('train.ipynb')) or pass scope='project'")
    found = Scope([], {})
    if target.store is not None:
        wanted = target.notebook if scope == "notebook" else None
        found = read_scope(target.store, notebook=wanted, archived=archived, filter=filter)
    query = TableQuery(q=q, only=list(only), columns=columns, limit=MAX_LIMIT).check()
    rows = select(found, query)
    values = [v for _, v in rows]
    specs = columns_of(values, metrics_range=_has_ranges(found))
    if columns == "varying":
        specs = [c for c in specs if c["varies"] or c["key"] in ALWAYS]
    keys = [c["key"] for c in specs]
    frame = pd.DataFrame(
        [[v.get(k) for k in keys] for v in values],
        columns=keys,
        index=pd.Index([run.record.run_id for run, _ in rows], name="run_id"),
    )
    for c in specs:
        if c["kind"] == "number":
            frame[c["key"]] = pd.to_numeric(frame[c["key"]], errors="coerce")
        elif c["kind"] == "time":
            frame[c["key"]] = pd.to_datetime(frame[c["key"]], unit="ms")
    return frame
