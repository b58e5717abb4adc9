"""The replay's first stage: which run, what to execute, with which parameters (a :class:`ReplayPlan`).

Everything read from the store before a workspace is made: a run whose notebook or ``git.diff``
artifact is gone fails here, fast, before a clone or a DVC checkout. The notebook to execute is
the saved one when the run went top to bottom, else the kernel's execution history rebuilt as a
notebook (:mod:`nbtrack.replay.notebooks`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack.errors import CannotReplay, RunNotFoundError, UsageError
from nbtrack.models import RunRecord, Snapshot
from nbtrack.replay.notebooks import choose_mode, ensure_tracked, history_to_notebook
from nbtrack.replay.result import ENVS, MODES, OUTPUT_MODES, Progress, ReplayResult

if TYPE_CHECKING:
    from nbtrack.config import NbtrackConfig
    from nbtrack.store import MlflowStore

__all__ = ["ReplayOptions", "ReplayPlan", "code_sources", "make_plan"]


#: The notebook file a run was given, kept beside the executed ``notebook.ipynb`` when they differ.
INPUT_ARTIFACT = "notebook.input.ipynb"


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


@dataclass
class ReplayOptions:
    """:func:`nbtrack.replay.replayer.replay`'s keyword arguments, as one value."""

    parameters: dict[str, Any] = field(default_factory=dict)
    mode: str = "auto"
    env: str = "current"
    tolerance: float | None = None
    metric_tolerances: dict[str, float] = field(default_factory=dict)
    keep_workspace: bool = False
    tracking_uri: str | None = None
    project: Path | None = None
    kernel_name: str | None = None
    workspace_dir: Path | None = None
    progress_bar: bool = False
    on_progress: Progress | None = None
    say: Callable[[str], None] = _to_stderr
    #: ``--outputs``: check (differing cell outputs diverge), report (listed only) or ignore.
    outputs: str = "check"
    #: ``--repeat``: how many times the run is replayed (to see what varies between replays).
    repeat: int = 1
    #: Replay code the repository does not hold at the run's commit (see :mod:`~nbtrack.replay.provenance`).
    allow_uncommitted: bool = False
    #: Check the run's provenance whatever its store (a batch: ``nbtrack replay --experiment``).
    require_committed: bool = False

    def check(self) -> None:
        """Raise UsageError for a ``mode``, ``env``, ``outputs``, ``repeat``, tolerance or kernel that
        nbtrack or this machine does not have."""
        if self.env not in ENVS:
            raise UsageError(f"--env {self.env!r}: use one of {', '.join(ENVS)}")
        if self.mode not in MODES:
            raise UsageError(f"--mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.outputs not in OUTPUT_MODES:
            raise UsageError(f"--outputs {self.outputs!r}: use one of {', '.join(OUTPUT_MODES)}")
        if isinstance(self.repeat, bool) or not isinstance(self.repeat, int) or self.repeat < 1:
            raise UsageError(f"--repeat {self.repeat!r}: give a whole number of replays, at least 1")
        if self.kernel_name and self.env != "recreate":
            from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

            try:
                KernelSpecManager().get_kernel_spec(self.kernel_name)
            except NoSuchKernel:
                raise UsageError(
                    f"--kernel {self.kernel_name!r}: no such Jupyter kernel on this machine; "
                    "list them with `jupyter kernelspec list`"
                ) from None
        named = {"--tolerance": self.tolerance} if self.tolerance is not None else {}
        named.update({f"--metric-tolerance {k}": v for k, v in self.metric_tolerances.items()})
        for flag, value in named.items():
            # NaN would make every comparison false and a negative tolerance nothing equal.
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"{flag} {value!r}: give a relative tolerance of 0 or more, e.g. 1e-6")


