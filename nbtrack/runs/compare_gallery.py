"""The cross-run output gallery: one cell's outputs across runs, from their recorded notebooks.

No logging call is needed: every tracked run recorded its notebook under ``nbtrack/`` —
``history.ipynb`` (the execution history), ``notebook.ipynb`` (the saved file) and, when the panel
was open, ``notebook.live.ipynb`` (the editor's content, outputs included). The history notebook
holds no outputs today, so a run whose asked notebook is missing or carries no output at all is read
from the next that does (live, then saved, then history); each run says which (``source``).

Cells are offered from the first run that has a notebook (the reference), code cells only, keyed by
their cell id (``#N``, their index, when they have none). A cell is matched in another run's
notebook by its **source** first (the last code cell with exactly that source: in a history, the
latest execution), then by its **cell id**, then by its **index**; so a cell keeps its place across
runs that edited other cells, and an edited cell is still found where it was.

Example:
    >>> reply = build_gallery([(store, run_a), (store, run_b)], None, "history")  # doctest: +SKIP
    >>> reply["cell"], [len(r["outputs"]) for r in reply["runs"]]  # doctest: +SKIP
    ('exec-4', [1, 1])
"""

from __future__ import annotations

import json
from typing import Any

from nbtrack.models import RunRecord

#: ``source`` -> the artifact under ``nbtrack/``.
SOURCES = {"history": "history.ipynb", "saved": "notebook.ipynb", "live": "notebook.live.ipynb"}
_FALLBACK = ("live", "saved", "history")
_IMAGE = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


def _source(cell: dict[str, Any]) -> str:
    raw = cell.get("source", "")
    return "".join(raw) if isinstance(raw, list) else str(raw)


def _code_cells(nb: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    cells = nb.get("cells") if isinstance(nb, dict) else None
    return [(i, c) for i, c in enumerate(cells or []) if isinstance(c, dict) and c.get("cell_type") == "code"]


def _has_outputs(nb: dict[str, Any]) -> bool:
    return any(c.get("outputs") for _, c in _code_cells(nb))


def recorded_notebook(
    store: Any, run: RunRecord, source: str
) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """The kind read, the notebook (a dict), or why there is none: the asked kind when it has
    outputs, else the first of live / saved / history that has; else the asked one as it is."""
    first: tuple[str, dict[str, Any]] | None = None
    for kind in dict.fromkeys((source, *_FALLBACK)):
        text = store.read_artifact(run.run_id, SOURCES[kind])
        if text is None:
            continue
        try:
            nb = json.loads(text)
        except ValueError:
            continue
        if not isinstance(nb, dict):
            continue
        if _has_outputs(nb):
            return kind, nb, None
        first = first or (kind, nb)
    if first is not None:
        return first[0], first[1], None
    return (
        None,
        None,
        f"run {run.run_id[:8]} has no readable recorded notebook (tracked before nbtrack recorded them)",
    )


def cell_key(index: int, cell: dict[str, Any]) -> str:
    """A cell's key: its cell id, else ``#<index>``.

    Example:
        >>> cell_key(3, {"id": "a1b2"}), cell_key(3, {})
        ('a1b2', '#3')
    """
    cell_id = cell.get("id")
    return str(cell_id) if cell_id else f"#{index}"


def match_cell(nb: dict[str, Any], ref_index: int, ref: dict[str, Any]) -> dict[str, Any] | None:
    """The cell of ``nb`` that is ``ref`` (index ``ref_index`` in its notebook): same source, else
    same cell id, else same index.

    Example:
        >>> nb = {"cells": [{"cell_type": "code", "id": "x", "source": "plot()", "outputs": []}]}
        >>> match_cell(nb, 5, {"id": "y", "source": "plot()"})["id"]
        'x'
    """
    cells = _code_cells(nb)
    text = _source(ref)
    same = [c for _, c in cells if _source(c) == text]
    if same and text.strip():
        return same[-1]
    ref_id = ref.get("id")
    if ref_id:
        for _, c in cells:
            if c.get("id") == ref_id:
                return c
    for i, c in cells:
        if i == ref_index:
            return c
    return None


def _label(cell: dict[str, Any]) -> str:
    lines = [line.strip() for line in _source(cell).splitlines() if line.strip()]
    return (lines[0] if lines else "(empty cell)")[:120]


def _has_image(cell: dict[str, Any] | None) -> bool:
    if not cell:
        return False
    return any(any(m in (o.get("data") or {}) for m in _IMAGE) for o in cell.get("outputs") or [])


def build_gallery(runs: list[tuple[Any, RunRecord]], cell: str | None, source: str) -> dict[str, Any]:
    """The ``gallery`` reply for ``runs`` ((store, run) pairs, in the order asked).

    ``cell`` is a key from ``cells`` (None: the last cell with an image output, else the last with
    any output).

    Example:
        >>> reply = build_gallery([(store, run)], "#3", "saved")  # doctest: +SKIP
        >>> reply["runs"][0]["outputs"][0]["output_type"]  # doctest: +SKIP
        'display_data'
    """
    read = [(run, *recorded_notebook(store, run, source)) for store, run in runs]
    ref = next((nb for _run, _kind, nb, _why in read if nb is not None), None)
    ref_cells = _code_cells(ref) if ref is not None else []
    matched: dict[str, list[dict[str, Any] | None]] = {}
    cells = []
    for index, c in ref_cells:
        key = cell_key(index, c)
        found = [match_cell(nb, index, c) if nb is not None else None for _run, _kind, nb, _why in read]
        matched[key] = found
        cells.append(
            {
                "key": key,
                "label": _label(c),
                "index": index,
                "outputs": sum(1 for m in found if m and m.get("outputs")),
            }
        )
    if cell is not None and cell not in matched:
        from nbtrack.errors import UsageError

        raise UsageError(f"cell={cell!r} is no cell of these runs' notebooks; pick a key from `cells`")
    chosen = cell if cell is not None else _default_cell(cells, matched)
    out_runs = []
    for n, (run, kind, _nb, why) in enumerate(read):
        picked = matched[chosen][n] if chosen is not None else None
        missing = why
        if why is None and chosen is not None and picked is None:
            missing = f"run {run.run_id[:8]}'s notebook has no such cell"
        out_runs.append(
            {
                "run_id": run.run_id,
                "name": run.name,
                "source": kind,
                "outputs": list(picked.get("outputs") or []) if picked else [],
                "missing": missing,
            }
        )
    return {"cells": cells, "cell": chosen, "runs": out_runs}


def _default_cell(cells: list[dict[str, Any]], matched: dict[str, list[dict[str, Any] | None]]) -> str | None:
    with_image = [str(c["key"]) for c in cells if any(_has_image(m) for m in matched[c["key"]])]
    if with_image:
        return with_image[-1]
    with_outputs = [str(c["key"]) for c in cells if c["outputs"]]
    return with_outputs[-1] if with_outputs else None
