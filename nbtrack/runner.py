"""The papermill adapter: execute a notebook headlessly in a fresh kernel.

The kernel is told, through its environment, which notebook it runs (``NBTRACK_PAPERMILL``), so
``%track start`` inside it records the right path; nbtrack's own ``os.environ`` is left untouched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nbtrack.errors import NotebookError


def _kernel_manager_class(extra_env: dict[str, str]) -> type:
    """A kernel manager that adds ``extra_env`` to the kernel's environment only."""
    from jupyter_client.manager import AsyncKernelManager  # with papermill, only when executing

    class _EnvKernelManager(AsyncKernelManager):  # type: ignore[misc]
        # ``start_kernel`` is what nbclient calls; the base class binds it to its own
        # ``_async_start_kernel`` at class creation, so that is the method to override.
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw["env"] = {**(kw.get("env") or os.environ), **extra_env}
            await super().start_kernel(**kw)

    return _EnvKernelManager


class ExecutionFailed(NotebookError):
    """A cell raised while papermill executed the notebook; carries where and what."""

    def __init__(self, message: str, *, cell_index: int | None, ename: str, evalue: str) -> None:
        super().__init__(message)
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue


def execute_notebook(
    input_path: Path,
    output_path: Path,
    *,
    parameters: dict[str, Any] | None = None,
    cwd: Path | None = None,
    kernel_name: str = "python3",
    env: dict[str, str] | None = None,
    progress_bar: bool = False,
    start_timeout: int = 120,
) -> dict[str, Any]:
    """Execute ``input_path`` with papermill, writing ``output_path``; returns the executed notebook.

    Raises:
        ExecutionFailed: a cell raised (the output notebook is still written, with the error).

    Example:
        >>> execute_notebook(Path("a.ipynb"), Path("out.ipynb"), parameters={"alpha": 0.1})  # doctest: +SKIP
    """
    import papermill  # 1.5-2.5 s to import; only when a notebook is executed
    from papermill.exceptions import PapermillExecutionError

    input_path = input_path.resolve()
    announce = {"input_path": str(input_path), "output_path": str(output_path.resolve()), "runner": "nbtrack"}
    extra_env = {"NBTRACK_PAPERMILL": json.dumps(announce), **(env or {})}
    try:
        nb = papermill.execute_notebook(
            str(input_path),
            str(output_path),
            parameters=parameters or {},
            cwd=str(cwd or input_path.parent),
            kernel_name=kernel_name,
            progress_bar=progress_bar,
            start_timeout=start_timeout,
            kernel_manager_class=_kernel_manager_class(extra_env),
        )
    except PapermillExecutionError as exc:
        raise ExecutionFailed(
            f"cell {exc.cell_index} of {input_path.name} raised {exc.ename}: {exc.evalue}",
            cell_index=exc.cell_index,
            ename=exc.ename,
            evalue=exc.evalue,
        ) from exc
    return dict(nb)
