"""Pieces shared by the replay reports: result fields, value formatting, the comparison rows."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from nbtrack.replay.result import ReplayResult

#: What the report writers accept: the typed result, or its JSON (``to_dict()``) as a subprocess
#: or the server's replay job hands it on.
Result: TypeAlias = ReplayResult | Mapping[str, Any]

VERDICTS = ("REPRODUCED", "UNVERIFIED", "DIVERGED", "FAILED", "CANNOT_REPLAY")
#: What a verdict's evidence counts, as the reports name them (singular, plural).
EVIDENCE = (
    ("metrics", "metric", "metrics"),
    ("params", "param", "params"),
    ("outputs", "DVC output", "DVC outputs"),
    ("cell_outputs", "cell output", "cell outputs"),
    ("figures", "figure", "figures"),
)
SUITE = "nbtrack replay"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# XML 1.0 forbids these even as character references: one in an exception message would make the
# whole JUnit file unreadable to Jenkins, so they are dropped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Environment drift longer than this is collapsed in the HTML page.
LONG = 12


# --- shared pieces -------------------------------------------------------------------------------


def as_result(result: Result) -> ReplayResult:
    """The typed result, from either form a writer accepts.

    Example:
        >>> as_result({"run_id": "3f2a", "verdict": "DIVERGED"}).exit_code
        1
    """
    return result if isinstance(result, ReplayResult) else ReplayResult.from_dict(result)


def clean(value: Any) -> str:
    return _NOT_XML.sub("", _ANSI.sub("", str(value)))


def value_text(value: Any) -> str:
    """A metric or param value for people: ``missing`` for an absent side, floats without noise."""
    if value is None:
        return "missing"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def number_text(value: Any, spec: str) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    return "0" if value == 0 else format(value, spec)


def reason_text(result: ReplayResult) -> str:
    """The message without its leading ``VERDICT:``, for places that show the verdict beside it."""
    message, verdict = result.message, f"{result.verdict}:"
    return message[len(verdict) :].strip() if message.startswith(verdict) else message


def short_id(run_id: Any, width: int = 8) -> str:
    text = str(run_id or "?")
    return text if len(text) <= width else text[:width] + "…"


def rows_of(items: Sequence[Any] | None) -> list[Mapping[str, Any]]:
    """The comparison rows of a result's list (a result read from JSON may hold anything there)."""
    return [row for row in items or [] if isinstance(row, Mapping)]


def _bad_metrics(result: ReplayResult) -> list[Mapping[str, Any]]:
    return [m for m in rows_of(result.metrics) if not m.get("ok", True)]


def _changed_params(result: ReplayResult) -> list[Mapping[str, Any]]:
    """Params that differ, on purpose (overridden) or not."""
    return [
        p
        for p in rows_of(result.params)
        if not p.get("ok", True) or p.get("overridden") or p.get("original") != p.get("replayed")
    ]


def _bad_outputs(result: ReplayResult) -> list[Mapping[str, Any]]:
    return [o for o in rows_of(result.outputs) if not o.get("ok", True)]


def output_change(row: Mapping[str, Any]) -> str:
    if row.get("replayed") is None:
        return "not produced by the replay"
    if row.get("original") is None:
        return "not in the recorded run"
    return "different content" if not row.get("ok", True) else "identical"


def _param_note(row: Mapping[str, Any]) -> str:
    return "overridden" if row.get("overridden") else "differs"


def _metric_note(row: Mapping[str, Any]) -> str:
    diff = number_text(row.get("difference"), "+.6g")
    tol = number_text(row.get("tolerance"), ".3g")
    return " ".join(x for x in (diff, f"(relative tolerance {tol})" if tol else "") if x)


