"""The ``nbtrack`` command: list runs, show one, run the demo.

Errors print one line (``nbtrack: <what failed and how to fix it>``) and exit with the code of their
family (see :mod:`nbtrack.errors`); never a traceback for a user error.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from nbtrack import __version__
from nbtrack.errors import NbtrackError, UsageError


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), apart from replay's verdict codes 0-3."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(UsageError.exit_code, f"nbtrack: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nbtrack",
        description="Experiment tracking that lives inside Jupyter (MLflow + DVC + papermill).",
    )
    parser.add_argument("--version", action="version", version=f"nbtrack {__version__}")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the project's embedded store)")
    parser.add_argument("--project", type=Path, help="project folder (default: found from the current one)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    runs = sub.add_parser("runs", help="list tracked runs, newest first")
    runs.add_argument("--notebook", help="only runs of this notebook")
    runs.add_argument("--experiment", help="only runs of this experiment")
    runs.add_argument("--max", type=int, default=50, help="how many runs (default 50)")
    runs.add_argument("--json", action="store_true", help="machine-readable output")

    show = sub.add_parser("show", help="show a run's snapshot summary")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true", help="the run and its whole snapshot as JSON")

    diff = sub.add_parser("diff", help="compare two runs: params, metrics, environment, data, code cells")
    diff.add_argument("run_a")
    diff.add_argument("run_b")
    diff.add_argument("--json", action="store_true", help="the structured diff as JSON")

    demo = sub.add_parser("demo", help="create a demo project, execute its notebook, and show the run")
    demo.add_argument("dir", nargs="?", default="nbtrack-demo", type=Path, help="a new folder")
    return parser


def _context(args: argparse.Namespace, notebook: str | None = None) -> tuple[Any, Path, str | None]:
    """The store, the project root, and the notebook path relative to it."""
    from nbtrack.capture.locate import find_project_root
    from nbtrack.config import load_config
    from nbtrack.store import MlflowStore

    config = load_config()
    if args.tracking_uri:
        config.tracking_uri = args.tracking_uri
    rel = None
    if notebook:
        nb = Path(notebook).resolve()
        root = (args.project or find_project_root(nb.parent)).resolve()
        try:
            rel = nb.relative_to(root).as_posix()
        except ValueError:
            rel = str(nb)
    else:
        root = (args.project or find_project_root(Path.cwd())).resolve()
    return MlflowStore.for_project(root, config), root, rel


def _time(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _duration(run: Any) -> str:
    if not run.info.end_time:
        return "-"
    return f"{(run.info.end_time - run.info.start_time) / 1000:.1f}s"


def _run_row(run: Any) -> dict[str, Any]:
    tags = run.data.tags
    return {
        "run_id": run.info.run_id,
        "name": run.info.run_name,
        "status": run.info.status,
        "start": _time(run.info.start_time),
        "duration": _duration(run),
        "experiment_id": run.info.experiment_id,
        "notebook": tags.get("mlflow.source.name"),
        "commit": (tags.get("mlflow.source.git.commit") or "")[:7] or None,
        "git_dirty": tags.get("nbtrack.git.dirty") == "true",
        "data_status": tags.get("nbtrack.data.status"),
        "out_of_order": tags.get("nbtrack.out_of_order") == "true",
        "metrics": dict(run.data.metrics),
        "params": dict(run.data.params),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    headers = ["RUN ID", "NAME", "STATUS", "START", "DURATION", "NOTEBOOK", "COMMIT", "FLAGS", "METRICS"]
    lines = []
    for r in rows:
        flags = [
            f
            for f, on in (
                ("dirty-code", r["git_dirty"]),
                (f"data-{r['data_status']}", r["data_status"] in ("modified", "missing")),
                ("out-of-order", r["out_of_order"]),
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


def cmd_runs(args: argparse.Namespace) -> int:
    store, _, rel = _context(args, args.notebook)
    runs, _token = store.search_runs(notebook=rel, experiment=args.experiment, max_results=args.max)
    rows = [_run_row(r) for r in runs]
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        where = f" for {rel}" if rel else ""
        print(f"no tracked runs{where} in {store.display_uri}; run `%track start` in a notebook")
    else:
        print(_table(rows))
    return 0


def _show_text(row: dict[str, Any], snap: Any, view: str) -> str:
    out = [
        f"run         {row['run_id']} ({row['name']})",
        f"status      {row['status']}  started {row['start']}  duration {row['duration']}",
    ]
    nb = snap.section("notebook")
    if nb.status == "ok" and nb.data.get("path"):
        d = nb.data
        line = f"notebook    {d.get('relpath')} (found by {d.get('method')})"
        if d.get("out_of_order"):
            line += "  OUT OF ORDER: " + "; ".join(d.get("out_of_order_reasons", [])[:3])
        if d.get("edited_after_execution"):
            line += f"  edited after execution: cells {d['edited_after_execution']}"
        out.append(line)
    else:
        out.append(f"notebook    {nb.reason or nb.data.get('reason')}")
    git = snap.section("git")
    if git.status == "ok":
        d = git.data
        out.append(
            f"git         {d.get('commit')} on {d.get('branch') or '(detached)'}"
            f"{'  (uncommitted changes)' if d.get('dirty') else ''}  {d.get('remote_url') or ''}".rstrip()
        )
    else:
        out.append(f"git         {git.status}: {git.reason}")
    data = snap.section("data")
    if data.status == "ok":
        outputs = data.data.get("outputs", [])
        out.append(
            f"data        {len(outputs)} DVC output(s), "
            f"remote {(data.data.get('remote') or {}).get('url') or '-'}"
        )
        out.extend(f"            {o['path']}  {o['hash_name']}:{o['hash']}  {o['status']}" for o in outputs)
    else:
        out.append(f"data        {data.status}: {data.reason}")
    env = snap.section("environment")
    if env.status == "ok":
        py = env.data.get("python", {})
        out.append(
            f"environment Python {py.get('version')} ({py.get('implementation')}), "
            f"{len(env.data.get('packages', []))} packages, {env.data.get('platform', {}).get('platform')}"
        )
    else:
        out.append(f"environment {env.status}: {env.reason}")
    if row["params"]:
        out.append("params      " + ", ".join(f"{k}={v}" for k, v in sorted(row["params"].items())))
    if row["metrics"]:
        out.append("metrics     " + ", ".join(f"{k}={v:.6g}" for k, v in sorted(row["metrics"].items())))
    out.append("view        " + view)
    return "\n".join(out)


def cmd_show(args: argparse.Namespace) -> int:
    store, _, _ = _context(args)
    run = store.get_run(args.run_id)
    snap = store.load_snapshot(args.run_id)
    row = _run_row(run)
    if args.json:
        print(json.dumps({"run": {**row, "tags": dict(run.data.tags)}, "snapshot": snap.to_dict()}, indent=1))
    else:
        print(_show_text(row, snap, store.run_url(run)))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from nbtrack.diff import diff_runs, format_diff

    store, _, _ = _context(args)
    result = diff_runs(store, args.run_a, args.run_b)
    print(json.dumps(result, indent=1) if args.json else format_diff(result))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from nbtrack.demo import run_demo

    info = run_demo(args.dir)
    args.project = Path(info["project"])
    store, root, _ = _context(args)
    runs, _ = store.search_runs(notebook=info["notebook"], max_results=1)
    if not runs:
        raise NbtrackError(f"the demo notebook ran but logged no run in {store.display_uri}")
    print()
    print(_show_text(_run_row(runs[0]), store.load_snapshot(runs[0].info.run_id), store.run_url(runs[0])))
    print()
    print(f"list the project's runs:  cd {root} && nbtrack runs")
    return 0


COMMANDS = {"runs": cmd_runs, "show": cmd_show, "diff": cmd_diff, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except NbtrackError as exc:
        print(f"nbtrack: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nbtrack: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
