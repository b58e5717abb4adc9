"""The run actions and the notebook diff below the HTTP layer (blocking: the handlers run them in
the service's thread pool).

Example:
    >>> run_action(service, "archive", "train.ipynb", {"runs": ["3f2a9c"]})["done"]  # doctest: +SKIP
    ['3f2a9c41e0b84d0f9b6a2c1d7e5f4a3b']
"""

from __future__ import annotations

from typing import Any

from nbtrack.errors import UsageError
from nbtrack.runs.actions import apply, change_from_body
from nbtrack.runs.listing import rows_of
from nbtrack.server.errors import NotFoundError
from nbtrack.server.service import NbtrackService, check_run_id


def run_action(service: NbtrackService, action: str, notebook: str | None, body: Any) -> dict[str, Any]:
    """Do a ``POST actions/<action>`` and answer ``{"action", "done", "runs"}`` (rows as ``GET runs``)."""
    ids, change = change_from_body(action, body)
    for run_id in ids:
        check_run_id(run_id)
    target = service.resolver.target(notebook)
    result = apply(service.runs, target, action, ids, change)
    return {"action": action, "done": result.done, "runs": rows_of(result.runs)}


def notebook_diff(
    service: NbtrackService,
    notebook: str | None,
    a: str | None,
    b: str | None,
    side_a: str | None,
    side_b: str | None,
) -> dict[str, Any]:
    """``GET nbdiff``: the nbdime diff of two runs' recorded notebooks (:mod:`nbtrack.runs.nbdiff`)."""
    from nbtrack.runs.nbdiff import MissingNotebookError, runs_nbdiff

    if not a or not b:
        raise UsageError("give both runs: /nbtrack/nbdiff?a=RUN_ID&b=RUN_ID[&side_a=KIND&side_b=KIND]")
    check_run_id(a, "a:")
    check_run_id(b, "b:")
    target = service.resolver.target(notebook)
    found_a, found_b = service.runs.resolve(target, a), service.runs.resolve(target, b)
    try:
        return runs_nbdiff(found_a, found_b, side_a or "saved", side_b or "saved").to_dict()
    except MissingNotebookError as exc:
        raise NotFoundError(str(exc)) from exc  # the contract's 404
