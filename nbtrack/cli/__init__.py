"""The ``nbtrack`` command: list runs, show one, run the demo.

Errors print one line (``nbtrack: <what failed and how to fix it>``) and exit with the code of their
family (see :mod:`nbtrack.errors`); never a traceback for a user error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from nbtrack import __version__
from nbtrack.errors import (
    CannotReplay,
    ConfigError,
    NbtrackError,
    NotebookError,
    RunNotFoundError,
    StoreError,
    UsageError,
)
from nbtrack.runs.rows import run_row


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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

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

    rp = sub.add_parser(
        "replay",
        help="re-execute a run on its recorded code, parameters and data; say whether it reproduced",
        description=(
            "Re-execute a tracked run in an isolated workspace (recorded commit + diff, DVC data at the "
            "recorded version) through papermill, and compare the results. Exit codes: 0 reproduced, "
            "1 diverged, 2 failed to execute, 3 cannot replay, 64 usage error."
        ),
    )
    rp.add_argument("run_id", nargs="?", help="the run to replay (or use --experiment for a batch)")
    rp.add_argument(
        "-p",
        "--parameters",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a recorded parameter, as papermill's -p",
    )
    rp.add_argument(
        "--mode",
        choices=("auto", "notebook", "history"),
        default="auto",
        help="auto: the saved notebook if it ran top to bottom, else the execution history",
    )
    rp.add_argument(
        "--env",
        choices=("current", "recreate"),
        default="current",
        help="recreate: a fresh virtual environment with the recorded pins",
    )
    rp.add_argument(
        "--tolerance",
        type=float,
        metavar="REL",
        help="relative tolerance for every metric (default: exact for integers, 1e-9 for floats)",
    )
    rp.add_argument(
        "--metric-tolerance",
        action="append",
        default=[],
        metavar="NAME=REL",
        help="relative tolerance for one metric (repeatable)",
    )
    rp.add_argument("--kernel", help="kernel to execute with (default: the notebook's, else python3)")
    rp.add_argument(
        "--keep-workspace", action="store_true", help="keep the temporary workspace and say where"
    )
    rp.add_argument("--workspace-dir", type=Path, help="make the temporary workspace in this folder")
    rp.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report")
    rp.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report")
    rp.add_argument("--json", action="store_true", help="print the result(s) as JSON")
    rp.add_argument("--experiment", help="replay every nbtrack run of this experiment (a batch)")
    rp.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --experiment: only runs with this tag (repeatable)",
    )
    rp.add_argument("--max", type=int, default=100, help="with --experiment: at most this many runs")
    rp.add_argument("--jobs", type=int, default=1, help="with --experiment: replays at once")

    sync = sub.add_parser(
        "sync",
        help="upload the runs waiting in the local spool to the tracking server",
        description=(
            "With a tracking server, runs are written to a local spool first and uploaded when they "
            "end. Runs the server missed (it was down) wait there; this uploads them. Running it "
            "twice, or after an interrupted upload, creates no duplicate."
        ),
    )
    sync.add_argument("--json", action="store_true", help="what was uploaded, as JSON")

    demo = sub.add_parser(
        "demo", help="create a demo project, execute its tracked notebook, replay the run, show the verdict"
    )
    demo.add_argument("dir", nargs="?", default="nbtrack-demo", type=Path, help="a new folder")
    for command in sub.choices.values():
        # Also accepted after the command (`nbtrack replay RUN --project DIR`), where they win.
        command.add_argument("--tracking-uri", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        command.add_argument("--project", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _context(
    args: argparse.Namespace, notebook: str | None = None, *, missing_ok: bool = False
) -> tuple[Any, Path, str | None]:
    """The store, the project root, and the notebook path relative to it.

    Commands only read: a project without an embedded store gets none created; that is an error
    naming ``--project``, or (``missing_ok``) a store of None.
    """
    from nbtrack.capture.locate import find_project_root
    from nbtrack.config import load_config
    from nbtrack.store import MlflowStore, embedded_uri

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
    if not config.tracking_uri:
        _, folder = embedded_uri(root, config.store_dir, create=False)
        if not (folder / "mlflow.db").is_file():
            if missing_ok:
                return None, root, rel
            raise ConfigError(
                f"no nbtrack store in {root} ({folder / 'mlflow.db'} does not exist); pass --project DIR "
                "(the project that tracked the run) or --tracking-uri URI"
            )
    return MlflowStore.for_project(root, config), root, rel


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


def _spool_of(store: Any) -> Any:
    """The local spool of a tracking server store, else None."""
    from nbtrack.config import load_config
    from nbtrack.store.spool import Spool

    return Spool.of_store(store, load_config())


def _pending_runs(store: Any, rel: str | None, experiment: str | None) -> list[Any]:
    """Runs of the server's local spool not uploaded yet (ended KILLED first when orphaned)."""
    from nbtrack.store.orphans import end_orphans_quietly

    spool = _spool_of(store)
    if spool is None or not spool.exists():
        return []
    end_orphans_quietly(spool.store, by="`nbtrack runs`")
    runs: list[Any] = spool.pending()
    if rel:
        runs = [r for r in runs if r.tags.get("mlflow.source.name") == rel]
    if experiment:
        ids = {e.experiment_id for e in spool.store.client.search_experiments() if e.name == experiment}
        runs = [r for r in runs if r.experiment_id in ids]
    return runs


