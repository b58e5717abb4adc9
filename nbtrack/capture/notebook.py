"""The notebook section: the saved ``.ipynb``, its HTML rendering, and the execution history.

Reads the notebook as JSON (``import nbformat`` costs ~1.3 s; a kernel should not pay it at
``%track stop``) and compares it with what the kernel actually executed, to flag cells executed out
of order and cells edited after they ran. When the JupyterLab panel sent the editor's content
(:class:`LiveNotebook`), it is kept as ``notebook.live.ipynb`` and compared with the saved file:
unsaved edits, new or deleted cells, outputs not saved.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtrack.capture.base import CaptureContext, CaptureResult, SectionIncomplete, SectionUnavailable
from nbtrack.capture.history import ExecutedCell, history_notebook
from nbtrack.capture.locate import NotebookLocation
from nbtrack.errors import NotebookError, SnapshotError
from nbtrack.redact import Redactor, policy


def cell_source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def parse_notebook(raw: bytes | str, source: str, fix: str | None = None) -> dict[str, Any]:
    """``raw`` as a notebook dict; a one-line :class:`NotebookError` naming ``source`` when it is not one.

    ``fix`` replaces the advice that ends the message (for a file: restore it, re-save it).

    Example:
        >>> parse_notebook(b'{"cells": [], "nbformat": 4, "nbformat_minor": 5}', "a.ipynb")["nbformat"]
        4
        >>> parse_notebook(b"print(1)", "a.ipynb")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        nbtrack.errors.NotebookError: a.ipynb is not a notebook (invalid JSON: ...); ...
    """
    try:
        nb = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError included: a binary file
        detail = " ".join(str(exc).split())[:120]
        raise NotebookError(
            f"{source} is not a notebook (invalid JSON: {detail}); "
            f"{fix or 'restore it from git or re-save it in Jupyter'}"
        ) from exc
    if isinstance(nb, dict) and isinstance(nb.get("nbformat"), int) and nb["nbformat"] < 4:
        raise NotebookError(
            f"{source} is an nbformat {nb['nbformat']} notebook, nbtrack reads nbformat 4; convert it "
            f"with `jupyter nbconvert --to notebook --nbformat 4 {source}`"
        )
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or "nbformat" not in nb:
        raise NotebookError(
            f"{source} is JSON but not a Jupyter notebook (no cells/nbformat); "
            f"{fix or 'give the path of the .ipynb'}"
        )
    return nb


def parse_artifact(text: str, run_id: str, name: str) -> dict[str, Any]:
    """A run's recorded notebook artifact ``nbtrack/<name>``, parsed.

    Raises:
        SnapshotError: it is not a notebook (the run's artifacts are damaged).
    """
    try:
        return parse_notebook(
            text,
            f"run {run_id}'s nbtrack/{name} artifact",
            "the run's artifacts are damaged: record the run again",
        )
    except NotebookError as exc:
        raise SnapshotError(str(exc)) from exc


def read_notebook(path: Path) -> dict[str, Any]:
    """The notebook at ``path`` as a dict; a one-line :class:`NotebookError` when it is not one."""
    return parse_notebook(read_notebook_bytes(path), str(path))


def read_notebook_bytes(path: Path) -> bytes:
    """The bytes of the notebook file at ``path``; a one-line :class:`NotebookError` when unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise NotebookError(
            f"notebook {path} no longer exists (moved or deleted?); give its new path with "
            "`%track start --notebook PATH`"
        ) from exc
    except IsADirectoryError as exc:
        raise NotebookError(f"{path} is a folder, not a notebook; give the path of the .ipynb") from exc
    except OSError as exc:
        raise NotebookError(
            f"cannot read notebook {path}: {exc.strerror}; check the path and its permissions"
        ) from exc


def code_cells(nb: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in nb["cells"] if c.get("cell_type") == "code"]


def is_injected_parameters(source: str) -> bool:
    """papermill's injected-parameters cell starts with this comment line."""
    return source.startswith("# Parameters\n") or source == "# Parameters"


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
    """

    path: str
    abs_path: Path | None
    cell_id: str | None
    notebook: dict[str, Any] = field(repr=False)
    cells_completed: int = 0


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


@dataclass
class ExecutionCheck:
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
    by_count = {ex.execution_count: ex.source for ex in executed if ex.execution_count}
    edited = [
        i + 1
        for i, c in enumerate(cells)
        if c.get("execution_count") in by_count and by_count[c["execution_count"]] != sources[i]
    ]
    return ExecutionCheck(bool(reasons), reasons[:20], edited, missing)


def _over_cap(what: str, size: int, cap: int) -> str | None:
    """Why a notebook of ``size`` bytes is not stored (over ``notebook_max_bytes``), else None."""
    if size <= cap:
        return None
    return (
        f"{what} is {size} bytes, over NbtrackConfig.notebook_max_bytes ({cap}); "
        "raise it to keep such notebooks"
    )


class NotebookProvider:
    """Captures the saved notebook, its HTML rendering, the execution history and the live content.

    ``live`` is the editor's content for this run's notebook, when the panel sent it during the run;
    ``live_reason`` says why there is none otherwise.
    """

    name = "notebook"

    def __init__(
        self,
        location: NotebookLocation,
        executed: Sequence[ExecutedCell],
        history_summary: dict[str, Any],
        live: LiveNotebook | None = None,
        live_reason: str | None = None,
    ) -> None:
        self.location = location
        self.executed = executed
        self.history_summary = history_summary
        self.live = live
        self.live_reason = live_reason
        #: The saved notebook as parsed by :meth:`capture`, for the parameters provider to reuse.
        self.parsed: dict[str, Any] | None = None

    def capture(self, ctx: CaptureContext) -> CaptureResult:
        from nbtrack.capture.render import notebook_html

        loc = self.location
        language = {"name": "python", "version": sys.version.split()[0]}
        data: dict[str, Any] = {
            "method": loc.method,
            "tried": loc.tried,
            "papermill": loc.papermill,
            "history": {**self.history_summary, "cells": len(self.executed)},
        }
        files: dict[str, bytes] = {}
        nb: dict[str, Any] | None = None
        redactor = policy(ctx.config)
        # Where secrets were found and redacted, per artifact (cell index, part of the cell, kinds).
        redacted: dict[str, list[dict[str, Any]]] = {}
        # Why the saved notebook is missing from the run (its execution history is still kept).
        unreadable: str | None = None
        if loc.path is None:
            data["path"] = None
            data["reason"] = loc.why_unknown
        else:
            data.update(path=str(loc.path), relpath=_relpath(loc.path, ctx.project_root))
            try:
                raw = read_notebook_bytes(loc.path)
                data.update(size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
                nb = self.parsed = parse_notebook(raw, str(loc.path))
            except NotebookError as exc:
                unreadable = str(exc)
                data.update(stored=False, stored_reason=unreadable, reason=unreadable)
        if nb is not None and loc.path is not None:
            with suppress(OSError):  # deleted since it was read: what was read is recorded
                data["mtime"] = loc.path.stat().st_mtime
            cells = code_cells(nb)
            data.update(
                nbformat=f"{nb.get('nbformat')}.{nb.get('nbformat_minor')}",
                cells=len(nb["cells"]),
                code_cells=len(cells),
                kernelspec=(nb.get("metadata") or {}).get("kernelspec"),
            )
            over = _over_cap("notebook", len(raw), ctx.config.notebook_max_bytes)
            data["stored"] = over is None
            if over is None:
                # Kept byte for byte unless it holds a secret; then only those strings change.
                safe, found = redactor.notebook(nb)
                files["notebook.ipynb"] = _notebook_bytes(safe) if found else raw
                files["notebook.html"] = notebook_html(safe, title=loc.path.name).encode()
                if found:
                    redacted["notebook.ipynb"] = found
            else:
                data["stored_reason"] = over
        meta: dict[str, Any] = {"language_info": language}
        if nb is not None and (nb.get("metadata") or {}).get("kernelspec"):
            meta["kernelspec"] = nb["metadata"]["kernelspec"]
        else:
            meta["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        history, found = redactor.notebook(history_notebook(self.executed, meta))
        files["history.ipynb"] = json.dumps(history, indent=1).encode()
        if found:
            redacted["history.ipynb"] = found
        if nb is not None:
            check = check_execution(nb, self.executed)
            data["out_of_order"] = check.out_of_order
            data["out_of_order_reasons"] = check.reasons
            data["edited_after_execution"] = check.edited_after_execution
            data["cells_not_in_notebook"] = check.not_in_notebook
        else:
            data["out_of_order"] = None
        if nb is not None and self.live is not None:
            data["live"] = self._capture_live(nb, ctx, files, redactor, redacted)
        else:
            data["live"] = {
                "received": False,
                "reason": self.live_reason or "no live content from the editor",
            }
        data["redacted"] = redacted
        if loc.path is None and not self.executed:
            raise SectionUnavailable(loc.why_unknown)
        if loc.path is None:
            raise SectionIncomplete(loc.why_unknown, CaptureResult(data, files), "absent")
        if unreadable is not None:
            raise SectionIncomplete(unreadable, CaptureResult(data, files), "error")
        return CaptureResult(data, files)

    def _capture_live(
        self,
        saved: dict[str, Any],
        ctx: CaptureContext,
        files: dict[str, bytes],
        redactor: Redactor,
        redacted: dict[str, list[dict[str, Any]]],
    ) -> dict[str, Any]:
        """The editor's content as ``notebook.live.ipynb`` (capped like the saved one, secrets
        redacted) and its differences from the saved file."""
        live = self.live
        assert live is not None
        safe, found = redactor.notebook(live.notebook)
        if found:
            redacted["notebook.live.ipynb"] = found
        raw = _notebook_bytes(safe)
        differences, edits = compare_live(saved, live.notebook, live.cell_id)
        entry: dict[str, Any] = {
            "received": True,
            "path": live.path,
            "cell_id": live.cell_id,
            "differs_from_saved": bool(differences),
            "unsaved_edits": edits,
            "differences": differences,
            "cells": len(live.notebook.get("cells") or []),
            "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
        }
        over = _over_cap("live notebook", len(raw), ctx.config.notebook_max_bytes)
        entry["stored"] = over is None
        if over is None:
            files["notebook.live.ipynb"] = raw
        else:
            entry["stored_reason"] = over
        return entry


def _notebook_bytes(nb: dict[str, Any]) -> bytes:
    """nbformat's own layout (indent 1, sorted keys, UTF-8), as Jupyter would have saved it."""
    return (json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _relpath(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
