"""The terminal rendering of a replay result (what ``nbtrack replay`` prints)."""

from __future__ import annotations

from collections.abc import Mapping

from nbtrack.replay.reports.common import (
    Result,
    as_result,
    cell_output_lines,
    columns,
    diff_table,
    env_compared,
    env_summary,
    evidence_line,
    expected_error_lines,
    failure_lines,
    mode_line,
    overrides,
    reason_text,
    rows_of,
    short_id,
    varied_label,
)
from nbtrack.replay.result import ReplayResult

_JUDGED = ("REPRODUCED", "DIVERGED", "UNVERIFIED")
# Differing cells listed in the terminal; the HTML report lists them all.
MAX_CELLS = 10

# --- terminal ------------------------------------------------------------------------------------


def format_result(result: Result) -> str:
    """The plain-text report the CLI prints after a replay.

    Example:
        >>> print(format_result(result))  # doctest: +SKIP
        DIVERGED  run 3f2a1b2c… (random-forest) of notebooks/train.ipynb
          accuracy 0.81 -> 0.79
                  name      original  replayed  difference
          metric  accuracy  0.81      0.79      -0.02 (relative tolerance 1e-09)
          cell outputs that differ:
            cell 3 `print(total)`: stdout: 57.59 -> 52.17
          compared: 2 metrics, 1 param, 0 DVC outputs, 14 cell outputs, 3 figures
          environment: python 3.11.2 -> 3.12.1, 3 changed, 1 added, 0 removed
          mode notebook (the run was executed top to bottom); env current; kernel python3
          see the replay run: http://mlflow.example.com/#/experiments/1/runs/9c41…
    """
    result = as_result(result)
    verdict = result.verdict
    head = f"{verdict}  run {short_id(result.run_id)}"
    if result.run_name:
        head += f" ({result.run_name})"
    if result.notebook:
        head += f" of {result.notebook}"
    elif result.mode == "history":
        head += " of its recorded cell history"
    lines = [head]
    if reason_text(result):
        lines.append(f"  {reason_text(result)}")
    lines += [f"  risk: {risk}" for risk in result.risks]
    table = diff_table(result)
    if table:
        lines += columns([("", "name", "original", "replayed", "difference"), *table])
    elif verdict in ("REPRODUCED", "DIVERGED"):
        n_metrics, n_outputs = len(rows_of(result.metrics)), len(rows_of(result.outputs))
        if n_metrics or n_outputs:
            lines.append(f"  {n_metrics} metric(s) within tolerance, {n_outputs} DVC output(s) identical")
        elif not rows_of(result.cell_outputs):
            lines.append("  no metrics or DVC outputs to compare: only the execution was checked")
    lines += _outputs_lines(result)
    if verdict in _JUDGED:
        lines.append(f"  {evidence_line(result)}")
    if isinstance(result.failure, Mapping):
        failure = failure_lines(result.failure)
        lines += [f"  failure: {failure[0]}", *(f"  {line}" for line in failure[1:])]
    if verdict != "CANNOT_REPLAY" or env_compared(result):
        lines.append(f"  environment: {env_summary(result.environment)}")
    if result.mode or verdict != "CANNOT_REPLAY":
        lines.append(f"  {mode_line(result)}")
    if overrides(result):
        lines.append(f"  parameters overridden: {overrides(result)}")
    if result.view:
        lines.append(f"  see the replay run: {result.view}")
    elif result.replay_run_id:
        lines.append(f"  replay run: {result.replay_run_id}")
    if result.workspace:
        lines.append(f"  replay workspace kept at {result.workspace}")
    return "\n".join(lines)


def _outputs_lines(result: ReplayResult) -> list[str]:
    """Differing cell outputs, results that varied between replays, cells expected to raise."""
    lines = []
    differing = cell_output_lines(result)
    if differing:
        mode = result.outputs_mode or "check"
        note = " (reported only: --outputs report)" if mode == "report" else ""
        lines.append(f"  cell outputs that differ{note}:")
        lines += [f"    {line}" for line in differing[:MAX_CELLS]]
        if len(differing) > MAX_CELLS:
            lines.append(f"    and {len(differing) - MAX_CELLS} more (see the HTML report)")
    varied = [varied_label(r) for r in rows_of(result.nondeterministic)]
    if varied:
        lines.append("  nondeterministic (varied between the replays themselves):")
        lines += [f"    {line}" for line in varied]
    lines += [f"  expected error: {line}" for line in expected_error_lines(result)]
    return lines
