"""Did a replay reproduce its run? Metrics, parameters, produced DVC outputs and cell outputs.

Pure functions over plain values: the replay service feeds them the two runs' MLflow metrics and
params, the ``produced`` lists of their data sections and the rows of the cell-output comparison
(:func:`nbtrack.replay.outputs.compare_outputs_of`), and reports what they return; :func:`decide`
turns the comparison (or the failing cell) into the verdict and its message.

The rules, in order:

- FAILED: a cell raised (one expected to raise, as it did in the original history, does not count),
  or the notebook logged no tracked run;
- DIVERGED: a metric, a param (not overridden with ``-p``), a produced DVC output or, with
  ``--outputs check`` (the default), a cell output differs from the original; or a result varied
  between the replays of ``--repeat N`` themselves (a result that matched the original in one replay
  but not in another reproduced only by chance);
- UNVERIFIED: nothing could be compared (no metric, param, DVC output, cell output or figure): a
  verdict without evidence is not a pass;
- REPRODUCED: everything compared matches; the message says what was compared.

``--outputs report`` lists differing cell outputs and counts them as compared, but never makes the
verdict DIVERGED (nor do outputs that vary between replays), and only the outputs that match count
towards a REPRODUCED; ``--outputs ignore`` compares none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

REPRODUCED, DIVERGED, FAILED, CANNOT_REPLAY = "REPRODUCED", "DIVERGED", "FAILED", "CANNOT_REPLAY"
#: Nothing could be compared: the replay ran but gives no evidence either way.
UNVERIFIED = "UNVERIFIED"
#: The CLI's exit code for each verdict (usage errors exit 64).
EXIT_CODES = {REPRODUCED: 0, DIVERGED: 1, FAILED: 2, CANNOT_REPLAY: 3, UNVERIFIED: 4}
#: What a verdict's evidence counts, in the order messages name them.
EVIDENCE = ("metrics", "params", "outputs", "cell_outputs", "figures")
_NAMES = {
    "metrics": ("metric", "metrics"),
    "params": ("param", "params"),
    "outputs": ("DVC output", "DVC outputs"),
    "cell_outputs": ("cell output", "cell outputs"),
    "figures": ("figure", "figures"),
}
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
    """A value for the one-line message: floats without noise, a long value cut (a 300 KB parameter
    would make the verdict line 300 KB)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = "missing" if value is None else str(value)
    return text if len(text) <= 60 else f"{text[:57]}... ({len(text)} characters)"


def _count(n: int, kind: str) -> str:
    one, many = _NAMES[kind]
    return f"{n} {one if n == 1 else many}"


