"""The notebook section: the saved ``.ipynb``, its HTML rendering, and the execution history.

Reads the notebook as JSON (``import nbformat`` costs ~1.3 s; a kernel should not pay it at
``%track stop``) and compares it with what the kernel actually executed, to flag cells executed out
of order and cells edited after they ran.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbtrack.capture.base import CaptureContext, CaptureResult, SectionUnavailable
from nbtrack.capture.history import ExecutedCell, history_notebook
from nbtrack.capture.locate import NotebookLocation
from nbtrack.errors import NotebookError


def cell_source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def read_notebook(path: Path) -> dict[str, Any]:
    """The notebook at ``path`` as a dict; a one-line :class:`NotebookError` when it is not one."""
    try:
        raw = json.loads(path.read_bytes())
    except OSError as exc:
        raise NotebookError(f"cannot read notebook {path}: {exc.strerror}; check the path") from exc
    except ValueError as exc:
        raise NotebookError(
            f"{path} is not a notebook (invalid JSON: {exc}); restore it from git or re-save it in Jupyter"
        ) from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list) or "nbformat" not in raw:
        raise NotebookError(f"{path} is JSON but not a Jupyter notebook (no cells/nbformat); pick the .ipynb")
    return raw


def code_cells(nb: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in nb["cells"] if c.get("cell_type") == "code"]


def is_injected_parameters(source: str) -> bool:
    """papermill's injected-parameters cell starts with this comment line."""
    return source.startswith("# Parameters\n") or source == "# Parameters"


@dataclass
class ExecutionCheck:
    out_of_order: bool
    reasons: list[str]
    edited_after_execution: list[int]
    not_in_notebook: int


def check_execution(nb: dict[str, Any], executed: Sequence[ExecutedCell]) -> ExecutionCheck:
    """Compare the saved notebook with the kernel's history.

    Out of order means the history is not the notebook's code cells run once each, top to bottom:
    a cell ran before one above it, ran twice, or is no longer in the notebook. Then only the history
    reproduces the kernel's state (replay's ``--mode auto`` picks it).
    """
    cells = code_cells(nb)
    by_id = {c.get("id"): i for i, c in enumerate(cells) if c.get("id")}
    sources = [cell_source(c) for c in cells]
    positions: list[int] = []
    reasons: list[str] = []
    missing = 0
    for ex in executed:
        if is_injected_parameters(ex.source):
            continue
        pos = by_id.get(ex.cell_id) if ex.cell_id else None
        if pos is None:
            after = positions[-1] + 1 if positions else 0
            pos = next((i for i in range(after, len(sources)) if sources[i] == ex.source), None)
            if pos is None:
                pos = next((i for i, s in enumerate(sources) if s == ex.source), None)
        if pos is None:
            missing += 1
            continue
        if positions and pos <= positions[-1]:
            verb = "again" if pos == positions[-1] else f"after code cell {positions[-1] + 1}"
            reasons.append(f"code cell {pos + 1} ran {verb}")
        positions.append(pos)
    if missing:
        reasons.append(f"{missing} executed cell(s) are not in the saved notebook")
    by_count = {ex.execution_count: ex.source for ex in executed if ex.execution_count}
    edited = [
        i + 1
        for i, c in enumerate(cells)
        if c.get("execution_count") in by_count and by_count[c["execution_count"]] != sources[i]
    ]
    return ExecutionCheck(bool(reasons), reasons[:20], edited, missing)


class NotebookProvider:
    """Captures the saved notebook, its HTML rendering and the execution history."""

    name = "notebook"

    def __init__(
        self,
        location: NotebookLocation,
        executed: Sequence[ExecutedCell],
        history_summary: dict[str, Any],
    ) -> None:
        self.location = location
        self.executed = executed
        self.history_summary = history_summary
        #: The saved notebook as parsed by :meth:`capture`, for the parameters provider to reuse.
        self.parsed: dict[str, Any] | None = None

    def capture(self, ctx: CaptureContext) -> CaptureResult:
        from nbtrack.render import notebook_html

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
        if loc.path is None:
            data["path"] = None
            data["reason"] = loc.why_unknown
        else:
            raw = loc.path.read_bytes()
            data.update(
                path=str(loc.path),
                relpath=_relpath(loc.path, ctx.project_root),
                size=len(raw),
                sha256=hashlib.sha256(raw).hexdigest(),
                mtime=loc.path.stat().st_mtime,
            )
            nb = self.parsed = read_notebook(loc.path)
            cells = code_cells(nb)
            data.update(
                nbformat=f"{nb.get('nbformat')}.{nb.get('nbformat_minor')}",
                cells=len(nb["cells"]),
                code_cells=len(cells),
                kernelspec=(nb.get("metadata") or {}).get("kernelspec"),
            )
            if len(raw) <= ctx.config.notebook_max_bytes:
                files["notebook.ipynb"] = raw
                files["notebook.html"] = notebook_html(nb, title=loc.path.name).encode()
                data["stored"] = True
            else:
                data["stored"] = False
                data["stored_reason"] = (
                    f"notebook is {len(raw)} bytes, over NbtrackConfig.notebook_max_bytes "
                    f"({ctx.config.notebook_max_bytes}); raise it to keep such notebooks"
                )
        meta: dict[str, Any] = {"language_info": language}
        if nb is not None and (nb.get("metadata") or {}).get("kernelspec"):
            meta["kernelspec"] = nb["metadata"]["kernelspec"]
        else:
            meta["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        history = history_notebook(self.executed, meta)
        files["history.ipynb"] = json.dumps(history, indent=1).encode()
        if nb is not None:
            check = check_execution(nb, self.executed)
            data["out_of_order"] = check.out_of_order
            data["out_of_order_reasons"] = check.reasons
            data["edited_after_execution"] = check.edited_after_execution
            data["cells_not_in_notebook"] = check.not_in_notebook
        else:
            data["out_of_order"] = None
        if loc.path is None and not self.executed:
            raise SectionUnavailable(loc.why_unknown)
        return CaptureResult(data, files)


def _relpath(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
