"""Headless runs: a notebook executed by papermill with nbtrack's engine, recorded as one run with
no ``%track`` line in it (``nbtrack run``, sweeps' trials, the panel's clone).

The run is the same as an interactive one: the engine loads nbtrack in the kernel and starts the run
before the first cell (environment, git, data), and ends it after the last cell or the one that
raised (notebook, history, parameters, results); papermill's executed notebook, with its outputs and
injected parameters, is the run's ``notebook.ipynb``. The user's notebook is only read.
"""

from __future__ import annotations

import ast
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbtrack.config import NbtrackConfig, to_env
from nbtrack.errors import NotebookError, UsageError
from nbtrack.runner import CellCallback, ExecutionFailed, execute_notebook

__all__ = ["HeadlessRun", "check_inputs", "notebook_parameter_names", "run_notebook"]


@dataclass(frozen=True)
class HeadlessRun:
    """What one headless execution recorded.

    Example:
        >>> HeadlessRun("0f3c", "FINISHED", Path("/tmp/out.ipynb")).status
        'FINISHED'
    """

    #: The tracked run this execution recorded (None only if none was recorded).
    run_id: str | None
    #: ``FINISHED`` or ``FAILED``: the run's status as recorded.
    status: str
    #: papermill's executed notebook.
    output: Path
    #: One line when FAILED: ``cell 3 of nb.ipynb raised ValueError: ...``.
    error: str | None = None


def _read_notebook(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NotebookError(f"notebook {path} does not exist; give the path of an .ipynb file")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NotebookError(f"{path} is not a readable notebook ({exc}); give an .ipynb file") from exc
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{path} is not a Jupyter notebook (no cells); give an .ipynb file")
    return nb


def notebook_parameter_names(nb: dict[str, Any]) -> list[str] | None:
    """The names the ``parameters``-tagged cell assigns; None when there is no such cell, or it is
    not plain Python (a magic): then any name is accepted, as papermill does.

    Example:
        >>> cell = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "alpha = 0.1"}
        >>> notebook_parameter_names({"cells": [cell]})
        ['alpha']
    """
    for cell in nb.get("cells") or []:
        if "parameters" not in ((cell.get("metadata") or {}).get("tags") or []):
            continue
        source = cell.get("source") or ""
        try:
            tree = ast.parse(source if isinstance(source, str) else "".join(source))
        except SyntaxError:
            return None
        names: list[str] = []
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
        return names
    return None


def check_inputs(notebook: Path, parameters: dict[str, Any], env: str = "current") -> Path:
    """The notebook's absolute path, once it, its parameters and ``env`` are known to be usable.

    Raises:
        NotebookError: no such notebook, or not a notebook.
        UsageError: a parameter its ``parameters`` cell does not define; a bad ``env``.

    Example:
        >>> check_inputs(Path("train.ipynb"), {"alpha": 0.5})  # doctest: +SKIP
        PosixPath('/home/ana/churn/train.ipynb')
    """
    if env not in ("current", "recreate"):
        raise UsageError(f"--env {env}: give current or recreate")
    notebook = notebook.resolve()
    known = notebook_parameter_names(_read_notebook(notebook))
    unknown = sorted(set(parameters) - set(known)) if known is not None else []
    if unknown:
        raise UsageError(
            f"{notebook.name} has no parameter {', '.join(unknown)} in its `parameters` cell "
            f"(it has: {', '.join(known or []) or 'none'}); check the -p names"
        )
    return notebook


def _error_line(notebook: Path, told: str | None, exc: ExecutionFailed) -> str:
    """The failing cell on one line; the tracker's account counts cells as the user does (code
    cells, from 1), papermill's counts every cell from 0."""
    where = told.replace(" raised ", f" of {notebook.name} raised ", 1) if told else str(exc)
    return " ".join(where.split())


def run_notebook(
    notebook: Path,
    *,
    config: NbtrackConfig,
    parameters: dict[str, Any] | None = None,
    experiment: str | None = None,
    name: str | None = None,
    tags: dict[str, str] | None = None,
    env: str = "current",
    cwd: Path | None = None,
    output: Path | None = None,
    announce_as: Path | None = None,
    on_cell: CellCallback | None = None,
    kernel_name: str = "python3",
    kernel_dirs: Sequence[Path] = (),
) -> HeadlessRun:
    """Execute ``notebook`` with papermill and nbtrack's engine; records exactly one run.

    The run goes to the store ``config`` names, else the embedded store of the project of
    ``announce_as or notebook``. A cell that raises does not raise here: the run is FAILED, ``error``
    says which cell. ``output`` defaults to a new temporary folder (not the user's). For
    ``env="recreate"`` the caller builds the kernel (``kernel_name``, ``kernel_dirs``: ``nbtrack run``
    does). A notebook with its own ``%track start`` records its own runs (``run_id`` None).

    Raises:
        NotebookError: no such notebook, or not a notebook.
        UsageError: a parameter the notebook's ``parameters`` cell does not define; a bad ``env``.

    Example:
        >>> run = run_notebook(Path("nb.ipynb"), config=load_config(), parameters={"a": 1})  # doctest: +SKIP
        >>> run.status, run.run_id  # doctest: +SKIP
        ('FINISHED', '0f3c…')
    """
    notebook = check_inputs(notebook, parameters or {}, env)
    output = output or Path(tempfile.mkdtemp(prefix="nbtrack-run-")) / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)
    kernel_env = {**to_env(config), "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # no URL in cells
    track = {"experiment": experiment, "name": name, "tags": dict(tags or {})}
    result: dict[str, Any] = {}
    error = None
    try:
        execute_notebook(
            notebook,
            output,
            parameters=parameters,
            cwd=cwd,
            kernel_name=kernel_name,
            env=kernel_env,
            kernel_dirs=kernel_dirs,
            on_cell=on_cell,
            announce_as=announce_as,
            track=track,
            result=result,
        )
    except ExecutionFailed as exc:
        error = _error_line(notebook, result.get("failure"), exc)
    status = result.get("status") or ("FAILED" if error else "FINISHED")
    return HeadlessRun(result.get("run_id"), str(status), output, error)
