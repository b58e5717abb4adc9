"""The git section: commit, branch, remotes, status, and a patch that rebuilds the working tree.

``git.diff`` holds the whole repository's uncommitted changes against HEAD (staged and unstaged,
binary-safe) followed by every untracked, not-ignored file as a new-file patch, so that
``git apply git.diff`` on a fresh worktree at ``commit`` reproduces the working tree the notebook
ran in, including a new local module it imported. A patch over the size cap is not stored at all:
a truncated patch cannot be applied. The patch is built in :mod:`nbtrack.capture.gitpatch`, the
``git`` processes run through :mod:`nbtrack.capture.gitcmd`.

Costs four ``git`` processes (rev-parse, config, status, diff), ~10-30 ms on a small repository.
Every call runs with ``GIT_OPTIONAL_LOCKS=0`` so that ``git status`` never takes ``index.lock``
under the user's feet (an editor or a ``git commit`` running at the same time would fail).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbtrack.capture.base import CaptureContext, CaptureResult, SectionUnavailable
from nbtrack.capture.gitcmd import first_line, git_env, run_git
from nbtrack.capture.gitpatch import Patch, drop_secret_files, new_file_patch, stream_diff, untracked_patch
from nbtrack.config import NbtrackConfig
from nbtrack.errors import CaptureError
from nbtrack.redact import Redactor, policy

# git_env and new_file_patch live beside the code that runs git and builds patches; they stay
# importable from here, where the replay workspace and older callers look for them.
__all__ = ["GitProvider", "git_env", "new_file_patch"]


def _parse_status(out: bytes) -> tuple[dict[str, str], list[dict[str, Any]], list[bytes], list[bytes]]:
    """``git status --porcelain=v2 --branch -z``: headers, changed entries, their raw paths, untracked."""
    headers: dict[str, str] = {}
    changed: list[dict[str, Any]] = []
    changed_raw: list[bytes] = []
    untracked: list[bytes] = []
    records = out.split(b"\0")
    i = 0
    while i < len(records):
        rec = records[i]
        i += 1
        kind = rec[:1]
        if kind == b"#":
            key, _, value = rec[2:].partition(b" ")
            headers[key.decode()] = value.decode("utf-8", "replace")
        elif kind == b"?":
            untracked.append(rec[2:])
        elif kind in (b"1", b"2", b"u"):
            # Fields before the path: 1 -> 8, 2 -> 9 (+ score), u -> 10; paths may contain spaces.
            nfields = {b"1": 8, b"2": 9, b"u": 10}[kind]
            parts = rec.split(b" ", nfields)
            entry: dict[str, Any] = {"path": os.fsdecode(parts[nfields]), "status": parts[1].decode()}
            if parts[2].startswith(b"S"):
                entry["submodule"] = True
            if kind == b"2":  # a rename/copy: its original path is the next NUL-separated record
                entry["orig_path"] = os.fsdecode(records[i])
                i += 1
            changed.append(entry)
            changed_raw.append(parts[nfields])
    return headers, changed, changed_raw, untracked


def _ahead_behind(value: str | None) -> list[int] | None:
    """``"+2 -1"`` -> ``[2, 1]``: commits ahead of / behind upstream (unpushed ones cannot be fetched)."""
    if not value:
        return None
    try:
        ahead, behind = value.split()
        return [int(ahead), -int(behind)]
    except ValueError:
        return None


def _remotes(root: Path, redactor: Redactor) -> dict[str, str]:
    """``{name: url}`` of every remote, in config order, credentials stripped (a plain user such
    as ``git@`` stays)."""
    proc = run_git(root, "config", "-z", "--get-regexp", r"^remote\..*\.url$")
    remotes: dict[str, str] = {}
    for rec in proc.stdout.split(b"\0"):
        key, _, url = rec.decode("utf-8", "replace").partition("\n")
        if key.startswith("remote.") and key.endswith(".url"):
            remotes.setdefault(key[len("remote.") : -len(".url")], redactor.text(redactor.url(url)))
    return remotes


@dataclass
class _Status:
    """What ``git status`` says about the work tree, reduced to what the section records."""

    commit: str | None
    branch: str | None
    headers: dict[str, str]
    changed: list[dict[str, Any]]
    untracked: list[bytes]


@dataclass
class _PatchOutcome:
    """``git.diff`` as built: the patch, the untracked files it includes or skips, secret files."""

    patch: Patch
    listed: list[bytes]
    included: list[str]
    skipped: list[dict[str, str]]
    secret_skipped: list[dict[str, str]]


def _toplevel(start: Path) -> tuple[Path, str]:
    """The work tree's root and its object format (``sha1``/``sha256``), or why there is none."""
    if not start.is_dir():
        raise SectionUnavailable(f"project folder {start} does not exist; no code version recorded")
    proc = run_git(start, "rev-parse", "--show-toplevel", "--show-object-format")
    if proc.returncode != 0:
        message = first_line(proc.stderr)
        if "not a git repository" in message or "must be run in a work tree" in message:
            raise SectionUnavailable(
                f"not a git repository: {start}; run `git init` and commit to record the code version"
            )
        if "dubious ownership" in message:
            raise CaptureError(
                f"git refuses to read {start} (owned by another user); "
                f"run `git config --global --add safe.directory {start}`"
            )
        raise CaptureError(f"git cannot read {start}: {message}")
    toplevel, object_format = proc.stdout.decode().splitlines()[:2]
    return Path(toplevel), object_format


