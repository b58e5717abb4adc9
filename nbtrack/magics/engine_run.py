"""The kernel side of nbtrack's runners: papermill's ``nbtrack`` engine
(:class:`nbtrack.runner.NbtrackEngine`) and the panel's "Run All and Track" (``runall.ts``).

A runner calls :func:`begin` before the notebook's first cell and :func:`end` after its last (or
after the cell that failed), as hidden ``user_expressions`` of silent executions: no history, no
execution count, no cell output. Each returns a JSON string the runner reads back. This is the
runners' public contract with the kernel (neither reaches into the shell's attributes).
"""

from __future__ import annotations

import json
from typing import Any

from nbtrack import tags
from nbtrack.magics import stop_and_tell, track_magics

#: The tag saying which runner started a run that no ``%track start`` started.
STARTED_BY = tags.STARTED_BY


def _shell() -> Any:
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("nbtrack's engine calls need an IPython kernel")
    return shell


def begin(options: str) -> str:
    """Load nbtrack and start the run, as ``%track start`` would; a run already active (autotrack,
    an extension's) is kept, and ``started`` says it was not started here. ``options``: JSON of
    ``experiment``, ``name``, ``tags``, ``notebook`` (its path, as ``--notebook``), ``started_by``
    (the runner, tagged ``nbtrack.started_by``; default the papermill engine).

    Example:
        >>> begin('{"experiment": "churn"}')  # doctest: +SKIP
        '{"run_id": "0f3c…", "started": true}'
    """
    told: dict[str, Any] = json.loads(options) if options else {}
    magics = track_magics(_shell())
    active = magics.tracker.active
    if active is not None:
        return json.dumps({"run_id": active.run_id, "started": False})
    runner = str(told.get("started_by") or "papermill engine")
    tags = {STARTED_BY: runner, **{str(k): str(v) for k, v in (told.get("tags") or {}).items()}}
    magics.start_run(
        experiment=told.get("experiment"), name=told.get("name"), tags=tags, notebook=told.get("notebook")
    )
    started = magics.tracker.active
    return json.dumps({"run_id": started.run_id if started else None, "started": True})


def end(failed: bool | None, live: str | None = None) -> str:
    """End the active run: FAILED with the failing cell when the runner stopped at one, else
    FINISHED (as ``%track stop``); ``failed=None``: FAILED when the last cell the kernel ran raised
    (Run All in a live kernel, where the runner does not see the cells). ``live``: the marker of the
    editor content the frontend sent last, waited for (a few seconds at most) so that the run
    records it. Nothing to end (the notebook stopped it itself): status None.

    Example:
        >>> end(False)  # doctest: +SKIP
        '{"run_id": "0f3c…", "status": "FINISHED", "failure": null}'
    """
    from nbtrack.capture.history import failure_line

    magics = track_magics(_shell())
    tracker = magics.tracker
    if tracker.active is None:
        return json.dumps({"status": None})
    if live is not None:
        magics.frontend.wait_live(live)
    failure = tracker.failure()
    failed = failure is not None if failed is None else failed
    failure = failure if failed else None
    summary = stop_and_tell(tracker, magics.frontend, "FAILED" if failed else "FINISHED", failure=failure)
    line = failure_line(failure) if failure else None
    return json.dumps({"run_id": summary["run_id"], "status": summary["status"], "failure": line})
