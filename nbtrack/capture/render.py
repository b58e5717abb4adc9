"""HTML renderings: a recorded notebook (for the MLflow UI) and the run card ``%track stop`` shows.

Self-contained pages (no external URLs, no scripts); written by hand rather than with nbconvert,
whose import and templates cost more than a whole tracked run should.
"""

from __future__ import annotations

import html
import re
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#1f2328}
.cell{margin:0 0 1rem 0}.prompt{color:#57606a;font:12px monospace;margin-bottom:2px}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:4px;padding:.5rem;overflow-x:auto;
margin:0;font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre-wrap}
.out pre{background:#fff;border-color:#eaeef2}.err pre{background:#fff5f5;border-color:#f5c2c7}
.md{padding:.25rem .5rem}img{max-width:100%}table{border-collapse:collapse}
td,th{border:1px solid #d0d7de;padding:2px 6px}
"""


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _output_html(output: dict[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return (
            f'<div class="out"><pre>{html.escape(_ANSI.sub("", _text(output.get("text", ""))))}</pre></div>'
        )
    if kind == "error":
        trace = _ANSI.sub("", "\n".join(output.get("traceback") or []))
        return f'<div class="out err"><pre>{html.escape(trace)}</pre></div>'
    data = output.get("data") or {}
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            b64 = _text(data[mime]).replace("\n", "")
            return f'<div class="out"><img src="data:{mime};base64,{b64}"></div>'
    if "image/svg+xml" in data:
        return f'<div class="out">{_text(data["image/svg+xml"])}</div>'
    if "text/html" in data:
        return f'<div class="out">{_text(data["text/html"])}</div>'
    if "text/plain" in data:
        return f'<div class="out"><pre>{html.escape(_text(data["text/plain"]))}</pre></div>'
    return ""


def notebook_html(nb: dict[str, Any], title: str = "notebook") -> str:
    """A static, self-contained HTML page of a notebook: sources, prompts and outputs."""
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
    ]
    for cell in nb.get("cells", []):
        source = _text(cell.get("source", ""))
        kind = cell.get("cell_type")
        if kind == "markdown":
            parts.append(f'<div class="cell md"><pre>{html.escape(source)}</pre></div>')
            continue
        if kind != "code":
            continue
        count = cell.get("execution_count")
        parts.append('<div class="cell">')
        parts.append(f'<div class="prompt">In [{count if count is not None else " "}]:</div>')
        parts.append(f"<pre>{html.escape(source)}</pre>")
        parts.extend(_output_html(o) for o in cell.get("outputs", []))
        parts.append("</div>")
    parts.append("</body></html>")
    return "".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def upload_line(upload: dict[str, str]) -> str:
    """How far a spooled run's upload to the tracking server is, in words.

    Example:
        >>> upload_line({"state": "uploaded", "server": "http://mlflow:5000", "detail": "9a41"})
        'uploaded to http://mlflow:5000 as run 9a41'
    """
    state, server, detail = upload.get("state"), upload.get("server"), upload.get("detail")
    if state == "uploaded":
        return f"uploaded to {server} as run {detail}"
    if state == "uploading":
        return f"uploading to {server}\u2026"
    return f"pending: {server} not reached ({detail}); kept in the local spool, `nbtrack sync` uploads it"


class RunCard:
    """What ``%track stop`` displays: rich HTML in Jupyter, plain text elsewhere."""

    def __init__(self, summary: dict[str, Any]) -> None:
        self.summary = summary

    def _rows(self) -> list[tuple[str, str]]:
        s = self.summary
        rows = [
            ("run", f"{s.get('run_name')} ({s.get('run_id')})"),
            ("experiment", str(s.get("experiment"))),
            ("status", str(s.get("status"))),
        ]
        if s.get("duration_s") is not None:
            rows.append(("duration", f"{s['duration_s']:.2f} s"))
        metrics = s.get("metrics") or {}
        if metrics:
            rows.append(("metrics", ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(metrics.items()))))
        for flag in s.get("flags") or []:
            rows.append(("note", flag))
        if s.get("upload"):
            rows.append(("upload", upload_line(s["upload"])))
        if s.get("view"):
            rows.append(("view", str(s["view"])))
        return rows

    def __repr__(self) -> str:
        return "\n".join(f"{k:>10}: {v}" for k, v in self._rows())

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><th style='text-align:right;padding-right:8px'>{html.escape(k)}</th>"
            f"<td>{html.escape(v)}</td></tr>"
            for k, v in self._rows()
        )
        color = {"FINISHED": "#1a7f37", "FAILED": "#cf222e"}.get(str(self.summary.get("status")), "#57606a")
        return (
            f"<div class='nbtrack-run-card' style='border-left:4px solid {color};padding:4px 10px'>"
            f"<b>nbtrack</b><table>{body}</table></div>"
        )


def _cell(value: Any) -> str:
    return "<td>" + ("<i>absent</i>" if value is None else html.escape(_fmt(value))) + "</td>"


def diff_html(d: dict[str, Any]) -> str:
    """The params and metrics that differ between two runs (:func:`nbtrack.runs.diff.diff_runs`' result),
    as an HTML table: what the run card's "Compare with previous run" shows.

    Example:
        >>> d = {"a": {"run_id": "1", "name": "a"}, "b": {"run_id": "2", "name": "b"},
        ...      "params": [{"name": "alpha", "a": "0.1", "b": "0.5"}], "metrics": []}
        >>> "<td>alpha</td><td>0.1</td><td>0.5</td>" in diff_html(d)
        True
    """
    a = d["a"]
    head = (
        f"<p>Compared with the previous run <b>{html.escape(str(a.get('name')))}</b> "
        f"(<code>{html.escape(str(a['run_id']))}</code>)</p>"
    )
    rows = [
        f"<tr><td>param</td><td>{html.escape(r['name'])}</td>{_cell(r['a'])}{_cell(r['b'])}<td></td></tr>"
        for r in d.get("params", [])
    ]
    for r in d.get("metrics", []):
        change = f"{r['difference']:+.6g}" if r.get("difference") is not None else ""
        rows.append(
            f"<tr><td>metric</td><td>{html.escape(r['name'])}</td>{_cell(r['a'])}{_cell(r['b'])}"
            f"<td>{change}</td></tr>"
        )
    if not rows:
        return head + "<p>No differences in params or metrics.</p>"
    return (
        head
        + "<table class='nbtrack-diff'><tr><th></th><th>name</th><th>previous</th><th>this run</th>"
        + "<th>change</th></tr>"
        + "".join(rows)
        + "</table>"
    )