def _and(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def count_evidence(
    metrics: list[dict[str, Any]],
    params: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    cells: Sequence[dict[str, Any]] = (),
) -> dict[str, int]:
    """How many results of each kind were compared with the original.

    A param overridden with ``-p`` is not evidence (it differs on purpose). Cell outputs and
    figures are summed over the compared cells' rows and counted apart: a cell's row counts its
    figures among its outputs, here ``cell_outputs`` are the outputs that are not figures.

    Example:
        >>> count_evidence([{"name": "acc"}], [{"name": "a", "overridden": True}], [],
        ...                [{"cell": 2, "outputs": 3, "figures": 1}])
        {'metrics': 1, 'params': 0, 'outputs': 0, 'cell_outputs': 2, 'figures': 1}
    """
    figures = sum(int(r.get("figures") or 0) for r in cells)
    return {
        "metrics": len(metrics),
        "params": sum(1 for r in params if not r.get("overridden")),
        "outputs": len(outputs),
        "cell_outputs": sum(int(r.get("outputs") or 0) for r in cells) - figures,
        "figures": figures,
    }


def describe_evidence(evidence: dict[str, int]) -> str:
    """``"2 metrics, 1 param, 14 cell outputs and 3 figures"`` ('nothing' when all are 0).

    Example:
        >>> describe_evidence({"metrics": 2, "params": 1, "outputs": 0, "cell_outputs": 14, "figures": 3})
        '2 metrics, 1 param, 14 cell outputs and 3 figures'
    """
    parts = [_count(evidence.get(kind) or 0, kind) for kind in EVIDENCE if evidence.get(kind)]
    return _and(parts) if parts else "nothing"


def _cell_label(row: dict[str, Any]) -> str:
    head = str(row.get("source_head") or "")[:40]
    return f"cell {row.get('cell')}" + (f" (`{head}`)" if head else "")


def summarize(
    metrics: list[dict[str, Any]],
    params: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    cells: Sequence[dict[str, Any]] = (),
) -> str:
    """A one-line account of what differs ('' when nothing does)."""
    parts = [f"{r['name']} {_fmt(r['original'])} -> {_fmt(r['replayed'])}" for r in metrics if not r["ok"]]
    parts += [
        f"param {r['name']} {_fmt(r['original'])} -> {_fmt(r['replayed'])}" for r in params if not r["ok"]
    ]
    parts += [f"output {r['path']} changed" for r in outputs if not r["ok"]]
    parts += [
        f"{_cell_label(r)} output differs" + (f": {str(r['detail'])[:80]}" if r.get("detail") else "")
        for r in cells
        if not r.get("ok", True)
    ]
    if len(parts) > 4:
        parts = [*parts[:4], f"and {len(parts) - 4} more"]
    return ", ".join(parts)


def vary_metrics(
    replays: Sequence[dict[str, float]],
    *,
    tolerance: float | None = None,
    per_metric: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """The metrics that differ between the replays themselves (``--repeat``), under their tolerances.

    Example:
        >>> vary_metrics([{"draw": 0.41, "rows": 300.0}, {"draw": 0.87, "rows": 300.0}])
        [{'kind': 'metric', 'name': 'draw', 'values': [0.41, 0.87]}]
    """
    rows = []
    for name in sorted({n for values in replays for n in values}):
        values = [r.get(name) for r in replays]
        first = values[0]
        for other in values[1:]:
            rel = tolerance_for(name, first, other, tolerance=tolerance, per_metric=per_metric)
            if first is None or other is None or not close(first, other, rel):
                rows.append({"kind": "metric", "name": name, "values": values})
                break
    return rows


def describe_nondeterministic(rows: Sequence[dict[str, Any]]) -> str:
    """``"draw (0.41, 0.87), cell 3 (`print(total)`) output vary between replays"``.

    Example:
        >>> describe_nondeterministic([{"kind": "metric", "name": "draw", "values": [0.41, 0.87]}])
        'draw (0.41, 0.87) varies between replays'
    """
    parts = []
    for r in rows:
        if r.get("kind") == "metric":
            parts.append(f"{r['name']} ({', '.join(_fmt(v) for v in r.get('values') or [])})")
        elif r.get("kind") == "figure":
            parts.append(f"the figure of {_cell_label(r)}")
        else:
            parts.append(f"{_cell_label(r)} output")
    if len(parts) > 4:
        parts = [*parts[:4], f"{len(parts) - 4} more"]
    return f"{_and(parts)} {'varies' if len(rows) == 1 else 'vary'} between replays"


def _notes(
    params: list[dict[str, Any]],
    cells: Sequence[dict[str, Any]],
    outputs_mode: str,
    expected_errors: Sequence[dict[str, Any]],
) -> list[str]:
    """What the message adds after the verdict's reason: overrides, reported outputs, expected errors."""
    notes = []
    over = [r for r in params if r.get("overridden")]
    if over:
        names = ", ".join(f"{r['name']} {_fmt(r['original'])} -> {_fmt(r['replayed'])}" for r in over[:4])
        notes.append(f"{_count(len(over), 'params')} overridden ({names})")
    differing = [r for r in cells if not r.get("ok", True)]
    if differing and outputs_mode != "check":
        cells_named = ", ".join(str(r.get("cell")) for r in differing[:6])
        notes.append(
            f"cell outputs differ in cell(s) {cells_named} (reported only: --outputs {outputs_mode})"
        )
    for e in expected_errors:
        notes.append(f"cell {e.get('cell')} raised {e.get('ename')} as it did in the original")
    return notes


def _nothing_compared(outputs_mode: str) -> str:
    why = (
        "cell outputs were not compared (--outputs ignore)"
        if outputs_mode == "ignore"
        else "its recorded notebook kept no cell outputs that the replay could match"
    )
    return (
        "nothing could be compared with the original: the run logged no metric or param, produced no "
        f"DVC output, and {why}; log a metric (mlflow.log_metric), tag a result cell `nbtrack:result`, "
        "or keep the outputs in the saved notebook"
    )


def _failed(failure: dict[str, Any] | None) -> str:
    """Why the replay FAILED: the cell that raised, else no tracked run was logged."""
    if failure is None:
        return (
            "the notebook executed but logged no tracked run to compare; check that "
            "`%track start` runs in it (see the output notebook with --keep-workspace)"
        )
    where = f"cell {failure['cell']}" if failure.get("cell") else "a cell"
    message = f"{where} raised {failure['ename']}: {failure['evalue']}"
    if failure.get("source_head"):
        message += f" (in `{failure['source_head'][:80]}`)"
    return message


def decide(
    failure: dict[str, Any] | None,
    logged: bool,
    metrics: list[dict[str, Any]],
    params: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    *,
    cells: Sequence[dict[str, Any]] = (),
    outputs_mode: str = "check",
    nondeterministic: Sequence[dict[str, Any]] = (),
    expected_errors: Sequence[dict[str, Any]] = (),
) -> tuple[str, str]:
    """The verdict on a replay and its one-line message (the rules: see the module's docstring).

    Args:
        failure: the failing cell (``cell``, ``ename``, ``evalue``, ``source_head``), None when
            every cell ran (or raised only where the original did).
        logged: whether the replay's kernel logged a tracked run.
        metrics: the rows of :func:`compare_metrics` ([] when nothing was compared).
        params: the rows of :func:`compare_params`.
        outputs: the rows of :func:`compare_outputs`.
        cells: the cell-output rows (``OutputComparison.cells``).
        outputs_mode: ``check`` (differing outputs diverge), ``report`` or ``ignore``.
        nondeterministic: the results that varied between the replays themselves (``--repeat``).
        expected_errors: cells that raised as they did in the original.

    Example:
        >>> decide(None, True, compare_metrics({"acc": 0.8}, {"acc": 0.8}), [], [])
        ('REPRODUCED', '1 metric matches the original')
        >>> decide({"cell": 3, "ename": "KeyError", "evalue": "'TOKEN'"}, False, [], [], [])
        ('FAILED', "cell 3 raised KeyError: 'TOKEN'")
        >>> decide(None, True, [], [], [])[0]
        'UNVERIFIED'
    """
    if failure is not None or not logged:
        return FAILED, _failed(failure)
    notes = _notes(params, cells, outputs_mode, expected_errors)
    differs = summarize(metrics, params, outputs, cells if outputs_mode == "check" else ())
    varying = [
        r
        for r in nondeterministic
        if outputs_mode == "check" or r.get("kind") not in ("cell_output", "figure")
    ]
    if differs or varying:
        parts = [differs] if differs else []
        if varying:
            chance = "" if differs else "; it matched the original only by chance"
            parts.append(f"nondeterministic: {describe_nondeterministic(varying)}{chance}")
        return DIVERGED, "; ".join(parts + notes)
    # Outputs that differ under --outputs report were compared, but they are no ground for a pass.
    evidence = count_evidence(metrics, params, outputs, [r for r in cells if r.get("ok", True)])
    if not any(evidence.values()):
        return UNVERIFIED, "; ".join([_nothing_compared(outputs_mode), *notes])
    total = sum(evidence.values())
    verb = "matches" if total == 1 else "match"
    return REPRODUCED, "; ".join([f"{describe_evidence(evidence)} {verb} the original", *notes])