def _status(root: Path) -> _Status:
    status = run_git(root, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")
    if status.returncode != 0:
        raise CaptureError(f"`git status` failed in {root}: {first_line(status.stderr)}")
    headers, changed, changed_raw, untracked_raw = _parse_status(status.stdout)
    oid = headers.get("branch.oid", "(initial)")
    commit = None if oid == "(initial)" else oid
    head = headers.get("branch.head")
    branch = None if head in (None, "(detached)") else head
    if commit is None:
        # No commit to diff against: every file, staged or not, is recreated from the patch.
        untracked_raw = sorted(set(untracked_raw) | set(changed_raw))
        changed = []
    return _Status(commit, branch, headers, changed, untracked_raw)


def _build_patch(
    root: Path, status: _Status, cfg: NbtrackConfig, object_format: str, redactor: Redactor
) -> _PatchOutcome:
    """The tracked changes' diff (secret files dropped) followed by the untracked files' patches."""
    listed = status.untracked[: max(cfg.untracked_max_files, 0)]
    patch = Patch(cap=cfg.git_diff_max_bytes)
    if status.commit is not None and status.changed:
        stream_diff(root, patch)
    secret_skipped = drop_secret_files(patch, redactor)
    included: list[str] = []
    skipped: list[dict[str, str]] = []
    for raw in listed:
        piece, why = untracked_patch(root, raw, cfg.untracked_max_file_bytes, object_format, redactor)
        if piece is None:
            skipped.append({"path": os.fsdecode(raw), "reason": why})
        else:
            patch.add(piece)
            included.append(os.fsdecode(raw))
    return _PatchOutcome(patch, listed, included, skipped, secret_skipped)


def _diff_reason(patch: Patch, cap: int) -> str | None:
    """Why ``git.diff`` is not stored (None when it is)."""
    if patch.parts is None:
        return (
            f"the uncommitted changes are {patch.size} bytes, over NbtrackConfig.git_diff_max_bytes "
            f"({cap}); not stored, since a partial patch cannot be applied: "
            "commit the changes or raise the cap"
        )
    if patch.size == 0:
        return "nothing to store: the working tree matches the commit"
    if not patch.parts:
        return "every changed file holds a credential (nbtrack.redact); not stored"
    return None


def _diff_data(out: _PatchOutcome, status: _Status, cap: int) -> dict[str, Any]:
    patch = out.patch
    return {
        "bytes": patch.size,
        "sha256": patch.sha.hexdigest(),
        "stored": bool(patch.parts),
        "cap": cap,
        "truncated": patch.parts is None,
        "reason": _diff_reason(patch, cap),
        "secret_suspected": bool(out.secret_skipped),
        # Changed tracked files whose patch holds a credential: left out, never stored.
        "secret_skipped": out.secret_skipped,
        "untracked_included": out.included,
        "untracked_skipped": out.skipped,
        # True when applying git.diff at `commit` rebuilds every non-ignored file.
        "complete": bool(
            patch.parts is not None
            and not out.skipped
            and not out.secret_skipped
            and len(out.listed) == len(status.untracked)
        ),
    }


class GitProvider:
    """Captures the ``git`` section and ``git.diff``.

    Data: ``root``; ``commit`` (full id, None with ``commit_reason`` before the first commit);
    ``branch`` (None when detached); ``upstream``; ``ahead_behind``; ``remote_url`` (origin, else
    the first remote) and ``remotes``, credentials stripped; ``dirty`` (tracked changes *or*
    untracked files); ``changed`` (``{path, status}``, status = porcelain v2 ``XY``: staged,
    unstaged, ``.`` unchanged; plus ``orig_path`` for renames); ``untracked`` (capped list),
    ``untracked_count``, ``untracked_truncated``; ``diff`` (``bytes``/``sha256`` of the full patch,
    ``stored``, ``cap``, ``truncated``, ``reason``, ``complete`` = the patch rebuilds every
    non-ignored file, ``secret_suspected``, ``untracked_included``, ``untracked_skipped``).

    Example:
        >>> GitProvider().capture(CaptureContext(project_root=Path("repo"))).data["commit"]  # doctest: +SKIP
        '3f2a9b1c...'
    """

    name = "git"

    def capture(self, ctx: CaptureContext) -> CaptureResult:
        """Take the section; raises :class:`SectionUnavailable` outside a git work tree."""
        root, object_format = _toplevel(Path(ctx.project_root))
        cfg = ctx.config
        redactor = policy(cfg)
        remotes = _remotes(root, redactor)
        status = _status(root)
        out = _build_patch(root, status, cfg, object_format, redactor)
        data: dict[str, Any] = {
            "root": str(root),
            "commit": status.commit,
            "commit_reason": None if status.commit else "no commits yet: every file is recorded as untracked",
            "branch": status.branch,
            "upstream": status.headers.get("branch.upstream"),
            "ahead_behind": _ahead_behind(status.headers.get("branch.ab")),
            "remote_url": remotes.get("origin") or next(iter(remotes.values()), None),
            "remotes": remotes,
            "dirty": bool(status.changed or status.untracked),
            "changed": status.changed,
            "untracked": [os.fsdecode(p) for p in out.listed],
            "untracked_count": len(status.untracked),
            "untracked_truncated": len(status.untracked) > len(out.listed),
            "diff": _diff_data(out, status, cfg.git_diff_max_bytes),
        }
        parts = out.patch.parts
        files = {"git.diff": b"".join(parts)} if parts else {}
        return CaptureResult(data=data, files=files)
