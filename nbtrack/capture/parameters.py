"""The parameters section: the ``parameters``-tagged cell's values and papermill's injected ones."""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from typing import Any

from nbtrack.capture.base import CaptureContext, CaptureResult, SectionUnavailable
from nbtrack.capture.history import ExecutedCell
from nbtrack.capture.locate import NotebookLocation
from nbtrack.capture.notebook import cell_source, is_injected_parameters, read_notebook
from nbtrack.errors import NotebookError
from nbtrack.redact import policy


def parse_assignments(source: str) -> dict[str, Any]:
    """``name = value`` lines of a cell: literals as values, anything else as its source text.

    Example:
        >>> parse_assignments("alpha = 0.5\\nname = 'x'  # comment\\nn = len([1])")
        {'alpha': 0.5, 'name': 'x', 'n': 'len([1])'}
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                try:
                    literal = ast.literal_eval(value)
                    json.dumps(literal)
                except (ValueError, TypeError, SyntaxError, RecursionError):
                    literal = ast.get_source_segment(source, value)
                values[target.id] = literal
    return values


def param_string(value: Any) -> str:
    """How a parameter value is logged as an MLflow param (strings bare, the rest as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


class ParametersProvider:
    """Reads the notebook's ``parameters`` cell and the values papermill injected."""

    name = "parameters"

    def __init__(
        self,
        location: NotebookLocation,
        executed: Sequence[ExecutedCell],
        notebook: dict[str, Any] | None = None,
    ) -> None:
        self.location = location
        self.executed = executed
        self.notebook = notebook  # already parsed by the notebook provider, when it could

    def capture(self, ctx: CaptureContext) -> CaptureResult:
        defaults: dict[str, Any] = {}
        cell_index = None
        nb = self.notebook
        unreadable = None
        if nb is None and self.location.path is not None:
            try:
                nb = read_notebook(self.location.path)
            except NotebookError as exc:  # the notebook section says so too; injected values still count
                unreadable = str(exc)
        if nb is not None:
            for i, cell in enumerate(nb["cells"]):
                tags = (cell.get("metadata") or {}).get("tags") or []
                if cell.get("cell_type") == "code" and "parameters" in tags:
                    defaults, cell_index = parse_assignments(cell_source(cell)), i
                    break
        injected: dict[str, Any] = {}
        for ex in self.executed:
            if is_injected_parameters(ex.source):
                injected = parse_assignments(ex.source)  # the last injection wins, as in the kernel
        if cell_index is None and not injected and unreadable is not None:
            raise SectionUnavailable(f"no `parameters` cell could be read: {unreadable}")
        if cell_index is None and not injected:
            raise SectionUnavailable(
                "no cell tagged `parameters` and no papermill parameters; tag a cell `parameters` "
                "to record its values"
            )
        # Logged as MLflow params too: a secret-named or secret-shaped value never is.
        redactor = policy(ctx.config)
        defaults, injected = redactor.params(defaults), redactor.params(injected)
        return CaptureResult(
            {
                "cell_index": cell_index,
                "defaults": defaults,
                "injected": injected,
                "values": {**defaults, **injected},
                "source": "papermill" if injected else "notebook",
            }
        )
