"""One clone, in its own process: ``python -m nbtrack.server.clone_job RUN_ID --parameters-file F``.

The panel's "Clone with new parameters" (:mod:`nbtrack.server.run_handlers`) starts one through the
replay jobs' manager (:mod:`nbtrack.server.jobs`), which reads its stdout: JSON lines only, the
replay job's events::

    {"event": "progress", "done": 3, "total": 7}
    {"event": "result", "result": {"run_id": "...", "status": "FINISHED", "error": null, ...},
     "report": "FINISHED  run 9c41e0b8 (clone of 3f2a9c41) ..."}
    {"event": "error", "error": "UsageError", "message": "...", "exit_code": 64}

The trial is :func:`nbtrack.sweep.service.run_trial`: the source run's commit, diff and data in an
isolated workspace, its parameters overridden. The configuration (naming the store) comes in
``NBTRACK_CONFIG``, as a replay job's. Everything else printed goes to stderr. Exit code 0 when the
new run FINISHED, 1 when it FAILED, nbtrack's error code when none was recorded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nbtrack.server.replay_job import read_parameters, shorten, start_job


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nbtrack.server.clone_job", description=__doc__)
    parser.add_argument("run_id", help="the run to clone")
    parser.add_argument("--project", type=Path, help="the project the run belongs to (default: here)")
    parser.add_argument("--parameters-file", type=Path, help="the new values, a file holding a JSON object")
    parser.add_argument("--parameters", default="{}", help="the new values, a JSON object")
    return parser


def report_line(source: str, result: Any) -> str:
    """The job's one-line report.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> report_line("3f2a9c41aa", NS(run_id="9c41e0b8ff", status="FINISHED", error=None))
        'FINISHED  run 9c41e0b8ff (clone of 3f2a9c41)'
    """
    line = f"{result.status}  run {result.run_id or '(none recorded)'} (clone of {source[:8]})"
    return f"{line}: {result.error}" if result.error else line


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    emit = start_job()
    try:
        parameters = read_parameters(args)
    except (OSError, ValueError) as exc:
        emit("error", error="UsageError", message=f"--parameters: {exc}", exit_code=64)
        return 64

    from nbtrack.config import load_config
    from nbtrack.errors import NbtrackError
    from nbtrack.runs.service import Runs
    from nbtrack.sweep.service import run_trial

    config = load_config()
    emit("stage", message=f"cloning run {args.run_id} with {', '.join(parameters) or 'its own values'}")
    try:
        result = run_trial(
            args.run_id,
            parameters,
            config=config,
            runs=Runs(config),
            project=args.project,
            on_cell=lambda done, total: emit("progress", done=done, total=total),
        )
    except NbtrackError as exc:
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        emit("error", error=type(exc).__name__, message=message, exit_code=exc.exit_code)
        return exc.exit_code
    from nbtrack.redact import policy

    shown = policy(config).params(shorten(parameters))
    data = {"run_id": result.run_id, "status": result.status, "error": result.error, "source": args.run_id}
    emit("result", result={**data, "parameters": shown}, report=report_line(args.run_id, result))
    return 0 if result.status == "FINISHED" else 1


if __name__ == "__main__":
    sys.exit(main())
