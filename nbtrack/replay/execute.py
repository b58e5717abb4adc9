"""The replay's execution stage: the notebook placed in the workspace, run by papermill in a kernel.

The kernel is the current interpreter's (or the notebook's recorded kernelspec when this machine
has it), or one in a virtualenv rebuilt from the recorded pins (``--env recreate``,
:mod:`nbtrack.replay.venv`). It gets the replayer's whole configuration (``NBTRACK_CONFIG``) with
the store the original run is in, and ``NBTRACK_REPLAY``: the run it replays and the runs file
where its ``%track`` magics announce each run they start (:mod:`nbtrack.replay.judge` reads it).
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtrack.errors import CannotReplay
from nbtrack.replay.plan import ReplayOptions, ReplayPlan
from nbtrack.replay.workspace import Workspace

__all__ = [
    "RUNS_FILE",
    "Execution",
    "Kernel",
    "execute",
    "failure_info",
    "kernel_environment",
    "pick_kernel",
    "read_outcome",
]

#: The file in the workspace's base folder (outside the project) where the kernel announces its runs.
RUNS_FILE = "runs.jsonl"


@dataclass
class Kernel:
    """The kernel a replay runs in."""

    name: str
    #: Extra kernelspec folders (the recreated virtualenv registers its kernel there).
    dirs: list[Path] = field(default_factory=list)
    #: The recreated virtualenv's interpreter; None for this machine's kernels.
    python: Path | None = None
    #: How the kernel's environment departs from the record (Python release, skipped pins).
    risks: list[str] = field(default_factory=list)


@dataclass
class Execution:
    """What papermill did: its output notebook, and the failing cell when one raised."""

    #: papermill's output notebook (written even when a cell raised; absent when the kernel never ran).
    output: Path
    #: The executed notebook, when papermill wrote one.
    executed: dict[str, Any] | None
    #: Which cell raised and what (``cell``: its number among the user's code cells, or None when
    #: the user's notebook lacks it; ``execution_count``, ``source_head``, ``ename``, ``evalue``; in
    #: history mode ``history_cell``; ``expected`` when the original raised another type there).
    #: None when every cell ran, or raised only as it did in the original.
    failure: dict[str, Any] | None
    #: Where the kernel announced the runs it started.
    runs_file: Path
    #: Cells that raised in the original and raised the same exception type again:
    #: ``{"cell", "source_head", "ename"}``.
    expected_errors: list[dict[str, Any]] = field(default_factory=list)
    #: What the reader should know about expected errors (a cell that raised in the original, not now).
    notes: list[str] = field(default_factory=list)


def pick_kernel(plan: ReplayPlan, ws: Workspace, options: ReplayOptions) -> Kernel:
    """The current environment's kernel, or a fresh virtualenv's built from the recorded pins.

    Raises:
        CannotReplay: ``--env recreate`` for a run that recorded no environment, or the
            virtualenv could not be built (the message names the pin and the installer's reason).

    Example:
        >>> pick_kernel(plan, ws, ReplayOptions()).name  # doctest: +SKIP
        'python3'
    """
    if options.env != "recreate":
        return Kernel(options.kernel_name or recorded_kernel(plan.notebook))
    from nbtrack.replay.venv import recreate_environment

    section = plan.snapshot.section("environment")
    if section.status != "ok":
        raise CannotReplay(
            f"run {plan.run_id} recorded no environment ({section.reason}); replay with --env current"
        )
    venv = recreate_environment(section.data, ws.base / "env", say=options.say, run_id=plan.run_id)
    risks = list(venv.notes)
    risks += [
        f"{s['name']}=={s['version']} could not be reinstalled: {s['reason']}"
        for s in venv.skipped
        if s["name"] != "nbtrack"
    ]
    return Kernel(venv.kernel_name, [venv.kernel_dir], venv.python, risks)


def recorded_kernel(notebook: dict[str, Any]) -> str:
    """The notebook's kernelspec when this machine has it, else ``python3``.

    Example:
        >>> recorded_kernel({"metadata": {"kernelspec": {"name": "no-such-kernel"}}})
        'python3'
    """
    name = str(((notebook.get("metadata") or {}).get("kernelspec") or {}).get("name") or "python3")
    if name == "python3":
        return name
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return "python3"
    return name


def kernel_environment(plan: ReplayPlan, runs_file: Path) -> dict[str, str]:
    """The variables the replay adds to its kernel's environment.

    The whole configuration goes along (``NBTRACK_CONFIG`` wins over every other source in the
    kernel), pointed at the store the original run is in: a kernel started in the workspace would
    otherwise make an embedded store of its own there.

    Example:
        >>> json.loads(kernel_environment(plan, ws.base / "runs.jsonl")["NBTRACK_REPLAY"])  # doctest: +SKIP
        {'replay_of': '3f2a9c41…', 'replay_id': '9b1e…', 'runs_file': '/tmp/nbtrack-replay-x/runs.jsonl'}
    """
    from nbtrack.config import to_env

    experiment = str(plan.snapshot.run.get("experiment") or "")
    told = {"replay_of": plan.run_id, "replay_id": uuid.uuid4().hex, "runs_file": str(runs_file)}
    return {
        **to_env(plan.config, tracking_uri=plan.store.uri, experiment=experiment or plan.config.experiment),
        # Also as plain variables, read by a kernel's nbtrack when no configuration is handed down.
        "NBTRACK_TRACKING_URI": plan.store.uri,
        "NBTRACK_EXPERIMENT": experiment,
        "NBTRACK_REPLAY": json.dumps(told),
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }


def execute(plan: ReplayPlan, ws: Workspace, kernel: Kernel, options: ReplayOptions) -> Execution:
    """Write the notebook at its recorded place in the workspace and run it with papermill.

    A cell that raises is not an error here: the execution carries it as ``failure``.

    Example:
        >>> execute(plan, ws, Kernel("python3"), ReplayOptions()).failure  # doctest: +SKIP
    """
    from nbtrack.runner import ExecutionFailed, execute_notebook

    target = ws.project / (plan.relpath or plan.file_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(plan.notebook_text())
    source = _with_expected_errors(plan, ws, target)
    out_dir = ws.base / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / plan.file_name
    runs_file = ws.base / RUNS_FILE
    options.say(
        f"nbtrack replay: executing {plan.relpath or plan.file_name} with papermill (kernel {kernel.name})"
    )
    executed: dict[str, Any] | None = None
    failed: ExecutionFailed | None = None
    try:
        executed = execute_notebook(
            source,
            output,
            parameters={**plan.injected, **options.parameters},
            cwd=_recorded_cwd(plan, ws, target.parent),
            kernel_name=kernel.name,
            env=kernel_environment(plan, runs_file),
            progress_bar=options.progress_bar,
            kernel_dirs=kernel.dirs,
            on_cell=options.on_progress,
            announce_as=target if source != target else None,
        )
    except ExecutionFailed as exc:
        failed = exc
    if executed is None and output.exists():
        executed = json.loads(output.read_text())
    history = plan.mode == "history"
    failure, expected, notes = read_outcome(executed, failed, history=history, saved=plan.recorded_notebook)
    for note in notes:
        options.say(f"nbtrack replay: {note}")
    return Execution(output, executed, failure, runs_file, expected, notes)


def _with_expected_errors(plan: ReplayPlan, ws: Workspace, target: Path) -> Path:
    """The notebook papermill executes: in notebook mode, the cells whose saved outputs hold an
    error are tagged to raise the same exception again, in a copy outside the project (the file in
    the project stays byte for byte the recorded one: git sees no change). History mode's cells
    were tagged when the history became a notebook."""
    from nbtrack.replay.notebooks import expect_recorded_errors

    if plan.mode != "notebook":
        return target
    nb = copy.deepcopy(plan.notebook)
    if not expect_recorded_errors(nb):
        return target
    prepared = ws.base / "in" / target.name
    prepared.parent.mkdir(parents=True, exist_ok=True)
    prepared.write_text(json.dumps(nb, indent=1))
    return prepared


def _recorded_cwd(plan: ReplayPlan, ws: Workspace, default: Path) -> Path:
    """The run's working folder, mapped into the workspace (the notebook's folder when unknown)."""
    recorded_cwd, recorded_root = plan.snapshot.run.get("cwd"), plan.snapshot.run.get("project_root")
    if not (recorded_cwd and recorded_root):
        return default
    try:
        candidate = ws.project / Path(recorded_cwd).relative_to(recorded_root)
    except ValueError:
        return default
    return candidate if candidate.is_dir() else default


def failure_info(output: Path, exc: Any) -> dict[str, Any]:
    """Which cell raised, from papermill's output notebook: its number among the notebook's code
    cells as the user numbers them (not papermill's index, which counts its injected-parameters
    cell, nor the output's, which has papermill's error banners), its first line, its exception.

    Example:
        >>> failure_info(Path("missing.ipynb"), KeyError("TOKEN"))["ename"]
        'KeyError'
    """
    try:
        nb = json.loads(output.read_text())
    except (OSError, ValueError):
        nb = None
    failure, _, _ = read_outcome(nb if isinstance(nb, dict) else None, exc)
    return failure or _bare_failure(exc)


def read_outcome(
    executed: dict[str, Any] | None, exc: Any, *, history: bool = False, saved: dict[str, Any] | None = None
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[str]]:
    """The failing cell (None when none), the expected errors and the notes, from the executed notebook.

    A cell tagged to raise (:func:`~nbtrack.replay.notebooks.expected_error`) that raised the
    expected type is an expected error; one that raised another type fails the replay; one that
    ran without raising is noted. Any other error fails it (the first one). Cells are numbered
    among the executed notebook's user cells; in ``history`` mode by the user's ``saved`` notebook
    (None when the cell is not in it). papermill stops at an error it did not expect; the ``exc`` it
    raised speaks only when no cell holds an error output (a kernel that died).

    Example:
        >>> read_outcome(None, None)
        (None, [], [])
    """
    from nbtrack.capture.history import user_code_cells

    if executed is None:
        return (None if exc is None else _bare_failure(exc)), [], []
    failure: dict[str, Any] | None = None
    expected: list[dict[str, Any]] = []
    notes: list[str] = []
    users = {id(cell): i for i, cell in enumerate(user_code_cells(executed), start=1)}
    for cell in executed.get("cells") or []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        # papermill's injected cell and the cells the replay added have no number of the user's
        number, row = _numbered(cell, users.get(id(cell)), history, saved)
        error = _error_output(cell)
        raises, expect = _expectation(cell)
        if error is None:
            if raises and expect and cell.get("execution_count") is not None:
                notes.append(f"{_where(number, row)} raised {expect} in the original run, not in the replay")
            continue
        ename, evalue = str(error.get("ename") or "Exception"), str(error.get("evalue") or "")
        if raises and expect in (None, ename):
            expected.append({"cell": number, "source_head": row["source_head"], "ename": ename})
        elif failure is None:
            failure = {**row, "cell": number, "ename": ename, "evalue": evalue}
            if raises:
                failure["expected"] = expect
                notes.append(f"{_where(number, row)} raised {ename} where the original raised {expect}")
    if failure is None and exc is not None and not expected:
        failure = _bare_failure(exc)  # papermill failed with no error in any cell (the kernel died)
    return failure, expected, notes


def _numbered(
    cell: dict[str, Any], position: int | None, history: bool, saved: dict[str, Any] | None
) -> tuple[int | None, dict[str, Any]]:
    """The cell's number as the user sees it, and the failure row's facts about it. A history cell
    is numbered by the user's saved notebook (by cell id, else source), and keeps its place in the
    history as ``history_cell``."""
    from nbtrack.capture.history import cell_text, first_line, user_cell_number

    source = cell_text(cell)
    row: dict[str, Any] = {"execution_count": cell.get("execution_count"), "source_head": first_line(source)}
    if not history or position is None:
        return position, row
    row["history_cell"] = position
    cell_id = ((cell.get("metadata") or {}).get("nbtrack") or {}).get("cell_id")
    return user_cell_number(saved, source=source, cell_id=cell_id), row


def _expectation(cell: dict[str, Any]) -> tuple[bool, str | None]:
    from nbtrack.replay.notebooks import expected_error

    return expected_error(cell)


def _error_output(cell: dict[str, Any]) -> dict[str, Any] | None:
    """The cell's error output; ``SystemExit`` with no code or 0 is no error (as papermill has it)."""
    for out in cell.get("outputs") or []:
        if out.get("output_type") != "error":
            continue
        if out.get("ename") == "SystemExit" and str(out.get("evalue") or "") in ("", "0"):
            continue
        return dict(out)
    return None


def _where(number: int | None, row: dict[str, Any]) -> str:
    if number is not None:
        return f"cell {number}"
    return f"the cell `{row['source_head'][:60]}`" if row.get("source_head") else "a cell"


def _bare_failure(exc: Any) -> dict[str, Any]:
    """What papermill said, when the notebook cannot tell which cell raised."""
    return {
        "cell": None,
        "execution_count": None,
        "source_head": None,
        "ename": getattr(exc, "ename", type(exc).__name__),
        "evalue": getattr(exc, "evalue", str(exc)),
    }