def _resolve(store: Any, run_id: str) -> tuple[Any, str]:
    """Where a run id is (see :func:`nbtrack.store.spool.resolve_run`); says when it was translated."""
    from nbtrack.config import load_config
    from nbtrack.store.spool import resolve_run

    where, resolved, note = resolve_run(store, run_id, load_config())
    if note:
        print(f"nbtrack: {note}", file=sys.stderr)
    return where, resolved


def cmd_runs(args: argparse.Namespace) -> int:
    from nbtrack.store.orphans import OWNER_HOST, end_orphans_quietly, hostname

    store, root, rel = _context(args, args.notebook, missing_ok=True)
    if store is None:
        _no_runs_of(args.notebook, rel)
        print(f"no tracked runs in {root} yet (no nbtrack store there); run `%track start` in a notebook")
        return 0
    pending = _pending_runs(store, rel, args.experiment)
    try:
        # Runs whose kernel died on this host are ended KILLED before they are listed.
        end_orphans_quietly(store, by="`nbtrack runs`")
        runs, _token = store.search_runs(notebook=rel, experiment=args.experiment, max_results=args.max)
    except StoreError as exc:
        if not pending:
            raise
        # The server is down: the runs waiting for it are what can be shown.
        print(f"nbtrack: showing only the local spool's pending runs: {exc}", file=sys.stderr)
        runs = []
    runs = pending + runs
    rows = [run_row(r) for r in runs]
    here = hostname()
    for row, run in zip(rows, runs, strict=True):
        owner = run.tags.get(OWNER_HOST)
        if row["status"] == "RUNNING" and owner and owner != here:
            row["running_on"] = owner  # RUNNING as far as anyone here can tell: its kernel is there
    if not rows:
        _no_runs_of(args.notebook, rel)
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        where = f" for {rel}" if rel else ""
        print(f"no tracked runs{where} in {store.display_uri}; run `%track start` in a notebook")
    else:
        print(_table(rows))
    return 0


def _no_runs_of(notebook: str | None, rel: str | None) -> None:
    """A ``--notebook`` that names no file (and has no runs) is a mistyped path: say so."""
    if notebook and not Path(notebook).exists():
        raise NotebookError(
            f"--notebook {notebook}: no such file ({Path(notebook).resolve()}) and no runs of {rel}; "
            "check the path, or list every run with `nbtrack runs`"
        )


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


