"""Reading notebooks as plain JSON: parse, validate the shape, one-line errors, cells.

``import nbformat`` costs ~1.3 s; a kernel should not pay it at ``%track stop``, so notebooks are
read with :mod:`json` and checked for the little nbtrack relies on (``cells``, ``nbformat`` 4).

Example:
    >>> nb = parse_notebook(b'{"cells": [{"cell_type": "code", "source": ["x = 1"]}], "nbformat": 4}', "a")
    >>> [cell_source(c) for c in code_cells(nb)]
    ['x = 1']
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack.compare import is_injected_parameters as is_injected_parameters  # (re-exported)
from nbtrack.errors import NotebookError, SnapshotError

if TYPE_CHECKING:
    from nbtrack.capture.locate import NotebookLocation


def cell_source(cell: dict[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a string or a list of lines).

    Example:
        >>> cell_source({"source": ["total = 1", " + 2"]})
        'total = 1 + 2'
    """
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

    Example:
        >>> parse_artifact('{"cells": [], "nbformat": 4}', "3f2a", "history.ipynb")["cells"]
        []
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
    """The notebook at ``path`` as a dict; a one-line :class:`NotebookError` when it is not one.

    Example:
        >>> read_notebook(Path("train.ipynb"))["nbformat"]  # doctest: +SKIP
        4
    """
    return parse_notebook(read_notebook_bytes(path), str(path))


def read_notebook_bytes(path: Path) -> bytes:
    """The bytes of the notebook file at ``path``; a one-line :class:`NotebookError` when unreadable.

    Example:
        >>> read_notebook_bytes(Path("gone.ipynb"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        nbtrack.errors.NotebookError: notebook gone.ipynb no longer exists (moved or deleted?); ...
    """
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
    """The notebook's code cells, in order.

    Example:
        >>> len(code_cells({"cells": [{"cell_type": "markdown"}, {"cell_type": "code"}]}))
        1
    """
    return [c for c in nb["cells"] if c.get("cell_type") == "code"]


def notebook_bytes(nb: dict[str, Any]) -> bytes:
    """nbformat's own layout (indent 1, sorted keys, UTF-8), as Jupyter would have saved it.

    Example:
        >>> notebook_bytes({"nbformat": 4, "cells": []}).splitlines()
        [b'{', b' "cells": [],', b' "nbformat": 4', b'}']
    """
    text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate ("\udcff", e.g. bytes decoded with surrogateescape) has no UTF-8 form:
        # written as JSON escapes instead, which read back to the same string.
        return (json.dumps(nb, indent=1, sort_keys=True) + "\n").encode()


@dataclass
class ExecutedCopy:
    """The executed notebook of a headless run, as its executor had saved it (``notebook`` None when
    there is none to keep; ``facts`` then say why)."""

    facts: dict[str, Any]
    raw: bytes = b""
    notebook: dict[str, Any] | None = None


def _is_live(nb: dict[str, Any]) -> bool:
    """Whether papermill is still executing the notebook it saved (not a stale file of an earlier
    run at the same path): its end time is unset, or a cell is marked running."""
    meta = (nb.get("metadata") or {}).get("papermill")
    if not isinstance(meta, dict):
        return False
    running = any(
        ((c.get("metadata") or {}).get("papermill") or {}).get("status") == "running" for c in nb["cells"]
    )
    return running or ("end_time" in meta and meta["end_time"] is None)


def executed_copy(location: NotebookLocation, cap: int, attempts: int = 5) -> ExecutedCopy:
    """The executed notebook a papermill run has written so far (it saves the output notebook after
    every cell: the injected parameters and the outputs up to the running cell).

    nbconvert and ``jupyter execute`` write theirs only at the end, and a papermill output that is
    no local file cannot be read back: then ``facts`` say so and the input is what is kept.

    Example:
        >>> executed_copy(NotebookLocation(Path("a.ipynb"), "explicit"), 10**8).facts  # doctest: +SKIP
        {}
    """
    pm, executor = location.papermill, location.executor
    if pm is None:
        if executor is None:
            return ExecutedCopy({})
        return ExecutedCopy(
            {
                "source": executor["tool"],
                "stored": False,
                "reason": f"{executor['tool']} writes the executed notebook only when execution ends: "
                "notebook.ipynb is the input and history.ipynb what ran",
            }
        )
    out = str(pm.get("output_path") or "")
    facts: dict[str, Any] = {"source": "papermill", "path": out or None, "stored": False}
    if not out or out == "-" or "://" in out:
        facts["reason"] = (
            f"papermill's output {out or '(none)'} is no local file: notebook.ipynb is the input"
        )
        return ExecutedCopy(facts)
    if pm.get("saves_each_cell") is False:
        facts["reason"] = "papermill ran with --no-request-save-on-cell-execute: notebook.ipynb is the input"
        return ExecutedCopy(facts)
    path = Path(out)
    for attempt in range(attempts):
        try:
            raw = read_notebook_bytes(path)
            nb = parse_notebook(raw, out)
            break
        except NotebookError as exc:
            # papermill may be rewriting the file (an autosave) at this very moment: read again
            if attempt == attempts - 1:
                facts["reason"] = f"{exc} (notebook.ipynb is the input)"
                return ExecutedCopy(facts)
            time.sleep(0.1 * (attempt + 1))
    if not _is_live(nb):
        facts["reason"] = (
            f"{out} is not being executed by this papermill run (stale): notebook.ipynb is the input"
        )
        return ExecutedCopy(facts)
    if len(raw) > cap:
        facts["reason"] = (
            f"the executed notebook is {len(raw)} bytes, over NbtrackConfig.notebook_max_bytes ({cap}): "
            "notebook.ipynb is the input; raise it to keep executed notebooks"
        )
        return ExecutedCopy(facts)
    facts.update(stored=True, size=len(raw), sha256=hashlib.sha256(raw).hexdigest(), cells=len(nb["cells"]))
    return ExecutedCopy(facts, raw, nb)
