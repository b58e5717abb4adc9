"""The papermill adapter: execute a notebook headlessly in a fresh kernel.

The kernel is told, through its environment, which notebook it runs (``NBTRACK_PAPERMILL``), so
``%track start`` inside it records the right path; nbtrack's own ``os.environ`` is left untouched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nbtrack.errors import NotebookError

#: ``on_cell(done, total)`` after each executed cell.
CellCallback = Callable[[int, int], None]
_ENGINE = "nbtrack"


def _kernel_manager_class(extra_env: dict[str, str], kernel_dirs: Sequence[Path] = ()) -> type:
    """A kernel manager that adds ``extra_env`` to the kernel's environment only.

    ``kernel_dirs`` are searched for kernelspecs before Jupyter's own folders (a replay's
    recreated environment registers its kernel there, not in the user's Jupyter folders).
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager  # with papermill, only when executing
    from traitlets import default

    class _EnvKernelManager(AsyncKernelManager):  # type: ignore[misc]
        @default("kernel_spec_manager")  # type: ignore[untyped-decorator]
        def _kernel_spec_manager_default(self) -> KernelSpecManager:
            manager = KernelSpecManager(data_dir=self.data_dir)
            manager.kernel_dirs = [str(d) for d in kernel_dirs] + list(manager.kernel_dirs)
            return manager

        # ``start_kernel`` is what nbclient calls; the base class binds it to its own
        # ``_async_start_kernel`` at class creation, so that is the method to override.
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw["env"] = {**(kw.get("env") or os.environ), **extra_env}
            await super().start_kernel(**kw)

    return _EnvKernelManager


def _register_engine() -> None:
    """papermill's nbclient engine, reporting each finished cell to an ``on_cell`` callback."""
    from papermill.engines import NBClientEngine, papermill_engines

    if _ENGINE in papermill_engines._engines:
        return

    class _ProgressEngine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            on_cell: CellCallback | None = kwargs.pop("on_cell", None)
            if on_cell is not None:
                complete = nb_man.cell_complete
                total = len(nb_man.nb.cells)
                done = [0]

                def cell_complete(cell: Any, cell_index: int | None = None, **kw: Any) -> Any:
                    result = complete(cell, cell_index=cell_index, **kw)
                    done[0] += 1
                    on_cell(done[0], total)
                    return result

                nb_man.cell_complete = cell_complete
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(_ENGINE, _ProgressEngine)


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
    kernel_dirs: Sequence[Path] = (),
    on_cell: CellCallback | None = None,
    announce_as: Path | None = None,
) -> dict[str, Any]:
    """Execute ``input_path`` with papermill, writing ``output_path``; returns the executed notebook.

    ``on_cell(done, total)`` is called after each cell (the replay's progress); ``kernel_dirs``
    are extra kernelspec folders searched first. ``announce_as`` is the notebook the kernel is told
    it runs, when papermill is given a prepared copy of it (a replay's, with cells tagged).

    Raises:
        ExecutionFailed: a cell raised (the output notebook is still written, with the error).

    Example:
        >>> execute_notebook(Path("a.ipynb"), Path("out.ipynb"), parameters={"alpha": 0.1})  # doctest: +SKIP
    """
    import papermill  # 1.5-2.5 s to import; only when a notebook is executed
    from papermill.exceptions import PapermillExecutionError

    _register_engine()

    input_path = input_path.resolve()
    announced = (announce_as or input_path).resolve()
    announce = {"input_path": str(announced), "output_path": str(output_path.resolve()), "runner": "nbtrack"}
    extra_env = {"NBTRACK_PAPERMILL": json.dumps(announce), **(env or {})}
    try:
        nb = papermill.execute_notebook(
            str(input_path),
            str(output_path),
            parameters=parameters or {},
            cwd=str(cwd or announced.parent),
            kernel_name=kernel_name,
            progress_bar=progress_bar,
            start_timeout=start_timeout,
            kernel_manager_class=_kernel_manager_class(extra_env, kernel_dirs),
            engine_name=_ENGINE,
            on_cell=on_cell,
        )
    except PapermillExecutionError as exc:
        raise ExecutionFailed(
            f"cell {exc.cell_index} of {announced.name} raised {exc.ename}: {exc.evalue}",
            cell_index=exc.cell_index,
            ename=exc.ename,
            evalue=exc.evalue,
        ) from exc
    return dict(nb)
