"""The replay workspace: a run's code and data rebuilt in a temporary folder, apart from the project.

The code is a ``git clone --shared --no-checkout`` of the source repository checked out at the
recorded commit, with the run's ``git.diff`` applied. A clone rather than ``git worktree``: a
worktree is registered in the user's ``.git``. ``--shared`` borrows the source's object store
read-only, so the clone costs no copy and still finds a commit no branch holds any more.

The data is DVC's: the workspace's ``.dvc/config.local`` points ``cache.dir`` at the source
project's cache and lists link types before ``copy``, so a 1 GiB input is a hard link made in
tens of milliseconds (DVC's checkout included), not a 2 s copy. Only objects the cache lacks are
fetched from the DVC remote (into that cache, as ``dvc fetch`` would); DVC's state database for
the workspace lives under the temporary folder and goes with it. Where the DVC files at the
commit disagree with the snapshot, the snapshot wins: the workspace's DVC file is rewritten to
the recorded hash and a risk is noted.

Nothing here writes into the user's working copy, ``.git`` or existing cache objects.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtrack.capture.git import git_env
from nbtrack.errors import CannotReplay
from nbtrack.models import Snapshot
from nbtrack.replay.data import RestoredOutput, inside, restore_data

__all__ = ["RestoredOutput", "Workspace", "build_workspace"]

_GIT_TIMEOUT = 300.0  # a clone or checkout of a large repository
_FETCH_TIMEOUT = 120.0
_StatKey = tuple[int, int, int]


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
    _inputs: dict[str, _StatKey] = field(default_factory=dict, repr=False)
    _elsewhere: list[str] = field(default_factory=list, repr=False)  # DVC state outside base

    def cleanup(self) -> None:
        """Remove ``base`` (links only: the DVC cache objects they point at stay)."""
        if self.keep:
            return
        for folder in [*self._elsewhere, str(self.base)]:
            if os.path.exists(folder):
                shutil.rmtree(folder)

    def remember_input(self, rel: str, path: Path) -> None:
        """Note a restored file (``rel`` to the DVC root) as it is now, for :meth:`modified_inputs`."""
        st = os.stat(path)
        self._inputs[rel] = (st.st_ino, st.st_mtime_ns, st.st_size)

    def remember_state_folder(self, folder: str) -> None:
        """A folder outside ``base`` that DVC keeps state in for the workspace; cleanup removes it."""
        if inside(folder, str(self.base)) is None and folder not in self._elsewhere:
            self._elsewhere.append(folder)

    def modified_inputs(self) -> list[str]:
        """Restored files (relative to the DVC root) whose inode, mtime or size changed since restore.

        Through a hard link or symlink such a write also changed the DVC cache object.
        """
        if self.dvc_root is None:
            return []
        changed = []
        for rel, key in self._inputs.items():
            try:
                st = os.stat(self.dvc_root / rel)
            except OSError:
                changed.append(rel)
                continue
            if (st.st_ino, st.st_mtime_ns, st.st_size) != key:
                changed.append(rel)
        return sorted(changed)

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


def _git(
    cwd: Path, *args: str, stdin: bytes | None = None, timeout: float = _GIT_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    env = git_env()
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")  # a fetch must never wait for a prompt
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise CannotReplay("git is not installed (no `git` on PATH); install git to replay a run") from exc
    except subprocess.TimeoutExpired as exc:
        raise CannotReplay(
            f"`git {args[0]}` took over {timeout:.0f} s in {cwd}; check the network or the repository"
        ) from exc


def _checked(proc: subprocess.CompletedProcess[bytes], what: str) -> None:
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CannotReplay(f"{what} failed: {detail[-1] if detail else proc.returncode}")


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
            ws.risks.append(_fetch_commit(work, commit, git_data.get("remote_url"), src_top))
        elif not _git(work, "for-each-ref", "--count=1", "--contains", commit).stdout.strip():
            ws.risks.append(
                f"commit {commit[:12]} is on no branch or tag of {src_top} (amended or rebased?); "
                f"`git gc` may delete it: tag it (git tag keep-{commit[:8]} {commit}) to keep it replayable"
            )
        checkout = ("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit)
        _checked(_git(work, *checkout), f"`git checkout {commit[:12]}`")
        _git(work, "remote", "remove", "origin")
        if (work / ".gitmodules").exists():
            ws.risks.append("the repository has git submodules; the workspace does not check them out")
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


def _fetch_commit(work: Path, commit: str, url: str | None, src_top: Path) -> str:
    """Fetch ``commit`` from the recorded remote into the clone; the risk line to note, or CannotReplay."""
    fix = f"fetch or push it so that {src_top} has it (git fetch --all), or pass a clone that has it"
    if not url:
        raise CannotReplay(f"commit {commit} is not in {src_top} and the run recorded no git remote; {fix}")
    fetch = ("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url, commit)
    proc = _git(work, *fetch, timeout=_FETCH_TIMEOUT)
    if proc.returncode != 0 or _git(work, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CannotReplay(
            f"commit {commit} is not in {src_top} and could not be fetched from {url} "
            f"({detail[-1] if detail else 'not found there'}); {fix}"
        )
    return f"commit {commit[:12]} was not in {src_top}; it was fetched from {url}"
