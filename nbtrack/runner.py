"""The papermill adapter: execute a notebook headlessly in a fresh kernel.

The kernel is told, through its environment, which notebook it runs (``NBTRACK_PAPERMILL``), so
``%track start`` inside it records the right path; nbtrack's own ``os.environ`` is left untouched.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import os
import re
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


#: The kernel-side calls the engine makes, hidden (``silent``: no history, no execution count,
#: no output in any cell); each returns a JSON string (:mod:`nbtrack.magics.engine_run`).
_BEGIN = "__import__('nbtrack.magics.engine_run', fromlist=['begin']).begin({options!r})"
_END = "__import__('nbtrack.magics.engine_run', fromlist=['end']).end({failed!r})"
# A notebook that starts its own runs: `%track start`, `%%track`, or the magics called by name.
_TRACKS_ITSELF = re.compile(
    r"^\s*(%track\s+start\b|%%track\b)|run_line_magic\(\s*['\"]track['\"]\s*,\s*['\"]\s*start"
    r"|run_cell_magic\(\s*['\"]track['\"]",
    re.MULTILINE,
)


class TrackingFailed(NotebookError):
    """The engine could not start or end the notebook's run in its kernel."""


def tracks_itself(nb: Any) -> bool:
    """Whether a notebook starts its own runs (then the engine starts none: no double runs).

    Example:
        >>> tracks_itself({"cells": [{"cell_type": "code", "source": "%track start -e x"}]})
        True
        >>> tracks_itself({"cells": [{"cell_type": "code", "source": ["x = 1\n", "%track stop"]}]})
        False
    """
    for cell in nb.get("cells") or []:
        source = cell.get("source") or ""
        text = source if isinstance(source, str) else "".join(source)
        if cell.get("cell_type") == "code" and _TRACKS_ITSELF.search(text):
            return True
    return False


def _expression_value(reply: Any) -> dict[str, Any]:
    """The JSON a hidden call returned, from the kernel's ``execute_reply``."""
    content = (reply or {}).get("content") or {}
    value = (content.get("user_expressions") or {}).get("nbtrack") or {}
    if value.get("status") != "ok":
        why = f"{value.get('ename', 'no reply')}: {value.get('evalue', content.get('evalue', ''))}"
        raise TrackingFailed(
            f"nbtrack's engine could not track the run in the kernel ({' '.join(why.split())}); nbtrack "
            "must be installed where the kernel runs (or use papermill's default engine)"
        )
    found: dict[str, Any] = json.loads(ast.literal_eval(value["data"]["text/plain"]))
    return found


@functools.cache
def _tracking_client() -> type:
    """papermill's notebook client, with the run started before the first cell and ended after
    the last one (or after the cell that failed), through hidden calls in the kernel."""
    from papermill.clientwrap import PapermillNotebookClient

    class _TrackingClient(PapermillNotebookClient):  # type: ignore[misc]
        nbtrack_options: dict[str, Any] | None = None
        nbtrack_result: dict[str, Any] | None = None

        def _hidden(self, expression: str) -> dict[str, Any]:
            msg_id = self.kc.execute(
                "", silent=True, store_history=False, user_expressions={"nbtrack": expression}
            )
            return _expression_value(self.wait_for_reply(msg_id))

        def papermill_execute_cells(self) -> None:
            options, result = self.nbtrack_options, self.nbtrack_result
            if options is None:
                super().papermill_execute_cells()
                return
            result = {} if result is None else result
            result.update(self._hidden(_BEGIN.format(options=json.dumps(options))))
            try:
                super().papermill_execute_cells()
            except Exception:
                # The kernel may be gone (it died) or still busy (a timeout): the run is ended there if
                # it can be, else by the kernel's exit handler. (An interrupt of this process waits
                # for nothing: the kernel's shutdown ends the run.)
                with contextlib.suppress(Exception):
                    result.update(self._hidden(_END.format(failed=True)))
                raise
            failed = bool((self.nb.metadata.get("papermill") or {}).get("exception"))
            result.update(self._hidden(_END.format(failed=failed)))

    return _TrackingClient


