"""``nbtrack provenance TARGET``: from a deployed model (or the file a service loads) back to the run
that made it: notebook, commit and diff, data hashes, environment, who ran it, and its replays.

A thin command over :mod:`nbtrack.runs.lineage`. Nothing found exits 19 with one line saying what
was searched.

Example:
    $ nbtrack provenance models:/churn@champion
    target      models:/churn@champion -> registered model churn version 3 (alias @champion)
    run         3f2a9c41... (baseline)  FINISHED  experiment churn  started 2026-12-05 01:40:12
    notebook    train.ipynb
    ...
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from nbtrack.cli.reading import locate
from nbtrack.runs.lineage import provenance, resolve_target
from nbtrack.runs.service import Runs

#: Matches shown in full (a file many runs logged: the newest ones), as text and as JSON.
SHOWN, SHOWN_JSON = 5, 50


def _code_line(facts: dict[str, Any]) -> str:
    if not facts["commit"]:
        return "commit      - (not a git repository when it ran)"
    line = f"commit      {facts['commit'][:12]} on {facts['branch'] or '(detached)'}"
    if facts["dirty"]:
        size = facts["diff_bytes"]
        diff = f"{size} bytes of git.diff" if size is not None else "git.diff"
        line += f"  DIRTY: uncommitted changes ({diff}; see `nbtrack show {facts['run_id'][:8]}`)"
    return line


def _data_lines(facts: dict[str, Any]) -> list[str]:
    lines = [
        f"data        {o['path']}  {o['hash_name'] or 'md5'}:{o['hash']}  {o['status']}"
        for o in facts["data"]
    ] or ["data        - (no DVC outputs recorded)"]
    lines += [
        f"produced    {p['path']}  {p.get('hash_name') or 'md5'}:{p['after']}" for p in facts["produced"]
    ]
    return lines


def _environment_line(facts: dict[str, Any]) -> str:
    env = facts["environment"]
    pins = ", ".join(f"{name} {version}" for name, version in env["pins"].items())
    return f"environment Python {env['python'] or '?'}" + (f"; {pins}" if pins else "")


def _replays_line(facts: dict[str, Any]) -> str:
    replays = facts["replays"]
    if not replays:
        return f"replays     none (`nbtrack replay {facts['run_id'][:8]}`)"
    shown = ", ".join(f"{r['run_id'][:8]} {r['verdict'] or 'no verdict'} ({r['start']})" for r in replays[:5])
    more = f" and {len(replays) - 5} more" if len(replays) > 5 else ""
    return f"replays     {len(replays)}: {shown}{more}"


def format_provenance(facts: dict[str, Any]) -> str:
    """One matched run's provenance as ``nbtrack provenance`` prints it.

    Example:
        >>> print(format_provenance(facts).splitlines()[1])  # doctest: +SKIP
        run         3f2a9c41e0b84d0f9b6a2c1d7e5f4a3b (baseline)  FINISHED  experiment churn  ...
    """
    lines = [
        f"found by    {facts['matched_by']}",
        f"run         {facts['run_id']} ({facts['name']})  {facts['status']}  experiment "
        f"{facts['experiment']}  started {facts['start']}",
        f"notebook    {facts['notebook'] or '-'}",
        _code_line(facts),
        *_data_lines(facts),
        _environment_line(facts),
        f"ran by      {facts['user'] or '-'}",
    ]
    if facts["metrics"]:
        lines.append("metrics     " + ", ".join(f"{k}={v:.6g}" for k, v in sorted(facts["metrics"].items())))
    lines.append(_replays_line(facts))
    if facts["snapshot_missing"]:
        lines.append(f"note        {facts['snapshot_missing']}")
    lines.append(f"view        {facts['view']}")
    return "\n".join(lines)


def cmd_provenance(args: argparse.Namespace, runs: Runs) -> int:
    target = locate(args, runs)
    lineage = resolve_target(runs, target, args.target)
    shown = lineage.matches[: SHOWN_JSON if args.json else SHOWN]
    facts = [provenance(runs, target, match) for match in shown]
    if args.json:
        out = {
            "target": lineage.spec,
            "kind": lineage.kind,
            "model": lineage.model.to_dict() if lineage.model else None,
            "hashes": lineage.hashes,
            "searched": lineage.searched or None,
            "count": len(lineage.matches),
            "matches": facts,
        }
        print(json.dumps(out, indent=1, default=str))
        return 0
    head = f"target      {lineage.spec}"
    if lineage.hashes:
        head += f"  (sha256 {lineage.hashes['sha256'][:16]}..., md5 {lineage.hashes['md5']})"
    if len(lineage.matches) > 1:
        head += f"\n            {len(lineage.matches)} runs match, newest first"
        if len(lineage.matches) > SHOWN:
            head += f" (the newest {SHOWN} shown; --json lists {SHOWN_JSON})"
    print("\n\n".join([head, *(format_provenance(f) for f in facts)]))
    return 0


def add_parsers(sub: Any, run_help: str) -> None:
    """``nbtrack provenance TARGET [--json]``."""
    prov = sub.add_parser(
        "provenance",
        help="the run that produced a model or file: notebook, commit, data, environment, replays",
        description="Resolve TARGET to the run that produced it and print what was recorded about it.",
    )
    prov.add_argument(
        "target",
        metavar="TARGET",
        help="models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH, or the path of a file "
        "(matched by hash against the runs' artifacts, logged models and produced DVC outputs)",
    )
    prov.add_argument("--json", action="store_true", help="machine-readable output")


#: The verbs this module answers (:mod:`nbtrack.cli` dispatches on them).
COMMANDS = {"provenance": cmd_provenance}
