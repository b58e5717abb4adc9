"""What a replay executes: the saved notebook or the kernel's execution history, made to track itself.

Pure functions over notebook JSON (no kernel, no store): :func:`choose_mode` picks between the
saved notebook and the history from the run's snapshot, :func:`history_to_notebook` turns the
history into a notebook papermill can run, :func:`ensure_tracked` wraps code that never starts a
tracked run in ``%track start`` / ``%track stop``.
"""

from __future__ import annotations

import re
from typing import Any

from nbtrack.capture.history import failure_line
from nbtrack.errors import CannotReplay, UsageError
from nbtrack.models import Snapshot
from nbtrack.replay.result import MODES

__all__ = [
    "RAISES",
    "choose_mode",
    "ensure_tracked",
    "expect_recorded_errors",
    "expected_error",
    "history_to_notebook",
]

# A line that starts a tracked run: `%track start ...` or a `%%track` cell.
_TRACK_START = re.compile(r"^\s*(%track\s+start\b|%%track\b)", re.MULTILINE)
_TRACK_STOP = re.compile(r"^\s*%track\s+stop\b", re.MULTILINE)


def choose_mode(snap: Snapshot, requested: str) -> tuple[str, str]:
    """``notebook`` or ``history``, and why (said to the user and kept in the result).

    Raises:
        UsageError: ``requested`` is not one of :data:`~nbtrack.replay.result.MODES`.
        CannotReplay: ``notebook`` was requested and the run's saved notebook was not recorded.

    Example:
        >>> from nbtrack.models import Section
        >>> section = Section("notebook", "ok", None, {"stored": True, "out_of_order": False})
        >>> choose_mode(Snapshot(sections={"notebook": section}), "auto")
        ('notebook', 'the run was executed top to bottom, so the saved notebook reproduces it')
    """
    if requested not in MODES:
        raise UsageError(f"--mode {requested!r}: use one of {', '.join(MODES)}")
    nb = snap.section("notebook")
    data = nb.data if nb.status == "ok" else {}
    stored = bool(data.get("stored"))
    failure = snap.run.get("failure")
    if requested == "auto" and isinstance(failure, dict):
        # papermill and nbclient stop at the failing cell: the history holds what ran, and ends there.
        return "history", f"the run failed: {failure_line(failure)}; its execution history holds what ran"
    if requested == "notebook":
        if not stored:
            raise CannotReplay(
                "the run's saved notebook was not recorded "
                f"({data.get('stored_reason') or data.get('reason') or nb.reason}); "
                "replay with --mode history"
            )
        return "notebook", "requested with --mode notebook"
    if requested == "history":
        return "history", "requested with --mode history"
    if not stored:
        why = data.get("stored_reason") or data.get("reason") or nb.reason or "not recorded"
        return "history", f"the saved notebook was not recorded ({why})"
    if data.get("out_of_order"):
        reasons = "; ".join((data.get("out_of_order_reasons") or [])[:3])
        return "history", f"the run was executed out of order ({reasons}): its execution history produced it"
    if data.get("edited_after_execution"):
        cells = ", ".join(str(c) for c in data["edited_after_execution"])
        return "history", f"code cells {cells} were edited after they ran: the history holds what ran"
    return "notebook", "the run was executed top to bottom, so the saved notebook reproduces it"


#: The tag nbclient (and so papermill) honours: the cell may raise without stopping the execution.
RAISES = "raises-exception"


def _cell(
    source: str, tags: list[str] | None = None, nbtrack: dict[str, Any] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if tags:
        metadata["tags"] = tags
    if nbtrack:
        metadata["nbtrack"] = nbtrack
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": metadata,
        "outputs": [],
        "source": source,
    }


def _added(source: str) -> dict[str, Any]:
    """A cell the replay adds: not the user's (the user's cell numbers skip it)."""
    return _cell(source, nbtrack={"added": True})


def expected_error(cell: dict[str, Any]) -> tuple[bool, str | None]:
    """Whether the cell is expected to raise, and the exception type expected (None: any type).

    A cell the replay tagged carries the type the original raised (``metadata.nbtrack.expect``);
    a cell its author tagged ``raises-exception`` may raise anything.

    Example:
        >>> expected_error({"metadata": {"tags": [RAISES], "nbtrack": {"expect": "KeyError"}}})
        (True, 'KeyError')
    """
    meta = cell.get("metadata") or {}
    if RAISES not in (meta.get("tags") or []):
        return False, None
    expect = (meta.get("nbtrack") or {}).get("expect")
    return True, str(expect) if expect else None


