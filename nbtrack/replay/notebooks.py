"""What a replay executes: the saved notebook or the kernel's execution history, made to track itself.

Pure functions over notebook JSON (no kernel, no store): :func:`choose_mode` picks between the
saved notebook and the history from the run's snapshot, :func:`history_to_notebook` turns the
history into a notebook papermill can run, :func:`ensure_tracked` wraps code that never starts a
tracked run in ``%track start`` / ``%track stop``.
"""

from __future__ import annotations

import re
from typing import Any

from nbtrack.errors import CannotReplay, UsageError
from nbtrack.models import Snapshot
from nbtrack.replay.result import MODES

__all__ = ["choose_mode", "ensure_tracked", "history_to_notebook"]

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


def _cell(source: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": tags} if tags else {},
        "outputs": [],
        "source": source,
    }


def history_to_notebook(
    history: dict[str, Any], parameters_source: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The execution history as a notebook papermill can run, and the values papermill injected then.

    papermill's injected-parameters cells are dropped (their values are returned, to be injected
    again after the ``parameters`` cell, where overrides can win); the cell whose code is the
    notebook's ``parameters`` cell is tagged so. A history ending inside a tracked run gets its
    ``%track stop``.

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
        tags = None
        if not tagged and parameters_source is not None and source == parameters_source:
            tags, tagged = ["parameters"], True
        cells.append(_cell(source, tags))
    code = "\n".join(cell_source(c) for c in cells)
    starts = [m.start() for m in _TRACK_START.finditer(code)]
    stops = [m.start() for m in _TRACK_STOP.finditer(code)]
    if starts and not (stops and stops[-1] > starts[-1]) and not code[starts[-1] :].lstrip().startswith("%%"):
        cells.append(_cell("%track stop"))
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
    nb["cells"] = [_cell("%load_ext nbtrack\n%track start"), *nb["cells"], _cell("%track stop")]
    return True
