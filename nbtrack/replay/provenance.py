"""Provenance: before a kernel starts, make sure a run from a shared store executes only committed code.

Anyone who can write to a shared MLflow server can log a run whose recorded notebook or ``git.diff``
is not what the repository holds; replaying it would execute that code on the replaying machine
(a colleague's laptop, a CI runner). So a run read from a shared store (a tracking server, a database:
anything but a local SQLite file or file store), and every run of a batch
(``nbtrack replay --experiment``, which CI runs unattended), replays only when:

- its recorded commit is an object of the local repository (else the user fetches it from their own
  remote; the remote URL recorded in the run is never used for a checked run);
- the code it executes equals the committed notebook's at that commit: the saved notebook's code
  cells equal the committed file's, in order (outputs, metadata and papermill's injected-parameters
  cell are not code; cells the replay itself adds are not counted), or, replaying the execution
  history, every executed cell is a code cell of the committed notebook;
- its ``git.diff`` touches no file that could execute: only the executed notebook itself (its code
  is checked above, and the replay writes the recorded notebook over it) and documents, images and
  tables (:data:`INERT_SUFFIXES`);
- its parameter names are Python identifiers (papermill writes ``name = value`` into a cell).

Otherwise the replay refuses with :class:`UncommittedCodeError` (verdict CANNOT_REPLAY, exit code 3,
HTTP 409), naming what differs, unless ``allow_uncommitted`` (``--allow-uncommitted``). A run of the
user's own embedded store is as trusted as the checkout that holds the store and replays its
recorded diff as before, except in a batch.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import keyword
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from nbtrack.errors import CannotReplay
from nbtrack.replay.data import inside
from nbtrack.replay.gitwork import run_git

if TYPE_CHECKING:
    from nbtrack.replay.plan import ReplayPlan

__all__ = ["INERT_SUFFIXES", "Provenance", "UncommittedCodeError", "check_provenance", "is_shared_store"]

#: Files a diff may change without the replay running uncommitted code: documents, images, tables.
INERT_SUFFIXES = frozenset(
    {".md", ".rst", ".txt", ".csv", ".tsv", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".pdf"}
)
#: ...except these, which installers read (``%pip install -r requirements.txt`` runs what they name).
_NOT_INERT = ("requirements", "constraints")
_FIX = "pass --allow-uncommitted to run it anyway"
_GIT_TIMEOUT = 60.0
_SHOWN_DIFF = 20_000  # characters of the cell diff kept for the panel's question


class UncommittedCodeError(CannotReplay):
    """A run from a shared store (or in a batch) would execute code its repository does not hold.

    Exit code 3 (CANNOT_REPLAY), HTTP 409; ``provenance`` says what differs.
    """

    def __init__(self, message: str, provenance: Provenance) -> None:
        super().__init__(message)
        self.provenance = provenance


@dataclass
class Provenance:
    """What the check found: ``differs`` (one short line each) and ``diff`` (the code cells'
    unified diff, then the files ``git.diff`` changes), for the CLI's message and the panel."""

    checked: bool = False
    reason: str = ""
    commit: str | None = None
    differs: list[str] = field(default_factory=list)
    diff: str = ""
    allowed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "reason": self.reason,
            "commit": self.commit,
            "differs": self.differs,
            "diff": self.diff,
            "refused": bool(self.differs) and not self.allowed,
            "allowed": self.allowed,
        }


