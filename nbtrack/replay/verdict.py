"""Did a replay reproduce its run? Metrics with tolerances, parameters, and produced DVC outputs.

Pure functions over plain values: the replay service feeds them the two runs' MLflow metrics and
params and the ``produced`` lists of their data sections, and reports what they return;
:func:`decide` turns the comparison (or the failing cell) into the verdict and its message.
"""

from __future__ import annotations

import math
from typing import Any

REPRODUCED, DIVERGED, FAILED, CANNOT_REPLAY = "REPRODUCED", "DIVERGED", "FAILED", "CANNOT_REPLAY"
#: The CLI's exit code for each verdict (usage errors exit 64).
EXIT_CODES = {REPRODUCED: 0, DIVERGED: 1, FAILED: 2, CANNOT_REPLAY: 3}
#: Relative tolerance for metrics that are not whole numbers, unless the user gives one.
DEFAULT_FLOAT_TOLERANCE = 1e-9


def _integral(value: float) -> bool:
    return math.isfinite(value) and float(value).is_integer()


def tolerance_for(
    name: str,
    original: float | None,
    replayed: float | None,
    *,
    tolerance: float | None = None,
    per_metric: dict[str, float] | None = None,
) -> float:
    """The relative tolerance a metric is held to.

    A per-metric override wins, then ``tolerance``; by default whole numbers (counts, row numbers)
    must match exactly and other values within 1e-9.

    Example:
        >>> tolerance_for("rows", 2000.0, 2000.0)
        0.0
        >>> tolerance_for("accuracy", 0.81, 0.81, per_metric={"accuracy": 0.01})
        0.01
    """
    if per_metric and name in per_metric:
        return per_metric[name]
    if tolerance is not None:
        return tolerance
    values = [v for v in (original, replayed) if v is not None]
    return 0.0 if values and all(_integral(v) for v in values) else DEFAULT_FLOAT_TOLERANCE


def close(a: float, b: float, rel: float) -> bool:
    """``a`` and ``b`` equal within relative tolerance ``rel`` (NaN equals NaN: same result)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    return abs(a - b) <= rel * max(abs(a), abs(b))


def compare_metrics(
    original: dict[str, float],
    replayed: dict[str, float],
    *,
    tolerance: float | None = None,
    per_metric: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """One row per metric of either run; ``ok`` False when it differs beyond its tolerance or is
    missing on one side.

    Example:
        >>> [r["ok"] for r in compare_metrics({"acc": 0.8, "n": 10}, {"acc": 0.8, "n": 11})]
        [True, False]
    """
    rows = []
    for name in sorted(set(original) | set(replayed)):
        a, b = original.get(name), replayed.get(name)
        rel = tolerance_for(name, a, b, tolerance=tolerance, per_metric=per_metric)
        ok = a is not None and b is not None and close(a, b, rel)
        difference = b - a if a is not None and b is not None else None
        rows.append(
            {"name": name, "original": a, "replayed": b, "difference": difference, "tolerance": rel, "ok": ok}
        )
    return rows


def compare_params(
    original: dict[str, str], replayed: dict[str, str], overridden: set[str]
) -> list[dict[str, Any]]:
    """One row per param; a param the user overrode (``-p``) is expected to differ.

    Example:
        >>> compare_params({"a": "1", "b": "2"}, {"a": "5", "b": "2"}, {"a"})[0]["ok"]
        True
    """
    rows = []
    for name in sorted(set(original) | set(replayed)):
        a, b = original.get(name), replayed.get(name)
        over = name in overridden
        rows.append({"name": name, "original": a, "replayed": b, "ok": over or a == b, "overridden": over})
    return rows


def compare_outputs(original: list[dict[str, Any]], replayed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The DVC outputs the original run produced, each with the hash the replay produced for it.

    Example:
        >>> compare_outputs([{"path": "m.pkl", "after": "1"}], [{"path": "m.pkl", "after": "2"}])[0]["ok"]
        False
    """
    produced = {o["path"]: o.get("after") for o in replayed}
    return [
        {
            "path": o["path"],
            "original": o.get("after"),
            "replayed": produced.get(o["path"]),
            "ok": o.get("after") == produced.get(o["path"]),
        }
        for o in original
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "missing" if value is None else str(value)


def summarize(
    metrics: list[dict[str, Any]], params: list[dict[str, Any]], outputs: list[dict[str, Any]]
) -> str:
    """A one-line account of what differs ('' when nothing does)."""
    parts = [f"{r['name']} {_fmt(r['original'])} -> {_fmt(r['replayed'])}" for r in metrics if not r["ok"]]
    parts += [
        f"param {r['name']} {_fmt(r['original'])} -> {_fmt(r['replayed'])}" for r in params if not r["ok"]
    ]
    parts += [f"output {r['path']} changed" for r in outputs if not r["ok"]]
    if len(parts) > 4:
        parts = [*parts[:4], f"and {len(parts) - 4} more"]
    return ", ".join(parts)


def decide(
    failure: dict[str, Any] | None,
    logged: bool,
    metrics: list[dict[str, Any]],
    params: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> tuple[str, str]:
    """The verdict on a replay and its one-line message.

    FAILED when a cell raised (naming it) or the notebook logged no tracked run to compare;
    DIVERGED when a metric, param or produced output differs (naming them); else REPRODUCED.

    Args:
        failure: the failing cell (``cell``, ``ename``, ``evalue``, ``source_head``), None when
            every cell ran.
        logged: whether the replay's kernel logged a tracked run.
        metrics: the rows of :func:`compare_metrics` ([] when nothing was compared).
        params: the rows of :func:`compare_params`.
        outputs: the rows of :func:`compare_outputs`.

    Example:
        >>> decide(None, True, compare_metrics({"acc": 0.8}, {"acc": 0.8}), [], [])
        ('REPRODUCED', '1 metric(s), 0 param(s) and 0 produced output(s) match the original')
        >>> decide({"cell": 3, "ename": "KeyError", "evalue": "'TOKEN'"}, False, [], [], [])
        ('FAILED', "cell 3 raised KeyError: 'TOKEN'")
    """
    if failure is not None:
        where = f"cell {failure['cell']}" if failure.get("cell") else "a cell"
        message = f"{where} raised {failure['ename']}: {failure['evalue']}"
        if failure.get("source_head"):
            message += f" (in `{failure['source_head'][:80]}`)"
        return FAILED, message
    if not logged:
        return FAILED, (
            "the notebook executed but logged no tracked run to compare; check that "
            "`%track start` runs in it (see the output notebook with --keep-workspace)"
        )
    differs = summarize(metrics, params, outputs)
    if differs:
        return DIVERGED, differs
    return REPRODUCED, (
        f"{len(metrics)} metric(s), {len(params)} param(s) and "
        f"{len(outputs)} produced output(s) match the original"
    )
