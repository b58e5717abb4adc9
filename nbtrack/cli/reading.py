"""``nbtrack runs``, ``show``, ``diff`` and ``sync``: thin commands over the runs service.

Every command reads through :class:`nbtrack.runs.service.Runs`; a run id may be a full id, the id
of a run of the local spool, or a unique prefix (>= 6 characters) of either.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nbtrack.errors import ConfigError, NotebookError, StoreError, UsageError
from nbtrack.models import Snapshot
from nbtrack.runs.ids import Found
from nbtrack.runs.service import Runs, Target


def locate(
    args: argparse.Namespace, runs: Runs, notebook: str | None = None, *, missing_ok: bool = False
) -> Target:
    """The target of ``--project`` / ``--tracking-uri`` (and ``notebook``), found from the current
    folder by default.

    Commands only read: a project without an embedded store gets none created; that is an error
    naming ``--project``, unless ``missing_ok`` (then the target has no store).
    """
    target = runs.locate(project=args.project, notebook=Path(notebook) if notebook else None, cwd=Path.cwd())
    if target.store is None and not missing_ok:
        raise ConfigError(
            f"no nbtrack store in {target.project} ({target.database} does not exist); pass --project DIR "
            "(the project that tracked the run) or --tracking-uri URI"
        )
    return target


def resolve(runs: Runs, target: Target, run_id: str) -> Found:
    """:meth:`Runs.resolve`, saying on stderr when a spool id was translated to the server's."""
    found = runs.resolve(target, run_id)
    if found.note:
        print(f"nbtrack: {found.note}", file=sys.stderr)
    return found


def table(rows: list[dict[str, Any]]) -> str:
    """The runs as ``nbtrack runs`` prints them: one line each under a header."""
    headers = ["RUN ID", "NAME", "STATUS", "START", "DURATION", "NOTEBOOK", "COMMIT", "FLAGS", "METRICS"]
    lines = []
    for r in rows:
        flags = [
            f
            for f, on in (
                ("dirty-code", r["git_dirty"]),
                (f"data-{r['data_status']}", r["data_status"] in ("modified", "missing")),
                ("out-of-order", r["out_of_order"]),
                (f"replay-of:{(r['replay_of'] or '')[:8]}:{r['replay_verdict'] or '?'}", r["replay_of"]),
                (f"on-host:{r.get('running_on')}", r.get("running_on")),
                ("pending-upload", r.get("pending_upload")),
            )
            if on
        ]
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(r["metrics"].items())[:3])
        lines.append(
            [
                r["run_id"],
                r["name"] or "",
                r["status"],
                r["start"],
                r["duration"],
                r["notebook"] or "-",
                r["commit"] or "-",
                ",".join(flags) or "-",
                metrics or "-",
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *lines, strict=True)]
    return "\n".join(
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *lines]
    )


def _notebook_line(snap: Snapshot) -> str:
    nb = snap.section("notebook")
    if nb.status != "ok" or not nb.data.get("path"):
        return f"notebook    {nb.reason or nb.data.get('reason')}"
    d = nb.data
    line = f"notebook    {d.get('relpath')} (found by {d.get('method')})"
    if d.get("out_of_order"):
        line += "  OUT OF ORDER: " + "; ".join(d.get("out_of_order_reasons", [])[:3])
    if d.get("edited_after_execution"):
        line += f"  edited after execution: cells {d['edited_after_execution']}"
    return line


def _git_line(snap: Snapshot) -> str:
    git = snap.section("git")
    if git.status != "ok":
        return f"git         {git.status}: {git.reason}"
    d = git.data
    return (
        f"git         {d.get('commit')} on {d.get('branch') or '(detached)'}"
        f"{'  (uncommitted changes)' if d.get('dirty') else ''}  {d.get('remote_url') or ''}".rstrip()
    )


def _data_lines(snap: Snapshot) -> list[str]:
    data = snap.section("data")
    if data.status != "ok":
        return [f"data        {data.status}: {data.reason}"]
    outputs = data.data.get("outputs", [])
    remote = (data.data.get("remote") or {}).get("url") or "-"
    return [f"data        {len(outputs)} DVC output(s), remote {remote}"] + [
        f"            {o['path']}  {o['hash_name']}:{o['hash']}  {o['status']}" for o in outputs
    ]


def _environment_line(snap: Snapshot) -> str:
    env = snap.section("environment")
    if env.status != "ok":
        return f"environment {env.status}: {env.reason}"
    py = env.data.get("python", {})
    return (
        f"environment Python {py.get('version')} ({py.get('implementation')}), "
        f"{len(env.data.get('packages', []))} packages, {env.data.get('platform', {}).get('platform')}"
    )


