"""``nbtrack sweep``: a notebook (or a recorded run) once per point of a parameter grid, each trial an
ordinary tracked run in its own workspace, nested under one parent MLflow run.

Exit codes: 0 when every trial FINISHED, 18 when a trial failed (or recorded no run), 64 for bad
input (nothing is recorded then), and the error families' codes otherwise.

Example:
    $ nbtrack sweep train.ipynb -p lr 0.001,0.01 -p depth 3,5 --jobs 2
    [1/4] lr=0.001 depth=3  FINISHED  run 3f2a9c41e0b84d0f...
    ...
    sweep 9b1e0c3f...: 4 of 4 trials FINISHED (experiment churn)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nbtrack.runs.service import Runs

#: The exit code of a sweep in which a trial did not finish (its own family: the sweep itself ran).
TRIALS_FAILED = 18


def _value(value: Any) -> str:
    """A parameter as a trial line shows it (floats short, strings quoted).

    Example:
        >>> _value(0.0012345678), _value("adam"), _value(3)
        ('0.00123457', "'adam'", '3')
    """
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value) if isinstance(value, str) else str(value)


def _line(count: str, parameters: dict[str, Any], run: Any, metric: str | None, value: float | None) -> str:
    """One trial as it ends: how many have ended, its parameters, status, run id, the optimised metric
    (the trial's own number is in its run's name and its ``nbtrack.sweep.trial`` tag).

    Example:
        >>> from pathlib import Path
        >>> from nbtrack.track.headless import HeadlessRun
        >>> _line("[1/2]", {"lr": 0.1}, HeadlessRun("3f2a", "FINISHED", Path()), "auc", 0.5)
        '[1/2] lr=0.1  FINISHED  run 3f2a  auc=0.5'
    """
    shown = " ".join(f"{k}={_value(v)}" for k, v in parameters.items())
    line = f"{count} {shown}  {run.status}  run {run.run_id or '(none)'}"
    if metric is not None:
        line += f"  {metric}={value:.6g}" if value is not None else f"  {metric}=-"
    if run.error:
        line += f"  ({run.error})"
    return line


def cmd_sweep(args: argparse.Namespace, runs: Runs) -> int:
    """``nbtrack sweep SOURCE -p NAME VALUES ...``: the trials, then the parent and how to compare."""
    from nbtrack.sweep.parameters import grid_points, parse_space
    from nbtrack.sweep.service import sweep

    space = parse_space(args.parameters)
    # (a range without --random or --optimize: grid_points refuses it, as the sweep would)
    total = args.trials if args.optimize else args.random
    if total is None and not args.optimize:
        total = len(grid_points(space))
    ended: list[Any] = []
    metric = args.optimize.partition(":")[2].strip() if args.optimize else None
    values: dict[str, float | None] = {}

    def on_trial(run: Any, parameters: dict[str, Any]) -> None:
        ended.append(run)
        count = f"[{len(ended)}/{total}]" if total else f"[{len(ended)}]"
        value = values.get(run.run_id) if metric and run.run_id else None
        print(_line(count, parameters, run, metric, value), flush=True)

    result = sweep(
        args.source,
        space,
        config=runs.config,
        runs=runs,
        random=args.random,
        seed=args.seed,
        jobs=args.jobs,
        optimize=args.optimize,
        trials=args.trials,
        experiment=args.experiment,
        name=args.name,
        on_trial=on_trial,
        project=args.project,
        metric_values=values,
        allow_uncommitted=args.allow_uncommitted,
    )
    _summary(result)
    return 0 if result.finished == len(result.trials) else TRIALS_FAILED


def _summary(result: Any) -> None:
    ids = [run.run_id for _, run in result.trials if run.run_id]
    print(
        f"sweep {result.parent_run_id}: {result.finished} of {len(result.trials)} trials FINISHED; "
        f"parent run {result.status}"
    )
    if result.best_run_id is not None:
        print(
            f"best trial: run {result.best_run_id}  {result.metric}={result.best_value:.6g}  "
            + " ".join(f"{k}={v}" for k, v in (result.best_parameters or {}).items())
        )
    if len(ids) >= 2:
        print(
            f"compare: `nbtrack diff {ids[0][:8]} {ids[1][:8]}`, `nbtrack runs` lists them, or select them "
            "in the JupyterLab panel; MLflow's UI nests them under the parent run"
        )
    if result.finished != len(result.trials):
        print("nbtrack: a trial did not finish; its line above says why", file=sys.stderr)


def add_parsers(sub: Any, run_help: str) -> None:
    """``nbtrack sweep``'s command line."""
    sw = sub.add_parser(
        "sweep",
        help="run a notebook (or a recorded run) once per point of a parameter grid, in parallel",
        description=(
            "Each trial runs in its own isolated workspace (a clone at the commit plus your uncommitted "
            "changes, DVC data linked read-only) and is recorded as an ordinary run of the notebook, "
            "nested under one parent MLflow run. Exit 0 when every trial FINISHED, 18 when one did not."
        ),
    )
    sw.add_argument("source", metavar="NOTEBOOK|RUN_ID", help=f"a notebook file, or {run_help}")
    sw.add_argument(
        "-p",
        "--parameters",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUES"),
        help="a parameter's values: V1,V2,... (typed as papermill's -p), or LOW:HIGH[:log] with "
        "--random / --optimize",
    )
    sw.add_argument("--random", type=int, metavar="N", help="sample N points instead of the whole grid")
    sw.add_argument("--seed", type=int, help="seed of --random (and of --optimize's sampler)")
    sw.add_argument("--jobs", type=int, default=1, metavar="N", help="trials at once (default 1)")
    sw.add_argument(
        "--optimize", metavar="max:METRIC", help="search with Optuna for the best METRIC the notebook logs"
    )
    sw.add_argument("--trials", type=int, metavar="N", help="how many trials --optimize runs")
    sw.add_argument("--experiment", help="MLflow experiment (default: the run's, else the configured one)")
    sw.add_argument("--name", help="the parent run's name (trials are NAME #1, NAME #2, ...)")
    sw.add_argument(
        "--allow-uncommitted",
        action="store_true",
        help="a RUN_ID of a tracking server: run its recorded code even where the repository lacks it",
    )


#: The verbs this module answers (:mod:`nbtrack.cli` dispatches on them).
COMMANDS = {"sweep": cmd_sweep}
