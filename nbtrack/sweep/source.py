"""What a sweep's trials start from: a notebook of the user's working tree, or a recorded run.

Read once, before any trial, into a :class:`TrialSource` (plain data: it travels to the worker
processes of ``--jobs N``): the code (a commit and the uncommitted diff), the DVC data version, the
notebook file and the parameters, as the replay workspace (:func:`nbtrack.replay.workspace.
build_workspace`) rebuilds them in a temporary clone.

- A **notebook**: HEAD plus the working tree's uncommitted changes (untracked files included), the
  DVC outputs at the versions the ``.dvc`` / ``dvc.lock`` files name, the notebook file as saved now.
  The git and data sections are captured as a run's start would capture them, only never stored.
- A **run id** (or a unique prefix): the run's recorded commit, ``git.diff``, data versions and
  notebook; its recorded papermill parameters are the base the trial's parameters override.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack.errors import CannotReplay, NotebookError, UsageError
from nbtrack.models import Snapshot

if TYPE_CHECKING:
    from nbtrack.config import NbtrackConfig
    from nbtrack.runs.service import Runs
    from nbtrack.store import MlflowStore

__all__ = ["TrialSource", "resolve_source"]

#: The uncommitted diff a sweep carries to its workspaces (in memory, never stored): far above the
#: cap on the diff a run stores, so that trials run the working tree, not the bare commit.
_DIFF_CAP = 256 * 1024 * 1024
_INPUT = "notebook.input.ipynb"


@dataclass(frozen=True)
class TrialSource:
    """A sweep's starting point, ready to rebuild in a workspace per trial.

    Attributes:
        label: how messages name it (``train.ipynb``, ``run 3f2a9c41``).
        project: the user's project root: the workspace's git source and DVC cache, and the store.
        relpath: the notebook relative to ``project`` (what the trial's run records as its notebook).
        snapshot: the ``git`` and ``data`` sections and ``run.project_root`` / ``run.cwd``.
        git_diff: the uncommitted changes, None when none.
        notebook: the notebook file written at ``relpath`` in the workspace (None: the checkout's).
        injected: a run source's recorded papermill parameters (the trial's override them).
        known: the names of the ``parameters`` cell; None when the notebook has none (no check).
        run_id: the source run's full id, None for a notebook.
        experiment: the source run's experiment name, None for a notebook.
        store_uri: the tracking URI of the project's store.
        risks: what the trials run differently from the source (said once, before the first trial).
    """

    label: str
    project: Path
    relpath: str
    snapshot: Snapshot
    git_diff: bytes | None
    notebook: bytes | None
    injected: dict[str, Any] = field(default_factory=dict)
    known: list[str] | None = None
    run_id: str | None = None
    experiment: str | None = None
    store_uri: str = ""
    risks: list[str] = field(default_factory=list)

    @property
    def notebook_path(self) -> Path:
        """The user's notebook (what the trial's run is announced as)."""
        return self.project / self.relpath


def is_notebook(source: str) -> bool:
    """Whether ``source`` names a notebook file rather than a run id.

    Example:
        >>> is_notebook("train.ipynb"), is_notebook("3f2a9c41")
        (True, False)
    """
    return source.endswith(".ipynb") or "/" in source or Path(source).is_file()


def resolve_source(
    source: str,
    *,
    config: NbtrackConfig,
    runs: Runs,
    project: Path | None = None,
    allow_uncommitted: bool = False,
) -> TrialSource:
    """Read a notebook's working state, or a recorded run, into a :class:`TrialSource`.

    Raises:
        NotebookError: no such notebook file.
        UsageError: the notebook is outside the project, or the project is no git repository.
        RunNotFoundError, CannotReplay: no such run, or its code or notebook is gone.
        UncommittedCodeError: a run of a shared store whose code the repository does not hold (as
            its replay would refuse it), unless ``allow_uncommitted``.

    Example:
        >>> resolve_source("train.ipynb", config=load_config(), runs=runs).relpath  # doctest: +SKIP
        'train.ipynb'
    """
    if is_notebook(source):
        return _from_notebook(source, config, runs, project)
    return _from_run(source, runs, project, allow_uncommitted)


def _notebook_file(source: str, project: Path | None) -> Path:
    path = Path(source).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path] + ([project / path] if project else [])
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise NotebookError(f"{source}: no such notebook ({candidates[0]}); check the path, or give a run id")


def _parameter_names(path: Path) -> list[str] | None:
    """The names the notebook's ``parameters`` cell assigns (None: no such cell), read without
    papermill (its import alone takes 2-10 s; a sweep's workers import it, not this process)."""
    from nbtrack.track.headless import notebook_parameter_names

    try:
        nb = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise NotebookError(f"{path} is not a readable notebook ({exc}); save it again in Jupyter") from exc
    if not isinstance(nb, dict):
        raise NotebookError(f"{path} is not a Jupyter notebook; give an .ipynb file")
    return notebook_parameter_names(nb)


def _from_notebook(source: str, config: NbtrackConfig, runs: Runs, project: Path | None) -> TrialSource:
    from nbtrack.capture.base import CaptureContext, run_provider
    from nbtrack.capture.data import DataProvider
    from nbtrack.capture.git import GitProvider

    path = _notebook_file(source, project)
    names = _parameter_names(path)
    target = runs.locate(project=project, notebook=path)
    root, relpath = target.project or path.parent, target.notebook or path.name
    if Path(relpath).is_absolute():
        raise UsageError(f"{source}: the notebook is outside the project {root}; pass --project DIR")
    capture = _configured(config, git_diff_max_bytes=_DIFF_CAP)
    ctx = CaptureContext(project_root=root, notebook_path=path, cwd=path.parent, config=capture)
    git, files = run_provider(GitProvider(), ctx)
    if git.status != "ok":
        raise UsageError(
            f"{source}: each trial runs in a clone of the project's git repository, and {root} is not in "
            f"one ({git.reason}); run `git init` and commit the project"
        )
    data, _ = run_provider(DataProvider(), ctx)
    snapshot = Snapshot(
        run={"project_root": str(root), "cwd": str(path.parent)}, sections={"git": git, "data": data}
    )
    risks = [
        f"{o['path']} is {o['status']} in your working tree: the trials read its DVC-tracked version "
        f"({o.get('hash_name')} {str(o.get('hash'))[:8]}); `dvc add`/`dvc commit` it to sweep on it"
        for o in (data.data.get("outputs") or [] if data.status == "ok" else [])
        if o.get("status") in ("modified", "missing")
    ]
    return TrialSource(
        label=relpath,
        project=root,
        relpath=relpath,
        snapshot=snapshot,
        git_diff=files.get("git.diff"),
        notebook=path.read_bytes(),
        known=names,
        store_uri=target.uri,
        risks=risks,
    )


def _from_run(source: str, runs: Runs, project: Path | None, allow_uncommitted: bool) -> TrialSource:
    target = runs.locate(project=project, cwd=Path.cwd())
    found = runs.on_server(target, runs.resolve(target, source), "sweep")
    store, run_id = found.store, found.run_id
    allowed = _check_code(store, run_id, target.project or Path.cwd(), allow_uncommitted)
    snap = store.load_snapshot(run_id)
    nb = snap.section("notebook")
    relpath = nb.data.get("relpath") or found.run.tags.get("mlflow.source.name")
    if not relpath:
        raise CannotReplay(
            f"run {run_id} recorded no notebook path; sweep its notebook file instead: nbtrack sweep NB.ipynb"
        )
    # The file the run was given (papermill's input), else the notebook it saved; the checkout's
    # own file when secrets were redacted from the stored copy (the checkout has the original).
    name = _INPUT if store.read_artifact_bytes(run_id, _INPUT) is not None else "notebook.ipynb"
    redacted = (nb.data.get("redacted") or {}).get(name)
    notebook = None if redacted else store.read_artifact_bytes(run_id, name)
    params = snap.section("parameters")
    recorded = params.data if params.status == "ok" else {}
    known = list(recorded.get("defaults") or {}) if recorded.get("cell_index") is not None else None
    return TrialSource(
        label=f"run {run_id[:8]}",
        project=target.project or Path.cwd(),
        relpath=str(relpath),
        snapshot=snap,
        git_diff=_git_diff(store, snap, run_id),
        notebook=notebook,
        injected=dict(recorded.get("injected") or {}),
        known=known,
        run_id=run_id,
        experiment=snap.run.get("experiment") or None,
        store_uri=target.uri,
        risks=allowed
        + (
            [f"secrets were redacted from run {run_id[:8]}'s notebook: the trials run the checkout's file"]
            if redacted
            else []
        ),
    )


def _check_code(store: MlflowStore, run_id: str, project: Path, allow_uncommitted: bool) -> list[str]:
    """A run read from a shared store (anyone who can write to it can record any code) runs only
    code the repository holds at its commit: the check its replay makes
    (:func:`nbtrack.replay.provenance.check_provenance`), before any workspace or kernel. The risk
    lines when the user allowed uncommitted code anyway."""
    from nbtrack.replay.plan import ReplayOptions, make_plan
    from nbtrack.replay.provenance import check_provenance, is_shared_store
    from nbtrack.replay.result import ReplayResult

    if not is_shared_store(store.uri):
        return []  # the user's own store: as trusted as the checkout that holds it
    options = ReplayOptions(mode="notebook", tracking_uri=store.uri, project=project)
    options.say = lambda _line: None
    found = check_provenance(
        make_plan(ReplayResult(run_id), options), batch=False, allow_uncommitted=allow_uncommitted
    )
    return [f"uncommitted code allowed (--allow-uncommitted): {d}" for d in found.differs]


def _git_diff(store: MlflowStore, snap: Snapshot, run_id: str) -> bytes | None:
    """The run's ``git.diff``; CannotReplay when the snapshot says it was stored and it is gone."""
    diff = store.read_artifact_bytes(run_id, "git.diff")
    if diff is None and (snap.section("git").data.get("diff") or {}).get("stored"):
        raise CannotReplay(
            f"run {run_id} has no nbtrack/git.diff artifact (deleted?) though it recorded uncommitted "
            "changes; without them the trials would run other code: sweep the notebook file instead"
        )
    return diff


def _configured(config: NbtrackConfig, **changes: Any) -> NbtrackConfig:
    """A copy of ``config`` with ``changes``."""
    from nbtrack.config import NbtrackConfig

    values = {name: getattr(config, name) for name in config.trait_names(config=True)}
    return NbtrackConfig(**{**values, **changes})