def check_provenance(plan: ReplayPlan, *, batch: bool, allow_uncommitted: bool) -> Provenance:
    """Check that a run from a shared store (or in a batch) executes only committed code.

    Args:
        plan: the replay's plan (the run's store, snapshot, the notebook to execute, git.diff).
        batch: the replay is one of a batch: checked whatever the store.
        allow_uncommitted: report what differs but do not refuse.

    Raises:
        UncommittedCodeError: something differs and ``allow_uncommitted`` is false.

    Example:
        >>> check_provenance(plan, batch=True, allow_uncommitted=False).differs  # doctest: +SKIP
        []
    """
    found = Provenance(allowed=allow_uncommitted)
    shared = is_shared_store(plan.store.uri)
    if not (batch or shared):
        found.reason = "a run of a local store (as trusted as the checkout that holds it)"
        return found
    found.checked = True
    found.reason = (
        f"a run read from the tracking server {plan.store.display_uri}" if shared else "a batch replay"
    )
    git_data = plan.snapshot.section("git").data
    found.commit = commit = git_data.get("commit")
    top = _toplevel(plan.source)
    found.differs.extend(_bad_parameter_names(plan))
    if not commit:
        found.differs.append("the run recorded no commit: nothing of its code is committed")
    elif run_git(top, "cat-file", "-e", f"{commit}^{{commit}}", timeout=_GIT_TIMEOUT).returncode != 0:
        found.differs.append(
            f"commit {commit[:12]} is not in the repository at {top} (fetch it from your own remote; "
            "the URL recorded in the run is not used)"
        )
    else:
        _compare_notebook(found, plan, top, commit)
        _check_diff(found, plan, top)
    if found.differs and not allow_uncommitted:
        what = "; ".join(found.differs[:4]) + (
            f"; and {len(found.differs) - 4} more" if len(found.differs) > 4 else ""
        )
        raise UncommittedCodeError(
            f"run {plan.run_id} is {found.reason}, and it would execute code the repository does not hold "
            f"at its commit: {what}; review it (`nbtrack show {plan.run_id}`) and {_FIX}",
            found,
        )
    return found


def is_shared_store(uri: str) -> bool:
    """Whether a tracking URI names a store others may write to: anything but a local SQLite file or
    MLflow file store (an HTTP server, Databricks, a PostgreSQL or MySQL database, ...).

    Example:
        >>> [is_shared_store(u) for u in ("sqlite:////p/mlflow.db", "http://mlflow:5000", "mysql://db/x")]
        [False, True, True]
    """
    scheme = uri.split(":", 1)[0].lower() if "://" in uri or uri.startswith("sqlite:") else ""
    return scheme not in ("", "sqlite", "file")


def _toplevel(source: Path) -> Path:
    folder = source if source.is_dir() else source.parent
    proc = run_git(folder, "rev-parse", "--show-toplevel", timeout=_GIT_TIMEOUT) if folder.is_dir() else None
    if proc is None or proc.returncode != 0:
        raise CannotReplay(
            f"{source} is not a git repository, so the run's code cannot be checked against it; pass "
            f"the project's folder (--project) or {_FIX}"
        )
    return Path(proc.stdout.decode().strip())


def _bad_parameter_names(plan: ReplayPlan) -> list[str]:
    """papermill writes ``name = value``: a recorded name that is no identifier would be code."""
    params = plan.snapshot.section("parameters")
    names = set(plan.injected)
    if params.status == "ok":
        names |= set(params.data.get("values") or {})
    bad = sorted(str(n) for n in names if not str(n).isidentifier() or keyword.iskeyword(str(n)))
    return [f"recorded parameter name {n[:40]!r} is not a Python identifier" for n in bad]


def repo_path(plan: ReplayPlan) -> str | None:
    """The executed notebook's path in the repository (posix, from its top), or None."""
    git_root = str(plan.snapshot.section("git").data.get("root") or "")
    recorded = plan.snapshot.section("notebook").data.get("path")
    if recorded and git_root:
        rel = inside(str(recorded), git_root)
        if rel:
            return PurePosixPath(Path(rel)).as_posix()
    project = inside(str(plan.snapshot.run.get("project_root") or git_root), git_root) if git_root else None
    if plan.relpath is None or project is None:
        return None
    return (PurePosixPath(Path(project)) / PurePosixPath(Path(plan.relpath))).as_posix()


def _user_cells(nb: dict[str, Any]) -> list[str]:
    """The code the user wrote: code cells without papermill's injected cell and the replay's own."""
    from nbtrack.replay.plan import code_sources

    mine = {
        **nb,
        "cells": [
            c for c in nb.get("cells") or [] if not (c.get("metadata") or {}).get("nbtrack", {}).get("added")
        ],
    }
    return code_sources(mine)