def cmd_show(args: argparse.Namespace) -> int:
    store, _, _ = _context(args)
    store, run_id = _resolve(store, args.run_id)
    run = store.get_run(run_id)
    snap = store.load_snapshot(run_id)
    row = run_row(run)
    if args.json:
        print(json.dumps({"run": {**row, "tags": dict(run.tags)}, "snapshot": snap.to_dict()}, indent=1))
    else:
        print(_show_text(row, snap, store.run_url(run)))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from nbtrack.runs.diff import diff_runs, format_diff

    store, _, _ = _context(args)
    (store_a, a), (store_b, b) = _resolve(store, args.run_a), _resolve(store, args.run_b)
    if store_a is not store_b:
        pending = args.run_a if store_a is not store else args.run_b
        raise StoreError(
            f"run {pending} is still in the local spool, the other on {store.display_uri}; "
            "upload it with `nbtrack sync`, then compare"
        )
    result = diff_runs(store_a, a, b)
    print(json.dumps(result, indent=1) if args.json else format_diff(result))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from nbtrack.cli.demo import run_demo
    from nbtrack.replay.replayer import replay
    from nbtrack.replay.reports import format_result

    info = run_demo(args.dir)
    args.project = Path(info["project"])
    store, root, _ = _context(args)
    runs, _ = store.search_runs(notebook=info["notebook"], max_results=1)
    if not runs:
        raise NbtrackError(f"the demo notebook ran but logged no run in {store.display_uri}")
    run_id = runs[0].run_id
    print()
    print(_show_text(run_row(runs[0]), store.load_snapshot(run_id), store.run_url(runs[0])))
    print()
    print(f"nbtrack demo: replaying run {run_id} in an isolated workspace (nbtrack replay {run_id})")
    result = replay(run_id, tracking_uri=store.uri, project=root, progress_bar=True)
    print()
    print(format_result(result.to_dict()))
    print()
    print(f"list the project's runs:  cd {root} && nbtrack runs")
    return result.exit_code


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {item!r}: write it as NAME=VALUE")
        out[key] = value
    return out


def _replay_options(args: argparse.Namespace) -> dict[str, Any]:
    from nbtrack.replay.replayer import parse_value

    tolerances = {}
    for name, value in _pairs(args.metric_tolerance, "--metric-tolerance").items():
        try:
            tolerances[name] = float(value)
        except ValueError:
            raise UsageError(f"--metric-tolerance {name}={value}: the tolerance must be a number") from None
    return {
        "parameters": {name: parse_value(value) for name, value in args.parameters},
        "mode": args.mode,
        "env": args.env,
        "tolerance": args.tolerance,
        "metric_tolerances": tolerances,
        "keep_workspace": args.keep_workspace,
        "kernel_name": args.kernel,
        "workspace_dir": args.workspace_dir,
    }


def _batch_argv(args: argparse.Namespace, store: Any, root: Path, run_id: str) -> list[str]:
    """The command line replaying one run of a batch in its own process."""
    argv = [sys.executable, "-m", "nbtrack.cli", "--tracking-uri", store.uri, "--project", str(root)]
    argv += ["replay", run_id, "--json", "--mode", args.mode, "--env", args.env]
    for name, value in args.parameters:
        argv += ["-p", name, value]
    if args.tolerance is not None:
        argv += ["--tolerance", str(args.tolerance)]
    for item in args.metric_tolerance:
        argv += ["--metric-tolerance", item]
    if args.kernel:
        argv += ["--kernel", args.kernel]
    if args.keep_workspace:
        argv.append("--keep-workspace")
    if args.workspace_dir:
        argv += ["--workspace-dir", str(args.workspace_dir)]
    return argv


