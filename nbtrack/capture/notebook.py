"""The notebook section: the saved ``.ipynb``, its HTML rendering, and the execution history.

Reads the notebook as JSON (``import nbformat`` costs ~1.3 s; a kernel should not pay it at
``%track stop``) and compares it with what the kernel actually executed, to flag cells executed out
of order and cells edited after they ran. When the JupyterLab panel sent the editor's content
(:class:`LiveNotebook`), it is kept as ``notebook.live.ipynb`` and compared with the saved file:
unsaved edits, new or deleted cells, outputs not saved.

The pieces live by role: reading notebooks in :mod:`nbtrack.capture.nbfile`, the editor's content
in :mod:`nbtrack.capture.live`, the execution-order check in :mod:`nbtrack.capture.order`; their
names stay importable from here.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from nbtrack.capture.base import CaptureContext, CaptureResult, SectionIncomplete, SectionUnavailable
from nbtrack.capture.history import ExecutedCell, history_notebook
from nbtrack.capture.live import LiveNotebook, compare_live, live_for_run
from nbtrack.capture.locate import NotebookLocation
from nbtrack.capture.nbfile import (
    cell_source,
    code_cells,
    executed_copy,
    is_injected_parameters,
    notebook_bytes,
    parse_artifact,
    parse_notebook,
    read_notebook,
    read_notebook_bytes,
)
from nbtrack.capture.order import ExecutionCheck, check_execution
from nbtrack.errors import NotebookError
from nbtrack.redact import Redactor, policy

__all__ = [
    "ExecutionCheck",
    "LiveNotebook",
    "NotebookProvider",
    "cell_source",
    "check_execution",
    "code_cells",
    "compare_live",
    "is_injected_parameters",
    "live_for_run",
    "parse_artifact",
    "parse_notebook",
    "read_notebook",
    "read_notebook_bytes",
]

# Where secrets were found and redacted, per artifact: cell index, part of the cell, kinds.
Findings = dict[str, list[dict[str, Any]]]


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

    Example:
        >>> provider = NotebookProvider(location, executed, history.summary())  # doctest: +SKIP
        >>> run_provider(provider, ctx)[0].data["out_of_order"]  # doctest: +SKIP
        False
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
        """Take the section; the saved notebook missing or unreadable leaves the history recorded."""
        loc = self.location
        data: dict[str, Any] = {
            "method": loc.method,
            "tried": loc.tried,
            "papermill": loc.papermill,
            "history": {**self.history_summary, "cells": len(self.executed)},
        }
        files: dict[str, bytes] = {}
        redactor = policy(ctx.config)
        redacted: Findings = {}
        # `unreadable`: why the saved notebook is missing from the run (its history is still kept).
        nb, unreadable = self._saved(ctx, data, files, redactor, redacted)
        files["history.ipynb"] = self._history(nb, redactor, redacted)
        data.update(_order(nb, self.executed))
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

    def _saved(
        self,
        ctx: CaptureContext,
        data: dict[str, Any],
        files: dict[str, bytes],
        redactor: Redactor,
        redacted: Findings,
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The saved notebook's facts into ``data``, its file and HTML into ``files``; the parsed
        notebook (None when unknown or unreadable) and why it is unreadable."""
        path = self.location.path
        if path is None:
            data["path"] = None
            data["reason"] = self.location.why_unknown
            return None, None
        data.update(path=str(path), relpath=_relpath(path, ctx.project_root))
        try:
            raw = read_notebook_bytes(path)
            data.update(size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
            nb = self.parsed = parse_notebook(raw, str(path))
        except NotebookError as exc:
            data.update(stored=False, stored_reason=str(exc), reason=str(exc))
            return None, str(exc)
        with suppress(OSError):  # deleted since it was read: what was read is recorded
            data["mtime"] = path.stat().st_mtime
        data.update(
            nbformat=f"{nb.get('nbformat')}.{nb.get('nbformat_minor')}",
            cells=len(nb["cells"]),
            code_cells=len(code_cells(nb)),
            kernelspec=(nb.get("metadata") or {}).get("kernelspec"),
        )
        over = _over_cap("notebook", len(raw), ctx.config.notebook_max_bytes)
        data["stored"] = over is None
        if over is not None:
            data["stored_reason"] = over
            return nb, None
        ran = executed_copy(self.location, ctx.config.notebook_max_bytes)
        data["executed"] = ran.facts
        if ran.notebook is not None:
            # What really ran (injected parameters, outputs so far) is notebook.ipynb; the file the
            # run was given is kept beside it.
            _keep(files, redacted, redactor, "notebook", ran.raw, ran.notebook, path.name)
            _keep(files, redacted, redactor, "notebook.input", raw, nb, path.name)
            self.parsed = ran.notebook
            return ran.notebook, None
        _keep(files, redacted, redactor, "notebook", raw, nb, path.name)
        return nb, None

    def _history(self, nb: dict[str, Any] | None, redactor: Redactor, redacted: Findings) -> bytes:
        """``history.ipynb``: the executed cells as a notebook, with the saved one's kernelspec."""
        meta: dict[str, Any] = {"language_info": {"name": "python", "version": sys.version.split()[0]}}
        if nb is not None and (nb.get("metadata") or {}).get("kernelspec"):
            meta["kernelspec"] = nb["metadata"]["kernelspec"]
        else:
            meta["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        history, found = redactor.notebook(history_notebook(self.executed, meta))
        if found:
            redacted["history.ipynb"] = found
        return json.dumps(history, indent=1).encode()

    def _capture_live(
        self,
        saved: dict[str, Any],
        ctx: CaptureContext,
        files: dict[str, bytes],
        redactor: Redactor,
        redacted: Findings,
    ) -> dict[str, Any]:
        """The editor's content as ``notebook.live.ipynb`` (capped like the saved one, secrets
        redacted) and its differences from the saved file."""
        live = self.live
        assert live is not None
        safe, found = redactor.notebook(live.notebook)
        if found:
            redacted["notebook.live.ipynb"] = found
        raw = notebook_bytes(safe)
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


def _keep(
    files: dict[str, bytes],
    redacted: Findings,
    redactor: Redactor,
    stem: str,
    raw: bytes,
    nb: dict[str, Any],
    title: str,
) -> None:
    """``<stem>.ipynb`` and its HTML rendering into ``files``: byte for byte unless it holds a secret
    (then only those strings change)."""
    from nbtrack.capture.render import notebook_html  # only when a run stops (see render)

    safe, found = redactor.notebook(nb)
    files[f"{stem}.ipynb"] = notebook_bytes(safe) if found else raw
    # A lone surrogate in a cell has no UTF-8 form: shown as its escape ("\\udcff") in the HTML.
    files[f"{stem}.html"] = notebook_html(safe, title=title).encode("utf-8", "backslashreplace")
    if found:
        redacted[f"{stem}.ipynb"] = found


def _order(nb: dict[str, Any] | None, executed: Sequence[ExecutedCell]) -> dict[str, Any]:
    """The section's execution-order facts (``out_of_order`` None when there is no saved notebook)."""
    if nb is None:
        return {"out_of_order": None}
    check = check_execution(nb, executed)
    return {
        "out_of_order": check.out_of_order,
        "out_of_order_reasons": check.reasons,
        "edited_after_execution": check.edited_after_execution,
        "cells_not_in_notebook": check.not_in_notebook,
    }


def _relpath(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
