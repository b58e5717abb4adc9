"""Results a notebook *showed* without logging them: ``nbtrack:result`` cells and scrapbook scraps.

Taken at ``%track stop`` from the notebook nbtrack captured (papermill's executed notebook, the
editor's live content, else the saved file); the per-cell hook is untouched. Only outputs of this
kernel are read: a cell counts when its execution count and source are those of a cell the kernel
ran (a saved file's outputs from an earlier session are not this run's results).

What becomes what:

- a code cell tagged ``nbtrack:result`` (or ``nbtrack:result=LABEL``): each displayed scalar (an
  ``execute_result``/``display_data`` whose ``text/plain`` is a number, ``np.float64(0.5)`` included,
  or a printed line that is only a number) is the metric ``result.LABEL`` (``result.LABEL.2``, ... for
  a second and later one); a displayed dict or pandas Series of numbers gives one metric per key,
  named by the key; figures (``image/png``, ``image/jpeg``, ``image/svg+xml``) and tables
  (``text/html`` holding a ``<table>``: DataFrames) become artifacts ``nbtrack/results/LABEL.png``,
  ``LABEL.html`` (``LABEL-2.png``, ... for more). LABEL is the tag's label, else the cell's last line
  when it is a plain or dotted name (``accuracy``, ``model.best_score_``), else ``cellN`` (N: the
  cell's 1-based position among the notebook's code cells, papermill's injected cell not counted).
- a scrapbook scrap in any cell (``sb.glue("auc", 0.91)``: mimetype
  ``application/scrapbook.scrap.json+json`` or ``.text+json``) and a legacy ``pm.record`` output
  (``application/papermill.record+json``) whose value is a number: the metric named by the scrap.

A name the user logged as a metric is never overwritten; the first of two results with one name
wins. Both are said in :attr:`ShownResults.summary` (``not_logged``), which the snapshot keeps.

Example:
    >>> from nbtrack.capture.history import ExecutedCell
    >>> shown = {"output_type": "execute_result", "data": {"text/plain": "0.93"}}
    >>> cell = {"cell_type": "code", "execution_count": 1, "source": "acc", "outputs": [shown],
    ...         "metadata": {"tags": ["nbtrack:result"]}}
    >>> shown_results({"cells": [cell]}, [ExecutedCell(1, "acc")], {}).metrics
    {'result.acc': 0.93}
"""

from __future__ import annotations

import ast
import base64
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nbtrack.capture.history import ExecutedCell
from nbtrack.capture.nbfile import cell_source, is_injected_parameters

__all__ = ["RESULT_TAG", "SCRAP_MIMES", "ShownResults", "metric_name", "parse_scalars", "shown_results"]

#: The cell tag that makes a cell's displayed values results (``nbtrack:result=LABEL`` names them).
RESULT_TAG = "nbtrack:result"
#: scrapbook's ``glue`` payloads (json and text encoders) and papermill's older ``record``.
SCRAP_MIMES = ("application/scrapbook.scrap.json+json", "application/scrapbook.scrap.text+json")
_RECORD_MIME = "application/papermill.record+json"
_FIGURES = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}
_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
# numpy 2 shows scalars as np.float64(0.5); torch as tensor(0.5).
_WRAPPED = re.compile(rf"\b(?:np|numpy)\.(?:float|int|uint)\d*\(\s*({_NUMBER})\s*\)|\btensor\(({_NUMBER})\)")
_SERIES_ROW = re.compile(rf"^(.*\S)\s+({_NUMBER})$")
_SERIES_FOOTER = re.compile(r"^(?:Name: .*, )?dtype: \w+$")
_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# MLflow metric names: alphanumerics, underscores, dashes, periods, spaces, colons and slashes.
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_\-. /:]")


@dataclass
class ShownResults:
    """What :func:`shown_results` found: metrics to log, files to log under ``nbtrack/``, and the
    snapshot's account of it (``summary``)."""

    metrics: dict[str, float] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def metric_name(text: str) -> str:
    """``text`` as an MLflow metric name (characters MLflow refuses become ``_``; at most 250).

    Example:
        >>> metric_name("f1 (macro)")
        'f1 _macro_'
    """
    return _NOT_IN_NAME.sub("_", text.strip())[:250] or "_"


