"""The ``nbtrack`` command: list runs, show one, compare two, replay, sync, run the demo.

Thin: each command (:mod:`nbtrack.cli.reading`, :mod:`nbtrack.cli.replaying`, :mod:`nbtrack.cli.demo`)
parses its arguments and calls the runs service (:class:`nbtrack.runs.service.Runs`), built once per
command from the one configuration. Errors print one line (``nbtrack: <what failed and how to fix
it>``) and exit with the code of their family (see :mod:`nbtrack.errors`); never a traceback for a
user error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from nbtrack.cli.parser import VERB_MODULES, build_parser
from nbtrack.errors import NbtrackError

if TYPE_CHECKING:
    from nbtrack.runs.service import Runs

__all__ = ["main"]


def _commands() -> dict[str, Callable[[argparse.Namespace, Runs], int]]:
    from nbtrack.cli.demo import cmd_demo
    from nbtrack.cli.reading import cmd_diff, cmd_runs, cmd_show, cmd_sync
    from nbtrack.cli.replaying import cmd_replay

    commands: dict[str, Callable[[argparse.Namespace, Runs], int]] = {
        "runs": cmd_runs,
        "show": cmd_show,
        "diff": cmd_diff,
        "replay": cmd_replay,
        "sync": cmd_sync,
        "demo": cmd_demo,
    }
    for module in VERB_MODULES:
        commands.update(importlib.import_module(module).COMMANDS)
    return commands


def _run(args: argparse.Namespace) -> int:
    from nbtrack.config import load_config
    from nbtrack.runs.service import Runs
    from nbtrack.store.http import bound_process

    config = load_config()
    if args.tracking_uri:  # an explicit argument wins over files and the environment
        config.tracking_uri = args.tracking_uri
    bound_process(config.tracking_timeout)  # a dead tracking server fails a command in seconds
    return _commands()[args.command](args, Runs(config))


def main(argv: list[str] | None = None) -> int:
    """Run ``nbtrack ARGV``; the exit code.

    Example:
        >>> main(["runs", "--json"])  # doctest: +SKIP
        0
    """
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except NbtrackError as exc:
        print(f"nbtrack: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nbtrack: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
