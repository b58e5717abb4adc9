"""Ending the run a kernel leaves behind: at kernel exit, FAILED when its last cell raised.

papermill and nbclient stop at the first cell that raises, so the notebook's ``%track stop`` never
runs; a JupyterLab user shuts a kernel down, restarts it or closes the notebook without it. MLflow's
own exit handler would then end the run FINISHED, without the end snapshot. :func:`register`
installs nbtrack's handler after ``%track start`` imported MLflow; it ends the run first, with the
end snapshot (notebook, history, parameters) like ``%track stop``, and the status:

* ``FAILED`` when the last cell the kernel finished after ``%track start`` raised; the snapshot's
  ``run.failure`` and the ``nbtrack.failure`` tag name that cell (its number among the notebook's
  code cells, its first line) and the exception;
* ``FINISHED`` otherwise (an error that a later cell got past does not fail the run).

Either way the snapshot's ``run.ended_by`` is ``kernel exit``. A kernel killed outright (SIGKILL, the
OOM killer) runs no handler: its run stays RUNNING until the next look ends it ``KILLED``
(:mod:`nbtrack.store.orphans`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from nbtrack.track.tracker import Tracker

__all__ = ["ENDED_BY", "end_at_exit", "register"]

log = logging.getLogger("nbtrack.magics.exit")

#: The snapshot's ``run.ended_by`` for a run ended by the handler.
ENDED_BY = "kernel exit"

#: ``stop(status, failure=..., ended_by=...)``: ends the active run (and tells the panel).
Stop = Callable[..., Any]


def register(tracker: Tracker, stop: Stop) -> None:
    """Run :func:`end_at_exit` when the interpreter shuts down; call once per tracker, after MLflow's
    import.

    The handler goes on the hooks the interpreter runs before it joins threads (where
    ``concurrent.futures``, which the end capture uses, still takes work, and before every
    :mod:`atexit` handler, MLflow's included); plain :mod:`atexit` where Python lacks them (there
    it still runs before MLflow's: atexit is last in, first out).

    Example:
        >>> register(tracker, lambda status, **kw: tracker.stop(status, **kw))  # doctest: +SKIP
    """

    def handler() -> None:
        end_at_exit(tracker, stop)

    early = getattr(threading, "_register_atexit", None)
    if early is not None:
        try:
            early(handler)
            return
        except RuntimeError:  # already shutting down
            pass
    atexit.register(handler)


def end_at_exit(tracker: Tracker, stop: Stop) -> None:
    """End the tracker's active run, if any: FAILED with the failing cell, else FINISHED.

    Never raises (the kernel is exiting: nobody could handle it); a failure is logged, and the run
    is then left to MLflow's handler.

    Example:
        >>> end_at_exit(Tracker(), lambda status, **kw: None)  # no active run: nothing to do
    """
    if tracker.active is None:
        return
    previous = _outlast_sigterm()
    try:
        failure = tracker.failure()
        stop("FAILED" if failure is not None else "FINISHED", failure=failure, ended_by=ENDED_BY)
    except Exception as exc:  # noqa: BLE001 - at exit, a traceback helps nobody
        log.warning("nbtrack: could not end run at kernel exit: %s", exc)
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signal.SIGTERM, previous)


def _outlast_sigterm() -> Any:
    """Let the end snapshot finish when the kernel manager sends SIGTERM halfway through its grace
    period (2.5 s after a shutdown request, by default); its SIGKILL still ends the process.
    Returns the handler to put back (None when none was replaced)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    # A Python handler, not SIG_IGN: processes started from here (the notebook signer) get the
    # default disposition back at exec.
    try:
        return signal.signal(signal.SIGTERM, _note_sigterm)
    except (ValueError, OSError):
        return None


def _note_sigterm(signum: int, frame: Any) -> None:
    log.info("nbtrack: SIGTERM while ending the run at kernel exit; finishing first")
