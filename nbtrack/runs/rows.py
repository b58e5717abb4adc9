"""One row per run, as ``nbtrack runs --json`` prints it and the server's ``/nbtrack/runs`` returns it.

A row is built from an MLflow run's info, tags, params and metrics only (never its artifacts), so a
page of runs costs one search. Shared by the CLI and the server extension, so both describe a run
with the same fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nbtrack.store.spool import LAST_ERROR, PENDING, SYNC_STATE, UPLOAD_PENDING, pending_upload_message


def format_time(ms: int | None) -> str:
    """Epoch milliseconds as local ``YYYY-MM-DD HH:MM:SS`` (``-`` when unknown)."""
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def duration_seconds(run: Any) -> float | None:
    """Seconds from start to end, or None while the run has not ended."""
    if not run.end_time or not run.start_time:
        return None
    return round(float(run.end_time - run.start_time) / 1000, 3)


def format_duration(run: Any) -> str:
    """The duration as ``12.3s``, or ``-`` while the run has not ended."""
    if not run.end_time or not run.start_time:
        return "-"
    return f"{(run.end_time - run.start_time) / 1000:.1f}s"


def run_row(run: Any) -> dict[str, Any]:
    """The list row of an MLflow run (see ``RunRow`` in ``nbtrack/server/openapi.yaml``).

    Example:
        >>> run_row(store.get_run("3f2a9c41e0b84d0f..."))["commit"]  # doctest: +SKIP
        '9c41e0b'
    """
    tags = run.tags
    return {
        "run_id": run.run_id,
        "name": run.name,
        "status": run.status,
        "start": format_time(run.start_time),
        "start_time": run.start_time,
        "duration": format_duration(run),
        "duration_s": duration_seconds(run),
        "experiment_id": run.experiment_id,
        "notebook": tags.get("mlflow.source.name"),
        "commit": (tags.get("mlflow.source.git.commit") or "")[:7] or None,
        "git_dirty": tags.get("nbtrack.git.dirty") == "true",
        "data_status": tags.get("nbtrack.data.status"),
        "out_of_order": tags.get("nbtrack.out_of_order") == "true",
        "replay_of": tags.get("nbtrack.replay_of"),
        "replay_verdict": tags.get("nbtrack.replay.verdict"),
        "metrics": dict(run.metrics),
        "params": dict(run.params),
        # A run of the local spool not (completely) on the tracking server yet, or a server copy whose
        # upload stopped halfway (its kernel exited); why, and what to run.
        "pending_upload": tags.get(SYNC_STATE) == PENDING or bool(tags.get(UPLOAD_PENDING)),
        "upload_error": tags.get(LAST_ERROR) or None,
        "upload_note": pending_upload_message(run),
    }
