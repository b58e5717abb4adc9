"""One trial: the source rebuilt in its own replay workspace, the notebook run there as one tracked run.

The workspace (:func:`nbtrack.replay.workspace.build_workspace`) is a ``git clone --shared`` at
the source's commit with its diff applied and the DVC data linked read-only from the user's cache;
the run goes to the user's store, announced as the user's notebook (``announce_as``), so it is an
ordinary run of that notebook: listed, compared, replayable. The workspace is removed after the
run (its linked inputs checked: a trial never changes the user's DVC cache).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack import tags
from nbtrack.errors import CannotReplay
from nbtrack.sweep.source import TrialSource

if TYPE_CHECKING:
    from nbtrack.config import NbtrackConfig
    from nbtrack.runner import CellCallback
    from nbtrack.track.headless import HeadlessRun

__all__ = ["CLONE_TAG", "PARENT_TAG", "SWEEP_PARENT_TAG", "TRIAL_TAG", "execute_trial", "failed_run"]

#: MLflow's nesting tag (its UI shows the trial under the sweep's parent run), and nbtrack's own.
PARENT_TAG, SWEEP_PARENT_TAG, TRIAL_TAG = tags.MLFLOW_PARENT, tags.SWEEP_PARENT, tags.SWEEP_TRIAL
#: A trial started from a recorded run (the panel's "Clone with new parameters") names that run.
CLONE_TAG = tags.CLONE_OF


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def trial_tags(source: TrialSource, parent_run_id: str | None, index: int | None) -> dict[str, str]:
    """The tags a trial's run carries: its parent (MLflow's nesting), its number, its source run.

    Example:
        >>> trial_tags(src, "9b1e", 2)  # doctest: +SKIP
        {'mlflow.parentRunId': '9b1e', 'nbtrack.sweep.parent': '9b1e', 'nbtrack.sweep.trial': '2'}
    """
    tags: dict[str, str] = {}
    if parent_run_id:
        tags.update({PARENT_TAG: parent_run_id, SWEEP_PARENT_TAG: parent_run_id})
    if index is not None:
        tags[TRIAL_TAG] = str(index)
    if source.run_id:
        tags[CLONE_TAG] = source.run_id
    return tags


def execute_trial(
    source: TrialSource,
    parameters: dict[str, Any],
    *,
    config: NbtrackConfig,
    experiment: str,
    name: str | None = None,
    tags: dict[str, str] | None = None,
    on_cell: CellCallback | None = None,
    say: Callable[[str], None] = _to_stderr,
) -> HeadlessRun:
    """Run the source's notebook with ``parameters`` in a fresh workspace, as one tracked run.

    Raises:
        CannotReplay: the workspace cannot be rebuilt (data in neither cache nor remote, a diff
            that does not apply), or the trial wrote into a linked DVC cache object that could
            not be written back.

    Example:
        >>> execute_trial(src, {"lr": 0.01}, config=cfg, experiment="churn").status  # doctest: +SKIP
        'FINISHED'
    """
    from nbtrack.replay.workspace import build_workspace
    from nbtrack.track.headless import run_notebook

    ws = build_workspace(
        source.snapshot, source=source.project, git_diff=source.git_diff, progress=False, say=lambda _l: None
    )
    try:
        for risk in ws.risks:
            say(f"nbtrack sweep: risk: {risk}")
        notebook = _place_notebook(source, ws.project)
        out = ws.base / "out" / notebook.name
        out.parent.mkdir(parents=True, exist_ok=True)
        run = run_notebook(
            notebook,
            config=config,
            parameters={**source.injected, **parameters},
            experiment=experiment,
            name=name,
            tags=tags,
            cwd=_cwd(source, ws.project, notebook.parent),
            output=out,
            announce_as=source.notebook_path,
            on_cell=on_cell,
        )
        for risk in ws.cache_risks():
            say(f"nbtrack sweep: {risk}")
    finally:
        ws.cleanup()
    return run


def _place_notebook(source: TrialSource, project: Path) -> Path:
    """The source's notebook file at its place in the workspace (the checkout's when none is given)."""
    target = project / source.relpath
    if source.notebook is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.notebook)
    elif not target.is_file():
        raise CannotReplay(
            f"{source.label}: {source.relpath} is not in the rebuilt checkout and no stored copy can be "
            "used; sweep the notebook file instead"
        )
    return target


def _cwd(source: TrialSource, project: Path, default: Path) -> Path:
    """The source's working folder mapped into the workspace (the notebook's folder when unknown)."""
    cwd, root = source.snapshot.run.get("cwd"), source.snapshot.run.get("project_root")
    if not (cwd and root):
        return default
    try:
        candidate = project / Path(cwd).relative_to(root)
    except ValueError:
        return default
    return candidate if candidate.is_dir() else default


def failed_run(error: str) -> HeadlessRun:
    """A trial that recorded no run (its workspace could not be built, its worker died).

    Example:
        >>> failed_run("data/churn.csv is in neither the cache nor the remote").status  # doctest: +SKIP
        'FAILED'
    """
    from nbtrack.track.headless import HeadlessRun

    return HeadlessRun(run_id=None, status="FAILED", output=Path(), error=error)
