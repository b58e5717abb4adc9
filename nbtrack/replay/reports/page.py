"""One self-contained HTML page a person reads to decide whether to trust a replay."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from nbtrack import __version__
from nbtrack.replay.reports.cells_html import (
    CELLS_STYLE,
    cells_html,
    esc,
    expected_html,
    html_table,
    metric_note,
    varied_html,
)
from nbtrack.replay.reports.common import (
    LONG,
    VERDICTS,
    Result,
    as_result,
    env_compared,
    env_rows,
    env_summary,
    evidence_line,
    number_text,
    output_change,
    overrides,
    reason_text,
    rows_of,
    run_label,
    value_text,
)
from nbtrack.replay.result import ReplayResult

# --- HTML ----------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:76rem;
padding:0 1rem;color:#1f2328;line-height:1.4}
h1{font-size:1.4rem;margin:0}h3{font-size:1rem;margin:1.1rem 0 .3rem}
.muted{color:#57606a}section.result{border-top:2px solid #d0d7de;margin-top:2rem;padding-top:.5rem}
.banner{padding:.6rem 1rem;border-radius:6px;color:#fff;margin:.5rem 0;font-size:1.05rem}
.banner b{font-size:1.35rem;margin-right:.8rem;letter-spacing:.03em}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;color:#fff;font-size:.8rem;font-weight:600}
.v-REPRODUCED{background:#1a7f37}.v-DIVERGED{background:#bc4c00}.v-FAILED{background:#cf222e}
.v-CANNOT_REPLAY,.v-UNKNOWN{background:#6e7781}
table{border-collapse:collapse;margin:.3rem 0}
td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{background:#ffebe9}tr.bad td:first-child{box-shadow:inset 3px 0 #cf222e}
tr.over td{background:#fff8c5}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:.5rem 0}
dt{color:#57606a}dd{margin:0}
.risks{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.3rem 1rem;margin:.6rem 0}
.failure{background:#ffebe9;border:1px solid #ff8182;border-radius:6px;padding:.3rem 1rem}
code,pre,.diff{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,monospace}
pre{white-space:pre-wrap;margin:.2rem 0}.diff{border:1px solid #d0d7de;border-radius:4px;margin:.2rem 0 .8rem}
.diff div{white-space:pre-wrap;padding:0 .5rem;min-height:1.45em}.diff .add{background:#dafbe1;color:#116329}
.diff .del{background:#ffebe9;color:#82071e}.diff .hunk{background:#ddf4ff;color:#0550ae}
.warn{color:#9a6700;font-weight:600}
"""


_esc, _table = esc, html_table


def _verdict_class(verdict: str) -> str:
    return f"v-{verdict}" if verdict in VERDICTS else "v-UNKNOWN"


def _meta_html(result: ReplayResult) -> str:
    env = {"current": "the current Python environment", "recreate": "recreated from the recorded packages"}
    notebook = result.notebook
    items = [
        ("run", run_label(result)),
        ("replay run", result.replay_run_id or "not logged"),
        ("experiment", result.experiment),
        ("notebook", notebook or "none: replayed from the recorded cell history"),
        (
            "mode",
            str(result.mode or "-") + (f": {result.mode_reason}" if result.mode_reason else ""),
        ),
        ("environment", env.get(result.env, result.env or "-")),
        ("kernel", result.kernel or "-"),
        ("parameters overridden", overrides(result) or "none"),
        ("cell outputs", result.outputs_mode or "check"),
        ("started", result.started or "-"),
        ("duration", f"{number_text(result.duration_s, '.1f') or '-'} s"),
        ("exit code", result.exit_code),
    ]
    if result.workspace:
        items.append(("workspace", result.workspace))
    body = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in items)
    if result.view:
        # Shown as text, never as a link: the page must not point anywhere outside itself.
        body += f"<dt>see the replay run</dt><dd><code>{_esc(result.view)}</code></dd>"
    return f'<dl class="meta">{body}</dl>'


def _metrics_html(result: ReplayResult) -> str:
    rows = []
    for m in rows_of(result.metrics):
        ok = m.get("ok", True)
        missing = m.get("original") is None or m.get("replayed") is None
        status = (
            "✓ within tolerance" if ok else ("✗ missing on one side" if missing else "✗ outside tolerance")
        )
        cells = [
            value_text(m.get("original")),
            value_text(m.get("replayed")),
            number_text(m.get("difference"), "+.6g"),
        ]
        cells += [number_text(m.get("tolerance"), ".3g"), status]
        name = f"<code>{_esc(m.get('name'))}</code>{metric_note(result, m)}"
        rows.append(("" if ok else "bad", [name, *map(_esc, cells)]))
    if not rows and rows_of(result.cell_outputs):
        return "<h3>Metrics</h3><p class=muted>no metrics logged: the cell outputs were compared</p>"
    if not rows:
        return "<h3>Metrics</h3><p class=muted>no metrics to compare: only the execution was checked</p>"
    header = ("metric", "original", "replayed", "difference", "relative tolerance", "")
    return "<h3>Metrics</h3>" + _table(header, rows, num=(1, 2, 3, 4))


