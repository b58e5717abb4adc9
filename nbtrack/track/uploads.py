"""The background upload of the runs this kernel ended, as the run card and the panel follow it.

Only runs bound for a tracking server are uploaded (they are written into the local spool first):
each one's state here is ``uploading`` (the server answered at start), ``pending`` (it did not: the
run waits in the spool) and, once the uploader is done with it, final (``uploaded`` or ``pending``
with the reason). The user is told once per outage that the server is unreachable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbtrack.store.tracking import Tracking

UploadState = dict[str, str]
Listener = Callable[[UploadState], None]


class Uploads:
    """Upload states of the runs ended in one kernel (run id -> state), and who waits for them.

    Example:
        >>> uploads = Uploads()
        >>> uploads.on_upload("0f3c", print)  # not a spooled run of this kernel: nothing to hear
        >>> uploads.states
        {}
    """

    def __init__(self) -> None:
        self.states: dict[str, UploadState] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self._lock = threading.Lock()
        #: Whether the user was told the server is unreachable (told once per outage).
        self._told_unreachable = False

    def outage_notice(self, tracking: Tracking, unreachable: str | None) -> str | None:
        """The one line the user reads when the server is down (once per outage), else None.

        Called by ``%track start`` on the kernel's main thread once the run is started (MLflow is
        imported by then): when the server answered, the spool's earlier pending runs are handed to
        the background uploader here, never from the probe's thread (see :mod:`nbtrack.store.sync`).
        """
        if not tracking.spooled:
            return None
        if unreachable is None:
            self._told_unreachable = False
            tracking.upload_pending()
            return None
        if self._told_unreachable:
            return None
        self._told_unreachable = True
        return tracking.outage_notice(unreachable)

    def hand_over(self, tracking: Tracking, run_id: str, unreachable: str | None) -> UploadState | None:
        """Start uploading an ended spool run in the background; returns its state (None when the
        run is not bound for a server)."""
        if not tracking.spooled:
            return None
        state = {
            "state": "pending" if unreachable else "uploading",
            "server": tracking.display_uri,
            "detail": unreachable or "",
        }
        self.states[run_id] = state

        def done(new_state: str, detail: str) -> None:
            final = {**state, "state": new_state, "detail": detail, "final": "true"}
            with self._lock:
                self.states[run_id] = final
                listeners = self._listeners.pop(run_id, [])
            for listener in listeners:
                listener(final)

        tracking.upload(run_id, done)
        return dict(state)

    def on_upload(self, run_id: str, listener: Listener) -> None:
        """Call ``listener(state)`` once the background upload of ``run_id`` is over (now, if it is)."""
        with self._lock:
            current = self.states.get(run_id)
            if current is None:
                return
            if not current.get("final"):
                self._listeners.setdefault(run_id, []).append(listener)
                return
        listener(current)
