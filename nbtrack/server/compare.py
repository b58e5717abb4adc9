"""The compare view's verbs, below the HTTP layer: the table, its CSV, metric histories, the gallery.

Functions of the server's :class:`~nbtrack.server.service.NbtrackService` (its ``resolver`` finds the
store of a request's ``notebook``); blocking: the handlers run them through ``service.call``.

Example:
    >>> reply = table(service, "analysis/train.ipynb", "notebook", None, TableQuery())  # doctest: +SKIP
    >>> reply["total"], reply["scope"]  # doctest: +SKIP
    (30, 'notebook')
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from nbtrack.errors import RunNotFoundError, UsageError
from nbtrack.runs.service import Target
from nbtrack.runs.table import TableQuery, build_table, table_csv
from nbtrack.store.compare_sql import Scope, read_scope
from nbtrack.store.history import metric_histories

SCOPES = ("notebook", "project")
#: Runs one histories or gallery request may name.
MAX_SELECTED = 100


def scope_of(
    service: Any, notebook: str | None, scope: str, filter: str | None, archived: bool
) -> tuple[Target, Scope]:
    """The target of ``notebook`` and the runs of the scope asked (no store yet: no runs)."""
    if scope not in SCOPES:
        raise UsageError(f"scope={scope!r}: use notebook or project")
    target = service.resolver.target(notebook)
    if scope == "notebook" and target.notebook is None:
        raise UsageError(
            "scope=notebook needs notebook=PATH (the notebook whose runs to compare); or use scope=project"
        )
    if target.store is None:
        return target, Scope([], {})
    name = target.notebook if scope == "notebook" else None
    key = _state(target.database)
    if key is None:  # a tracking server: its data cannot be stat'ed, every request asks it
        return target, read_scope(target.store, notebook=name, archived=archived, filter=filter)
    key = (*key, name, archived, filter)
    with _lock:
        cached = _cache.get(key)
    if cached is None:
        cached = read_scope(target.store, notebook=name, archived=archived, filter=filter)
        with _lock:
            _cache[key] = cached
            while len(_cache) > CACHED_SCOPES:
                _cache.pop(next(iter(_cache)))
    return target, cached


#: Scopes kept, per embedded database state: the view re-sorts, searches and pages the same runs.
CACHED_SCOPES = 8
_cache: dict[tuple[Any, ...], Scope] = {}
_lock = threading.Lock()


def _state(database: Path | None) -> tuple[Any, ...] | None:
    """What changes with every commit to an embedded store: its files' sizes and modification times
    (the database, and MLflow's write-ahead log when there is one); None for a tracking server."""
    if database is None:
        return None
    state: list[Any] = [str(database)]
    for path in (database, database.with_name(database.name + "-wal")):
        try:
            st = path.stat()
        except OSError:
            state.append(None)
            continue
        state.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(state)


def table(
    service: Any,
    notebook: str | None,
    scope: str,
    filter: str | None,
    query: TableQuery,
    archived: bool = False,
) -> dict[str, Any]:
    """The ``compare`` reply: one page of the runs table."""
    query.check()
    target, runs = scope_of(service, notebook, scope, filter, archived)
    reply = build_table(runs, query)
    store = target.store
    return {
        **reply,
        "scope": scope,
        "store": target.display_uri,
        "is_server": bool(store is not None and store.is_server),
    }


def table_as_csv(
    service: Any,
    notebook: str | None,
    scope: str,
    filter: str | None,
    query: TableQuery,
    keys: list[str] | None,
    archived: bool = False,
) -> str:
    """The ``compare.csv`` reply: every matching row."""
    query.check()
    _target, runs = scope_of(service, notebook, scope, filter, archived)
    return table_csv(runs, query, keys)


def selected_ids(raw: str | None) -> list[str]:
    """The ``runs=ID,ID`` parameter: full run ids, each once, in order.

    Example:
        >>> selected_ids("ab12, cd34,ab12")
        ['ab12', 'cd34']
    """
    ids = list(dict.fromkeys(part.strip() for part in (raw or "").split(",") if part.strip()))
    if not ids:
        raise UsageError("runs=: give the ids of the runs, separated by commas")
    if len(ids) > MAX_SELECTED:
        raise UsageError(f"runs=: {len(ids)} runs named; give at most {MAX_SELECTED}")
    return ids


def _records(service: Any, notebook: str | None, ids: list[str]) -> tuple[Target, list[Any]]:
    from nbtrack.server.service import check_run_id

    target = service.resolver.target(notebook)
    out = []
    for run_id in ids:
        check_run_id(run_id)
        out.append(service.runs.resolve(target, run_id))
    return target, out


def histories(service: Any, notebook: str | None, runs: str | None, keys: str | None) -> dict[str, Any]:
    """The ``histories`` reply: every metric name of the runs and the asked ones' histories."""
    ids = selected_ids(runs)
    _target, found = _records(service, notebook, ids)
    records = [f.run for f in found]
    every = sorted({key for r in records for key in r.metrics})
    wanted = None if not keys else [k.strip() for k in keys.split(",") if k.strip()]
    by_store: dict[int, tuple[Any, list[Any]]] = {}
    for f in found:  # (a pending spool run lives in the spool's store)
        by_store.setdefault(id(f.store), (f.store, []))[1].append(f.run)
    result: dict[str, Any] = {}
    for store, store_runs in by_store.values():
        result.update(metric_histories(store, store_runs, wanted))
    return {"keys": every, "histories": {f.run_id: result.get(f.run.run_id, {}) for f in found}}


def gallery(
    service: Any, notebook: str | None, runs: str | None, cell: str | None, source: str | None
) -> dict[str, Any]:
    """The ``gallery`` reply: the cells of the runs' recorded notebooks and one cell's outputs."""
    from nbtrack.runs.compare_gallery import SOURCES, build_gallery

    source = source or "history"
    if source not in SOURCES:
        raise UsageError(f"source={source!r}: use one of {', '.join(SOURCES)}")
    ids = selected_ids(runs)
    _target, found = _records(service, notebook, ids)
    if not found:
        raise RunNotFoundError("runs=: no run found")
    return build_gallery([(f.store, f.run) for f in found], cell, source)
