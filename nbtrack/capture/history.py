"""The kernel's execution history: every executed cell's code, count, start, duration and outcome.

:class:`ExecutionHistory` is registered on IPython's ``pre_run_cell``/``post_run_cell`` events by
``%load_ext nbtrack``. The hooks run on every cell of the user's session, so they only append a
tuple to a bounded deque (a few hundred nanoseconds); everything else happens at ``%track stop``.
Cells run before the extension was loaded are still known from IPython's own input history, only
without timings.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

#: nbformat minor version of the notebooks nbtrack writes (4.5 carries cell ids).
NBFORMAT_MINOR = 5


@dataclass
class ExecutedCell:
    """One executed cell, in execution order."""

    execution_count: int | None
    source: str
    cell_id: str | None = None
    started: float | None = None  # epoch seconds
    duration_s: float | None = None
    status: str = "unknown"  # ok | error | running | unknown (run before nbtrack was loaded)
    error: str | None = None  # the exception's type name
    evalue: str | None = None  # its message (capped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_count": self.execution_count,
            "cell_id": self.cell_id,
            "started": _iso(self.started),
            "duration_s": None if self.duration_s is None else round(self.duration_s, 6),
            "status": self.status,
            "error": self.error,
            "evalue": self.evalue,
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")


class ExecutionHistory:
    """Bounded record of executed cells, fed by IPython's cell events.

    Example:
        >>> h = ExecutionHistory(max_cells=100)
        >>> ip.events.register("pre_run_cell", h.pre_run_cell)  # doctest: +SKIP
        >>> ip.events.register("post_run_cell", h.post_run_cell)  # doctest: +SKIP
    """

    def __init__(self, max_cells: int = 10_000) -> None:
        # (execution_count, raw_cell, cell_id, started, duration, ok, error_name, error_value)
        self._records: deque[
            tuple[int | None, str, str | None, float | None, float | None, bool, str | None, str | None]
        ] = deque(maxlen=max_cells)
        self._pending: tuple[str, str | None, float, float] | None = None
        self.dropped = 0
        self.max_cells = max_cells
        #: Set by ``%%track`` while it runs its body, whose nested events must not count twice.
        self.paused = False

    # --- hot path: keep these two as small as possible -------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        if not self.paused:
            self._pending = (info.raw_cell, info.cell_id, time.time(), time.perf_counter())

    def post_run_cell(self, result: Any) -> None:
        if self.paused:
            return
        pending, self._pending = self._pending, None
        info = result.info  # raw cell and cell id; also there for the cell that loaded nbtrack
        if len(self._records) == self.max_cells:
            self.dropped += 1
        error = result.error_in_exec or result.error_before_exec
        self._records.append(
            (
                result.execution_count,
                info.raw_cell,
                info.cell_id,
                pending[2] if pending else None,
                time.perf_counter() - pending[3] if pending else None,
                error is None,
                None if error is None else type(error).__name__,
                None if error is None else error_value(error),
            )
        )

    # --- cold path ---------------------------------------------------------------------------------
    def cells(self, input_hist_raw: Sequence[str] | None = None) -> list[ExecutedCell]:
        """All executed cells in order, the running one last.

        Args:
            input_hist_raw: IPython's raw input history (``shell.history_manager.input_hist_raw``),
                whose index is the execution count; fills in cells run before nbtrack was loaded.
        """
        recorded = [
            ExecutedCell(count, src, cid, started, dur, "ok" if ok else "error", err, value)
            for count, src, cid, started, dur, ok, err, value in self._records
        ]
        out: list[ExecutedCell] = []
        if input_hist_raw is not None and self.dropped == 0:
            first_recorded = next((c.execution_count for c in recorded if c.execution_count), None)
            limit = first_recorded if first_recorded is not None else len(input_hist_raw)
            # Counts below the first recorded one ran before the hooks were registered.
            for count in range(1, min(limit, len(input_hist_raw))):
                out.append(ExecutedCell(count, input_hist_raw[count]))
        out.extend(recorded)
        if self._pending is not None:
            src, cid, started, t0 = self._pending
            out.append(ExecutedCell(None, src, cid, started, time.perf_counter() - t0, "running"))
        return out

    def summary(self) -> dict[str, Any]:
        return {"recorded": len(self._records), "dropped": self.dropped, "cap": self.max_cells}

    def last_failure(self, completed_before: int = 0) -> ExecutedCell | None:
        """The last finished cell when it raised and ran after the first ``completed_before`` cells
        (those finished before a run started), else None: the cell that failed the run.

        Example:
            >>> h = ExecutionHistory()
            >>> h.last_failure() is None
            True
        """
        if not self._records or len(self._records) + self.dropped <= completed_before:
            return None
        count, src, cid, started, dur, ok, err, value = self._records[-1]
        return None if ok else ExecutedCell(count, src, cid, started, dur, "error", err, value)


#: How much of an exception's message is kept (a tag, a snapshot entry, a line in a report).
EVALUE_CAP = 500


def error_value(error: BaseException) -> str:
    """The exception's message, capped; computed only for cells that raised."""
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break the user's cell
        text = f"<{type(error).__name__}: message not printable>"
    return text if len(text) <= EVALUE_CAP else text[: EVALUE_CAP - 1] + "…"


