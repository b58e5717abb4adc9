"""What a replay and the kernel it starts tell each other, without searching the store (the format
both sides share: the tracker writes it, the replay's judge reads it).

``nbtrack replay`` starts the kernel with ``NBTRACK_REPLAY`` set to a JSON object: ``replay_of``
(the original run), ``replay_id`` (this replay) and ``runs_file``, a file outside the project in
the replay's workspace. Each run the kernel starts appends one JSON line to that file::

    {"run_id": "…", "kernel_run_index": 1, "store_uri": "sqlite:///…/mlflow.db"}

``store_uri`` is the store the run was written into: the local spool's when the configured store
is a tracking server (the replay then uploads that run and follows it to the server copy).
"""

from __future__ import annotations

import json
import os
from typing import Any

REPLAY_ENV = "NBTRACK_REPLAY"


def replay_context() -> dict[str, Any]:
    """What ``nbtrack replay`` tells a kernel it started (``NBTRACK_REPLAY``), else {}."""
    raw = os.environ.get(REPLAY_ENV)
    if not raw:
        return {}
    try:
        told = json.loads(raw)
    except ValueError:
        return {}
    return told if isinstance(told, dict) else {}


def announce_run(run_id: str, kernel_run_index: int, store_uri: str) -> None:
    """Append a started run to the replay's ``runs_file`` (nothing outside a replay).

    Example:
        >>> announce_run("0f3c9a", 1, "sqlite:///x.db")  # outside a replay: does nothing
    """
    path = replay_context().get("runs_file")
    if not path:
        return
    line = json.dumps({"run_id": run_id, "kernel_run_index": kernel_run_index, "store_uri": store_uri})
    # One write of one line with O_APPEND: a reader never sees half a line of a finished write.
    fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def announced_runs(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The runs a replay's kernel announced in ``path``, in order ([] when none or no file)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    runs = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a kernel killed mid-write leaves at most a torn last line
        if isinstance(entry, dict) and isinstance(entry.get("run_id"), str):
            runs.append(entry)
    return runs
