"""The kernel side of the JupyterLab panel: the ``nbtrack`` comm.

Protocol (comm target name ``nbtrack``; every message's data is a JSON object with a ``type``)::

    kernel opens the comm at `%load_ext nbtrack` (the frontend registered target "nbtrack"):
        {"type": "hello", "version": "<nbtrack version>", "tracking": bool, "run_id": str | null}

    frontend -> kernel
        {"type": "hello"}
            A frontend that loads after the comm was opened (page reload) finds it with
            comm_info_request(target_name="nbtrack"), attaches by id and says hello; the kernel
            answers with a kernel "hello" (same fields as the opening data).
        {"type": "path", "path": "<relative to the server root>", "abs_path": "<absolute path>"}
            Sent when the comm connects and whenever the notebook is renamed. The kernel keeps the
            latest; `%track start` uses it first to find the notebook (method "frontend"), when the
            file exists (only `--notebook PATH` comes before it).
        {"type": "live", "path": ..., "cell_id": "<id of the cell about to run>",
         "notebook": {nbformat-4 JSON of the notebook as in the editor}}
            Sent just before the execute_request of a cell, while the kernel says a run is active
            or when the cell's source contains %track / %%track. Comm messages are handled in
            order before the next execute_request, so at `%track stop` the kernel holds the
            editor's content as of that cell being scheduled. Only the latest is kept. It is
            recorded for a run (as nbtrack/notebook.live.ipynb, with the snapshot's notebook
            section saying how it differs from the saved file) when it arrived during the run
            (or for the cell that started it, e.g. a %%track cell) and its `path` resolves to
            the run's notebook: `path` is relative to the server root, which the kernel learns
            from the last "path" message (abs_path minus path).

    kernel -> frontend
        {"type": "state", "tracking": true, "run_id": "<id>"}
            at `%track start` (and `%%track`), once the run is open.
        {"type": "run_finished", "run_id": "<id>", "status": "FINISHED" | "FAILED",
         "notebook": "<absolute path>" | null}
            when a run ends: `%track stop`, the end of `%%track`, a `%track start` that ends the
            previous run, `%unload_ext`. The panel refreshes its list on it.

A frontend is *connected* once it sent ``hello`` or ``path``; then ``%track stop`` shows the
ipywidgets run card (the panel's JupyterLab has the widget manager), else the HTML/text card.

The handler is tolerant: unknown types and malformed messages are ignored (logged at debug level),
and nothing raises into the kernel. The comm is not opened in a kernel papermill runs (nbclient
logs a warning for every comm target it has no handler for, and no panel is there to listen);
elsewhere, opening it with no frontend listening costs one iopub message. A frontend without the
panel answers the comm_open with a comm_close; the kernel then forgets the comm (``%reload_ext
nbtrack`` opens a new one).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack import __version__
from nbtrack.capture.locate import nearest_ancestor, papermill_invocation

if TYPE_CHECKING:
    from nbtrack.capture.notebook import LiveNotebook
    from nbtrack.track.tracker import Tracker

log = logging.getLogger("nbtrack.magics.frontend")

#: The comm target the panel registers on each notebook's kernel.
TARGET = "nbtrack"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _in_kernel() -> bool:
    """True inside a running ipykernel (a terminal IPython has no frontend to talk to)."""
    kernelbase = sys.modules.get("ipykernel.kernelbase")
    return kernelbase is not None and bool(kernelbase.Kernel.initialized())


class Frontend:
    """The panel as the kernel sees it: the comm, the notebook's path and the editor's content.

    Example:
        >>> frontend = Frontend(tracker)  # doctest: +SKIP
        >>> frontend.open()  # doctest: +SKIP
        >>> frontend.notebook_path()  # after the panel sent "path"  # doctest: +SKIP
        PosixPath('/home/ana/churn/train.ipynb')
    """

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.comm: Any = None
        #: True once a frontend said ``hello`` or sent ``path`` over the comm.
        self.connected = False
        self.path: str | None = None
        self.abs_path: Path | None = None
        #: The latest ``live`` message (memory: only the latest is kept).
        self.live: LiveNotebook | None = None

    # --- the comm ----------------------------------------------------------------------------------
    def open(self) -> None:
        """Open the comm (announcing ``hello``) in a kernel, unless papermill runs it. Never raises."""
        if not _in_kernel() or papermill_invocation() is not None:
            return
        try:
            import comm  # already imported by ipykernel

            self.comm = comm.create_comm(target_name=TARGET, data=self._hello())
            self.comm.on_msg(self._on_msg)
            self.comm.on_close(self._on_close)
        except Exception as exc:  # a kernel without comm support: no panel, nothing lost
            log.debug("nbtrack: comm %r not opened: %s", TARGET, exc, exc_info=True)
            self.comm = None

    def close(self) -> None:
        """Close the comm (``%unload_ext``)."""
        comm, self.comm = self.comm, None
        if comm is not None:
            try:
                comm.close()
            except Exception as exc:
                log.debug("nbtrack: closing comm: %s", exc, exc_info=True)

    def _send(self, data: dict[str, Any]) -> None:
        if self.comm is None:
            return
        try:
            self.comm.send(data)
        except Exception as exc:  # the kernel is going away; the panel will refresh on reconnect
            log.debug("nbtrack: comm message %s not sent: %s", data.get("type"), exc, exc_info=True)

    def _on_close(self, msg: Any) -> None:
        self.comm = None
        self.connected = False

    # --- kernel -> frontend ------------------------------------------------------------------------
    def _hello(self) -> dict[str, Any]:
        active = self.tracker.active
        return {
            "type": "hello",
            "version": __version__,
            "tracking": active is not None,
            "run_id": active.run_id if active is not None else None,
        }

    def send_state(self, run_id: str) -> None:
        """A run is active (sent at ``%track start``)."""
        self._send({"type": "state", "tracking": True, "run_id": run_id})

    def send_run_finished(self, run_id: str, status: str, notebook: str | None) -> None:
        """A run ended; the panel refreshes its list."""
        self._send({"type": "run_finished", "run_id": run_id, "status": status, "notebook": notebook})

    # --- frontend -> kernel ------------------------------------------------------------------------
    def _on_msg(self, msg: Any) -> None:
        """Every message from the frontend; never raises into the kernel."""
        try:
            data = msg["content"]["data"]
            kind = data.get("type") if isinstance(data, dict) else None
            handlers = {"hello": self._on_hello, "path": self._on_path, "live": self._on_live}
            handler = handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                log.debug("nbtrack: ignored comm message of type %r", kind)
                return
            handler(data)
        except Exception as exc:
            log.debug("nbtrack: ignored malformed comm message: %s", exc, exc_info=True)

    def _on_hello(self, data: dict[str, Any]) -> None:
        self.connected = True
        self._send(self._hello())

    def _on_path(self, data: dict[str, Any]) -> None:
        path, abs_path = _str(data.get("path")), _str(data.get("abs_path"))
        if path is None and abs_path is None:
            log.debug("nbtrack: ignored path message without a path: %r", data)
            return
        self.connected = True
        self.path = path
        self.abs_path = Path(abs_path) if abs_path else None

    def _on_live(self, data: dict[str, Any]) -> None:
        path, notebook = _str(data.get("path")), data.get("notebook")
        if (
            path is None
            or not isinstance(notebook, dict)
            or not isinstance(notebook.get("cells"), list)
            or notebook.get("nbformat") != 4
        ):
            log.debug("nbtrack: ignored live message without a path or an nbformat-4 notebook")
            return
        from nbtrack.capture.notebook import LiveNotebook  # ~10 ms; not at %load_ext

        self.live = LiveNotebook(
            path=path,
            abs_path=self.resolve(path),
            cell_id=_str(data.get("cell_id")),
            notebook=notebook,
            cells_completed=self.tracker.cells_completed(),
        )

    # --- paths -------------------------------------------------------------------------------------
    def resolve(self, path: str) -> Path | None:
        """An absolute path for a path relative to the server root, as the frontend names them.

        The ``path`` message gives both forms, hence the server root; before one arrived, the root
        is the nearest folder above the kernel's cwd (a notebook's kernel starts in its folder)
        holding the file.
        """
        if path == self.path and self.abs_path is not None:
            return self.abs_path
        rel = path.lstrip("/")
        if self.path is not None and self.abs_path is not None:
            known = self.path.strip("/")
            text = self.abs_path.as_posix()
            if known and text.endswith("/" + known):
                return Path(text[: -len(known)]) / rel
        try:
            root = nearest_ancestor(Path(os.getcwd()), lambda f: (f / rel).is_file())
        except OSError:
            return None
        return root / rel if root is not None else None

    def notebook_path(self) -> Path | None:
        """The notebook's absolute path as the frontend last reported it, if it did."""
        if self.abs_path is not None:
            return self.abs_path
        return self.resolve(self.path) if self.path else None
