"""The notebook diff of two runs: nbdime's diff of their recorded notebooks, outputs included.

Each side is one of the notebooks a run recorded under ``nbtrack/``::

    saved     notebook.ipynb        the notebook file as saved when the run ended
    live      notebook.live.ipynb   the editor's content (unsaved edits too), when the panel sent it
    history   history.ipynb         the cells as executed, in execution order, with their outputs

Execution counts, cell ids and metadata (notebook, cells) are left out of both notebooks before
nbdime compares them, so a re-run of the same code with the same outputs shows no change; the
returned base is that stripped copy, the one nbdime's diff applies to. nbdime is asked through its
Python API (``diff_notebooks``), never by changing its process-wide ignore settings (the server also
runs nbdime's own extension).

Example:
    >>> result = runs_nbdiff(found_a, found_b, "saved", "history")  # doctest: +SKIP
    >>> result.to_dict()["diff"][0]["key"]  # doctest: +SKIP
    'cells'
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from nbtrack.errors import SnapshotError, UsageError
from nbtrack.runs.ids import Found

#: Side kind -> the artifact under ``nbtrack/`` that holds it.
KINDS = {"saved": "notebook.ipynb", "live": "notebook.live.ipynb", "history": "history.ipynb"}
#: Output MIME types held as base64 (what nbdime compares by equality): images, PDFs, audio, video.
_BINARY = re.compile(r"^(image/(?!svg)|application/pdf|audio/|video/)")
LABELS = {"saved": "saved notebook", "live": "live editor content", "history": "execution history"}


class MissingNotebookError(SnapshotError):
    """A run has no recorded notebook of the kind asked for."""


@dataclass
class Side:
    """One side of the diff: the run, which notebook of it, and that notebook (stripped)."""

    found: Found
    kind: str
    notebook: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        run = self.found.run
        name = run.name or run.run_id[:8]
        return {
            "run_id": run.run_id,
            "name": run.name,
            "kind": self.kind,
            "label": f"{name} ({LABELS[self.kind]})",
        }


@dataclass
class NbDiff:
    """nbdime's diff of side a's notebook to side b's, and what each run recorded."""

    a: Side
    b: Side
    diff: list[Any]  # nbdime's diff, as plain JSON
    available: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        """The ``GET /nbtrack/nbdiff`` reply (see ``openapi.yaml``)."""
        return {
            "base": self.a.notebook,
            "diff": self.diff,
            "a": self.a.describe(),
            "b": self.b.describe(),
            "available": self.available,
        }


def check_kind(kind: str, what: str = "side") -> str:
    """``kind`` when it names a recorded notebook, else a one-line :class:`UsageError`.

    Example:
        >>> check_kind("history")
        'history'
    """
    if kind not in KINDS:
        raise UsageError(f"{what} {kind!r}: use one of {', '.join(KINDS)}")
    return kind


def available_kinds(found: Found) -> list[str]:
    """The notebook kinds a run recorded, in :data:`KINDS` order.

    Example:
        >>> available_kinds(found)  # doctest: +SKIP
        ['saved', 'history']
    """
    files = set(found.store.list_artifacts(found.run_id))
    return [kind for kind, name in KINDS.items() if f"nbtrack/{name}" in files]


def strip(nb: dict[str, Any]) -> dict[str, Any]:
    """A copy of a notebook without what a diff should ignore: execution counts (cells and
    ``execute_result`` outputs), cell ids, and notebook and cell metadata.

    Example:
        >>> nb = {"metadata": {"kernelspec": {}}, "nbformat": 4, "nbformat_minor": 5,
        ...       "cells": [{"cell_type": "code", "id": "a1", "execution_count": 3, "metadata": {"x": 1},
        ...                  "source": "1", "outputs": []}]}
        >>> strip(nb)["cells"][0]
        {'cell_type': 'code', 'execution_count': None, 'metadata': {}, 'source': '1', 'outputs': []}
    """
    out = copy.deepcopy(nb)
    out["metadata"] = {}
    out["nbformat"], out["nbformat_minor"] = 4, 4  # (4.4: cells without ids are valid)
    for cell in out.get("cells", []):
        cell.pop("id", None)
        cell["metadata"] = {}
        if cell.get("cell_type") == "code":
            cell["execution_count"] = None
            for output in cell.get("outputs", []):
                if "execution_count" in output:
                    output["execution_count"] = None
    return out