@dataclass
class ReplayPlan:
    """What a replay executes, read from the store: the run, its snapshot and the notebook to run."""

    run_id: str
    store: MlflowStore
    config: NbtrackConfig
    #: A folder of the local git repository that holds the recorded commit (the user's project).
    source: Path
    original: RunRecord
    snapshot: Snapshot
    mode: str
    notebook: dict[str, Any]
    #: The saved notebook's text, written back byte for byte (git then sees the committed file);
    #: None when the notebook to execute was built or changed (history mode, tracking cells added).
    as_recorded: str | None
    #: The code cells as recorded, for the cell-level diff against what the replay executed.
    recorded_cells: list[str]
    #: The values papermill injected into the original run; overrides (``-p``) win over them.
    injected: dict[str, Any]
    git_diff: bytes | None
    #: The original's executed notebook (the run's ``notebook.ipynb``, outputs included), which the
    #: replay's cell outputs are compared with; None when the run kept none.
    recorded_notebook: dict[str, Any] | None = None
    #: The artifact the notebook mode executes: the file the run was given (papermill's input), else
    #: ``notebook.ipynb``.
    executes: str = "notebook.ipynb"

    @property
    def relpath(self) -> str | None:
        """The notebook's path in the project, as recorded (None when the file was not found)."""
        value = self.snapshot.section("notebook").data.get("relpath")
        return str(value) if value else None

    @property
    def file_name(self) -> str:
        return Path(self.relpath).name if self.relpath else "notebook.ipynb"

    def notebook_text(self) -> str:
        """The notebook file papermill is given."""
        return self.as_recorded if self.as_recorded is not None else json.dumps(self.notebook, indent=1)

    def use_checkout(self, project: Path) -> str | None:
        """Where the stored notebook lost secrets to redaction, run the checkout's original instead.

        The checkout (``project``: the workspace's project folder) has the original when its file is
        byte for byte the one recorded. Returns the risk to report when the replay must run the
        redacted copy, else None.
        """
        section = self.snapshot.section("notebook")
        redacted = (section.data.get("redacted") or {}).get(self.executes)
        if not redacted:
            return None
        original = (
            _original_notebook(project / self.relpath, section.data.get("sha256")) if self.relpath else None
        )
        if original is not None and self.as_recorded is not None:
            self.as_recorded, self.notebook = original, json.loads(original)
            if self.executes == "notebook.ipynb":  # the file that ran is the one given: unredacted
                self.recorded_notebook = copy.deepcopy(self.notebook)
            self.recorded_cells = code_sources(self.notebook)
            return None
        cells = sorted({f["cell"] + 1 for f in redacted if f.get("cell") is not None})
        return (
            f"secrets were redacted from the recorded notebook (cells {cells}) and the checkout "
            "lacks the original; the replay runs [REDACTED] in their place: read secrets from "
            "environment variables instead of writing them into cells"
        )


def make_plan(result: ReplayResult, options: ReplayOptions) -> ReplayPlan:
    """Read the run and decide what to execute; fills the result's run facts, mode and parameters.

    Raises:
        CannotReplay: the run is unknown, or an artifact the chosen mode needs is gone.

    Example:
        >>> plan = make_plan(ReplayResult("3f2a9c41"), ReplayOptions(mode="history"))  # doctest: +SKIP
        >>> plan.mode, plan.file_name  # doctest: +SKIP
        ('history', 'train.ipynb')
    """
    store, config, source = _open_store(options)
    run_id = result.run_id
    original, snap = _read_run(store, run_id)
    result.run_name = original.name
    result.experiment = snap.run.get("experiment") or original.experiment_id
    # Also when the file could not be read at the run's end: the history then runs in its place.
    result.notebook = snap.section("notebook").data.get("relpath") or original.tags.get("mlflow.source.name")
    if original.status == "RUNNING":
        result.risks.append(f"run {run_id} is still RUNNING: its results may be incomplete")
    elif original.status in ("FAILED", "KILLED"):
        result.risks.append(_ended_badly(run_id, original.status, snap.run.get("failure")))
    mode, why = choose_mode(snap, options.mode)
    result.mode, result.mode_reason = mode, why
    where = result.notebook or "an unknown notebook"
    options.say(f"nbtrack replay: run {run_id} ({result.run_name or 'unnamed'}) of {where}")
    options.say(f"nbtrack replay: mode {mode}: {why}")
    params = snap.section("parameters")
    recorded = params.data.get("values", {}) if params.status == "ok" else {}
    result.parameters = {"recorded": recorded, "overrides": dict(options.parameters)}
    plan = ReplayPlan(run_id, store, config, source, original, snap, mode, {}, None, [], {}, None)
    _choose_notebook(plan)
    if ensure_tracked(plan.notebook):
        plan.as_recorded = None
        result.risks.append(
            "the recorded code never starts a tracked run; the replay wraps it in %track start/stop"
        )
    plan.git_diff = _git_diff(store, snap, run_id)
    return plan


def _ended_badly(run_id: str, status: str, failure: Any) -> str:
    """What happened to an original run that did not finish, said plainly."""
    if status == "KILLED" or not isinstance(failure, dict):
        return f"run {run_id} ended {status} when it was tracked: its results may be incomplete"
    where = f"cell {failure.get('cell')}" if failure.get("cell") else "a cell"
    head = f" (`{str(failure['source_head'])[:60]}`)" if failure.get("source_head") else ""
    return (
        f"run {run_id} FAILED when it was tracked: {where}{head} raised {failure.get('ename')}: "
        f"{str(failure.get('evalue') or '')[:120]}; the replay runs it again"
    )


def _open_store(options: ReplayOptions) -> tuple[MlflowStore, NbtrackConfig, Path]:
    """The store the run is in (the configured one, else the project's), its config, the project."""
    from nbtrack.capture.locate import find_project_root
    from nbtrack.config import load_config
    from nbtrack.store import MlflowStore

    config = load_config()
    if options.tracking_uri:
        config.tracking_uri = options.tracking_uri
    source = (options.project or find_project_root(Path.cwd())).resolve()
    return MlflowStore.for_project(source, config), config, source


