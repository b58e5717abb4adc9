"""Metric histories of selected runs, for the compare view's step charts.

From the embedded store's ``metrics`` table (one read-only query per run, no ``import mlflow``), else
MLflow's ``get_metric_history`` (a tracking server), in step order.

Example:
    >>> metric_histories(store, [run], ["loss"])[run.run_id]["loss"][0]  # doctest: +SKIP
    [0, 0.9, 1733350000000]
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from nbtrack.models import RunRecord
from nbtrack.store.compare_sql import bounded_for
from nbtrack.store.read_sqlite import Unsupported

log = logging.getLogger("nbtrack.store")


def metric_histories(
    store: Any, runs: Sequence[RunRecord], keys: Sequence[str] | None
) -> dict[str, dict[str, list[list[float | None]]]]:
    """Every logged value of the metrics ``keys`` (None: all) of ``runs``, in step order.

    Returns ``{run_id: {metric: [[step, value, timestamp_ms], ...]}}`` (a NaN value as None).

    Example:
        >>> metric_histories(store, [run], ["loss"])[run.run_id]["loss"][:2]  # doctest: +SKIP
        [[0, 0.9, 1733350000000], [1, 0.7, 1733350000100]]
    """
    wanted = {
        r.run_id: sorted(r.metrics if keys is None else [k for k in keys if k in r.metrics]) for r in runs
    }
    out: dict[str, dict[str, list[list[float | None]]]] = {run_id: {} for run_id in wanted}
    if store.reader is not None:
        try:
            with store.reader.session() as con:
                for run_id, metric_keys in wanted.items():
                    out[run_id] = _history_sqlite(con, run_id, metric_keys)
            return out
        except Unsupported as why:
            log.debug("reading metric histories through MLflow: %s", why)
    from nbtrack.store.reading import translate_errors

    with bounded_for(store), translate_errors("reading metric histories"):
        for run_id, metric_keys in wanted.items():
            for key in metric_keys:
                points = store.client.get_metric_history(run_id, key)
                points = sorted(points, key=lambda m: (m.step, m.timestamp))
                out[run_id][key] = [[m.step, _finite(m.value), m.timestamp] for m in points]
    return out


def _history_sqlite(con: sqlite3.Connection, run_id: str, keys: list[str]) -> dict[str, list[list[Any]]]:
    out: dict[str, list[list[Any]]] = {key: [] for key in keys}
    if not keys:
        return out
    marks = ", ".join("?" * len(keys))
    sql = (
        'SELECT metrics."key", metrics.step, metrics.value, metrics.timestamp, metrics.is_nan FROM metrics '
        f'WHERE metrics.run_uuid = ? AND metrics."key" IN ({marks}) '
        'ORDER BY metrics."key", metrics.step, metrics.timestamp'
    )
    for key, step, value, timestamp, is_nan in con.execute(sql, [run_id, *keys]):
        out[key].append([int(step), None if is_nan else float(value), int(timestamp)])
    return out


def _finite(value: float) -> float | None:
    return None if value != value else float(value)  # NaN is no JSON number