def read_side(found: Found, kind: str, available: list[str]) -> Side:
    """Read and strip one recorded notebook of a run.

    Raises:
        MissingNotebookError: the run lacks that kind (the message names the kinds it has).
        SnapshotError: the recorded file is no notebook.
    """
    import nbformat  # ~1.3 s to import; only once a diff is asked for

    run_id = found.run_id
    text = found.store.read_artifact(run_id, KINDS[kind]) if kind in available else None
    if text is None:
        has = ", ".join(available) or "none"
        raise MissingNotebookError(
            f"run {run_id} has no {LABELS[kind]} ({KINDS[kind]}); it recorded: {has}; pick one of those"
        )
    try:
        nb = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
    except Exception as exc:  # nbformat raises several unrelated types
        raise SnapshotError(
            f"the {KINDS[kind]} of run {run_id} cannot be read ({type(exc).__name__}); download it from "
            "the run's artifacts to inspect it"
        ) from exc
    return Side(found, kind, strip(json.loads(json.dumps(nb))))


def runs_nbdiff(a: Found, b: Found, side_a: str = "saved", side_b: str = "saved") -> NbDiff:
    """nbdime's diff of run ``a``'s ``side_a`` notebook to run ``b``'s ``side_b`` notebook.

    Raises:
        UsageError: an unknown side kind.
        MissingNotebookError: a run lacks the notebook asked for.

    Example:
        >>> runs_nbdiff(found_a, found_b, "saved", "saved").available  # doctest: +SKIP
        {'a': ['saved', 'history'], 'b': ['saved', 'live', 'history']}
    """
    # Heavy (nbformat, jsonschema): only once a diff is asked for.
    import nbformat
    from nbdime import diff_notebooks  # type: ignore[import-untyped]

    check_kind(side_a, "side_a")
    check_kind(side_b, "side_b")
    available = {"a": available_kinds(a), "b": available_kinds(b)}
    left, right = read_side(a, side_a, available["a"]), read_side(b, side_b, available["b"])
    # (nbdime reads cells and outputs by attribute: NotebookNodes, not plain dicts)
    payloads: dict[str, str] = {}
    nodes = [
        nbformat.from_dict(stand_ins(side.notebook, payloads))  # type: ignore[no-untyped-call]
        for side in (left, right)
    ]
    diff = json.loads(json.dumps(diff_notebooks(*nodes)))
    return NbDiff(left, right, restore_payloads(diff, payloads), available)


def stand_ins(nb: dict[str, Any], payloads: dict[str, str]) -> dict[str, Any]:
    """A copy of ``nb`` whose binary outputs (base64 ``image/*`` and the like) are replaced by a short
    base64 digest of themselves, remembered in ``payloads``.

    nbdime compares base64 data by equality, but first matches each string against a base64 pattern,
    which costs ~8 ms per 40 kB figure and comparison (3.4 s for two 80-cell notebooks of figures);
    a 88-character digest compares the same way in microseconds.

    Example:
        >>> big = "QUFB" * 100
        >>> payloads = {}
        >>> out = stand_ins({"cells": [{"outputs": [{"data": {"image/png": big}}]}]}, payloads)
        >>> token = out["cells"][0]["outputs"][0]["data"]["image/png"]
        >>> len(token), payloads[token] == big
        (88, True)
    """
    out = copy.deepcopy(nb)
    for cell in out.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data") or {}
            for mime, value in data.items():
                text = "".join(value) if isinstance(value, list) else value
                if isinstance(text, str) and len(text) > 256 and _BINARY.match(mime):
                    token = base64.b64encode(hashlib.sha512(text.encode()).digest()).decode()
                    payloads[token] = text
                    data[mime] = token
    return out


def restore_payloads(node: Any, payloads: dict[str, str]) -> Any:
    """``node`` (a diff, as JSON) with every stand-in of :func:`stand_ins` replaced by its payload.

    Example:
        >>> restore_payloads([{"op": "replace", "value": "t0k"}], {"t0k": "iVBORw0K..."})
        [{'op': 'replace', 'value': 'iVBORw0K...'}]
    """
    if isinstance(node, str):
        return payloads.get(node, node)
    if isinstance(node, list):
        return [restore_payloads(item, payloads) for item in node]
    if isinstance(node, dict):
        return {key: restore_payloads(value, payloads) for key, value in node.items()}
    return node