def user_code_cells(nb: dict[str, Any]) -> list[dict[str, Any]]:
    """The notebook's code cells as its user numbers them: papermill's injected-parameters cell and
    the cells a replay added (``metadata.nbtrack.added``) are not the user's.

    Example:
        >>> nb = {"cells": [{"cell_type": "markdown", "source": "# T"}, {"cell_type": "code",
        ...     "source": "x = 1", "metadata": {"tags": ["injected-parameters"]}},
        ...     {"cell_type": "code", "source": "y = 2", "metadata": {}}]}
        >>> [c["source"] for c in user_code_cells(nb)]
        ['y = 2']
    """
    found = []
    for cell in nb.get("cells") or []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata") or {}
        if "injected-parameters" in (meta.get("tags") or []) or (meta.get("nbtrack") or {}).get("added"):
            continue
        found.append(cell)
    return found


def cell_text(cell: dict[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    source = cell.get("source") or ""
    return "".join(source) if isinstance(source, list) else str(source)


def first_line(source: str) -> str:
    """The first non-blank line of ``source`` (what a person recognises a cell by), stripped."""
    return next((line.strip() for line in source.splitlines() if line.strip()), "")


def user_cell_number(
    nb: dict[str, Any] | None, *, source: str | None, cell_id: str | None = None
) -> int | None:
    """The 1-based number of the cell among the notebook's code cells as its user sees them (see
    :func:`user_code_cells`), found by cell id, else by identical source (the first such cell);
    None when the notebook does not have it (edited since, or unknown).

    Example:
        >>> nb = {"cells": [{"cell_type": "code", "source": "a = 1"}, {"cell_type": "code", "source": "b"}]}
        >>> user_cell_number(nb, source="b")
        2
    """
    if not nb:
        return None
    cells = user_code_cells(nb)
    if cell_id:
        for i, cell in enumerate(cells):
            if cell.get("id") == cell_id:
                return i + 1
    if source is not None:
        wanted = source.strip()
        for i, cell in enumerate(cells):
            if cell_text(cell).strip() == wanted:
                return i + 1
    return None


def read_notebook_json(path: Any) -> dict[str, Any] | None:
    """The notebook file at ``path`` as JSON (no nbformat: its import costs ~1.3 s), None when unreadable.

    Example:
        >>> read_notebook_json(None) is None
        True
    """
    if path is None:
        return None
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return nb if isinstance(nb, dict) else None


def describe_failure(cell: ExecutedCell, notebook: dict[str, Any] | None) -> dict[str, Any]:
    """What a run's failing cell was, as the user sees it: its number in ``notebook`` (None when not
    found there), execution count, first source line, exception type and message.

    Example:
        >>> failed = ExecutedCell(4, "x = {}['a']", status="error", error="KeyError", evalue="'a'")
        >>> describe_failure(failed, {"cells": [{"cell_type": "code", "source": "x = {}['a']"}]})["cell"]
        1
    """
    return {
        "cell": user_cell_number(notebook, source=cell.source, cell_id=cell.cell_id),
        "cell_id": cell.cell_id,
        "execution_count": cell.execution_count,
        "source_head": first_line(cell.source),
        "ename": cell.error or "Exception",
        "evalue": cell.evalue or "",
    }


def failure_line(failure: dict[str, Any]) -> str:
    """One line naming the failing cell and its exception (a tag value, a message).

    Example:
        >>> failure_line({"cell": 3, "ename": "KeyError", "evalue": "'a'", "source_head": "x = d['a']"})
        "cell 3 raised KeyError: 'a' (in `x = d['a']`)"
    """
    if failure.get("cell"):
        where = f"cell {failure['cell']}"
    elif failure.get("execution_count"):
        where = f"the cell run as In [{failure['execution_count']}]"
    else:
        where = "a cell"
    line = f"{where} raised {failure.get('ename') or 'an exception'}"
    if failure.get("evalue"):
        line += f": {' '.join(str(failure['evalue']).split())[:200]}"
    if failure.get("source_head"):
        line += f" (in `{str(failure['source_head'])[:80]}`)"
    return line


def history_notebook(cells: Sequence[ExecutedCell], metadata: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the execution history as an nbformat-4.5 notebook (plain dict, no nbformat import).

    Each code cell holds the code as it was executed, its execution count, and under
    ``metadata.nbtrack`` when it started, how long it took and whether it raised.
    """
    nb_cells: list[dict[str, Any]] = []
    for i, cell in enumerate(cells):
        nb_cells.append(
            {
                "cell_type": "code",
                "id": f"exec-{i + 1}",
                "execution_count": cell.execution_count,
                "metadata": {"nbtrack": cell.to_dict()},
                "outputs": [],
                "source": cell.source,
            }
        )
    return {
        "cells": nb_cells,
        "metadata": {**metadata, "nbtrack": {"kind": "execution-history"}},
        "nbformat": 4,
        "nbformat_minor": NBFORMAT_MINOR,
    }
