"""The replay's execution stage: the notebook placed in the workspace, run by papermill in a kernel.

The kernel is the current interpreter's (or the notebook's recorded kernelspec when this machine
has it), or one in a virtualenv rebuilt from the recorded pins (``--env recreate``,
:mod:`nbtrack.replay.venv`). It gets the replayer's whole configuration (``NBTRACK_CONFIG``) with
the store the original run is in, and ``NBTRACK_REPLAY``: the run it replays and the runs file
where its ``%track`` magics announce each run they start (:mod:`nbtrack.replay.judge` reads it).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtrack.errors import CannotReplay
from nbtrack.replay.plan import ReplayOptions, ReplayPlan
from nbtrack.replay.workspace import Workspace

__all__ = ["RUNS_FILE", "Execution", "Kernel", "execute", "kernel_environment", "pick_kernel"]

#: The file in the workspace's base folder (outside the project) where the kernel announces its runs.
RUNS_FILE = "runs.jsonl"
#: The tag of the markdown cells papermill adds to the output notebook of a failed execution.
_PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"


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
    #: Which cell raised and what (``cell``, ``execution_count``, ``source_head``, ``ename``, ``evalue``).
    failure: dict[str, Any] | None
    #: Where the kernel announced the runs it started.
    runs_file: Path


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
    out_dir = ws.base / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / plan.file_name
    runs_file = ws.base / RUNS_FILE
    options.say(
        f"nbtrack replay: executing {plan.relpath or plan.file_name} with papermill (kernel {kernel.name})"
    )
    executed: dict[str, Any] | None = None
    failure = None
    try:
        executed = execute_notebook(
            target,
            output,
            parameters={**plan.injected, **options.parameters},
            cwd=_recorded_cwd(plan, ws, target.parent),
            kernel_name=kernel.name,
            env=kernel_environment(plan, runs_file),
            progress_bar=options.progress_bar,
            kernel_dirs=kernel.dirs,
            on_cell=options.on_progress,
        )
    except ExecutionFailed as exc:
        failure = failure_info(output, exc)
    if executed is None and output.exists():
        executed = json.loads(output.read_text())
    return Execution(output, executed, failure, runs_file)


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
    """Which cell raised, from papermill's output notebook.

    Example:
        >>> failure_info(Path("missing.ipynb"), KeyError("TOKEN"))["ename"]
        'KeyError'
    """
    from nbtrack.capture.notebook import cell_source

    info: dict[str, Any] = {"cell": None, "execution_count": None, "source_head": None}
    info.update(ename=getattr(exc, "ename", type(exc).__name__), evalue=getattr(exc, "evalue", str(exc)))
    try:
        nb = json.loads(output.read_text())
    except (OSError, ValueError):
        return info
    index = getattr(exc, "cell_index", None)
    # papermill numbers the cells before it adds its two error markers (a banner on top, an anchor
    # before the failing cell) to the output notebook.
    cells = [
        c
        for c in nb.get("cells", [])
        if _PAPERMILL_ERROR_TAG not in (c.get("metadata") or {}).get("tags", [])
    ]
    if index is None or not 0 <= index < len(cells):
        return info
    cell = cells[index]
    source = cell_source(cell)
    info.update(
        cell=index + 1,
        execution_count=cell.get("execution_count"),
        source_head=next((line for line in source.splitlines() if line.strip()), ""),
    )
    return info
