"""The kernel's execution history: every executed cell's code, count, start, duration and outcome.

:class:`ExecutionHistory` is registered on IPython's ``pre_run_cell``/``post_run_cell`` events by
``%load_ext nbtrack``. The hooks run on every cell of the user's session, so they only append a
tuple to a bounded deque (a few hundred nanoseconds); everything else happens at ``%track stop``.
Cells run before the extension was loaded are still known from IPython's own input history, only
without timings.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
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
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_count": self.execution_count,
            "cell_id": self.cell_id,
            "started": _iso(self.started),
            "duration_s": None if self.duration_s is None else round(self.duration_s, 6),
            "status": self.status,
            "error": self.error,
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
        # (execution_count, raw_cell, cell_id, started, duration, ok, error_name)
        self._records: deque[
            tuple[int | None, str, str | None, float | None, float | None, bool, str | None]
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
            ExecutedCell(count, src, cid, started, dur, "ok" if ok else "error", err)
            for count, src, cid, started, dur, ok, err in self._records
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