@functools.cache
def _engine_class() -> type:
    """papermill's nbclient engine with nbtrack's client, and ``on_cell`` progress."""
    from papermill.engines import NBClientEngine
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class _Engine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            on_cell: CellCallback | None = kwargs.pop("on_cell", None)
            track: Any = kwargs.pop("nbtrack_track", True)
            result: dict[str, Any] | None = kwargs.pop("nbtrack_result", None)
            if on_cell is not None:
                _report_cells(nb_man, on_cell)
            # As NBClientEngine does, with the tracking client.
            kwargs = remove_args(["input_path"], **kwargs)
            timeout = kwargs.pop("execution_timeout", None) or kwargs.get("timeout")
            safe = remove_args(["timeout", "startup_timeout"], **kwargs)
            safe["startup_timeout"] = safe.pop("start_timeout", 60)
            client = _tracking_client()(
                nb_man, **merge_kwargs(safe, timeout=timeout, kernel_name=kernel_name, log=logger)
            )
            if track is not False and not tracks_itself(nb_man.nb):
                client.nbtrack_options = track if isinstance(track, dict) else {}
                client.nbtrack_result = result
            return client.execute()

    return _Engine


def _report_cells(nb_man: Any, on_cell: CellCallback) -> None:
    """Call ``on_cell(done, total)`` after each cell papermill completes."""
    complete = nb_man.cell_complete
    total = len(nb_man.nb.cells)
    done = [0]

    def cell_complete(cell: Any, cell_index: int | None = None, **kw: Any) -> Any:
        outcome = complete(cell, cell_index=cell_index, **kw)
        done[0] += 1
        on_cell(done[0], total)
        return outcome

    nb_man.cell_complete = cell_complete


class NbtrackEngine:
    """papermill's ``nbtrack`` engine (entry point group ``papermill.engine``): executes like the
    default engine, and records the notebook as one tracked run.

    The run starts in the kernel before the first cell (``%load_ext nbtrack`` and a start, hidden:
    nothing is added to the notebook or its history) and ends after the last cell, FINISHED, or
    after the cell that raised, FAILED with that cell recorded. A notebook with its own
    ``%track start`` / ``%%track`` lines is left to them. Engine options (``papermill.execute_notebook``
    keyword arguments): ``nbtrack_track`` (False: no run; a dict: ``experiment``, ``name``,
    ``tags``), ``nbtrack_result`` (a dict filled with ``run_id``, ``status``, ``failure``), ``on_cell``.

    Example:
        $ papermill --engine nbtrack train.ipynb out.ipynb -p alpha 0.5
    """

    _class: type | None = None

    @classmethod
    def _engine(cls) -> Any:
        if cls._class is None:
            cls._class = _engine_class()  # papermill's classes: only when a notebook is executed
        return cls._class

    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, **kwargs: Any) -> Any:
        """papermill's engine interface: execute ``nb`` (tracked)."""
        return cls._engine().execute_notebook(nb, kernel_name, **kwargs)

    @classmethod
    def nb_kernel_name(cls, nb: Any, name: str | None = None) -> str:
        """papermill's engine interface: the kernel to run ``nb`` in."""
        return str(cls._engine().nb_kernel_name(nb, name))

    @classmethod
    def nb_language(cls, nb: Any, language: str | None = None) -> str:
        """papermill's engine interface: ``nb``'s language."""
        return str(cls._engine().nb_language(nb, language))


def _register_engine() -> None:
    """nbtrack's engine under its name, also where the package's entry point is not installed
    (a source checkout): the same class either way, so the two never clash."""
    from papermill.engines import papermill_engines

    papermill_engines.register(_ENGINE, NbtrackEngine)


class ExecutionFailed(NotebookError):
    """A cell raised while papermill executed the notebook; carries where and what."""

    def __init__(self, message: str, *, cell_index: int | None, ename: str, evalue: str) -> None:
        super().__init__(message)
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue

    @classmethod
    def of(cls, exc: Any, name: str) -> ExecutionFailed:
        """papermill's ``PapermillExecutionError`` for notebook ``name``."""
        message = f"cell {exc.cell_index} of {name} raised {exc.ename}: {exc.evalue}"
        return cls(message, cell_index=exc.cell_index, ename=exc.ename, evalue=exc.evalue)


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
    track: bool | dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Execute ``input_path`` with papermill, writing ``output_path``; returns the executed notebook.

    ``on_cell(done, total)`` is called after each cell (the replay's progress); ``kernel_dirs``
    are extra kernelspec folders searched first. ``announce_as`` is the notebook the kernel is told
    it runs, when papermill is given a prepared copy of it (a replay's, with cells tagged).

    ``track``: whether the engine records a notebook without ``%track start`` as one run (a dict:
    its ``experiment``, ``name``, ``tags``); None: in a replay's kernel only (``NBTRACK_REPLAY`` in
    ``env``). ``result`` gets the engine's ``run_id``, ``status``, ``failure`` (:class:`NbtrackEngine`).

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
            nbtrack_track=("NBTRACK_REPLAY" in extra_env) if track is None else track,
            nbtrack_result=result,
        )
    except PapermillExecutionError as exc:
        raise ExecutionFailed.of(exc, announced.name) from exc
    return dict(nb)