def _number(text: str) -> float | None:
    """A finite number written as ``text`` (``np.float64(…)`` unwrapped), else None."""
    text = _WRAPPED.sub(lambda m: m.group(1) or m.group(2), text.strip())
    if not re.fullmatch(_NUMBER, text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _number(value) if isinstance(value, str) else None
    return float(value) if math.isfinite(value) else None


def _series(text: str) -> dict[str, float] | None:
    """A pandas Series' ``text/plain`` (``key  value`` rows, a ``dtype:`` footer) as key -> number."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2 or not _SERIES_FOOTER.match(lines[-1].strip()):
        return None
    rows: dict[str, float] = {}
    for i, line in enumerate(lines[:-1]):
        m = _SERIES_ROW.match(line)
        value = _number(m.group(2)) if m else None
        if m is None or value is None or m.group(1).strip() == "...":
            if i == 0 and m is None:  # the index's name, on a line of its own
                continue
            return None  # a truncated or non-numeric Series
        rows[m.group(1).strip()] = value
    return rows or None


def parse_scalars(text: str) -> float | dict[str, float] | None:
    """A displayed value's ``text/plain`` as a number, or key -> number (dict, pandas Series).

    Example:
        >>> parse_scalars("np.float64(0.25)"), parse_scalars("{'auc': 0.9, 'n': 3}")
        (0.25, {'auc': 0.9, 'n': 3.0})
        >>> parse_scalars("a    1.5\\nb    2.0\\ndtype: float64")
        {'a': 1.5, 'b': 2.0}
        >>> parse_scalars("'text'") is None
        True
    """
    single = _number(text)
    if single is not None:
        return single
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            value = ast.literal_eval(_WRAPPED.sub(lambda m: m.group(1) or m.group(2), stripped))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        if isinstance(value, dict) and value:
            numbers = {str(k): _as_number(v) for k, v in value.items()}
            return {k: v for k, v in numbers.items() if v is not None} or None
        return None
    return _series(text)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _label(cell: dict[str, Any], tags: Sequence[str], position: int) -> str:
    """The cell's result label: the tag's, else its last line when a plain name, else ``cellN``."""
    for tag in tags:
        if tag.startswith(RESULT_TAG + "=") and tag[len(RESULT_TAG) + 1 :].strip():
            return metric_name(tag[len(RESULT_TAG) + 1 :])
    lines = [line.strip() for line in cell_source(cell).splitlines() if line.strip()]
    if lines and _DOTTED_NAME.fullmatch(lines[-1]):
        return lines[-1]
    return f"cell{position}"


class _Collector:
    """Accumulates metrics and files, keeping user-logged names and first-come names."""

    def __init__(self, logged: Mapping[str, float]) -> None:
        self.logged = logged
        self.out = ShownResults(summary={"metrics": {}, "artifacts": [], "not_logged": [], "skipped": []})

    def metric(self, name: str, value: float, origin: dict[str, Any]) -> None:
        name = metric_name(name)
        if name in self.logged:
            reason = "the notebook logged a metric of this name; its value is kept"
        elif name in self.out.metrics:
            reason = f"{origin['from']} in code cell {origin['cell']} repeats a name already taken"
        else:
            self.out.metrics[name] = value
            self.out.summary["metrics"][name] = origin
            return
        self.out.summary["not_logged"].append({"name": name, "value": value, "reason": reason})

    def file(self, stem: str, ext: str, data: bytes) -> None:
        name = f"results/{stem}.{ext}"
        k = 2
        while name in self.out.files:
            name, k = f"results/{stem}-{k}.{ext}", k + 1
        self.out.files[name] = data
        self.out.summary["artifacts"].append(name)


def _scraps(output: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, value) of the scrapbook scraps / papermill records in one output."""
    data = output.get("data") or {}
    found = []
    for mime in SCRAP_MIMES:
        payload = data.get(mime)
        if isinstance(payload, dict) and isinstance(payload.get("name"), str):
            found.append((payload["name"], payload.get("data")))
    record = data.get(_RECORD_MIME)
    if isinstance(record, dict):
        found.extend((str(k), v) for k, v in record.items())
    return found


def _figure(output: dict[str, Any]) -> tuple[str, bytes] | None:
    data = output.get("data") or {}
    for mime, ext in _FIGURES.items():
        if mime in data:
            raw = _text(data[mime])
            try:
                return ext, raw.encode() if ext == "svg" else base64.b64decode(raw)
            except ValueError:
                return None
    return None


def _result_outputs(cell: dict[str, Any], label: str, position: int, found: _Collector) -> None:
    """Metrics and files from one ``nbtrack:result`` cell's outputs."""
    shown = 0
    origin = {"cell": position, "from": "nbtrack:result"}
    for output in cell.get("outputs") or []:
        kind = output.get("output_type")
        if kind == "stream":
            value: float | dict[str, float] | None = _number(_text(output.get("text")))
        elif kind in ("execute_result", "display_data") and "scrapbook" not in (output.get("metadata") or {}):
            figure = _figure(output)
            html = _text((output.get("data") or {}).get("text/html"))
            if figure is not None:
                found.file(label, *figure)
                continue
            if "<table" in html:
                found.file(label, "html", html.encode())
                continue
            value = parse_scalars(_text((output.get("data") or {}).get("text/plain")))
        else:
            continue
        if isinstance(value, dict):
            for key, number in value.items():
                found.metric(key, number, origin)
        elif value is not None:
            shown += 1
            found.metric(f"result.{label}" + (f".{shown}" if shown > 1 else ""), value, origin)


def shown_results(
    nb: dict[str, Any] | None, executed: Sequence[ExecutedCell], logged: Mapping[str, float]
) -> ShownResults:
    """The results ``nb`` showed in cells this kernel ran: metrics (none named as in ``logged``),
    files under ``results/``, and the snapshot's summary of both.

    Example:
        >>> scrap = {"application/scrapbook.scrap.json+json": {"name": "auc", "data": 0.9}}
        >>> glue = {"output_type": "display_data", "metadata": {"scrapbook": {}}, "data": scrap}
        >>> cell = {"cell_type": "code", "execution_count": 2, "source": "glue()", "outputs": [glue]}
        >>> found = shown_results({"cells": [cell]}, [ExecutedCell(2, "glue()")], {"auc": 0.8})
        >>> found.metrics, found.summary["not_logged"][0]["name"]
        ({}, 'auc')
    """
    found = _Collector(logged)
    if nb is None:
        found.out.summary["reason"] = "no notebook was captured"
        return found.out
    ran = {(ex.execution_count, ex.source) for ex in executed if ex.execution_count}
    # Numbered as the user's notebook: without papermill's injected-parameters cell.
    code = [
        c
        for c in nb.get("cells") or []
        if c.get("cell_type") == "code" and not is_injected_parameters(cell_source(c))
    ]
    for position, cell in enumerate(code, start=1):
        tags = [str(t) for t in (cell.get("metadata") or {}).get("tags") or []]
        tagged = any(t == RESULT_TAG or t.startswith(RESULT_TAG + "=") for t in tags)
        scraps = [s for output in cell.get("outputs") or [] for s in _scraps(output)]
        if not tagged and not scraps:
            continue
        if (cell.get("execution_count"), cell_source(cell)) not in ran:
            found.out.summary["skipped"].append(
                {
                    "cell": position,
                    "reason": "its outputs are not from this kernel (save the notebook before "
                    "`%track stop`, or run the cell again)",
                }
            )
            continue
        for name, value in scraps:
            number = _as_number(value)
            if number is not None:
                found.metric(name, number, {"cell": position, "from": "scrapbook"})
        if tagged:
            _result_outputs(cell, _label(cell, tags, position), position, found)
    return found.out