def _read_run(store: MlflowStore, run_id: str) -> tuple[RunRecord, Snapshot]:
    try:
        original = store.get_run(run_id)
    except RunNotFoundError as exc:
        raise CannotReplay(
            f"run {run_id} is not in {store.display_uri}; list runs with `nbtrack runs` "
            "(or pass --tracking-uri / --project for another store)"
        ) from exc
    from nbtrack.store.spool import incomplete_upload

    # A server copy whose upload has not finished: its artifacts are in a spool, not lost.
    pending = incomplete_upload(original)
    if pending is not None:
        raise CannotReplay(pending)
    return original, store.load_snapshot(run_id)


def _choose_notebook(plan: ReplayPlan) -> None:
    """Read the notebook the mode executes (and the values papermill injected into the run)."""
    from nbtrack.capture.notebook import parse_artifact

    store, run_id = plan.store, plan.run_id
    params = plan.snapshot.section("parameters")
    plan.injected = dict(params.data.get("injected", {})) if params.status == "ok" else {}
    # notebook.ipynb is what ran (under papermill: the executed notebook, injected parameters and
    # outputs); the file the run was given is then kept as notebook.input.ipynb, and is what a
    # replay executes (written back byte for byte, git sees the committed file).
    ran = store.read_artifact(run_id, "notebook.ipynb")
    plan.recorded_notebook = parse_artifact(ran, run_id, "notebook.ipynb") if ran else None
    given = store.read_artifact(run_id, INPUT_ARTIFACT)
    if given is not None:
        plan.executes = INPUT_ARTIFACT
    else:
        given = ran
    if plan.mode == "notebook":
        if given is None:
            raise CannotReplay(
                f"run {run_id} has no nbtrack/notebook.ipynb artifact (deleted?); replay with --mode history"
            )
        plan.notebook, plan.as_recorded = parse_artifact(given, run_id, plan.executes), given
    else:
        text = store.read_artifact(run_id, "history.ipynb")
        if text is None:
            raise CannotReplay(
                f"run {run_id} has no nbtrack/history.ipynb artifact (deleted?); it cannot be replayed: "
                "record the run again"
            )
        param_cell = params.data.get("cell_index") if params.status == "ok" else None
        history = parse_artifact(text, run_id, "history.ipynb")
        saved = parse_artifact(given, run_id, plan.executes) if given else None
        plan.notebook, plan.injected = history_to_notebook(history, _parameters_source(saved, param_cell))
    plan.recorded_cells = code_sources(plan.notebook)


def code_sources(notebook: dict[str, Any]) -> list[str]:
    """The sources of a notebook's code cells, without papermill's injected-parameters cell.

    The injected cell is papermill's, not the user's code: it is no code change (and a replay's
    papermill injects its own).

    Example:
        >>> code_sources({"cells": [{"cell_type": "code", "source": "x = 1", "metadata": {}},
        ...   {"cell_type": "code", "source": "x = 2", "metadata": {"tags": ["injected-parameters"]}}]})
        ['x = 1']
    """
    from nbtrack.capture.notebook import cell_source, code_cells, is_injected_parameters

    return [
        cell_source(c)
        for c in code_cells(notebook)
        if "injected-parameters" not in ((c.get("metadata") or {}).get("tags") or [])
        and not is_injected_parameters(cell_source(c))
    ]


def _parameters_source(saved: dict[str, Any] | None, cell_index: int | None) -> str | None:
    """The source of the saved notebook's ``parameters`` cell, to find it again in the history."""
    from nbtrack.capture.notebook import cell_source

    if cell_index is None or saved is None:
        return None
    cells = saved["cells"]
    return cell_source(cells[cell_index]) if 0 <= cell_index < len(cells) else None


def _git_diff(store: MlflowStore, snap: Snapshot, run_id: str) -> bytes | None:
    """The run's uncommitted changes; CannotReplay when the snapshot says they were stored but are gone."""
    git_diff = store.read_artifact_bytes(run_id, "git.diff")
    recorded = snap.section("git").data.get("diff") or {}
    if git_diff is None and recorded.get("stored"):
        raise CannotReplay(
            f"run {run_id} has no nbtrack/git.diff artifact (deleted?), though its snapshot recorded "
            f"{recorded.get('bytes')} bytes of uncommitted changes in it; without them the replay "
            "would run other code: record the run again"
        )
    return git_diff


def _original_notebook(path: Path, sha256: str | None) -> str | None:
    """The notebook at ``path`` when it is byte for byte the one recorded (``sha256``), else None."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return raw.decode("utf-8") if sha256 and hashlib.sha256(raw).hexdigest() == sha256 else None
