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
        {"type": "live", "path": ..., "cell_id": "<id of the cell about to run>" | null,
         "pending": ["<ids of the cells scheduled and not finished>"],
         "notebook": {nbformat-4 JSON of the notebook as in the editor}}
            Sent just before the execute_request of a cell, while the kernel says a run is active
            or when the cell's source contains %track / %%track; and once when the comm opens
            (cell_id null: in a fresh kernel, Run All scheduled every cell before the comm
            existed, so `pending` holds them all). Only the latest is kept. It is recorded for a
            run (as nbtrack/notebook.live.ipynb, with the snapshot's notebook section saying how
            it differs from the saved file) when it arrived during the run, or *covers* a cell
            of the run (is that cell's `cell_id`, or lists it in `pending`: the editor's content
            as of that cell being scheduled), and its `path` resolves to the run's notebook:
            `path` is relative to the server root, which the kernel learns from the last "path"
            message (abs_path minus path).

    kernel -> frontend
        {"type": "state", "tracking": true, "run_id": "<id>"}
            at `%track start` (and `%%track`), once the run is open.
        {"type": "run_finished", "run_id": "<id>", "status": "FINISHED" | "FAILED",
         "notebook": "<absolute path>" | null}
            when a run ends: `%track stop`, the end of `%%track`, a `%track start` that ends the
            previous run, `%unload_ext`. The panel refreshes its list on it.