def _replay_batch(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every matching run, each replayed in its own process (``--jobs`` at once)."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    store, root, _ = _context(args)
    runs, _ = store.search_runs(
        experiment=args.experiment, tags=_pairs(args.tag, "--tag"), max_results=args.max
    )
    runs = [r for r in runs if "nbtrack.replay_of" not in r.tags]  # replays are not replayed again
    if not runs:
        tags = f" tagged {', '.join(args.tag)}" if args.tag else ""
        raise CannotReplay(
            f"no runs of experiment {args.experiment!r}{tags} to replay in {store.display_uri}"
        )
    print(f"nbtrack replay: {len(runs)} run(s) of {args.experiment}, {args.jobs} at once", file=sys.stderr)

    def one(run: Any) -> dict[str, Any]:
        run_id = run.run_id
        proc = subprocess.run(
            _batch_argv(args, store, root, run_id), capture_output=True, text=True, check=False
        )
        try:
            result: dict[str, Any] = json.loads(proc.stdout)
        except ValueError:
            last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            result = {
                "run_id": run_id,
                "run_name": run.name,
                "verdict": "CANNOT_REPLAY",
                "exit_code": 3,
                "message": f"the replay process failed: {last}",
            }
        print(
            f"  {result['verdict']:<13} {run_id} ({run.name}): {result.get('message', '')}",
            file=sys.stderr,
        )
        return result

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        return list(pool.map(one, runs))


def cmd_replay(args: argparse.Namespace) -> int:

    if bool(args.run_id) == bool(args.experiment):
        raise UsageError("give a RUN_ID, or --experiment NAME to replay a batch (not both)")
    if args.tag and not args.experiment:
        raise UsageError("--tag selects runs of a batch; use it with --experiment")
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1")
    options = _replay_options(args)
    if args.experiment:
        results = _replay_batch(args)
    else:
        from nbtrack.replay.replayer import replay

        store, root, _ = _context(args, missing_ok=True)
        if store is None:
            return _report(args, [_cannot(args.run_id, f"no nbtrack store in {root}")])
        try:
            where, run_id = _resolve(store, args.run_id)
        except RunNotFoundError:
            where, run_id = store, args.run_id  # replay() reports it: CANNOT_REPLAY, exit 3
        if where is not store:
            raise StoreError(
                f"run {run_id} is still in the local spool, not on {store.display_uri}; upload it "
                "with `nbtrack sync`, then replay it"
            )
        result = replay(
            run_id,
            tracking_uri=store.uri,
            project=root,
            progress_bar=not args.json,
            **options,
        )
        results = [result.to_dict()]
    return _report(args, results)


def _cannot(run_id: str, why: str) -> dict[str, Any]:
    """The result of a replay that could not start."""
    return {
        "run_id": run_id,
        "verdict": "CANNOT_REPLAY",
        "exit_code": CannotReplay.exit_code,
        "message": f"run {run_id}: {why}; pass --project DIR or --tracking-uri URI, and list runs with "
        "`nbtrack runs`",
    }


def _report(args: argparse.Namespace, results: list[dict[str, Any]]) -> int:
    """Print replay results (text or JSON), write the reports asked for; the exit code."""
    from nbtrack.replay.reports import format_result, write_reports

    write_reports(results, junit=args.junit, html=args.html)
    if args.json:
        print(json.dumps(results if args.experiment else results[0], indent=1, default=str))
    else:
        print("\n\n".join(format_result(r) for r in results))
    return max(int(r["exit_code"]) for r in results)


def cmd_sync(args: argparse.Namespace) -> int:
    from nbtrack.store.http import unreachable
    from nbtrack.store.orphans import end_orphans_quietly
    from nbtrack.store.sync import sync

    store, _, _ = _context(args)
    spool = _spool_of(store)
    if spool is None:
        raise ConfigError(
            f"{store.display_uri} is not a tracking server, so nothing waits to be uploaded; set "
            "MLFLOW_TRACKING_URI (or --tracking-uri) to the server's http(s) URL"
        )
    if spool.exists():
        end_orphans_quietly(spool.store, by="`nbtrack sync`")  # a dead kernel's run: KILLED, then uploaded
    waiting = spool.pending()
    if waiting:
        reason = unreachable(store.uri, _timeout())
        if reason is not None:
            raise StoreError(
                f"tracking server {store.display_uri} is unreachable ({reason}); {len(waiting)} run(s) "
                f"stay pending in {spool.display}; run `nbtrack sync` again once it answers"
            )
    report = sync(spool, store, say=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(
            f"nbtrack sync: {len(report.uploaded)} run(s) uploaded to {store.display_uri}, "
            f"{len(report.already)} already there, {len(report.running)} still running "
            f"(uploaded when they end), {len(report.failed)} failed"
        )
    if report.failed:
        run_id, why = report.failed[0]
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        raise StoreError(f"run {run_id}{more} not uploaded, still pending: {why}")
    return 0


def _timeout() -> float:
    from nbtrack.config import load_config

    return float(load_config().tracking_timeout)


COMMANDS = {
    "runs": cmd_runs,
    "show": cmd_show,
    "diff": cmd_diff,
    "replay": cmd_replay,
    "sync": cmd_sync,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from nbtrack.store.http import bound_process

    bound_process(_timeout())  # a dead tracking server fails a command in seconds, not minutes
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
