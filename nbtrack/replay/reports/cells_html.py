"""The HTML page's pieces for issue 13's evidence: cell outputs, figures side by side, results that
varied between replays, cells expected to raise; and the escaping and table helpers the page shares.

Figures are inlined as ``data:image/png;base64`` images (the page stays self-contained: nothing is
fetched); a thumbnail that is not plain base64 (a damaged or hand-edited result JSON) is left out
rather than put into an attribute.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from nbtrack.replay.reports.common import (
    cell_label,
    clean,
    differing_cells,
    nondeterministic_names,
    rows_of,
    varied_label,
)
from nbtrack.replay.result import ReplayResult

__all__ = ["CELLS_STYLE", "cells_html", "esc", "expected_html", "html_table", "metric_note", "varied_html"]

CELLS_STYLE = """
.evidence{margin:.2rem 0 .6rem;color:#57606a}.evidence b{color:#1f2328}
.v-UNVERIFIED{background:#9a6700}
.nondet{display:inline-block;padding:0 .4rem;border-radius:1rem;background:#ddf4ff;color:#0550ae;
font-size:.75rem;font-weight:600;margin-left:.4rem}
.figures{display:flex;gap:.8rem;flex-wrap:wrap;margin:.3rem 0 1rem}
.figures figure{margin:0;border:1px solid #d0d7de;border-radius:4px;padding:.3rem;background:#fff}
.figures figcaption{font-size:.8rem;color:#57606a;text-align:center}
.figures img{display:block;max-width:320px;height:auto}
"""
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_FIGURE_SIDES = (("original_png", "original"), ("replayed_png", "replayed"), ("difference_png", "difference"))


def esc(value: Any) -> str:
    """Text for HTML: ANSI codes and XML-forbidden characters dropped, markup escaped."""
    return html.escape(clean(value))


def html_table(
    header: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]], num: Sequence[int] = ()
) -> str:
    """An HTML table; each row is (tr class, already-escaped cells); ``num`` columns align right."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        (f'<tr class="{cls}">' if cls else "<tr>")
        + "".join(f"<td{' class=num' if i in num else ''}>{c}</td>" for i, c in enumerate(cells))
        + "</tr>"
        for cls, cells in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _nondet_badge() -> str:
    return '<span class="nondet">nondeterministic</span>'


def _figures_html(result: ReplayResult) -> str:
    parts = []
    for fig in rows_of(result.figures):
        if fig.get("ok", True):
            continue
        shown = []
        for key, caption in _FIGURE_SIDES:
            data = str(fig.get(key) or "")
            if data and _BASE64.match(data):
                img = f'<img alt="{caption}" src="data:image/png;base64,{data}">'
                shown.append(f"<figure>{img}<figcaption>{caption}</figcaption></figure>")
        distance = fig.get("distance")
        threshold = fig.get("threshold")
        title = f"cell {fig.get('cell', '?')}, output {fig.get('output', '?')} ({fig.get('mime') or 'image'})"
        if isinstance(distance, int | float) and isinstance(threshold, int | float):
            title += f": perceptual distance {distance:.3f} (threshold {threshold:.3f})"
        parts.append(f"<p><b>{esc(title)}</b></p><div class=figures>{''.join(shown)}</div>")
    return "".join(parts)


def _skipped_html(result: ReplayResult) -> str:
    skipped = rows_of(result.skipped_outputs)
    if not skipped:
        return ""
    rows = [("", [esc(s.get("cell", "?")), f"<code>{esc(s.get('source_head') or '')}</code>",
                  esc(s.get("reason") or "")]) for s in skipped]  # fmt: skip
    table = html_table(("cell", "first line", "not compared because"), rows)
    return f"<details><summary>{len(skipped)} cell(s) not compared</summary>{table}</details>"


def cells_html(result: ReplayResult) -> str:
    """The "Cell outputs" section: what was compared, the differing cells with what differs, each
    differing figure as original | replayed | difference, and the cells not compared (collapsed)."""
    compared = rows_of(result.cell_outputs)
    if not compared and not rows_of(result.skipped_outputs):
        if (result.outputs_mode or "check") == "ignore":
            return "<h3>Cell outputs</h3><p class=muted>not compared (--outputs ignore)</p>"
        return ""
    _, varied = nondeterministic_names(result)
    differing = differing_cells(result)
    mode = result.outputs_mode or "check"
    note = " (reported only: --outputs report)" if mode == "report" and differing else ""
    summary = f"{len(compared)} cell(s) compared, {len(differing)} differ{note}"
    parts = [f"<h3>Cell outputs</h3><p>{esc(summary)}</p>"]
    if differing:
        rows = []
        for row in differing:
            mark = _nondet_badge() if row.get("cell") in varied else ""
            head = f"<code>{esc(row.get('source_head') or '')}</code>"
            detail = esc(row.get("detail") or "outputs differ") + mark
            rows.append(("bad", [esc(row.get("cell", "?")), head, detail]))
        parts.append(html_table(("cell", "first line", "what differs"), rows))
    parts += [_figures_html(result), _skipped_html(result)]
    return "".join(parts)


def varied_html(result: ReplayResult) -> str:
    """Results that varied between the replays of ``--repeat`` (a match with the original by chance)."""
    varied = [varied_label(r) for r in rows_of(result.nondeterministic)]
    if not varied:
        return ""
    items = "".join(f"<li>{esc(v)}{_nondet_badge()}</li>" for v in varied)
    return f"<h3>Nondeterministic results</h3><p>varied between the replays themselves:</p><ul>{items}</ul>"


def expected_html(result: ReplayResult) -> str:
    """Cells that raised in the original history and raised the same exception in the replay."""
    rows = [
        ("", [esc(cell_label(e)), f"<code>{esc(e.get('ename') or '')}</code>", "raised as in the original"])
        for e in rows_of(result.expected_errors)
    ]
    return "<h3>Expected errors</h3>" + html_table(("cell", "exception", ""), rows) if rows else ""


def metric_note(result: ReplayResult, row: Mapping[str, Any]) -> str:
    """A nondeterministic badge for a metric that varied between replays ('' otherwise)."""
    names, _ = nondeterministic_names(result)
    return _nondet_badge() if str(row.get("name")) in names else ""
