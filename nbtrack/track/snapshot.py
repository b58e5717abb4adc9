"""A run's ``snapshot.json`` and its few MLflow tags, as the tracker logs them at start and at stop.

The snapshot holds everything (every section, how the notebook was found, the papermill input,
the project, the nbtrack version); the tags hold only what a person filters on in MLflow's UI and
what nbtrack's listings read (see :mod:`nbtrack.tags`).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nbtrack import __version__, tags
from nbtrack.capture.locate import NotebookLocation
from nbtrack.config import NbtrackConfig
from nbtrack.handoff import replay_context
from nbtrack.models import SCHEMA_VERSION, Section, Snapshot
from nbtrack.redact import Redactor, policy
from nbtrack.track.active import ActiveRun
from nbtrack.track.flags import data_status

#: Redacted sections kept by content: the environment and git sections repeat run after run.
_MEMO_SIZE = 16


def now_iso(ts: float | None = None) -> str:
    """``ts`` (default: now) as an ISO 8601 UTC time with milliseconds.

    Example:
        >>> now_iso(1.5)
        '1970-01-01T00:00:01.500+00:00'
    """
    when = datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc)
    return when.isoformat(timespec="milliseconds")


class SnapshotWriter:
    """Builds a run's snapshot with every string through the redaction policy.

    Example:
        >>> writer = SnapshotWriter(NbtrackConfig())
        >>> writer.snapshot(active, phase="start").run["phase"]  # doctest: +SKIP
        'start'
    """

    def __init__(self, config: NbtrackConfig) -> None:
        self.config = config
        #: Redacted sections (JSON) by their JSON before redaction: see :meth:`_redacted`.
        self._memo: dict[str, str] = {}

    def snapshot(self, active: ActiveRun, *, phase: str, status: str | None = None) -> Snapshot:
        """The snapshot to log: provider data, problems and reasons quoting foreign errors,
        parameters the user logged and the URI all go through the redaction policy."""
        redactor = policy(self.config)
        run = run_entry(active, phase=phase, status=status)
        run["tracking_uri"] = redactor.url(active.tracking.uri)
        sections = {name: self._redacted(redactor, section) for name, section in active.sections.items()}
        # Through JSON first: its default=str turns paths and other objects into strings to scan.
        clean_run = redactor.tree(json.loads(json.dumps(run, default=str)))
        return Snapshot(run=clean_run, sections=sections, nbtrack_version=__version__)

    def _redacted(self, redactor: Redactor, section: Section) -> Section:
        """``section`` with every string through the redaction policy, remembered by content.

        The environment and git sections come out the same at a run's start and end and from one
        run to the next; walking their few thousand strings again cost ~30 ms a snapshot.
        """
        text = json.dumps(section.to_dict(), sort_keys=True, default=str)
        clean = self._memo.get(text)
        if clean is None:
            clean = json.dumps(redactor.tree(json.loads(text)))
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.pop(next(iter(self._memo)))
            self._memo[text] = clean
        return Section.from_dict(json.loads(clean))


def run_entry(active: ActiveRun, *, phase: str, status: str | None = None) -> dict[str, Any]:
    """The snapshot's ``run`` entry (before redaction; without the tracking URI).

    Besides the run's identity it keeps the facts that are not MLflow tags: the project, how the
    notebook was found, the papermill (or nbconvert) invocation, the replay that started the kernel,
    what the notebook's own MLflow code did (:mod:`nbtrack.store.adopt`).
    """
    location = active.location
    run: dict[str, Any] = {
        "run_id": active.run_id,
        "run_name": active.run_name,
        "experiment": active.experiment,
        "experiment_id": active.experiment_id,
        "project": active.ctx.project_root.name,
        "project_root": str(active.ctx.project_root),
        "cwd": str(active.ctx.cwd),
        "started": now_iso(active.started),
        "phase": phase,
        "kernel_run_index": active.kernel_run_index,
        "notebook_method": location.method if location.path is not None else "unknown",
    }
    if location.papermill:
        run["papermill"] = dict(location.papermill)
    if location.executor:
        run["executor"] = dict(location.executor)
    if active.tracking.spool is not None:
        run["spool"] = str(active.tracking.spool.folder)
    mlflow_facts = active.tracking.mlflow_facts()
    if mlflow_facts:
        # The notebook's own MLflow code: start_run calls adopted, its own runs and where they went
        run["mlflow"] = mlflow_facts
    replay = replay_context()
    if replay.get("replay_of"):
        run.update(replay_of=replay["replay_of"], replay_id=replay.get("replay_id", ""))
    if phase == "end":
        run.update(ended=now_iso(), status=status)
    return run


def start_tags(location: NotebookLocation, root: Path, sections: dict[str, Section]) -> dict[str, str]:
    """MLflow's system tags (source, git) and the nbtrack tags known at start.

    Example:
        >>> start_tags(NotebookLocation(None, None), Path("/p"), {})["mlflow.source.name"]
        ''
    """
    found: dict[str, str] = {
        tags.SOURCE_TYPE: "NOTEBOOK",
        tags.SCHEMA_VERSION: str(SCHEMA_VERSION),
        # Explicitly empty when unknown: MLflow would fill in sys.argv[0] (`ipykernel_launcher.py`).
        tags.SOURCE_NAME: _relative(location.path, root) if location.path is not None else "",
    }
    git = sections.get("git")
    if git is not None and git.status == "ok":
        d = git.data
        for key, value in (
            (tags.GIT_COMMIT, d.get("commit")),
            (tags.GIT_BRANCH, d.get("branch")),
            (tags.GIT_REPO_URL, d.get("remote_url")),
        ):
            if value:
                found[key] = str(value)
        found[tags.GIT_DIRTY] = str(bool(d.get("dirty"))).lower()
    return found


def replay_tags() -> dict[str, str]:
    """The tags linking a replay's run to the run it replays (nothing outside a replay)."""
    replay = replay_context()
    if not replay.get("replay_of"):
        return {}
    return {tags.REPLAY_OF: str(replay["replay_of"]), tags.REPLAY_ID: str(replay.get("replay_id", ""))}


def end_tags(sections: dict[str, Section]) -> dict[str, str]:
    """The nbtrack tags known at stop: the data's state, whether cells ran out of order, and how long
    the capture took.

    Example:
        >>> end_tags({})
        {'nbtrack.data.status': 'absent'}
    """
    found = {tags.DATA_STATUS: data_status(sections)}
    nb = sections.get("notebook")
    if nb is not None and nb.status == "ok" and nb.data.get("out_of_order") is not None:
        found[tags.OUT_OF_ORDER] = str(nb.data["out_of_order"]).lower()
    if sections:  # nbtrack's own cost, for the server's metrics (each section times its provider)
        found[tags.CAPTURE_SECONDS] = f"{sum(s.duration_ms for s in sections.values()) / 1000:.3f}"
    return found


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
