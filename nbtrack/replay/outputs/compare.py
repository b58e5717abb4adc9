"""Compare each code cell's outputs between the recorded executed notebook and the replay's output.

Each output is reduced to what it shows (its *view*): a stream's normalized text, an error's type
and message, and for rich outputs the most telling representation: a figure (PNG/JPEG
perceptually, SVG as text), a widget's state, JSON, an HTML table (as a table), else the plain
text. The views of the two cells are then compared in order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nbtrack.replay.outputs import images
from nbtrack.replay.outputs.cells import STRICT_TAG, CellPair, pair_cells, source_head, tags_of
from nbtrack.replay.outputs.comparison import OutputComparison
from nbtrack.replay.outputs.normalize import normalize_text
from nbtrack.replay.outputs.structured import WIDGET_VIEW, compare_json, compare_widget
from nbtrack.replay.outputs.tables import compare_tables, has_table
from nbtrack.replay.outputs.text import compare_text

__all__ = ["compare_outputs_of"]

_IMAGES = ("image/png", "image/jpeg")
_SINGLE_NUMBER = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$")


@dataclass
class _View:
    kind: str  # text | number | table | image | json | widget | error | html
    label: str  # names the output in a detail: stdout, figure, table, result, ...
    mime: str
    value: Any


@dataclass
class _Options:
    original_nb: Mapping[str, Any]
    replayed_nb: Mapping[str, Any]
    tolerance: float | None
    paths: Sequence[str]
    strict: bool


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _merged(outputs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Consecutive stream outputs of one stream as one (kernels split them where flushes fell)."""
    merged: list[Mapping[str, Any]] = []
    for out in outputs:
        last = merged[-1] if merged else None
        same_stream = last is not None and last.get("output_type") == "stream" == out.get("output_type")
        if same_stream and last is not None and last.get("name") == out.get("name"):
            merged[-1] = {**last, "text": _text(last.get("text")) + _text(out.get("text"))}
            continue
        merged.append(out)
    return merged


def _rich_view(data: Mapping[str, Any], opts: _Options) -> _View:
    for mime in _IMAGES:
        if mime in data:
            return _View("image", "figure", mime, data[mime])
    if "image/svg+xml" in data:
        return _View("image", "figure", "image/svg+xml", _norm(_text(data["image/svg+xml"]), opts))
    if WIDGET_VIEW in data:
        return _View("widget", "widget", WIDGET_VIEW, data[WIDGET_VIEW])
    for mime in sorted(data):
        if mime == "application/json" or mime.endswith("+json"):
            return _View("json", "json", mime, data[mime])
    html = _text(data.get("text/html", ""))
    if html and has_table(html):
        return _View("table", "table", "text/html", html)
    plain = data.get("text/plain")
    if plain is None and html:  # HTML reprs embed generated ids: only when there is no plain text
        return _View("html", "html", "text/html", _norm(html, opts))
    text = _norm(_text(plain if plain is not None else next(iter(data.values()), "")), opts)
    kind = "number" if _SINGLE_NUMBER.match(text) else "text"
    return _View(kind, "result", "text/plain", text)


def _norm(text: str, opts: _Options, stderr: bool = False) -> str:
    return normalize_text(text, paths=opts.paths, strict=opts.strict, stderr=stderr)


def _views(outputs: Sequence[Mapping[str, Any]], opts: _Options) -> list[_View]:
    views = []
    for out in _merged(outputs):
        kind = out.get("output_type")
        if kind == "stream":
            name = str(out.get("name") or "stdout")
            text = _norm(_text(out.get("text")), opts, stderr=name == "stderr")
            if text:  # a stream of only progress or warnings says nothing
                views.append(_View("text", name, "stream", text))
        elif kind == "error":
            message = _norm(f"{out.get('ename')}: {out.get('evalue')}", opts)
            views.append(_View("error", "error", "error", message))
        elif kind in ("execute_result", "display_data"):
            views.append(_rich_view(out.get("data") or {}, opts))
    return views


