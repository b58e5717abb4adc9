"""``nbtrack diff A B --html FILE``: nbdime's notebook diff of two runs as one self-contained page.

nbdime's own "Export diff" serialises its web app's DOM in a browser, so it cannot run from a
command line; this page renders nbdime's diff itself: side by side, markdown rendered, outputs and
images inline (``data:`` URIs), changed source lines marked, runs of unchanged cells collapsed
(``<details>``, no script). Nothing on the page is fetched: no script, stylesheet or font URL.

Example:
    >>> page = diff_page(runs_nbdiff(found_a, found_b))  # doctest: +SKIP
    >>> Path("diff.html").write_text(page)  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass
from typing import Any

from nbtrack.runs.nbdiff import NbDiff

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1rem 1.5rem;color:#1f2328}
h1{font-size:1.2rem}.sides,.row{display:grid;grid-template-columns:1fr 1fr;gap:.75rem}
.sides{position:sticky;top:0;background:#fff;padding:.4rem 0;border-bottom:1px solid #d0d7de;
font-weight:600;z-index:1}.row{margin:.5rem 0}.cell{border:1px solid #d0d7de;border-radius:4px;
padding:.4rem;min-width:0;overflow-x:auto}.added{border-left:4px solid #1a7f37;background:#f0fff4}
.removed{border-left:4px solid #cf222e;background:#fff5f5}.changed{border-left:4px solid #9a6700}
.empty{border:1px dashed #d0d7de;background:repeating-linear-gradient(45deg,#fff,#fff 6px,#f6f8fa 6px,
#f6f8fa 12px)}pre{margin:0;font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;
white-space:pre-wrap;word-break:break-word}.src{background:#f6f8fa;padding:.3rem;border-radius:3px}
.ln.del{background:#ffebe9;display:block}.ln.ins{background:#dafbe1;display:block}.ln{display:block}
.out{margin-top:.3rem;padding-top:.3rem;border-top:1px dotted #d0d7de}.out.chg{outline:2px solid #d4a72c}
.err pre{color:#82071e}img,svg{max-width:100%;height:auto}table{border-collapse:collapse}
td,th{border:1px solid #d0d7de;padding:2px 6px}details.same{margin:.5rem 0;color:#57606a}
details.same>summary{cursor:pointer;padding:.25rem;background:#f6f8fa;border-radius:3px}
.tag{font:11px monospace;color:#57606a;float:right}
"""


@dataclass
class Row:
    """One line of the page: a cell of side a, of side b, or of both (``kind``: same, changed, added,
    removed)."""

    kind: str
    left: dict[str, Any] | None
    right: dict[str, Any] | None


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def rows(base: dict[str, Any], diff: list[Any]) -> list[Row]:
    """The cells of both sides, aligned by nbdime's diff of the ``cells`` list.

    Example:
        >>> a = {"cells": [{"cell_type": "markdown", "source": "x"}]}
        >>> d = [{"op": "patch", "key": "cells", "diff": [{"op": "addrange", "key": 1,
        ...       "valuelist": [{"cell_type": "markdown", "source": "y"}]}]}]
        >>> [r.kind for r in rows(a, d)]
        ['same', 'added']
    """
    from nbdime.diff_utils import to_diffentry_dicts  # type: ignore[import-untyped]
    from nbdime.patching import patch  # type: ignore[import-untyped]

    cells: list[dict[str, Any]] = base.get("cells", [])
    ops: list[dict[str, Any]] = next(
        (e["diff"] for e in diff if e["op"] == "patch" and e["key"] == "cells"), []
    )
    added: dict[int, list[dict[str, Any]]] = {}
    removed: set[int] = set()
    patched: dict[int, Any] = {}
    for op in ops:
        if op["op"] == "addrange":
            added.setdefault(op["key"], []).extend(op["valuelist"])
        elif op["op"] == "removerange":
            removed.update(range(op["key"], op["key"] + op["length"]))
        elif op["op"] == "patch":
            patched[op["key"]] = op["diff"]
    out: list[Row] = []
    for index in range(len(cells) + 1):
        out.extend(Row("added", None, cell) for cell in added.get(index, []))
        if index == len(cells):
            break
        cell = cells[index]
        if index in removed:
            out.append(Row("removed", cell, None))
        elif index in patched:
            # (nbdime's patch reads the diff's entries by attribute)
            out.append(Row("changed", cell, patch(cell, to_diffentry_dicts(patched[index]))))
        else:
            out.append(Row("same", cell, cell))
    return out


def _markdown(source: str) -> str:
    import mistune  # the markdown renderer nbconvert uses; only for a page

    render = mistune.create_markdown(escape=False, plugins=["table", "strikethrough"])
    return str(render(source))


