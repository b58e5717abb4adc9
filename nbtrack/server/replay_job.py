"""One replay, in its own process: ``python -m nbtrack.server.replay_job RUN_ID --project DIR``.

The server extension starts one per replay job (:mod:`nbtrack.server.jobs`) and reads its stdout,
which carries only JSON lines::

    {"event": "stage", "message": "nbtrack replay: mode notebook: ..."}
    {"event": "progress", "done": 3, "total": 7}
    {"event": "result", "result": {... ReplayResult.to_dict() ...}, "report": "REPRODUCED  run ..."}
    {"event": "error", "error": "UsageError", "message": "...", "exit_code": 64}

The configuration is the server's whole one, naming the store the run is in, in ``NBTRACK_CONFIG``
(:func:`nbtrack.config.to_env`: off the command line, as the tracking URI may carry credentials);
started by hand, the job loads its own (:func:`nbtrack.config.load_config`), ``--tracking-uri``
over it. Either way it builds it once and hands that same configuration on, through
``NBTRACK_CONFIG``, to the replay and the processes it starts. Everything else the replay prints,
down to what a library writes on file descriptor 1, goes to stderr. The process exits with the verdict's
code (0-4), stops cleanly on SIGTERM (kernel shut down, workspace removed), and stops on its own
when the server that started it dies.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, TextIO


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nbtrack.server.replay_job", description=__doc__)
    parser.add_argument("run_id")
    parser.add_argument("--project", type=Path, required=True, help="the project the run belongs to")
    parser.add_argument("--tracking-uri", help="default: the configuration's, else the embedded store")
    parser.add_argument("--mode", default="auto")
    parser.add_argument("--env", default="current")
    parser.add_argument("--outputs", default="check", help="cell outputs: check, report or ignore")
    parser.add_argument("--parameters", default="{}", help="overrides, a JSON object")
    parser.add_argument(
        "--parameters-file", type=Path, help="overrides, a file holding a JSON object (the server's way)"
    )
    parser.add_argument(
        "--allow-uncommitted",
        action="store_true",
        help="replay a server's run even where its code is not what the repository holds at its commit",
    )
    return parser


def read_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The overrides: from ``--parameters-file`` (the server writes them there, off the command
    line, which has a length limit and which ``ps`` shows), else ``--parameters``."""
    text = args.parameters_file.read_text(encoding="utf-8") if args.parameters_file else args.parameters
    parameters = json.loads(text)
    if not isinstance(parameters, dict):
        raise ValueError("not a JSON object")
    return parameters


class Emitter:
    """Writes one JSON document per line to the real stdout, whichever thread calls."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def _stdout_for_events() -> TextIO:
    """A private copy of fd 1 for the events; fd 1 itself (and ``sys.stdout``) now go to stderr."""
    events = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return events


def start_job() -> Emitter:
    """Become a job process (a replay's, a clone's): events on a private copy of stdout, SIGTERM
    unwinding it (the kernel shut down, the workspace removed), stopping once the server is gone."""
    emit = Emitter(_stdout_for_events())
    signal.signal(signal.SIGTERM, _terminate)
    _watch_parent(int(os.environ.get("NBTRACK_PARENT_PID") or os.getppid()))
    return emit


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds papermill (the kernel is shut down) and replay (the workspace is removed).
    raise SystemExit(128 + signum)


def _watch_parent(parent: int) -> None:
    """Stop this process once the server that started it is gone (it cannot clean up after us then)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="nbtrack-parent-watch", daemon=True).start()


def _hand_on_config(tracking_uri: str | None) -> None:
    """Build the job's configuration once and put it where the replay and its kernel read it."""
    from nbtrack.config import load_config, to_env

    changes = {"tracking_uri": tracking_uri} if tracking_uri else {}
    os.environ.update(to_env(load_config(), **changes))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    emit = start_job()
    try:
        parameters = read_parameters(args)
    except (OSError, ValueError) as exc:
        emit("error", error="UsageError", message=f"--parameters: {exc}", exit_code=64)
        return 64

    from nbtrack.errors import NbtrackError
    from nbtrack.replay.replayer import replay

    _hand_on_config(args.tracking_uri)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        emit("stage", message=line)

    try:
        result = replay(
            args.run_id,
            parameters=parameters,
            mode=args.mode,
            env=args.env,
            outputs=args.outputs,
            tracking_uri=args.tracking_uri or None,
            project=args.project,
            allow_uncommitted=args.allow_uncommitted,
            on_progress=lambda done, total: emit("progress", done=done, total=total),
            say=say,
        )
    except NbtrackError as exc:
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        emit("error", error=type(exc).__name__, message=message, exit_code=exc.exit_code)
        return exc.exit_code
    emit("result", **_redacted_result(result.to_dict()))
    return result.exit_code


def _redacted_result(data: dict[str, Any]) -> dict[str, Any]:
    """The result and its report through the configuration's redaction policy: the job's status
    (``GET /nbtrack/jobs/{id}``) must show no secret the replay's parameters or compared cells hold."""
    from nbtrack.config import load_config
    from nbtrack.redact import policy
    from nbtrack.replay.reports import format_result

    redactor = policy(load_config())
    plain = json.loads(json.dumps(data, default=str))
    # A 300 KB parameter value is no use in a status the panel polls, and scanning it costs.
    plain["parameters"] = shorten(plain.get("parameters") or {})
    safe = redactor.tree(plain)
    return {"result": safe, "report": redactor.text(format_result(safe))}


#: A string longer than this is shown in a job's status by its length only.
SHOWN_CHARS = 1000


def shorten(value: Any, limit: int = SHOWN_CHARS) -> Any:
    """JSON-like ``value`` with every string longer than ``limit`` replaced by its head and length.

    Example:
        >>> shorten({"seed": 1, "blob": ["x" * 5000]})
        {'seed': 1, 'blob': ['xxxx… (5000 characters)']}
    """
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:4]}… ({len(value)} characters)"
    if isinstance(value, dict):
        return {k: shorten(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten(v, limit) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