def _compare_notebook(found: Provenance, plan: ReplayPlan, top: Path, commit: str) -> None:
    rel = repo_path(plan)
    if rel is None:
        found.differs.append("the run recorded no notebook path in the repository")
        return
    shown = run_git(top, "show", f"{commit}:{rel}", timeout=_GIT_TIMEOUT)
    if shown.returncode != 0:
        found.differs.append(f"notebook {rel} is not committed at {commit[:12]}")
        return
    try:
        committed = _user_cells(json.loads(shown.stdout))
    except (ValueError, AttributeError, TypeError):
        found.differs.append(f"notebook {rel} at {commit[:12]} is not a notebook")
        return
    executed = _user_cells(plan.notebook)
    section = plan.snapshot.section("notebook").data
    redacted = plan.mode == "notebook" and (section.get("redacted") or {}).get(plan.executes)
    # Secrets were redacted from the stored copy: the replay runs the checkout's file when it is
    # byte for byte the one recorded, which here must be the committed one.
    if redacted and hashlib.sha256(shown.stdout).hexdigest() == section.get("sha256"):
        return
    if plan.mode == "history":
        stray = [src for src in executed if src not in set(committed)]
        if stray:
            found.differs.append(
                f"{len(stray)} executed cell(s) of the recorded history are in no code cell of {rel} "
                f"at {commit[:12]}"
            )
            found.diff += _cell_diff(rel, [], stray, commit)
        return
    if executed != committed:
        changed = _changed_cells(committed, executed)
        found.differs.append(f"notebook {rel}: {changed} code cell(s) differ from commit {commit[:12]}")
        found.diff += _cell_diff(rel, committed, executed, commit)


def _changed_cells(a: list[str], b: list[str]) -> int:
    """How many cells were changed, added or removed between two lists of cell sources."""
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")


def _cell_diff(rel: str, committed: list[str], recorded: list[str], commit: str) -> str:
    def lines(cells: list[str]) -> list[str]:
        return [
            f"{line}\n" for k, src in enumerate(cells, 1) for line in [f"# --- cell {k}", *src.splitlines()]
        ]

    text = "".join(
        difflib.unified_diff(
            lines(committed), lines(recorded), f"{rel} @ {commit[:12]}", f"{rel} (recorded run)"
        )
    )
    return text[:_SHOWN_DIFF]


def _check_diff(found: Provenance, plan: ReplayPlan, top: Path) -> None:
    """The files ``git.diff`` changes that could execute; the executed notebook's code is checked apart."""
    if not plan.git_diff:
        return
    proc = run_git(top, "apply", "--numstat", "-z", "-", stdin=plan.git_diff, timeout=_GIT_TIMEOUT)
    if proc.returncode != 0:
        found.differs.append("the recorded git.diff cannot be read as a patch")
        return
    files = _numstat_paths(proc.stdout.decode("utf-8", "replace"))
    notebook = repo_path(plan)
    redacted = (plan.snapshot.section("notebook").data.get("redacted") or {}).get(plan.executes)
    # The replay writes the recorded notebook (checked above) over the diff's, except where the
    # stored copy was redacted: then it would run the checkout's file, so that must be committed.
    active = sorted({f for f in files if (f != notebook or redacted) and not _inert(f)})
    if active:
        more = f" and {len(active) - 5} more" if len(active) > 5 else ""
        found.differs.append(
            f"git.diff changes {len(active)} file(s) that may run: {', '.join(active[:5])}{more}"
        )
    text = plan.git_diff.decode("utf-8", "replace")
    found.diff += ("\n" if found.diff else "") + text[: max(0, _SHOWN_DIFF - len(found.diff))]


def _numstat_paths(out: str) -> list[str]:
    """The paths ``git apply --numstat -z`` lists (a rename: both of its paths)."""
    paths: list[str] = []
    parts = out.split("\0")
    k = 0
    while k < len(parts):
        head = parts[k]
        if not head:
            k += 1
            continue
        fields = head.split("\t", 2)
        if len(fields) == 3 and fields[2]:
            paths.append(fields[2])
            k += 1
        else:
            paths += [p for p in parts[k + 1 : k + 3] if p]
            k += 3
    return paths


def _inert(path: str) -> bool:
    """Whether a changed file is a document, image or table that nothing executes."""
    name = PurePosixPath(path).name.lower()
    return PurePosixPath(name).suffix in INERT_SUFFIXES and not name.startswith(_NOT_INERT)
