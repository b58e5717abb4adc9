"""Run actions for every front-end: rename, note, tag, archive, restore, purge (one or many runs).

A call names its runs by full id, spool id or unique prefix (as :meth:`Runs.resolve` does; archived
runs too, for restore and purge) and is all or nothing up to the store: every id is resolved and
every run checked (not pending upload, not archived for a write, archived for a purge) before the
first change, so a bulk call with one bad id changes no run. The store's side is
:mod:`nbtrack.store.actions`.

Example:
    >>> change = Change(set_tags={"team": "churn"})
    >>> apply(runs, target, "tag", ["3f2a9c", "77b0e1"], change).done  # doctest: +SKIP
    ['3f2a9c41e0b84d0f9b6a2c1d7e5f4a3b', '77b0e1c2...']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nbtrack.errors import RunNotFoundError, UsageError
from nbtrack.models import RunRecord
from nbtrack.runs.ids import Found, ambiguous, parse
from nbtrack.runs.service import Runs, Target
from nbtrack.store import actions as store_actions

ACTIONS = ("rename", "note", "tag", "archive", "restore", "purge")
#: Runs one call may change (a compare view's selection; the whole project is a script's job).
MAX_RUNS = 1000


@dataclass(frozen=True)
class Change:
    """What an action sets: ``name`` (rename), ``note`` (note), ``set_tags``/``remove_tags`` (tag)."""

    name: str | None = None
    note: str | None = None
    set_tags: Mapping[str, str] = field(default_factory=dict)
    remove_tags: Sequence[str] = ()


@dataclass
class ActionResult:
    """The runs an action changed (full ids) and, but for a purge, the runs as they are now."""

    action: str
    done: list[str]
    runs: list[RunRecord]


def check_change(action: str, change: Change, count: int) -> None:
    """Refuse an unknown action or a change it cannot make, before any run is looked up.

    Example:
        >>> check_change("rename", Change(name="x"), 2)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        nbtrack.errors.UsageError: rename: give exactly one run (got 2)...
    """
    if action not in ACTIONS:
        raise UsageError(f"action {action!r}: use one of {', '.join(ACTIONS)}")
    if count == 0:
        raise UsageError(f"{action}: give at least one run id")
    if count > MAX_RUNS:
        raise UsageError(f"{action}: at most {MAX_RUNS} runs at a time (got {count})")
    if action in ("rename", "note") and count != 1:
        raise UsageError(f"{action}: give exactly one run (got {count}); a name or note is one run's")
    if action == "rename" and not (change.name or "").strip():
        raise UsageError("rename: give a non-empty name")
    if action == "note" and change.note is None:
        raise UsageError("note: give the note's text (an empty text removes the note)")
    if action == "tag":
        if not change.set_tags and not change.remove_tags:
            raise UsageError("tag: give tags to set (K=V) or to remove")
        for key in [*change.set_tags, *change.remove_tags]:
            store_actions.check_tag_key(key)


def resolve_any(runs: Runs, target: Target, run_id: str) -> Found:
    """The run an id or prefix names, archived runs included (restore and purge name those).

    Raises:
        UsageError: too short, or a prefix of several runs.
        RunNotFoundError: no active or archived run has that id.
    """
    try:
        return runs.resolve(target, run_id)
    except RunNotFoundError:
        wanted, is_prefix = parse(run_id)
        if not is_prefix or target.store is None:
            raise
        archived = store_actions.archived_with_prefix(target.store, wanted)
        if not archived:
            raise
        if len(archived) > 1:
            raise ambiguous(wanted, archived, more=False) from None
        return Found(target.store, archived[0])


def _check(runs: Runs, target: Target, action: str, found: Found) -> None:
    """Refuse a pending run, a write to an archived one, a purge of an active or a server's one."""
    runs.on_server(target, found, action)  # a run still in the local spool: `nbtrack sync` first
    run, stage = store_actions.lifecycle(found.store, found.run_id)
    store_actions.check_writable(run, stage, action)
    if action == "purge":
        store_actions.check_purgeable(found.store, run, stage)


def _do(action: str, found: Found, change: Change) -> None:
    store, run_id = found.store, found.run_id
    if action == "rename":
        store_actions.rename(store, run_id, change.name or "")
    elif action == "note":
        store_actions.set_note(store, run_id, change.note or "")
    elif action == "tag":
        store_actions.set_user_tags(store, run_id, change.set_tags, change.remove_tags)
    elif action == "archive":
        store_actions.archive(store, run_id)
    elif action == "restore":
        store_actions.restore(store, run_id)
    else:
        store_actions.purge(store, run_id)


def apply(
    runs: Runs, target: Target, action: str, run_ids: Sequence[str], change: Change | None = None
) -> ActionResult:
    """Do ``action`` to every run of ``run_ids``, after checking them all.

    Raises:
        UsageError: a bad action, change or id (nothing changed).
        RunNotFoundError: an id names no run (nothing changed).
        PendingUploadError, ActionRefused: a run refuses the action (nothing changed).

    Example:
        >>> apply(runs, target, "archive", ["3f2a9c"]).done  # doctest: +SKIP
        ['3f2a9c41e0b84d0f9b6a2c1d7e5f4a3b']
    """
    change = change or Change()
    check_change(action, change, len(run_ids))
    found: dict[str, Found] = {}
    for run_id in run_ids:
        one = resolve_any(runs, target, run_id)
        found.setdefault(one.run_id, one)
    for one in found.values():
        _check(runs, target, action, one)
    for one in found.values():
        _do(action, one, change)
    after = [] if action == "purge" else [one.store.get_run(one.run_id) for one in found.values()]
    return ActionResult(action, list(found), after)


def change_from_body(action: str, body: Any) -> tuple[list[str], Change]:
    """The run ids and the change of a ``POST actions/<action>`` body (see ``openapi.yaml``).

    Example:
        >>> change_from_body("tag", {"runs": ["3f2a9c"], "set": {"team": "churn"}})
        (['3f2a9c'], Change(name=None, note=None, set_tags={'team': 'churn'}, remove_tags=()))
    """
    if action not in ACTIONS:
        raise UsageError(f"action {action[:40]!r}: use one of {', '.join(ACTIONS)}")
    if not isinstance(body, dict):
        raise UsageError(f"the {action} request body must be a JSON object with a `runs` list")
    fields = {"rename": {"name"}, "note": {"note"}, "tag": {"set", "remove"}}.get(action, set())
    unknown = sorted(set(body) - fields - {"runs"})
    if unknown:
        raise UsageError(f"{action}: unknown field(s) {', '.join(unknown)}; give runs and {sorted(fields)}")
    ids = body.get("runs")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise UsageError(f"{action}: `runs` must be a list of run ids")
    name, note = body.get("name"), body.get("note")
    if name is not None and not isinstance(name, str):
        raise UsageError("rename: `name` must be a string")
    if note is not None and not isinstance(note, str):
        raise UsageError("note: `note` must be a string")
    values, remove = body.get("set") or {}, body.get("remove") or []
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise UsageError("tag: `set` must be an object of tag name -> string value")
    if not isinstance(remove, list) or not all(isinstance(k, str) for k in remove):
        raise UsageError("tag: `remove` must be a list of tag names")
    return ids, Change(name=name, note=note, set_tags=values, remove_tags=tuple(remove))