def _params_html(result: ReplayResult) -> str:
    rows = []
    for p in rows_of(result.params):
        note = (
            "overridden (-p) for this replay"
            if p.get("overridden")
            else ("" if p.get("ok", True) else "✗ differs")
        )
        cls = "bad" if not p.get("ok", True) else ("over" if p.get("overridden") else "")
        cells = [_esc(value_text(p.get("original"))), _esc(value_text(p.get("replayed"))), _esc(note)]
        rows.append((cls, [f"<code>{_esc(p.get('name'))}</code>", *cells]))
    return "<h3>Parameters</h3>" + _table(("param", "original", "replayed", ""), rows) if rows else ""


def _outputs_html(result: ReplayResult) -> str:
    rows = []
    for o in rows_of(result.outputs):
        ok = o.get("ok", True)
        cells = [f"<code>{_esc(o.get('path'))}</code>"]
        cells += [f"<code>{_esc(value_text(o.get(side)))}</code>" for side in ("original", "replayed")]
        rows.append(("" if ok else "bad", [*cells, _esc(("✓ " if ok else "✗ ") + output_change(o))]))
    header = ("DVC output", "original", "replayed", "")
    return "<h3>Produced outputs</h3>" + _table(header, rows) if rows else ""


def _failure_html(result: ReplayResult) -> str:
    failure = result.failure
    if not isinstance(failure, Mapping):
        return ""
    count = failure.get("execution_count")
    where = f"cell {failure.get('cell', '?')}" + (f" (In [{count}])" if count is not None else "")
    return (
        f'<h3>Failure</h3><div class="failure"><p><b>{_esc(where)}</b> raised '
        f"<code>{_esc(failure.get('ename') or 'an error')}</code>: {_esc(failure.get('evalue') or '')}</p>"
        f"<pre>{_esc(failure.get('source_head') or '')}</pre></div>"
    )


def _environment_html(result: ReplayResult) -> str:
    env = result.environment if isinstance(result.environment, Mapping) else None
    summary = _esc(env_summary(env))
    if env is None or env.get("available") is False or not (env.get("python") or env_rows(env)):
        return f"<h3>Environment</h3><p>{summary}</p>"
    rows = [("", [f"<code>{_esc(n)}</code>", _esc(a), _esc(b), _esc(c)]) for n, a, b, c in env_rows(env)]
    if env.get("python"):
        py = env["python"]
        rows.insert(0, ("over", ["<b>python</b>", _esc(py.get("a")), _esc(py.get("b")), "changed"]))
    opened = " open" if len(rows) <= LONG else ""
    table = _table(("package", "recorded", "replay", ""), rows)
    return f"<h3>Environment</h3><details{opened}><summary>{summary}</summary>{table}</details>"


def _data_html(result: ReplayResult) -> str:
    rows = []
    for d in rows_of(result.data):
        status = str(d.get("status_at_record") or "-")
        status_html = _esc(status) if status == "clean" else f'<span class="warn">{_esc(status)}</span>'
        fetched = "fetched from the remote" if d.get("fetched") else "from the cache"
        digest = f"<code>{_esc(d.get('hash_name'))}:{_esc(d.get('hash'))}</code>"
        rows.append(
            ("", [f"<code>{_esc(d.get('path'))}</code>", digest, status_html, _esc(d.get("link")), fetched])
        )
    header = ("path", "version", "status when recorded", "link", "")
    return "<h3>Data versions</h3>" + _table(header, rows) if rows else ""


def _diff_lines_html(lines: Sequence[str]) -> str:
    def cls(line: str) -> str:
        return "hunk" if line.startswith("@@") else {"+": "add", "-": "del"}.get(line[:1], "")

    return '<div class="diff">' + "".join(f'<div class="{cls(x)}">{_esc(x)}</div>' for x in lines) + "</div>"


