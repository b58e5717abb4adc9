"""``nbtrack run``: execute a notebook headlessly (papermill, nbtrack's engine) as one tracked run,
without a ``%track`` line in it and without touching it (:func:`nbtrack.track.headless.run_notebook`).

Exit codes: 0 the run FINISHED; 17 a cell raised (the run is FAILED, the cell named on one line);
64 wrong arguments; the code of its family for anything else (:mod:`nbtrack.errors`).

Example:
    $ nbtrack run train.ipynb -p alpha 0.5 --experiment churn
    nbtrack run: run 3f2a9c41… FINISHED (experiment churn)
      executed notebook: in the run (nbtrack/notebook.ipynb; --output FILE keeps a copy)
      see it:    nbtrack show 3f2a9c41
      replay it: nbtrack replay 3f2a9c41
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack.errors import UsageError
from nbtrack.runs.service import Runs

if TYPE_CHECKING:
    from nbtrack.track.headless import HeadlessRun

#: ``nbtrack run``'s exit code when the notebook itself failed (a cell raised).
NOTEBOOK_FAILED = 17


def _tags(pairs: list[str]) -> dict[str, str]:
    """``--tag K=V`` arguments as a dict.

    Example:
        >>> _tags(["team=churn"])
        {'team': 'churn'}
    """
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {pair!r}: give KEY=VALUE, e.g. --tag team=churn")
        tags[key] = value
    return tags


def _recreated_kernel(notebook: Path, dest: Path, say: Any) -> tuple[str, list[Path]]:
    """A fresh virtualenv in ``dest`` from the current environment's pins (as ``replay --env
    recreate`` builds one from a run's) and its kernel: the run proves the pins run the notebook."""
    from nbtrack.capture.base import CaptureContext, run_provider
    from nbtrack.capture.environment import EnvironmentProvider
    from nbtrack.capture.locate import find_project_root
    from nbtrack.replay.venv import recreate_environment

    section, _ = run_provider(EnvironmentProvider(), CaptureContext(find_project_root(notebook.parent)))
    if section.status != "ok":
        raise UsageError(f"--env recreate: the current environment could not be read ({section.reason})")
    venv = recreate_environment(section.data, dest, say=say)
    for note in venv.notes:
        say(f"nbtrack run: {note}")
    return venv.kernel_name, [venv.kernel_dir]


def _where(notebook: Path) -> str:
    """``--project ROOT`` when the current folder is not in the notebook's project (to find the run)."""
    from nbtrack.capture.locate import find_project_root

    root = find_project_root(notebook.parent)
    here = Path.cwd().resolve()
    return "" if here == root or root in here.parents else f" --project {shlex.quote(str(root))}"


def cmd_run(args: argparse.Namespace, runs: Runs) -> int:
    """Execute the notebook as one tracked run; print the run and how to see and replay it."""
    from nbtrack.replay.result import parse_value
    from nbtrack.track.headless import check_inputs

    # Usage errors before anything runs (a recreated environment takes a while).
    _tags(args.tag)
    parameters = {name: parse_value(value) for name, value in args.parameters}
    notebook = check_inputs(Path(args.notebook), parameters, args.env)

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    # The venv and, without --output, papermill's output go afterwards (the run keeps the notebook).
    with tempfile.TemporaryDirectory(prefix="nbtrack-run-") as work:
        kernel_name, kernel_dirs = "python3", list[Path]()
        if args.env == "recreate":
            kernel_name, kernel_dirs = _recreated_kernel(notebook, Path(work) / "env", say)
        say(f"nbtrack run: executing {notebook.name} with papermill (kernel {kernel_name})")
        output = Path(args.output).resolve() if args.output else Path(work) / "out" / notebook.name
        output.parent.mkdir(parents=True, exist_ok=True)
        run = _execute(args, runs, notebook, parameters, (kernel_name, kernel_dirs), output)
    return _report(notebook, run, kept=bool(args.output))


def _execute(
    args: argparse.Namespace,
    runs: Runs,
    notebook: Path,
    parameters: dict[str, Any],
    kernel: tuple[str, list[Path]],
    output: Path,
) -> HeadlessRun:
    from nbtrack.track.headless import run_notebook

    return run_notebook(
        notebook,
        config=runs.config,
        parameters=parameters,
        experiment=args.experiment,
        name=args.name,
        tags=_tags(args.tag),
        env=args.env,
        cwd=Path(args.cwd).resolve() if args.cwd else None,
        output=output,
        kernel_name=kernel[0],
        kernel_dirs=kernel[1],
    )


def _report(notebook: Path, run: HeadlessRun, *, kept: bool) -> int:
    """The run, how to see and replay it; the exit code."""
    if run.run_id is None:
        print(f"nbtrack run: {notebook.name} tracks itself (%track start): its own runs were recorded")
    else:
        where = _where(notebook)
        print(f"nbtrack run: run {run.run_id} {run.status}")
        print(f"  see it:    nbtrack show {run.run_id[:8]}{where}")
        print(f"  replay it: nbtrack replay {run.run_id[:8]}{where}")
    if kept:
        print(f"  executed notebook: {run.output}")
    elif run.run_id is not None:
        print("  executed notebook: in the run (nbtrack/notebook.ipynb; --output FILE keeps a copy)")
    if run.error:
        print(f"nbtrack run: {run.error}", file=sys.stderr)
        return NOTEBOOK_FAILED
    return 0 if run.status == "FINISHED" else NOTEBOOK_FAILED


def add_parsers(sub: Any, run_help: str) -> None:
    """``nbtrack run``'s command line."""
    run = sub.add_parser(
        "run",
        help="execute a notebook with papermill as one tracked run (no %%track line needed; the notebook "
        "is not modified)",
    )
    run.add_argument("notebook", help="the .ipynb to execute")
    run.add_argument(
        "-p",
        "--parameters",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a parameter for the notebook's `parameters` cell, as papermill's -p (repeatable)",
    )
    run.add_argument("--experiment", "-e", help="MLflow experiment (default: as %%track start)")
    run.add_argument("--name", "-n", help="run name")
    run.add_argument(
        "--tag", "-t", action="append", default=[], metavar="KEY=VALUE", help="run tag (repeatable)"
    )
    run.add_argument(
        "--env",
        choices=("current", "recreate"),
        default="current",
        help="current: this environment's kernel (default); recreate: a fresh virtualenv built from this "
        "environment's pins",
    )
    run.add_argument("--cwd", help="the kernel's working folder (default: the notebook's)")
    run.add_argument(
        "--output",
        "-o",
        help="also write the executed notebook here (the run keeps it as nbtrack/notebook.ipynb either way)",
    )


#: The verbs this module answers (:mod:`nbtrack.cli` dispatches on them).
COMMANDS = {"run": cmd_run}
