"""The replay workspace: a run's code and data rebuilt in a temporary folder, apart from the project.

The code is a ``git clone --shared --no-checkout`` of the source repository checked out at the
recorded commit, with the run's ``git.diff`` applied. A clone rather than ``git worktree``: a
worktree is registered in the user's ``.git``. ``--shared`` borrows the source's object store
read-only, so the clone costs no copy and still finds a commit no branch holds any more.

The data is DVC's: the workspace's ``.dvc/config.local`` points ``cache.dir`` at the source
project's cache and lists link types before ``copy``, so a 1 GiB input is a hard link made in
tens of milliseconds (DVC's checkout included), not a 2 s copy; but the outputs the run writes
are reflinks or copies, and linked inputs are checked after the run (:mod:`~.cache_guard`): a
replay never changes the user's cache. Only objects the cache lacks are
fetched from the DVC remote (into that cache, as ``dvc fetch`` would); DVC's state database for
the workspace lives under the temporary folder and goes with it. Where the DVC files at the
commit disagree with the snapshot, the snapshot wins: the workspace's DVC file is rewritten to
the recorded hash and a risk is noted.

Nothing here writes into the user's working copy or ``.git``; a cache object is written only to
undo what the replayed notebook wrote into it (or removed, when nothing can undo that). A git
submodule is cloned (``--shared``) from the user's checkout of it, at its pinned commit.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtrack.errors import CannotReplay
from nbtrack.models import Snapshot
from nbtrack.replay.cache_guard import CacheGuard
from nbtrack.replay.data import RestoredOutput, inside, restore_data
from nbtrack.replay.gitwork import checked as _checked
from nbtrack.replay.gitwork import checkout_submodules, fetch_commit
from nbtrack.replay.gitwork import run_git as _git

__all__ = ["RestoredOutput", "Workspace", "build_workspace"]


@dataclass
class Workspace:
    """A run's code and data in a temporary folder; ``cleanup()`` removes it unless ``keep``."""

    base: Path
    repo: Path
    project: Path
    dvc_root: Path | None
    risks: list[str] = field(default_factory=list)
    data: list[RestoredOutput] = field(default_factory=list)
    keep: bool = False
    #: The DVC cache objects the workspace's files are linked to (see :mod:`~nbtrack.replay.cache_guard`).
    guard: CacheGuard = field(default_factory=CacheGuard, repr=False)
    _elsewhere: list[str] = field(default_factory=list, repr=False)  # DVC state outside base

    def cleanup(self) -> None:
        """Remove ``base`` (links only: the DVC cache objects they point at stay).

        First the linked cache objects are checked, whatever ended the replay: one the run wrote
        into is written back from the project's copy, else CannotReplay names it (once).
        """
        reported = len(self.guard.found)
        damages = self.guard.check()[reported:]
        if not self.keep:
            for folder in [*self._elsewhere, str(self.base)]:
                if os.path.exists(folder):
                    shutil.rmtree(folder)
        self.guard.refuse(damages)

    def remember_state_folder(self, folder: str) -> None:
        """A folder outside ``base`` that DVC keeps state in for the workspace; cleanup removes it."""
        if inside(folder, str(self.base)) is None and folder not in self._elsewhere:
            self._elsewhere.append(folder)

    def modified_inputs(self) -> list[str]:
        """Linked inputs (relative to the DVC root) whose DVC cache object the run wrote into.

        Each such object has been written back from the project's intact copy of the file. Outputs
        the run writes are copies (or reflinks), never links: writing them is not reported.

        Raises:
            CannotReplay: an object could not be written back (the message names it and the fix).

        Example:
            >>> ws.modified_inputs()  # doctest: +SKIP
            ['data/churn.csv']
        """
        damages = self.guard.check()
        self.guard.refuse(damages)
        return sorted({d.rel for d in damages})

    def cache_risks(self) -> list[str]:
        """The risk lines for the linked inputs the run wrote into (each written back already).

        Raises:
            CannotReplay: an object could not be written back (the message names it and the fix).

        Example:
            >>> ws.cache_risks()  # doctest: +SKIP
            ['the replayed notebook wrote into data/churn.csv, DVC-tracked input(s) the original ...']
        """
        damaged = self.modified_inputs()
        if not damaged:
            return []
        return [
            f"the replayed notebook wrote into {', '.join(damaged)}, DVC-tracked input(s) the original "
            "run did not change, linked to the DVC cache; nbtrack wrote the cache object(s) back from "
            "the project's intact copy, so your cache is unchanged"
        ]

    def data_versions(self, snapshot: Snapshot) -> list[dict[str, Any]]:
        """The restored DVC outputs as the replay's result lists them, with their state at record time.

        Example:
            >>> ws.data_versions(snap)[0]["link"]  # doctest: +SKIP
            'hardlink'
        """
        recorded = snapshot.section("data").data.get("outputs", [])
        status_at_record = {out["path"]: out.get("status") for out in recorded}
        return [
            {
                "path": d.path,
                "hash_name": d.hash_name,
                "hash": d.hash,
                "status_at_record": status_at_record.get(d.path),
                "link": d.link,
                "fetched": d.fetched,
            }
            for d in self.data
        ]

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def build_workspace(
    snapshot: Snapshot,
    *,
    source: Path,
    git_diff: bytes | None,
    base_dir: Path | None = None,
    keep: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> Workspace:
    """Rebuild a run's code and DVC data in a new temporary folder.

    Args:
        snapshot: the run's snapshot (its ``git`` and ``data`` sections and ``run.project_root``).
        source: a folder inside a local git repository that holds the recorded commit.
        git_diff: the run's ``git.diff`` artifact, None when it was not stored.
        base_dir: where to make the temporary folder (default: ``tempfile``'s).
        keep: leave the folder in place on ``cleanup()`` and on failure.
        progress: show DVC's progress bars while fetching.
        say: receives one-line status messages.

    Raises:
        CannotReplay: the code or a data output cannot be rebuilt; nothing is left behind.

    Example:
        >>> ws = build_workspace(snap, source=Path("."), git_diff=None)  # doctest: +SKIP
        restoring data/churn.csv (md5 3f2a9c01…) from the DVC cache: hardlink
        >>> (ws.project / "train.ipynb").exists(), ws.risks  # doctest: +SKIP
        (True, [])
        >>> ws.cleanup()  # doctest: +SKIP
    """
    git_data, risks = _git_section(snapshot, git_diff)
    src_top = _toplevel(Path(source), git_data)
    if base_dir is not None:
        Path(base_dir).mkdir(parents=True, exist_ok=True)
    # Real path, as git reports its toplevel (macOS' temporary folder is behind a symlink).
    base = Path(os.path.realpath(tempfile.mkdtemp(prefix="nbtrack-replay-", dir=base_dir)))
    work = base / "work"
    project = inside(str(snapshot.run.get("project_root") or git_data["root"]), git_data["root"])
    ws = Workspace(base, work, work / (project or ""), None, risks, keep=keep)
    try:
        _checkout_code(ws, git_data, src_top, git_diff, say)
        if project is None or not ws.project.is_dir():
            ws.risks.append(
                f"the project folder {snapshot.run.get('project_root')} has no counterpart in the "
                f"checkout; the replay starts from {ws.project if project else work}"
            )
        _restore_recorded_data(ws, snapshot, git_data, src_top, progress, say)
    except BaseException:
        with suppress(OSError):
            ws.cleanup()
        raise
    return ws


def _restore_recorded_data(
    ws: Workspace,
    snapshot: Snapshot,
    git_data: dict[str, Any],
    src_top: Path,
    progress: bool,
    say: Callable[[str], None],
) -> None:
    """The run's DVC outputs at their recorded hashes, or the risk of running without them."""
    data = snapshot.section("data")
    if data.status == "ok":
        # A broken .dvc file at record time: its output was not recorded, so it is not restored.
        ws.risks.extend(
            f"when the run was recorded, DVC reported: {problem}; what DVC could not read then is "
            "not restored"
            for problem in data.data.get("problems") or []
        )
        restore_data(ws, data.data, git_data, src_top, progress, say)
    elif data.status == "error" or (ws.project / ".dvc").is_dir():
        ws.risks.append(
            f"the run's DVC data was not recorded ({data.reason}); no data is restored: "
            "the notebook reads whatever the checkout holds"
        )


# --- code ----------------------------------------------------------------------------------------
def _git_section(snapshot: Snapshot, git_diff: bytes | None) -> tuple[dict[str, Any], list[str]]:
    """The git section's data and the risks it shows; CannotReplay when it cannot rebuild the code."""
    section = snapshot.section("git")
    git_data = section.data
    if section.status != "ok" or not git_data.get("root"):
        raise CannotReplay(
            f"the run recorded no code version ({section.reason or 'no git section'}); only runs "
            "made in a git repository can be replayed: `git init`, commit, and record the run again"
        )
    diff = git_data.get("diff") or {}
    commit = git_data.get("commit")
    if commit is None and not (git_diff and diff.get("complete")):
        raise CannotReplay(
            f"the run was recorded in {git_data['root']} before its first commit and its files "
            "(git.diff) were not stored in full; commit the project and record the run again"
        )
    risks = []
    skipped = [f"{s['path']} ({s['reason']})" for s in diff.get("untracked_skipped") or []]
    if (
        git_data.get("dirty")
        and not git_diff
        and (diff.get("stored") or diff.get("truncated") or not skipped)
    ):
        why = diff.get("reason") or "the run's git.diff artifact was not given"
        risks.append(
            f"the uncommitted changes were not recorded ({why}); the replay runs commit "
            f"{str(commit)[:12]} without them"
        )
    elif not diff.get("complete", True):
        secret = [str(s.get("path")) for s in diff.get("secret_skipped") or []]
        if secret:
            risks.append(
                "changes to files holding credentials were left out of git.diff, so the replay runs "
                f"their committed version: {_some(secret)}"
            )
        if skipped or not secret:
            listed = _some(skipped) or "some"
            risks.append(f"untracked files were left out of git.diff, so the replay lacks them: {listed}")
    return git_data, risks


def _some(items: list[str], shown: int = 5) -> str:
    """The first few items, and how many more."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _toplevel(source: Path, git_data: dict[str, Any]) -> Path:
    folder = source if source.is_dir() else source.parent
    proc = _git(folder, "rev-parse", "--show-toplevel") if folder.is_dir() else None
    if proc is None or proc.returncode != 0:
        where = git_data.get("remote_url") or git_data["root"]
        raise CannotReplay(
            f"{source} is not a git repository; pass the project's folder (or a clone of {where}) "
            "as the source"
        )
    return Path(proc.stdout.decode().strip())


def _checkout_code(
    ws: Workspace, git_data: dict[str, Any], src_top: Path, patch: bytes | None, say: Callable[[str], None]
) -> None:
    commit = git_data.get("commit")
    work = ws.repo
    if commit is None:
        _checked(_git(ws.base, "init", "--quiet", str(work)), f"`git init {work}`")
    else:
        say(f"checking out commit {commit[:12]} of {src_top} in {work}")
        clone = ("clone", "--quiet", "--no-checkout", "--shared", str(src_top), str(work))
        _checked(_git(ws.base, *clone), f"cloning {src_top}")
        if _git(work, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
            ws.risks.append(fetch_commit(work, commit, src_top))
        elif not _git(work, "for-each-ref", "--count=1", "--contains", commit).stdout.strip():
            ws.risks.append(
                f"commit {commit[:12]} is on no branch or tag of {src_top} (amended or rebased?); "
                f"`git gc` may delete it: tag it (git tag keep-{commit[:8]} {commit}) to keep it replayable"
            )
        checkout = ("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit)
        _checked(_git(work, *checkout), f"`git checkout {commit[:12]}`")
        _git(work, "remote", "remove", "origin")
        checkout_submodules(work, src_top, git_data, ws.risks)
    # The replay's own snapshot should name the run's remotes, not the temporary clone's source.
    for name, url in (git_data.get("remotes") or {}).items():
        _git(work, "remote", "add", name, url)
    if patch:
        say(f"applying the run's uncommitted changes (git.diff, {len(patch)} bytes)")
        proc = _git(work, "apply", "--whitespace=nowarn", "-", stdin=patch)
        if proc.returncode != 0:
            text = proc.stderr.decode("utf-8", "replace")
            found = re.findall(r"^error: (?!patch failed:)(.+?): ", text, re.M)
            name = found[-1] if found else "?"
            lines = text.strip().splitlines()
            onto = f"commit {commit[:12]}" if commit else "an empty repository"
            raise CannotReplay(
                f"the run's uncommitted changes (git.diff) do not apply to {onto} at {name} "
                f"({lines[-1] if lines else 'git apply failed'}); check the run's git.diff "
                f"against `git show {str(commit)[:12]}:{name}`"
            )
