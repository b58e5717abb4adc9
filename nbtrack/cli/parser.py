"""The ``nbtrack`` command line: its commands and options (argparse), one function per group."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, NoReturn

from nbtrack import __version__
from nbtrack.errors import UsageError

#: Modules with ``add_parsers(sub, run_help)`` and ``COMMANDS`` (verb -> ``cmd(args, runs) -> int``).
VERB_MODULES = ("nbtrack.cli.acting", "nbtrack.cli.running", "nbtrack.cli.sweeping", "nbtrack.cli.provenance")
RUN_ID_HELP = "a run id, or its first 6+ characters as `nbtrack runs` lists them"


class Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), apart from replay's verdict codes 0-4."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(UsageError.exit_code, f"nbtrack: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line.

    Example:
        >>> build_parser().parse_args(["show", "3f2a9c"]).run_id
        '3f2a9c'
    """
    parser = Parser(
        prog="nbtrack",
        description="Experiment tracking that lives inside Jupyter (MLflow + DVC + papermill).",
    )
    parser.add_argument("--version", action="version", version=f"nbtrack {__version__}")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the project's embedded store)")
    parser.add_argument("--project", type=Path, help="project folder (default: found from the current one)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    _add_reading(sub)
    _add_replay(sub)
    _add_sync_and_demo(sub)
    for module in VERB_MODULES:  # (these verbs' command lines live beside their command)
        importlib.import_module(module).add_parsers(sub, RUN_ID_HELP)
    for command in sub.choices.values():
        # Also accepted after the command (`nbtrack replay RUN --project DIR`), where they win.
        command.add_argument("--tracking-uri", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        command.add_argument("--project", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _add_reading(sub: Any) -> None:
    runs = sub.add_parser("runs", help="list tracked runs, newest first")
    runs.add_argument("--notebook", help="only runs of this notebook")
    runs.add_argument("--experiment", help="only runs of this experiment")
    runs.add_argument("--max", type=int, default=50, help="how many runs (default 50)")
    runs.add_argument("--json", action="store_true", help="machine-readable output")

    show = sub.add_parser("show", help="show a run's snapshot summary")
    show.add_argument("run_id", help=RUN_ID_HELP)
    show.add_argument("--json", action="store_true", help="the run and its whole snapshot as JSON")

    diff = sub.add_parser("diff", help="compare two runs: params, metrics, environment, data, code cells")
    diff.add_argument("run_a", help=RUN_ID_HELP)
    diff.add_argument("run_b", help=RUN_ID_HELP)
    diff.add_argument("--json", action="store_true", help="the structured diff as JSON")
    diff.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="write the notebooks' diff (nbdime: markdown, outputs, images) as one self-contained page",
    )
    for side in ("a", "b"):
        diff.add_argument(
            f"--side-{side}",
            choices=("saved", "live", "history"),
            default="saved",
            help=f"with --html: run {side.upper()}'s notebook: saved (default), live editor content, or "
            "the execution history",
        )


REPLAY_EPILOG = """\
verdicts and exit codes:
  0  REPRODUCED     everything compared matches the original; the message names what was
                    compared (metrics, params, DVC outputs, cell outputs, figures)
  1  DIVERGED       a metric, param, DVC output or cell output differs (naming it), or a result
                    varied between the --repeat replays (a chance pass is no pass)
  2  FAILED         a cell raised (one that raised the same way in the original does not count)
  3  CANNOT_REPLAY  the replay could not start (run, data or artifact missing), or refused to
                    run code the repository does not hold at the run's commit (a run from a
                    tracking server, or any run of a batch): --allow-uncommitted runs it anyway
  4  UNVERIFIED     it ran, but nothing could be compared: log a metric, tag a result cell
                    `nbtrack:result`, or keep the outputs in the saved notebook
  64 usage error
a batch exits with the code of its worst replay: 3, then 2, 1, 4, 0.

cell outputs: each code cell's outputs in the original's executed notebook are compared with the
replay's (text normalized, numbers within the tolerance, tables as tables, figures perceptually).
Cell tags: `nbtrack:ignore-output` (not compared: a timing cell), `nbtrack:strict-output` (exact).
"""


def _add_replay(sub: Any) -> None:
    rp = sub.add_parser(
        "replay",
        help="re-execute a run on its recorded code, parameters and data; say whether it reproduced",
        description=(
            "Re-execute a tracked run in an isolated workspace (recorded commit + diff, DVC data at the "
            "recorded version) through papermill, and compare the results with the original's."
        ),
        epilog=REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument(
        "run_id",
        nargs="?",
        help=f"the run to replay: {RUN_ID_HELP}, or what a model URI names (models:/NAME@ALIAS, "
        "models:/NAME/VERSION, runs:/ID/PATH); or --experiment NAME",
    )
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
    _add_replay_checks(rp)
    _add_replay_batch(rp)
    from nbtrack.cli.pushing import add_push_option  # (its own module and owner)

    add_push_option(rp)


def _add_replay_checks(rp: argparse.ArgumentParser) -> None:
    """How a replay is judged, where it runs, and what it reports."""
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
    rp.add_argument(
        "--outputs",
        choices=("check", "report", "ignore"),
        default="check",
        help="cell outputs: check (differences make DIVERGED, the default), report (listed only, "
        "never DIVERGED), ignore (not compared)",
    )
    rp.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="replay N times and report the results that vary between the replays (nondeterministic); "
        "a varying result makes the verdict DIVERGED even where it matched the original",
    )
    rp.add_argument("--kernel", help="kernel to execute with (default: the notebook's, else python3)")
    rp.add_argument(
        "--keep-workspace", action="store_true", help="keep the temporary workspace and say where"
    )
    rp.add_argument("--workspace-dir", type=Path, help="make the temporary workspace in this folder")
    rp.add_argument(
        "--allow-uncommitted",
        action="store_true",
        help="replay a run from a tracking server (or of a batch) even when its notebook or git.diff "
        "is not what the repository holds at its commit; without it such a run is refused (exit 3)",
    )
    rp.add_argument(
        "--require-committed",
        action="store_true",
        help="check that the run executes only committed code whatever its store (a batch always does)",
    )
    # A batch hands each replay its parameters in a private file, not on the command line.
    rp.add_argument("--parameters-file", type=Path, help=argparse.SUPPRESS)
    rp.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report")
    rp.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report")
    rp.add_argument("--json", action="store_true", help="print the result(s) as JSON")


def _add_replay_batch(rp: argparse.ArgumentParser) -> None:
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


def _add_sync_and_demo(sub: Any) -> None:
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
