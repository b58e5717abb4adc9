"""The editor's live notebook (sent by the JupyterLab panel) and how it differs from the saved file.

Example:
    >>> compare_live({"cells": []}, {"cells": [{"id": "a", "cell_type": "code", "source": "x"}]})
    (['1 unsaved new cell(s)'], True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtrack.capture.nbfile import cell_source


@dataclass
class LiveNotebook:
    """The notebook as the editor held it when a cell was scheduled (the panel's ``live`` message).

    Attributes:
        path: the notebook's path as the frontend named it (relative to the server root).
        abs_path: that path resolved by the kernel, when it could be.
        cell_id: the cell about to run when the content was sent.
        notebook: nbformat-4 JSON: unsaved edits, outputs, execution counts and cell ids included.
        cells_completed: cells the kernel had finished when it arrived; orders it against
            ``%track start`` (the content sent for the cell that starts a run counts for that run).
            Content that *covers* a cell (see :meth:`covers`) is restamped when that cell starts:
            it may arrive early (the panel sends it over a kernel subshell), but it is the
            editor's content as of that cell being scheduled.
        pending: ids of the cells scheduled and not yet finished when the editor sent it (Run All
            schedules every cell at once: the content the panel sends when the comm opens, during
            the first cell, is the content all the later cells run from).

    Example:
        >>> live = LiveNotebook("train.ipynb", None, "c1", {"cells": []}, cells_completed=3)
        >>> live.cells_completed
        3
    """

    path: str
    abs_path: Path | None
    cell_id: str | None
    notebook: dict[str, Any] = field(repr=False)
    cells_completed: int = 0
    pending: frozenset[str] = frozenset()

    def covers(self, cell_id: str | None) -> bool:
        """Whether this is the editor's content as of ``cell_id`` being scheduled, or later.

        Example:
            >>> LiveNotebook("a.ipynb", None, "c1", {}, pending=frozenset({"c2"})).covers("c2")
            True
        """
        return cell_id is not None and (cell_id == self.cell_id or cell_id in self.pending)


def _joined(value: Any) -> Any:
    return "".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value


def _outputs_key(cell: dict[str, Any]) -> str:
    """A cell's outputs and execution count, with multi-line strings joined as nbformat allows both."""
    outputs = []
    for output in cell.get("outputs") or []:
        out = dict(output)
        if "text" in out:
            out["text"] = _joined(out["text"])
        if isinstance(out.get("data"), dict):
            out["data"] = {mime: _joined(value) for mime, value in out["data"].items()}
        outputs.append(out)
    return json.dumps([cell.get("execution_count"), outputs], sort_keys=True, default=str)


def _unique_ids(cells: list[dict[str, Any]]) -> list[str] | None:
    ids = [c.get("id") for c in cells]
    if all(isinstance(i, str) and i for i in ids) and len(set(ids)) == len(ids):
        return [str(i) for i in ids]
    return None


def compare_live(
    saved: dict[str, Any], live: dict[str, Any], running_cell_id: str | None = None
) -> tuple[list[str], bool]:
    """How the editor's notebook differs from the saved file.

    Cells are matched by id (by position when a side lacks unique ids). The outputs of the cell
    about to run are not compared: the editor may already have cleared them.

    Returns:
        Short sentences, one per kind of difference, and whether any of them is an unsaved *edit*
        (sources, new, deleted or reordered cells) rather than only outputs not saved.

    Example:
        >>> saved = {"cells": [{"id": "a", "cell_type": "code", "source": "x = 1", "outputs": []}]}
        >>> live = {"cells": [{"id": "a", "cell_type": "code", "source": "x = 2", "outputs": []}]}
        >>> compare_live(saved, live)
        (['1 cell(s) edited but not saved'], True)
    """
    a, b = list(saved.get("cells") or []), list(live.get("cells") or [])
    ids_a, ids_b = _unique_ids(a), _unique_ids(b)
    if ids_a is not None and ids_b is not None:
        by_a, by_b = dict(zip(ids_a, a, strict=True)), dict(zip(ids_b, b, strict=True))
        new = sum(1 for i in ids_b if i not in by_a)
        deleted = sum(1 for i in ids_a if i not in by_b)
        common_b = [i for i in ids_b if i in by_a]
        reordered = [i for i in ids_a if i in by_b] != common_b
        pairs = [(by_a[i], by_b[i]) for i in common_b]
    else:
        n = min(len(a), len(b))
        pairs = list(zip(a[:n], b[:n], strict=True))
        new, deleted, reordered = max(0, len(b) - len(a)), max(0, len(a) - len(b)), False
    edited = sum(
        1 for x, y in pairs if x.get("cell_type") != y.get("cell_type") or cell_source(x) != cell_source(y)
    )
    outputs = sum(
        1
        for x, y in pairs
        if y.get("cell_type") == "code"
        and (running_cell_id is None or y.get("id") != running_cell_id)
        and _outputs_key(x) != _outputs_key(y)
    )
    differences = []
    if edited:
        differences.append(f"{edited} cell(s) edited but not saved")
    if new:
        differences.append(f"{new} unsaved new cell(s)")
    if deleted:
        differences.append(f"{deleted} cell(s) deleted but not saved")
    if reordered:
        differences.append("cells reordered but not saved")
    edits = bool(differences)
    if outputs:
        differences.append(f"outputs not saved ({outputs} cell(s))")
    return differences, edits


def live_for_run(
    live: LiveNotebook | None, cells_completed_at_start: int, notebook: Path | None
) -> tuple[LiveNotebook | None, str | None]:
    """The editor's content when it belongs to a run, else None and why.

    It belongs when it arrived during the run (or for the cell that started it: it arrives just
    before that cell runs) and is of the run's notebook.

    Example:
        >>> live_for_run(None, 0, Path("train.ipynb"))[1]
        'no live content from the editor (no JupyterLab panel connected to this kernel)'
    """
    if live is None:
        return None, "no live content from the editor (no JupyterLab panel connected to this kernel)"
    if live.cells_completed < cells_completed_at_start:
        return None, "the editor's content last arrived before %track start (the panel sent none since)"
    if notebook is None or live.abs_path is None or live.abs_path.resolve() != notebook.resolve():
        return (
            None,
            f"the editor's content is of {live.path}, not of this run's notebook ({notebook or 'unknown'})",
        )
    return live, None