def diff_table(result: ReplayResult, hash_width: int | None = 10) -> list[tuple[str, ...]]:
    """What differs, as rows of (kind, name, original, replayed, difference); no header."""

    def digest(value: Any) -> str:
        return "missing" if value is None else (short_id(value, hash_width) if hash_width else str(value))

    rows: list[tuple[str, ...]] = []
    rows += [
        (
            "metric",
            str(m.get("name")),
            value_text(m.get("original")),
            value_text(m.get("replayed")),
            _metric_note(m),
        )
        for m in _bad_metrics(result)
    ]
    rows += [
        (
            "param",
            str(p.get("name")),
            value_text(p.get("original")),
            value_text(p.get("replayed")),
            _param_note(p),
        )
        for p in _changed_params(result)
    ]
    rows += [
        (
            "output",
            str(o.get("path")),
            digest(o.get("original")),
            digest(o.get("replayed")),
            output_change(o),
        )
        for o in _bad_outputs(result)
    ]
    return rows


def columns(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def failure_lines(failure: Mapping[str, Any]) -> list[str]:
    count = failure.get("execution_count")
    where = f"cell {failure.get('cell', '?')}" + (f" (In [{count}])" if count is not None else "")
    # Kernels send exception values with colour codes; a CI log or a terminal wants plain text.
    evalue = f": {clean(failure['evalue'])}" if failure.get("evalue") else ""
    lines = [f"{where} raised {clean(failure.get('ename') or 'an error')}{evalue}"]
    lines += [f"    {line}" for line in str(failure.get("source_head") or "").splitlines()]
    return lines


def env_summary(env: Mapping[str, Any] | None) -> str:
    """One line: ``python 3.11.2 -> 3.12.1, 3 changed, 1 added, 0 removed`` or ``no drift``."""
    if not env or env.get("available") is False:
        reason = str((env or {}).get("reason") or "")
        return reason if reason.startswith("not compared") else f"not compared ({reason or 'unavailable'})"
    py = env.get("python")
    counts = [len(env.get(key) or []) for key in ("changed", "added", "removed")]
    variables = _variables(env)
    if not py and not any(counts) and not variables:
        return "no drift"
    parts = [f"python {py.get('a')} -> {py.get('b')}"] if py else []
    parts.append("{} changed, {} added, {} removed".format(*counts))
    if variables:
        parts.append(f"{len(variables)} environment variable(s) changed: " + ", ".join(variables))
    return ", ".join(parts)


def _variables(env: Mapping[str, Any]) -> list[str]:
    """The names of the environment variables that drifted (``compare.diff_variables``)."""
    block = env.get("variables")
    changed = block.get("changed") if isinstance(block, Mapping) else None
    return [str(r.get("name")) for r in changed or [] if isinstance(r, Mapping)]


def env_compared(result: ReplayResult) -> bool:
    env = result.environment
    return isinstance(env, Mapping) and bool(env.get("available"))


def env_rows(env: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(package, recorded, replay, change) for every drifting package."""
    rows = [
        (str(r.get("name")), str(r.get("a")), str(r.get("b")), "changed") for r in env.get("changed") or []
    ]
    rows += [(str(r.get("name")), "", str(r.get("version")), "added") for r in env.get("added") or []]
    rows += [(str(r.get("name")), str(r.get("version")), "", "removed") for r in env.get("removed") or []]
    block = env.get("variables")
    for r in (block.get("changed") if isinstance(block, Mapping) else None) or []:
        # Values as recorded (already redacted): a secret shows as [REDACTED], compared by keyed hash.
        change = "variable changed" + (" (secret, compared by hash)" if r.get("secret") else "")
        rows.append((f"${r.get('name')}", _shown(r.get("a")), _shown(r.get("b")), change))
    return rows


def _shown(value: Any) -> str:
    return "unset" if value is None else str(value)


def run_label(result: ReplayResult) -> str:
    return f"{result.run_name} ({result.run_id})" if result.run_name else result.run_id


def mode_line(result: ReplayResult) -> str:
    mode = result.mode or "-"
    if result.mode_reason:
        mode += f" ({result.mode_reason})"
    return f"mode {mode}; env {result.env or '-'}; kernel {result.kernel or '-'}"


def overrides(result: ReplayResult) -> str:
    overrides = (result.parameters or {}).get("overrides") or {}
    return ", ".join(f"{k}={v!r}" for k, v in overrides.items())


# --- issue 13: evidence, cell outputs, nondeterminism, expected errors ------------------------------


def evidence_of(result: ReplayResult) -> dict[str, int]:
    """How many results of each kind the replay compared: the result's own ``evidence``, or for an
    older result (its JSON has none) counted from its rows; a ``-p`` overridden param is not evidence.

    Example:
        >>> evidence_of(ReplayResult("3f2a", metrics=[{"name": "acc"}]))["metrics"]
        1
    """
    given = result.evidence if isinstance(result.evidence, Mapping) else {}
    if given:
        return {key: int(given.get(key) or 0) for key, _, _ in EVIDENCE}
    cells = rows_of(result.cell_outputs)
    figures = sum(int(c.get("figures") or 0) for c in cells)
    return {
        "metrics": len(rows_of(result.metrics)),
        "params": sum(1 for p in rows_of(result.params) if not p.get("overridden")),
        "outputs": len(rows_of(result.outputs)),
        "cell_outputs": sum(int(c.get("outputs") or 0) for c in cells) - figures,
        "figures": figures,
    }


def evidence_line(result: ReplayResult) -> str:
    """``compared: 2 metrics, 1 param, 0 DVC outputs, 14 cell outputs, 3 figures``.

    Example:
        >>> evidence_line(ReplayResult("3f2a", metrics=[{"name": "acc"}]))
        'compared: 1 metric, 0 params, 0 DVC outputs, 0 cell outputs, 0 figures'
    """
    counts = evidence_of(result)
    parts = [f"{counts[key]} {one if counts[key] == 1 else many}" for key, one, many in EVIDENCE]
    return "compared: " + ", ".join(parts)


def differing_cells(result: ReplayResult) -> list[Mapping[str, Any]]:
    """The compared code cells whose outputs differ from the original's."""
    return [c for c in rows_of(result.cell_outputs) if not c.get("ok", True)]


def cell_label(row: Mapping[str, Any], width: int = 60) -> str:
    """``cell 3 `print(total)```: a cell as the user finds it in their notebook."""
    head = clean(row.get("source_head") or "").strip()
    head = head if len(head) <= width else head[: width - 1] + "…"
    return f"cell {row.get('cell', '?')}" + (f" `{head}`" if head else "")


def varied_label(row: Mapping[str, Any]) -> str:
    """A result that varied between the replays of ``--repeat``, with its values."""
    kind = str(row.get("kind") or "result")
    if row.get("cell") is not None:  # "cell 3 output", "cell 7 figure"
        label = f"cell {row['cell']} " + ("figure" if kind == "figure" else "output")
    else:
        label = f"{kind.replace('_', ' ')} {row.get('name') or '?'}"
    values = [value_text(v) for v in row.get("values") or []]
    shown = ", ".join(values[:6]) + (", …" if len(values) > 6 else "")
    return label + (f" ({shown})" if shown else "")


def nondeterministic_names(result: ReplayResult) -> tuple[set[str], set[int]]:
    """The metric names and cell numbers marked nondeterministic (they varied between replays)."""
    names, cells = set(), set()
    for row in rows_of(result.nondeterministic):
        if row.get("cell") is not None:
            with contextlib.suppress(TypeError, ValueError):
                cells.add(int(row["cell"]))
        elif row.get("name") is not None:
            names.add(str(row["name"]))
    return names, cells


def expected_error_lines(result: ReplayResult) -> list[str]:
    """Cells that raised in the original history and raised the same way in the replay."""
    return [
        f"{cell_label(e)} raised {clean(e.get('ename') or 'an error')}, as in the original"
        for e in rows_of(result.expected_errors)
    ]


def cell_output_lines(result: ReplayResult) -> list[str]:
    """One line per differing cell: ``cell 3 `print(total)`: stdout: 57.59 -> 52.17``."""
    _, varied = nondeterministic_names(result)
    lines = []
    for row in differing_cells(result):
        line = f"{cell_label(row)}: {clean(row.get('detail') or 'outputs differ')}"
        if row.get("cell") in varied:
            line += " [nondeterministic]"
        lines.append(line)
    return lines