def show_text(row: dict[str, Any], snap: Snapshot, view: str) -> str:
    """A run and its snapshot as ``nbtrack show`` prints them."""
    out = [
        f"run         {row['run_id']} ({row['name']})",
        f"status      {row['status']}  started {row['start']}  duration {row['duration']}",
        _notebook_line(snap),
        _git_line(snap),
        *_data_lines(snap),
        _environment_line(snap),
    ]
    for name in ("notebook", "git", "data"):
        section = snap.section(name)
        if section.status == "ok":  # captured, but not whole: a cap hit, DVC files unread
            out.extend(f"note        {name}: {note}" for note in section.notes())
    if row["params"]:
        out.append("params      " + ", ".join(f"{k}={v}" for k, v in sorted(row["params"].items())))
    if row["metrics"]:
        out.append("metrics     " + ", ".join(f"{k}={v:.6g}" for k, v in sorted(row["metrics"].items())))
    out.append("view        " + view)
    return "\n".join(out)


def _no_runs_of(notebook: str | None, rel: str | None) -> None:
    """A ``--notebook`` that names no file (and has no runs) is a mistyped path: say so."""
    if notebook and not Path(notebook).exists():
        raise NotebookError(
            f"--notebook {notebook}: no such file ({Path(notebook).resolve()}) and no runs of {rel}; "
            "check the path, or list every run with `nbtrack runs`"
        )


def cmd_runs(args: argparse.Namespace, runs: Runs) -> int:
    target = locate(args, runs, args.notebook, missing_ok=True)
    if target.store is None:
        _no_runs_of(args.notebook, target.notebook)
        print(
            f"no tracked runs in {target.project} yet (no nbtrack store there); run `%track start` in a "
            "notebook"
        )
        return 0
    page = runs.list_runs(target, experiment=args.experiment, max_results=args.max, by="`nbtrack runs`")
    if page.warning is not None:
        print(f"nbtrack: showing only the local spool's pending runs: {page.warning}", file=sys.stderr)
    rows = page.rows
    if not rows:
        _no_runs_of(args.notebook, target.notebook)
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        where = f" for {target.notebook}" if target.notebook else ""
        print(f"no tracked runs{where} in {target.display_uri}; run `%track start` in a notebook")
    else:
        print(table(rows))
        # What a pending-upload flag means and what to do, once per run (the table has no room).
        for note in [r["upload_note"] for r in rows if r.get("upload_note")][:5]:
            print(f"note: {note}")
    return 0


def cmd_show(args: argparse.Namespace, runs: Runs) -> int:
    from nbtrack.runs.rows import run_row

    target = locate(args, runs)
    found = resolve(runs, target, args.run_id)
    snap = found.store.load_snapshot(found.run_id)
    run, row = found.run, run_row(found.run)
    if args.json:
        print(json.dumps({"run": {**row, "tags": dict(run.tags)}, "snapshot": snap.to_dict()}, indent=1))
    else:
        print(show_text(row, snap, found.store.run_url(run)))
    return 0


def cmd_diff(args: argparse.Namespace, runs: Runs) -> int:
    from nbtrack.runs.diff import format_diff

    target = locate(args, runs)
    a, b = resolve(runs, target, args.run_a), resolve(runs, target, args.run_b)
    if getattr(args, "html", None) is not None:
        return _diff_page(args, a, b)
    result = runs.diff(target, a, b)
    print(json.dumps(result, indent=1) if args.json else format_diff(result))
    return 0


def cmd_sync(args: argparse.Namespace, runs: Runs) -> int:
    target = locate(args, runs)
    report = runs.sync(target, say=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(
            f"nbtrack sync: {len(report.uploaded)} run(s) uploaded to {target.display_uri}, "
            f"{len(report.already)} already there, {len(report.running)} still running "
            f"(uploaded when they end), {len(report.failed)} failed"
        )
    if report.failed:
        run_id, why = report.failed[0]
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        raise StoreError(f"run {run_id}{more} not uploaded, still pending: {why}")
    return 0


def _diff_page(args: argparse.Namespace, a: Found, b: Found) -> int:
    """``nbtrack diff A B --html FILE``: the notebooks' diff (nbdime) as one self-contained page."""
    from nbtrack.runs.nbdiff import runs_nbdiff
    from nbtrack.runs.nbdiff_page import diff_page

    page = diff_page(runs_nbdiff(a, b, args.side_a, args.side_b))
    try:
        args.html.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"--html {args.html}: cannot write it ({exc.strerror}); give a writable path"
        ) from exc
    print(f"wrote the notebook diff of {a.run_id[:8]} and {b.run_id[:8]} to {args.html}")
    return 0
