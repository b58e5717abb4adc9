"""Which replayed cell answers which original cell, and which cells are not compared at all.

Cells are matched by cell id, else by identical source in notebook order (a replay of the execution
history has new ids). Skipped: cells tagged ``nbtrack:ignore-output``, papermill's injected
parameters, cells that are only nbtrack's own magics (their outputs hold run ids and the run card),
cells with no recorded outputs, and cells the replay has no counterpart for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "IGNORE_TAG",
    "STRICT_TAG",
    "CellPair",
    "code_cells",
    "pair_cells",
    "source_head",
    "source_of",
    "tags_of",
]

IGNORE_TAG = "nbtrack:ignore-output"
STRICT_TAG = "nbtrack:strict-output"
INJECTED_TAG = "injected-parameters"
# A line that is one of nbtrack's own magics (or a comment): a cell of only these is nbtrack's.
_OWN_LINE = re.compile(r"^\s*(?:#.*|%(?:load_ext|reload_ext)\s+nbtrack\b.*|%track\b.*)?$")


@dataclass
class CellPair:
    """An original code cell (1-based among the original's code cells) and its replayed cell."""

    number: int
    original: Mapping[str, Any]
    replayed: Mapping[str, Any] | None
    skip: str = ""  # why the cell is not compared ('' when it is)


def source_of(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (nbformat stores a string or a list of lines).

    Example:
        >>> source_of({"source": ["a = 1\\n", "b = 2"]})
        'a = 1\\nb = 2'
    """
    source = cell.get("source") or ""
    return "".join(source) if isinstance(source, list) else str(source)


def source_head(cell: Mapping[str, Any]) -> str:
    """The cell's first non-blank source line (what a user recognizes it by).

    Example:
        >>> source_head({"source": "\\n\\nprint(total)\\n"})
        'print(total)'
    """
    for line in source_of(cell).splitlines():
        if line.strip():
            return line.strip()[:120]
    return ""


def tags_of(cell: Mapping[str, Any]) -> list[str]:
    tags = (cell.get("metadata") or {}).get("tags") or []
    return [str(t) for t in tags] if isinstance(tags, list) else []


def code_cells(nb: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in nb.get("cells") or [] if c.get("cell_type") == "code"]


def _own_cell(cell: Mapping[str, Any]) -> bool:
    lines = source_of(cell).splitlines()
    return any(line.strip() for line in lines) and all(_OWN_LINE.match(line) for line in lines)


def _skip_reason(cell: Mapping[str, Any]) -> str:
    tags = tags_of(cell)
    if IGNORE_TAG in tags:
        return f"tagged {IGNORE_TAG}"
    if INJECTED_TAG in tags:
        return "papermill's injected parameters"
    if _own_cell(cell):
        return "nbtrack's own magics"
    if not cell.get("outputs"):
        return "no recorded outputs"
    return ""


def _key(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def pair_cells(original_nb: Mapping[str, Any], replayed_nb: Mapping[str, Any]) -> list[CellPair]:
    """One :class:`CellPair` per original code cell, in order.

    Example:
        >>> a = {"cells": [{"cell_type": "code", "id": "x", "source": "1", "outputs": [{}]}]}
        >>> b = {"cells": [{"cell_type": "code", "id": "y", "source": "1", "outputs": []}]}
        >>> [(p.number, p.replayed is not None, p.skip) for p in pair_cells(a, b)]
        [(1, True, '')]
    """
    replayed = [c for c in code_cells(replayed_nb) if INJECTED_TAG not in tags_of(c)]
    by_id = {str(c["id"]): i for i, c in enumerate(replayed) if c.get("id")}
    used: set[int] = set()
    cursor = 0
    pairs = []
    for number, cell in enumerate(code_cells(original_nb), start=1):
        index = by_id.get(str(cell.get("id") or "\0"))
        if index is None or index in used:
            index = _by_source(replayed, _key(source_of(cell)), cursor, used)
        if index is not None:
            used.add(index)
            cursor = index + 1
        match = replayed[index] if index is not None else None
        reason = _skip_reason(cell)
        if not reason and match is None:
            reason = "no matching replayed cell"
        pairs.append(CellPair(number, cell, match, reason))
    return pairs


def _by_source(cells: Sequence[Mapping[str, Any]], key: str, start: int, used: set[int]) -> int | None:
    for i in range(start, len(cells)):
        if i not in used and _key(source_of(cells[i])) == key:
            return i
    return None
