"""``nbtrack replay``: one run (by id or unique prefix), or a batch of an experiment's runs.

Exit codes: 0 reproduced, 1 diverged, 2 failed to execute, 3 cannot replay, 4 unverified (nothing
could be compared); a batch exits with the worst (cannot replay, failed, diverged, unverified).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from nbtrack.errors import CannotReplay, RunNotFoundError, UsageError
from nbtrack.runs.service import Runs, Target

#: How bad an exit code is, for a batch: an unverified run is better news than a diverged one.
_SEVERITY = {0: 0, 4: 1, 1: 2, 2: 3, 3: 4}


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
    parameters = {name: parse_value(value) for name, value in args.parameters}
    if args.parameters_file is not None:
        parameters = {**_read_parameters(args.parameters_file), **parameters}
    return {
        "parameters": parameters,
        "mode": args.mode,
        "env": args.env,
        "tolerance": args.tolerance,
        "metric_tolerances": tolerances,
        "outputs": args.outputs,
        "repeat": args.repeat,
        "keep_workspace": args.keep_workspace,
        "kernel_name": args.kernel,
        "workspace_dir": args.workspace_dir,
        "allow_uncommitted": args.allow_uncommitted,
        # A batch (CI, unattended) runs only committed code, whatever the store.
        "require_committed": args.require_committed or bool(args.experiment),
    }


def _read_parameters(path: Path) -> dict[str, Any]:
    """The overrides a batch wrote for one of its replays (a JSON object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--parameters-file {path}: {exc}; give a JSON object of name -> value") from None
    if not isinstance(data, dict):
        raise UsageError(f"--parameters-file {path}: not a JSON object of name -> value")
    return data


def _batch_argv(args: argparse.Namespace, target: Target, run_id: str, parameters: Path | None) -> list[str]:
    """The command line replaying one run of a batch in its own process; always
    ``--require-committed`` (a batch runs unattended, often in CI).

    The configuration (tracking URI included, which may hold credentials) goes through the
    environment (:func:`nbtrack.config.to_env`), never the command line; the parameter overrides
    through ``parameters``, a private file (a value can be longer than one argument may be, and
    may be a secret ``ps`` would show).
    """
    argv = [sys.executable, "-m", "nbtrack.cli", "--project", str(target.project)]
    argv += ["replay", run_id, "--json", "--mode", args.mode, "--env", args.env]
    argv += ["--outputs", args.outputs, "--repeat", str(args.repeat), "--require-committed"]
    if parameters is not None:
        argv += ["--parameters-file", str(parameters)]
    if args.allow_uncommitted:
        argv.append("--allow-uncommitted")
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


def _replay_one_process(args: argparse.Namespace, runs: Runs, target: Target, run: Any) -> dict[str, Any]:
    """Replay one run of a batch in its own process; its result (CANNOT_REPLAY when it crashed)."""
    import subprocess

    from nbtrack.config import to_env
    from nbtrack.replay.result import parse_value

    env = {**os.environ, **to_env(runs.config)}
    with tempfile.TemporaryDirectory(prefix="nbtrack-batch-") as tmp:
        parameters = None
        if args.parameters:
            parameters = Path(tmp) / "parameters.json"
            fd = os.open(parameters, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({name: parse_value(value) for name, value in args.parameters}, out)
        argv = _batch_argv(args, target, run.run_id, parameters)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        result = {
            "run_id": run.run_id,
            "run_name": run.name,
            "verdict": "CANNOT_REPLAY",
            "exit_code": 3,
            "message": f"the replay process failed: {last}",
        }
    print(
        f"  {result['verdict']:<13} {run.run_id} ({run.name}): {result.get('message', '')}", file=sys.stderr
    )
    return result


def _replay_batch(args: argparse.Namespace, runs: Runs) -> list[dict[str, Any]]:
    """Every matching run, each replayed in its own process (``--jobs`` at once)."""
    from concurrent.futures import ThreadPoolExecutor

    from nbtrack.cli.reading import locate

    target = locate(args, runs)
    found = runs.search(
        target, experiment=args.experiment, tags=_pairs(args.tag, "--tag"), max_results=args.max
    )
    found = [r for r in found if "nbtrack.replay_of" not in r.tags]  # replays are not replayed again
    if not found:
        tags = f" tagged {', '.join(args.tag)}" if args.tag else ""
        raise CannotReplay(
            f"no runs of experiment {args.experiment!r}{tags} to replay in {target.display_uri}"
        )
    print(f"nbtrack replay: {len(found)} run(s) of {args.experiment}, {args.jobs} at once", file=sys.stderr)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        return list(pool.map(lambda run: _replay_one_process(args, runs, target, run), found))


def cmd_replay(args: argparse.Namespace, runs: Runs) -> int:
    from nbtrack.cli.reading import locate, resolve

    if bool(args.run_id) == bool(args.experiment):
        raise UsageError("give a RUN_ID, or --experiment NAME to replay a batch (not both)")
    if args.tag and not args.experiment:
        raise UsageError("--tag selects runs of a batch; use it with --experiment")
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1")
    if args.repeat < 1:
        raise UsageError(f"--repeat {args.repeat}: give at least 1")
    options = _replay_options(args)
    if args.experiment:
        return _report(args, _replay_batch(args, runs))
    from nbtrack.replay.replayer import replay

    target = locate(args, runs, missing_ok=True)
    if target.store is None:
        return _report(args, [_cannot(args.run_id, f"no nbtrack store in {target.project}")])
    from nbtrack.runs.lineage import is_model_target, resolve_target

    model = None  # models:/NAME@ALIAS, runs:/ID/PATH: the run that made it; its model is compared too
    try:
        if is_model_target(args.run_id):
            lineage = resolve_target(runs, target, args.run_id)  # (none: NoProvenanceError, exit 19)
            model, run = lineage.model, lineage.matches[0].run.run_id
        else:
            run = args.run_id
        run_id = runs.on_server(target, resolve(runs, target, run), "replay").run_id
    except RunNotFoundError:
        run_id = args.run_id  # replay() reports it: CANNOT_REPLAY, exit 3
    result = replay(
        run_id,
        tracking_uri=target.uri,
        project=target.project,
        progress_bar=not args.json,
        model=model,
        **options,
    )
    return _report(args, [result.to_dict()])


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
    from nbtrack.cli.pushing import push_if_asked  # (`--pushgateway`: its own module and owner)

    push_if_asked(args, results)
    if args.json:
        print(json.dumps(results if args.experiment else results[0], indent=1, default=str))
    else:
        print("\n\n".join(format_result(r) for r in results))
    return max((int(r["exit_code"]) for r in results), key=lambda code: _SEVERITY.get(code, 4))
