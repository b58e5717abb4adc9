"""A run's detail for the panel: its list row plus a summary of its snapshot (``RunDetail``).

Pure functions of the run, its snapshot and its artifact list: the panel shows what the snapshot
recorded, never the raw environment variables or package list (those stay in ``snapshot.json``).
"""

from __future__ import annotations

from typing import Any

from nbtrack.models import RunRecord, Snapshot
from nbtrack.redact import strip_url_credentials
from nbtrack.runs.rows import run_row

# Per-output fields the panel shows; the snapshot may hold more.
_OUTPUT_FIELDS = (
    "path",
    "hash_name",
    "hash",
    "status",
    "size",
    "nfiles",
    "is_dir",
    "source",
    "stage",
    "remote",
)


def environment_summary(snap: Snapshot) -> dict[str, Any]:
    """Python version and implementation, package count, platform."""
    section = snap.section("environment")
    if section.status != "ok":
        return {"available": False, "reason": section.reason}
    python = section.data.get("python") or {}
    platform = section.data.get("platform") or {}
    return {
        "available": True,
        "python": python.get("version"),
        "implementation": python.get("implementation"),
        "packages": len(section.data.get("packages") or []),
        "platform": platform.get("platform"),
        "system": platform.get("system"),
    }


def data_summary(snap: Snapshot) -> list[dict[str, Any]]:
    """The recorded DVC outputs: path, hash, workspace status at record time."""
    section = snap.section("data")
    if section.status != "ok":
        return []
    return [
        {key: out[key] for key in _OUTPUT_FIELDS if key in out} for out in section.data.get("outputs") or []
    ]


def git_summary(snap: Snapshot) -> dict[str, Any]:
    """Commit, branch, dirty flag and remote URL (credentials removed, again, to be sure)."""
    section = snap.section("git")
    if section.status != "ok":
        return {"available": False, "reason": section.reason}
    d = section.data
    remote = d.get("remote_url")
    return {
        "available": True,
        "commit": d.get("commit"),
        "branch": d.get("branch"),
        "dirty": bool(d.get("dirty")),
        "remote": strip_url_credentials(remote) if remote else None,
        "untracked": len(d.get("untracked") or []),
    }


def notebook_summary(snap: Snapshot) -> dict[str, Any]:
    """The notebook section: path, how it was found, flags; ``status``/``reason`` when missing."""
    section = snap.section("notebook")
    keep = (
        "path",
        "relpath",
        "method",
        "stored",
        "stored_reason",
        "live",
        "unsaved_changes",
        "out_of_order",
        "out_of_order_reasons",
        "edited_after_execution",
        "reason",
    )
    summary = {key: section.data[key] for key in keep if key in section.data}
    return {"status": section.status, "reason": section.reason, **summary}


def run_detail(
    run: RunRecord, snap: Snapshot, artifacts: list[str], mlflow_url: str | None
) -> dict[str, Any]:
    """The ``RunDetail`` document of ``GET /nbtrack/runs/{run_id}``.

    Example:
        >>> run_detail(run, store.load_snapshot(run_id), [], None)["git"]["commit"]  # doctest: +SKIP
        '9c41e0b8...'
    """
    return {
        **run_row(run),
        "experiment": snap.run.get("experiment"),
        "mlflow_url": mlflow_url,
        "environment": environment_summary(snap),
        "data": data_summary(snap),
        "git": git_summary(snap),
        "notebook_info": notebook_summary(snap),
        "sections": {
            name: {"status": section.status, "reason": section.reason}
            for name, section in snap.sections.items()
        },
        "artifacts": artifacts,
    }
