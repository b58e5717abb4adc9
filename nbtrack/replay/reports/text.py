"""The terminal rendering of a replay result (what ``nbtrack replay`` prints)."""

from __future__ import annotations

from collections.abc import Mapping

from nbtrack.replay.reports.common import (
    Result,
    as_result,
    columns,
    diff_table,
    env_compared,
    env_summary,
    failure_lines,
    mode_line,
    overrides,
    reason_text,
    rows_of,
    short_id,
)

# --- terminal ------------------------------------------------------------------------------------


def format_result(result: Result) -> str:
    """The plain-text report the CLI prints after a replay.

    Example:
        >>> print(format_result(result))  # doctest: +SKIP
        DIVERGED  run 3f2a1b2c… (random-forest) of notebooks/train.ipynb
          accuracy 0.81 -> 0.79
                  name      original  replayed  difference
          metric  accuracy  0.81      0.79      -0.02 (relative tolerance 1e-09)
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
        else:
            lines.append("  no metrics or DVC outputs to compare: only the execution was checked")
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