def expect_recorded_errors(nb: dict[str, Any]) -> int:
    """Tag the code cells whose saved outputs hold an error ``raises-exception``, expecting the same
    exception type; returns how many were tagged (``nb`` is changed in place).

    Example:
        >>> error = {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "", "traceback": []}
        >>> nb = {"cells": [{"cell_type": "code", "source": "1/0", "metadata": {}, "outputs": [error]}]}
        >>> expect_recorded_errors(nb), nb["cells"][0]["metadata"]
        (1, {'tags': ['raises-exception'], 'nbtrack': {'expect': 'ZeroDivisionError'}})
    """
    tagged = 0
    for cell in nb.get("cells") or []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        error = next((o for o in cell.get("outputs") or [] if o.get("output_type") == "error"), None)
        if error is None or expected_error(cell)[0]:
            continue
        meta = cell.setdefault("metadata", {})
        meta["tags"] = [*(meta.get("tags") or []), RAISES]
        meta["nbtrack"] = {**(meta.get("nbtrack") or {}), "expect": str(error.get("ename") or "")}
        tagged += 1
    return tagged


def history_to_notebook(
    history: dict[str, Any], parameters_source: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The execution history as a notebook papermill can run, and the values papermill injected then.

    papermill's injected-parameters cells are dropped (their values are returned, to be injected
    again after the ``parameters`` cell, where overrides can win); the cell whose code is the
    notebook's ``parameters`` cell is tagged so. A cell that raised then is expected to raise the
    same exception type again: tagged ``raises-exception``, the type in ``metadata.nbtrack.expect``.
    A history ending inside a tracked run gets its ``%track stop``, unless its last cell raised
    (the run failed there: the replay's run ends as the original did, at the kernel's exit).

    Example:
        >>> history = {"cells": [{"cell_type": "code", "source": "%track start"}, {"cell_type": "code",
        ...     "source": "# Parameters\\nseed = 3"}, {"cell_type": "code", "source": "x = seed"}]}
        >>> nb, injected = history_to_notebook(history, None)
        >>> [c["source"] for c in nb["cells"]], injected
        (['%track start', 'x = seed', '%track stop'], {'seed': 3})
    """
    from nbtrack.capture.notebook import cell_source, code_cells, is_injected_parameters
    from nbtrack.capture.parameters import parse_assignments

    cells: list[dict[str, Any]] = []
    injected: dict[str, Any] = {}
    tagged = False
    for cell in code_cells(history):
        source = cell_source(cell)
        if is_injected_parameters(source):
            injected.update(parse_assignments(source))
            continue
        tags = []
        if not tagged and parameters_source is not None and source == parameters_source:
            tags, tagged = ["parameters"], True
        ran = (cell.get("metadata") or {}).get("nbtrack") or {}
        meta = {"cell_id": ran["cell_id"]} if ran.get("cell_id") else {}
        if ran.get("status") == "error":
            tags.append(RAISES)
            meta["expect"] = str(ran.get("error") or "")
        cells.append(_cell(source, tags, meta))
    code = "\n".join(cell_source(c) for c in cells)
    starts = [m.start() for m in _TRACK_START.finditer(code)]
    stops = [m.start() for m in _TRACK_STOP.finditer(code)]
    failed_last = bool(cells) and RAISES in cells[-1]["metadata"].get("tags", [])
    if (
        starts
        and not (stops and stops[-1] > starts[-1])
        and not code[starts[-1] :].lstrip().startswith("%%")
        and not failed_last
    ):
        cells.append(_added("%track stop"))
    nb = {
        "cells": cells,
        "metadata": {k: v for k, v in (history.get("metadata") or {}).items() if k != "nbtrack"},
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    return nb, injected


def ensure_tracked(nb: dict[str, Any]) -> bool:
    """Make the notebook track itself when its code never starts a run; True when cells were added.

    Example:
        >>> nb = {"cells": [{"cell_type": "code", "source": "x = 1"}]}
        >>> ensure_tracked(nb), [c["source"] for c in nb["cells"]]
        (True, ['%load_ext nbtrack\\n%track start', 'x = 1', '%track stop'])
    """
    from nbtrack.capture.notebook import cell_source, code_cells

    code = "\n".join(cell_source(c) for c in code_cells(nb))
    if _TRACK_START.search(code):
        return False
    nb["cells"] = [_added("%load_ext nbtrack\n%track start"), *nb["cells"], _added("%track stop")]
    return True
