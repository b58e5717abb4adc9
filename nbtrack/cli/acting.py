"""``nbtrack rename``, ``note``, ``tag``, ``archive``, ``restore``, ``purge``: thin commands over
:mod:`nbtrack.runs.actions` (every run checked before any is changed).

Example:
    $ nbtrack tag 3f2a9c41 77b0e1c2 --set team=churn --remove draft
    tagged 2 run(s): 3f2a9c41, 77b0e1c2
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nbtrack.cli.reading import locate
from nbtrack.errors import UsageError
from nbtrack.runs.actions import Change, apply
from nbtrack.runs.service import Runs

_DONE = {
    "rename": "renamed",
    "note": "noted",
    "tag": "tagged",
    "archive": "archived (restore with `nbtrack restore RUN`)",
    "restore": "restored",
    "purge": "purged",
}


def _key_values(pairs: list[str]) -> dict[str, str]:
    """``K=V`` arguments as a dict.

    Example:
        >>> _key_values(["team=churn", "lr=0.1"])
        {'team': 'churn', 'lr': '0.1'}
    """
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {pair!r}: give KEY=VALUE")
        values[key] = value
    return values


def _change(args: argparse.Namespace) -> Change:
    if args.command == "rename":
        return Change(name=args.name)
    if args.command == "note":
        text = sys.stdin.read() if args.text == "-" else args.text
        return Change(note=text)
    if args.command == "tag":
        return Change(set_tags=_key_values(args.set), remove_tags=tuple(args.remove))
    return Change()


def _confirm(args: argparse.Namespace) -> None:
    """A purge cannot be undone: ask, unless ``--yes`` (a script's stdin is no terminal: refuse)."""
    if args.command != "purge" or args.yes:
        return
    count = len(args.runs)
    if not sys.stdin.isatty():
        raise UsageError(f"purge deletes {count} run(s) and their artifacts for good; add --yes to confirm")
    answer = input(f"purge {count} archived run(s) and their artifacts for good? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UsageError("purge cancelled; nothing was deleted")


def cmd_act(args: argparse.Namespace, runs: Runs) -> int:
    """Any of the six action verbs."""
    ids = [args.run] if args.command in ("rename", "note") else list(args.runs)
    change = _change(args)
    target = locate(args, runs)
    _confirm(args)
    result = apply(runs, target, args.command, ids, change)
    shown = ", ".join(run_id[:8] for run_id in result.done)
    print(f"{_DONE[args.command]}: {len(result.done)} run(s): {shown}")
    return 0


def add_parsers(sub: Any, run_help: str) -> None:
    """The six verbs' command lines."""
    rename = sub.add_parser("rename", help="rename a run (MLflow's run name)")
    rename.add_argument("run", help=run_help)
    rename.add_argument("name", help="the new name")
    note = sub.add_parser("note", help="set a run's Markdown note (MLflow's description); '' removes it")
    note.add_argument("run", help=run_help)
    note.add_argument("text", help="the note, or - to read it from stdin")
    tag = sub.add_parser("tag", help="set or remove user tags of runs (mlflow.* and nbtrack.* are reserved)")
    tag.add_argument("runs", nargs="+", metavar="RUN", help=run_help)
    tag.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set a tag (repeatable)")
    tag.add_argument("--remove", action="append", default=[], metavar="KEY", help="remove a tag (repeatable)")
    archive = sub.add_parser("archive", help="archive runs (MLflow's soft delete; `nbtrack restore` undoes)")
    archive.add_argument("runs", nargs="+", metavar="RUN", help=run_help)
    restore = sub.add_parser("restore", help="bring archived runs back")
    restore.add_argument("runs", nargs="+", metavar="RUN", help=run_help)
    purge = sub.add_parser(
        "purge",
        help="delete archived runs and their artifacts for good (embedded store; `mlflow gc` on a server)",
    )
    purge.add_argument("runs", nargs="+", metavar="RUN", help=run_help)
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")


#: The verbs this module answers (:mod:`nbtrack.cli` dispatches on them).
COMMANDS = dict.fromkeys(tuple(_DONE), cmd_act)
