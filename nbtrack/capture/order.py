"""Was the notebook executed in order? The saved notebook against the kernel's execution history.

Example:
    >>> from nbtrack.capture.history import ExecutedCell
    >>> nb = {"cells": [{"cell_type": "code", "source": "a = 1"}, {"cell_type": "code", "source": "b = a"}]}
    >>> ran = [ExecutedCell(1, "a = 1"), ExecutedCell(2, "b = a"), ExecutedCell(3, "b = a")]
    >>> check_execution(nb, ran).reasons
    ['code cell 2 ran again']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nbtrack.capture.history import ExecutedCell
from nbtrack.capture.nbfile import cell_source, code_cells, is_injected_parameters


@dataclass
class ExecutionCheck:
    """What :func:`check_execution` found: whether (and why) the run was out of order, the code
    cells (1-based) edited after they ran, and how many executed cells the notebook no longer has."""

    out_of_order: bool
    reasons: list[str]
    edited_after_execution: list[int]
    not_in_notebook: int


def _positions(cells: list[dict[str, Any]], executed: Sequence[ExecutedCell]) -> list[int | None]:
    """Each executed cell's index among the notebook's code cells (None: not in the notebook)."""
    by_id = {c.get("id"): i for i, c in enumerate(cells) if c.get("id")}
    sources = [cell_source(c) for c in cells]
    positions: list[int | None] = []
    last: int | None = None
    for ex in executed:
        pos = by_id.get(ex.cell_id) if ex.cell_id else None
        if pos is None:
            after = last + 1 if last is not None else 0
            pos = next((i for i in range(after, len(sources)) if sources[i] == ex.source), None)
            if pos is None:
                pos = next((i for i, s in enumerate(sources) if s == ex.source), None)
        positions.append(pos)
        last = pos if pos is not None else last
    return positions


def _last_full_pass(positions: list[int | None]) -> int:
    """Where the last top-to-bottom pass starts: the last run of code cell 1 followed by cells 2, 3,
    ... each once, none skipped, to the end of the history. 0 (the whole history) when there is no
    such pass, or unless everything before it is in the notebook:
    a deleted cell's effects could hide in the kernel's state, a re-run of cells still there cannot
    (short of cells that build on their own earlier results, which replay's verdict reveals)."""
    for start in range(len(positions) - 1, -1, -1):
        if positions[start] != 0:
            continue
        if positions[start:] == list(range(len(positions) - start)):
            return start if all(p is not None for p in positions[:start]) else 0
        return 0
    return 0


def check_execution(nb: dict[str, Any], executed: Sequence[ExecutedCell]) -> ExecutionCheck:
    """Compare the saved notebook with the kernel's history.

    Out of order means the history is not the notebook's code cells run once each, top to bottom:
    a cell ran before one above it, ran twice, or is no longer in the notebook. Then only the history
    reproduces the kernel's state (replay's ``--mode auto`` picks it). A complete top-to-bottom pass
    after earlier runs of the same cells ("Run All" again in one kernel) counts as in order.

    Example:
        >>> from nbtrack.capture.history import ExecutedCell
        >>> nb = {"cells": [{"cell_type": "code", "source": "a = 1", "execution_count": 1}]}
        >>> check_execution(nb, [ExecutedCell(1, "a = 2")]).edited_after_execution
        [1]
    """
    cells = code_cells(nb)
    sources = [cell_source(c) for c in cells]
    executed = [ex for ex in executed if not is_injected_parameters(ex.source)]
    positions = _positions(cells, executed)
    start = _last_full_pass(positions)
    reasons: list[str] = []
    seen: list[int] = []
    for pos in positions[start:]:
        if pos is None:
            continue
        if seen and pos <= seen[-1]:
            verb = "again" if pos == seen[-1] else f"after code cell {seen[-1] + 1}"
            reasons.append(f"code cell {pos + 1} ran {verb}")
        seen.append(pos)
    missing = sum(1 for pos in positions[start:] if pos is None)
    if missing:
        reasons.append(f"{missing} executed cell(s) are not in the saved notebook")
    return ExecutionCheck(bool(reasons), reasons[:20], _edited(cells, sources, executed), missing)


def _edited(cells: list[dict[str, Any]], sources: list[str], executed: Sequence[ExecutedCell]) -> list[int]:
    """Code cells (1-based) whose saved source is not what this kernel last ran for them.

    With cell ids (JupyterLab sends them), a cell is edited when the kernel last ran that cell with
    another source. Without (papermill, nbclient), the execution count is the link, and it is only
    evidence when it is this kernel's: a file whose counts come from another session (a published
    notebook run through papermill, whose injected cell shifts every count) shows count N on a cell
    while the kernel's count N ran *another* cell of the notebook. So a cell is edited when the source
    the kernel ran as its count is nowhere in the notebook any more.

    Example:
        >>> cells = [{"source": "a = 1", "execution_count": 2}, {"source": "b = 2", "execution_count": 1}]
        >>> _edited(cells, ["a = 1", "b = 2"], [ExecutedCell(1, "a = 1"), ExecutedCell(2, "b = 2")])
        []
        >>> _edited(cells, ["a = 1", "b = 2"], [ExecutedCell(1, "b = 1")])
        [2]
    """
    last_by_id = {ex.cell_id: ex.source for ex in executed if ex.cell_id}
    by_count: dict[Any, ExecutedCell] = {ex.execution_count: ex for ex in executed if ex.execution_count}
    present = set(sources)
    edited = []
    for i, cell in enumerate(cells):
        if cell.get("id") in last_by_id:
            if last_by_id[cell["id"]] != sources[i]:
                edited.append(i + 1)
            continue
        ran = by_count.get(cell.get("execution_count"))
        # (a count the kernel gave a cell with an id is another cell's: this one's id was not run)
        if ran is not None and ran.cell_id is None and ran.source not in present:
            edited.append(i + 1)
    return edited