def _compare_view(a: _View, b: _View, opts: _Options) -> tuple[str, dict[str, Any] | None]:
    """The detail ('' when equal) and, for a figure, its comparison row."""
    exact = opts.strict

    def norm(text: str) -> str:
        return _norm(text, opts)

    if (a.kind, a.mime) != (b.kind, b.mime):
        return f"{a.label} ({a.mime}) -> {b.label} ({b.mime})", None
    if a.value == b.value and a.kind not in ("widget", "image"):  # the common case: nothing to parse
        return "", None
    if a.kind == "image" and a.mime in _IMAGES:
        threshold = 0.0 if exact else images.DEFAULT_THRESHOLD
        row = images.compare_image(a.value, b.value, threshold=threshold)
        return row.pop("detail"), row
    if a.kind == "image":
        detail = compare_text(a.value, b.value, tolerance=opts.tolerance, exact=exact)
        distance = 0.0 if not detail else 1.0
        return detail, {"ok": not detail, "distance": distance, "threshold": 0.0}
    if a.kind == "table":
        return compare_tables(a.value, b.value, tolerance=opts.tolerance, exact=exact, normalize=norm), None
    if a.kind == "widget":
        nbs = (opts.original_nb, opts.replayed_nb)
        return compare_widget(
            *nbs, a.value, b.value, tolerance=opts.tolerance, exact=exact, normalize=norm
        ), None
    if a.kind == "json":
        return compare_json(a.value, b.value, tolerance=opts.tolerance, exact=exact, normalize=norm), None
    return compare_text(a.value, b.value, tolerance=opts.tolerance, exact=exact), None


def _compare_cell(pair: CellPair, opts: _Options) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    assert pair.replayed is not None
    views_a = _views(pair.original.get("outputs") or [], opts)
    views_b = _views(pair.replayed.get("outputs") or [], opts)
    details, figures = [], []
    for index, (a, b) in enumerate(zip(views_a, views_b, strict=False), start=1):
        detail, figure = _compare_view(a, b, opts)
        if figure is not None:
            figures.append({"cell": pair.number, "output": index, "mime": a.mime, **figure})
        if detail:
            details.append(detail if detail.startswith(a.label) else f"{a.label}: {detail}")
    if len(views_a) != len(views_b):
        details.insert(0, f"{len(views_a)} output(s) -> {len(views_b)}")
    row = {
        "cell": pair.number,
        "cell_id": pair.original.get("id"),
        "source_head": source_head(pair.original),
        "ok": not details,
        "strict": opts.strict,
        "outputs": len(views_a),
        "figures": sum(1 for v in views_a if v.kind == "image"),
        "kinds": sorted({v.kind for v in views_a}),
        "detail": "; ".join(details[:2]) + (f"; and {len(details) - 2} more" if len(details) > 2 else ""),
    }
    return row, figures


def compare_outputs_of(
    original_nb: Mapping[str, Any],
    replayed_nb: Mapping[str, Any],
    *,
    tolerance: float | None = None,
    normalize_paths: Sequence[str] = (),
    strict: bool = False,
) -> OutputComparison:
    """Compare every code cell's outputs between a recorded executed notebook and its replay.

    Args:
        original_nb: the recorded executed notebook (an nbformat dict, with outputs).
        replayed_nb: the replay's output notebook (papermill's).
        tolerance: relative tolerance for numbers in text and tables (None: whole numbers exact,
            others within :data:`nbtrack.replay.verdict.DEFAULT_FLOAT_TOLERANCE`).
        normalize_paths: folders printed differently by the two runs (the replay workspace, the
            original project), shown as ``<workspace>`` on both sides.
        strict: compare every cell exactly (as if tagged ``nbtrack:strict-output``).

    Example:
        >>> original = nbformat.read("run.ipynb", as_version=4)  # doctest: +SKIP
        >>> found = compare_outputs_of(original, replayed, normalize_paths=[workspace])  # doctest: +SKIP
        >>> found.counts(), found.summary()  # doctest: +SKIP
        ({'cells': 14, 'outputs': 17, 'figures': 3, 'differ': 1}, 'cell 3 output differs (stdout: ...)')
    """
    found = OutputComparison()
    paths = [str(p) for p in normalize_paths]
    for pair in pair_cells(original_nb, replayed_nb):
        if pair.skip or pair.replayed is None:
            found.skipped.append(
                {"cell": pair.number, "source_head": source_head(pair.original), "reason": pair.skip}
            )
            continue
        cell_strict = strict or STRICT_TAG in tags_of(pair.original)
        opts = _Options(original_nb, replayed_nb, tolerance, paths, cell_strict)
        row, figures = _compare_cell(pair, opts)
        found.cells.append(row)
        found.figures.extend(figures)
    return found