A frontend is *connected* once it sent ``hello``, ``path`` or ``live``; then ``%track stop`` shows the
ipywidgets run card (the panel's JupyterLab has the widget manager), else the HTML/text card.

Ordering. A kernel runs one shell message at a time, so a comm message queued behind Run All's
execute_requests would reach the kernel only after the last cell: too late for ``%track stop``.
JupyterLab (4.4+) sends comm messages over a kernel *subshell* (JEP 91; ipykernel 7) once the comm's
subshell is up, and a subshell's messages are handled in its own thread while the main shell runs
cells. So the panel answers the comm's opening (during ``%load_ext nbtrack``) with the path and the
editor's content as soon as that subshell is up, and a cell that ends a run (``%track stop``, a
``%%track`` cell) first waits, at most :data:`LIVE_WAIT_SECONDS`, for content that covers it: when a
frontend is connected, or while the comm is younger than that bound (the panel's first answer may be
under way). ipykernel 7.4 routes a comm's incoming messages to the subshell that last *sent* on it
(for a cell awaiting a widget's reply); nbtrack never awaits replies, so its comm keeps the
frontend's choice of subshell. Without subshells (older kernels, or Lab's "Kernel Comms over
subshells" setting disabled) the first Run All's answer still queues behind the cells: the wait
ends at its bound and the run says why it has no live content.

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
import re
import sys
import threading
import time
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
#: At most this long, a cell that ends a run waits for the editor's content covering it (seconds).
LIVE_WAIT_SECONDS = 2.0
_TRACK_MAGIC = re.compile(r"^\s*%{1,2}track\b", re.MULTILINE)
_CELL_MAGIC = re.compile(r"^\s*%%track\b")


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
        # Live content may arrive on a subshell's thread while a cell waits for it.
        self._arrived = threading.Condition()
        self._opened_at: float | None = None
        self._hooked: Any = None
        #: The cell running now (its id) and the cells completed when it started.
        self._current: tuple[str, int] | None = None

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
            return
        if hasattr(self.comm, "_reply_subshell_for"):
            # ipykernel 7.4 sends a comm's incoming messages to the subshell that last sent on it;
            # keep the frontend's choice instead (see the module docstring, "Ordering").
            self.comm._reply_subshell_for = lambda data, default: default
        self._opened_at = time.monotonic()
        self._hook(True)

    def close(self) -> None:
        """Close the comm (``%unload_ext``)."""
        comm, self.comm = self.comm, None
        self._hook(False)
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
        path, notebook, pending = _str(data.get("path")), data.get("notebook"), data.get("pending")
        if (
            path is None
            or not isinstance(notebook, dict)
            or not isinstance(notebook.get("cells"), list)
            or notebook.get("nbformat") != 4
        ):
            log.debug("nbtrack: ignored live message without a path or an nbformat-4 notebook")
            return
        from nbtrack.capture.notebook import LiveNotebook  # ~10 ms; not at %load_ext

        live = LiveNotebook(
            path=path,
            abs_path=self.resolve(path),
            cell_id=_str(data.get("cell_id")),
            notebook=notebook,
            cells_completed=self.tracker.cells_completed(),
            pending=frozenset(p for p in pending if isinstance(p, str) and p)
            if isinstance(pending, list)
            else frozenset(),
        )
        if isinstance(pending, list):
            # Over a subshell, when it arrives says nothing: it counts from the cells it covers
            # (restamped as each starts), or from the running cell's start if it covers that one.
            current = self._current
            live.cells_completed = current[1] if current is not None and live.covers(current[0]) else -1
        with self._arrived:
            self.connected = True
            self.live = live
            self._arrived.notify_all()

    # --- before each cell: the live content a run-ending cell needs ----------------------------------
    def _hook(self, on: bool) -> None:
        events = getattr(self.tracker.shell, "events", None)
        try:
            if on and events is not None and self._hooked is None:
                events.register("pre_run_cell", self._before_cell)
                self._hooked = events
            elif not on and self._hooked is not None:
                self._hooked.unregister("pre_run_cell", self._before_cell)
                self._hooked = None
        except Exception as exc:  # a shell without events: no waiting, live content as it comes
            log.debug("nbtrack: pre_run_cell hook: %s", exc, exc_info=True)

    def _before_cell(self, info: Any) -> None:
        """Before a cell: restamp live content that covers it; a run-ending cell waits for it.

        Content covering the cell is the editor's as of the cell being scheduled, which is what
        it would be had it arrived in order just before the cell: so it counts from now.
        """
        cell_id = _str(getattr(info, "cell_id", None))
        self._current = None if cell_id is None else (cell_id, self.tracker.cells_completed())
        if cell_id is None:
            return
        if self._awaits_live(str(getattr(info, "raw_cell", "") or "")):
            self.wait_live(cell_id)
        live = self.live
        if live is not None and live.covers(cell_id):
            live.cells_completed = max(live.cells_completed, self.tracker.cells_completed())

    def _awaits_live(self, source: str) -> bool:
        """Whether this cell ends a run (``%track stop``, a ``%%track`` cell) with a panel that may
        still be sending the editor's content."""
        if self.comm is None or not _TRACK_MAGIC.search(source):
            return False
        if self.tracker.active is None and not _CELL_MAGIC.match(source):
            return False
        opened = self._opened_at
        return self.connected or (opened is not None and time.monotonic() - opened < LIVE_WAIT_SECONDS)

    def wait_live(self, cell_id: str, timeout: float = LIVE_WAIT_SECONDS) -> bool:
        """Wait until live content covering ``cell_id`` arrived (at most ``timeout`` seconds, less
        while no frontend has answered yet: until the comm is ``timeout`` old). True if it did.

        Example:
            >>> frontend.wait_live("c4")  # doctest: +SKIP
            True
        """
        deadline = time.monotonic() + timeout
        if not self.connected and self._opened_at is not None:
            deadline = min(deadline, self._opened_at + timeout)
        started = time.monotonic()
        with self._arrived:
            while not (self.live is not None and self.live.covers(cell_id)):
                left = deadline - time.monotonic()
                if left <= 0:
                    log.info("nbtrack: no editor content for cell %s within %.1f s", cell_id, timeout)
                    return False
                self._arrived.wait(left)
        log.debug("nbtrack: live content for cell %s after %.3f s", cell_id, time.monotonic() - started)
        return True

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
