"""What comparing two notebooks' cell outputs found (:class:`OutputComparison`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["OUTPUT_MODES", "OutputComparison"]

#: ``--outputs``: differing outputs make the verdict DIVERGED (check), are only reported (report),
#: or are not compared (ignore).
OUTPUT_MODES = ("check", "report", "ignore")


@dataclass
class OutputComparison:
    """One row per compared code cell, per compared figure, and per cell not compared.

    ``cells`` rows: ``cell`` (1-based among the original notebook's code cells), ``cell_id``,
    ``source_head``, ``ok``, ``strict``, ``outputs`` and ``figures`` compared, ``kinds`` (text,
    number, table, image, json, widget, error, html) and ``detail`` (what differs, '' when ok).
    ``figures`` rows: ``cell``, ``output`` (1-based in the cell), ``mime``, ``ok``, ``distance``,
    ``threshold``, and when not ok base64 PNG thumbnails ``original_png``, ``replayed_png``,
    ``difference_png``. ``skipped`` rows: ``cell``, ``source_head``, ``reason``.

    Example:
        >>> c = OutputComparison(cells=[{"cell": 3, "ok": False, "outputs": 1, "figures": 0,
        ...                               "detail": "stdout: 57.59 -> 52.17"}])
        >>> c.counts()
        {'cells': 1, 'outputs': 1, 'figures': 0, 'differ': 1}
        >>> c.summary()
        'cell 3 output differs (stdout: 57.59 -> 52.17)'
    """

    cells: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many cells, outputs and figures were compared, and how many cells differ."""
        return {
            "cells": len(self.cells),
            "outputs": sum(int(c.get("outputs", 0)) for c in self.cells),
            "figures": sum(int(c.get("figures", 0)) for c in self.cells),
            "differ": sum(1 for c in self.cells if not c.get("ok", True)),
        }

    def summary(self) -> str:
        """One line naming the differing cells ('' when none differ)."""
        parts = [
            f"cell {c['cell']} output differs ({c.get('detail') or 'changed'})"
            for c in self.cells
            if not c.get("ok", True)
        ]
        if len(parts) > 3:
            parts = [*parts[:3], f"and {len(parts) - 3} more cell(s)"]
        return ", ".join(parts)