def _code_html(result: ReplayResult) -> str:
    parts = []
    for row in rows_of(result.code_diff):
        op = row.get("op")
        if op == "changed":
            title = f"cell {row.get('a_cell')} changed"
            if row.get("b_cell") != row.get("a_cell"):
                title += f" (cell {row.get('b_cell')} of the replayed notebook)"
            lines = str(row.get("diff") or "").splitlines()
            if len(lines) >= 2 and lines[0].startswith("---") and lines[1].startswith("+++"):
                lines = lines[2:]
        elif op == "added":
            title = f"cell {row.get('b_cell')} only in the replayed notebook"
            lines = ["+" + line for line in str(row.get("source") or "").splitlines()]
        else:
            title = f"cell {row.get('a_cell')} only in the recorded notebook"
            lines = ["-" + line for line in str(row.get("source") or "").splitlines()]
        parts.append(f"<p><b>{_esc(title)}</b></p>{_diff_lines_html(lines)}")
    if parts:
        return "<h3>Code: recorded → replayed notebook</h3>" + "".join(parts)
    if result.verdict == "CANNOT_REPLAY":
        return ""
    return "<h3>Code</h3><p>the replayed code cells are the recorded ones</p>"


def _anchor(index: int, result: ReplayResult) -> str:
    return f"run-{index + 1}-" + re.sub(r"[^A-Za-z0-9_-]", "", result.run_id)[:12]


def _result_html(result: ReplayResult, anchor: str) -> str:
    verdict = result.verdict
    risks = result.risks
    parts = [
        f'<section class="result" id="{anchor}">',
        f'<div class="banner {_verdict_class(verdict)}"><b>{_esc(verdict)}</b>',
        f"{_esc(reason_text(result))}</div>",
    ]
    if verdict in ("REPRODUCED", "DIVERGED", "UNVERIFIED"):
        parts.append(f'<p class="evidence"><b>evidence</b> {_esc(evidence_line(result))}</p>')
    parts.append(_meta_html(result))
    if risks:
        items = "".join(f"<li>{_esc(r)}</li>" for r in risks)
        parts.append(f'<div class="risks"><h3>⚠ Risks to this verdict</h3><ul>{items}</ul></div>')
    parts.append(_failure_html(result))
    if verdict != "CANNOT_REPLAY" or rows_of(result.metrics):
        parts.append(_metrics_html(result))
    parts += [_params_html(result), _outputs_html(result), cells_html(result)]
    parts += [varied_html(result), expected_html(result)]
    if verdict != "CANNOT_REPLAY" or env_compared(result):
        parts.append(_environment_html(result))
    parts += [_data_html(result), _code_html(result), "</section>"]
    return "".join(parts)


def _summary_html(results: Sequence[ReplayResult], anchors: Sequence[str]) -> str:
    verdicts = [r.verdict for r in results]
    chips = " ".join(
        f'<span class="badge {_verdict_class(v)}">{_esc(v)} {verdicts.count(v)}</span>' for v in VERDICTS
    )
    rows = [
        (
            "",
            [
                f'<span class="badge {_verdict_class(v)}">{_esc(v)}</span>',
                f'<a href="#{anchor}">{_esc(run_label(r))}</a>',
                _esc(r.experiment or ""),
                _esc(r.notebook or "-"),
                _esc(reason_text(r)),
            ],
        )
        for r, v, anchor in zip(results, verdicts, anchors, strict=True)
    ]
    table = _table(("verdict", "run", "experiment", "notebook", "message"), rows)
    return f"<h2>Summary</h2><p>{chips}</p>{table}"


def html_report(results: Sequence[Result]) -> str:
    """One self-contained HTML page for people deciding whether to trust a replay.

    Each run gets its verdict as a coloured banner and what was compared (its evidence), then its
    risks, metric / param / output tables, the cell outputs that differ (figures as original |
    replayed | difference), results that varied between replays, expected errors, the failure,
    environment drift, data versions and the cell-level code diff; a batch opens with a
    summary table linking to each run's section. Nothing is loaded from anywhere.

    Example:
        >>> Path("replay.html").write_text(html_report(results), encoding="utf-8")  # doctest: +SKIP
    """
    typed = [as_result(r) for r in results]
    anchors = [_anchor(i, r) for i, r in enumerate(typed)]
    if len(typed) == 1:
        title = f"nbtrack replay: {typed[0].verdict} {run_label(typed[0])}"
    else:
        title = f"nbtrack replay: {len(typed)} runs"
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_STYLE}{CELLS_STYLE}</style></head><body>",
        "<h1>nbtrack replay</h1>",
        f'<p class="muted">{len(typed)} run(s) replayed; report by nbtrack {_esc(__version__)}</p>',
    ]
    if not typed:
        parts.append("<p>no runs were replayed: no tracked run matched the selection</p>")
    if len(typed) > 1:
        parts.append(_summary_html(typed, anchors))
    parts += [_result_html(r, a) for r, a in zip(typed, anchors, strict=True)]
    parts.append("</body></html>\n")
    return "".join(parts)