def output_html(output: dict[str, Any]) -> str:
    """One nbformat output as HTML: images inline, HTML and SVG as they are, text escaped.

    Example:
        >>> output_html({"output_type": "stream", "name": "stdout", "text": "1 < 2"})
        '<pre>1 &lt; 2</pre>'
    """
    kind = output.get("output_type")
    if kind == "stream":
        return f"<pre>{html.escape(_ANSI.sub('', _text(output.get('text'))))}</pre>"
    if kind == "error":
        trace = _ANSI.sub("", "\n".join(output.get("traceback") or []))
        return f'<div class="err"><pre>{html.escape(trace)}</pre></div>'
    data = output.get("data") or {}
    for mime in ("image/png", "image/jpeg", "image/gif"):
        if mime in data:
            b64 = _text(data[mime]).replace("\n", "")
            return f'<img alt="{mime} output" src="data:{mime};base64,{b64}">'
    if "image/svg+xml" in data:
        return _text(data["image/svg+xml"])
    if "text/html" in data:
        return _text(data["text/html"])
    if "text/markdown" in data:
        return _markdown(_text(data["text/markdown"]))
    if "text/plain" in data:
        return f"<pre>{html.escape(_ANSI.sub('', _text(data['text/plain'])))}</pre>"
    return f"<pre>({html.escape(', '.join(sorted(data)) or str(kind))} output)</pre>"


def _source_html(source: str, other: str | None, mark: str) -> str:
    """A code cell's source; lines missing from ``other`` marked ``mark`` (del on a, ins on b)."""
    lines = source.splitlines() or [""]
    keep: set[int] = set(range(len(lines)))
    if other is not None:
        matcher = difflib.SequenceMatcher(a=lines, b=other.splitlines(), autojunk=False)
        keep = {i for block in matcher.get_matching_blocks() for i in range(block.a, block.a + block.size)}
    spans = [
        f'<span class="ln{"" if i in keep else " " + mark}">{html.escape(line) or " "}</span>'
        for i, line in enumerate(lines)
    ]
    return f'<pre class="src">{"".join(spans)}</pre>'


def cell_html(cell: dict[str, Any] | None, other: dict[str, Any] | None, kind: str, mark: str) -> str:
    """One side of a row: the cell rendered (an empty box where the other side added/removed one)."""
    if cell is None:
        return '<div class="cell empty"></div>'
    source = _text(cell.get("source"))
    css = {"same": "", "changed": " changed", "added": " added", "removed": " removed"}[kind]
    tag = f'<span class="tag">{html.escape(str(cell.get("cell_type")))}</span>'
    if cell.get("cell_type") == "markdown":
        return f'<div class="cell md{css}">{tag}{_markdown(source)}</div>'
    if cell.get("cell_type") != "code":
        return f'<div class="cell{css}">{tag}<pre>{html.escape(source)}</pre></div>'
    other_source = _text(other.get("source")) if kind == "changed" and other is not None else None
    outputs = cell.get("outputs", [])
    changed = kind == "changed" and other is not None and other.get("outputs", []) != outputs
    rendered = "".join(output_html(o) for o in outputs)
    body = f'<div class="out{" chg" if changed else ""}">{rendered}</div>' if outputs else ""
    return f'<div class="cell{css}">{tag}{_source_html(source, other_source, mark)}{body}</div>'


def _row_html(row: Row) -> str:
    left = cell_html(row.left, row.right, row.kind, "del")
    right = cell_html(row.right, row.left, row.kind, "ins")
    return f'<div class="row">{left}{right}</div>'


def diff_page(result: NbDiff) -> str:
    """The whole page: a header naming both sides, then the aligned cells.

    Example:
        >>> "<details" in diff_page(runs_nbdiff(found_a, found_b))  # doctest: +SKIP
        True
    """
    a, b = result.a.describe(), result.b.describe()
    title = f"{a['label']} → {b['label']}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>nbtrack diff: {html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Notebook diff: {html.escape(title)}</h1>",
        f'<div class="sides"><div>A: {html.escape(a["label"])} <code>{a["run_id"][:8]}</code></div>'
        f"<div>B: {html.escape(b['label'])} <code>{b['run_id'][:8]}</code></div></div>",
    ]
    all_rows = rows(result.a.notebook, result.diff)
    if all(r.kind == "same" for r in all_rows):
        parts.append("<p>The notebooks do not differ (execution counts and metadata ignored).</p>")
    same: list[Row] = []
    for row in [*all_rows, None]:
        if row is not None and row.kind == "same":
            same.append(row)
            continue
        if same:
            inner = "".join(_row_html(r) for r in same)
            parts.append(
                f'<details class="same"><summary>{len(same)} unchanged cell(s)</summary>{inner}</details>'
            )
            same = []
        if row is not None:
            parts.append(_row_html(row))
    parts.append("</body></html>")
    return "".join(parts)
