"""The replay workspace's git work: running git, fetching a commit the checkout lacks (from the
checkout's own remotes only), and checking out git submodules from the user's checkouts of them.

Example:
    >>> fetch_commit(ws.repo, commit, Path("~/proj"))  # doctest: +SKIP
    'commit 3f2a9c01e4b7 was not in ~/proj; it was fetched from git@github.com:acme/proj.git'
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from nbtrack.capture.git import git_env
from nbtrack.errors import CannotReplay

__all__ = ["checked", "checkout_submodules", "fetch_commit", "run_git"]

_GIT_TIMEOUT = 300.0  # a clone or checkout of a large repository
_FETCH_TIMEOUT = 120.0


def run_git(
    cwd: Path, *args: str, stdin: bytes | None = None, timeout: float = _GIT_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """``git ARGS`` in ``cwd``, output captured; CannotReplay when git is missing or hangs.

    Example:
        >>> run_git(Path("."), "rev-parse", "--show-toplevel").returncode  # doctest: +SKIP
        0
    """
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


def checked(proc: subprocess.CompletedProcess[bytes], what: str) -> None:
    """CannotReplay saying ``what`` failed, with git's last line, unless ``proc`` succeeded."""
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CannotReplay(f"{what} failed: {detail[-1] if detail else proc.returncode}")


def fetch_commit(work: Path, commit: str, src_top: Path) -> str:
    """Fetch ``commit`` into the clone from the source repository's own remotes (never from a URL the
    run recorded: a planted run could name any repository); the risk line to note, or CannotReplay."""
    fix = f"fetch or push it so that {src_top} has it (git fetch --all), or pass a clone that has it"
    names = run_git(src_top, "remote").stdout.decode("utf-8", "replace").split()
    if not names:
        raise CannotReplay(f"commit {commit} is not in {src_top} and {src_top} has no git remote; {fix}")
    tried = []
    for name in names:
        url = run_git(src_top, "remote", "get-url", name).stdout.decode("utf-8", "replace").strip()
        if not url:
            continue
        fetch = ("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url, commit)
        proc = run_git(work, *fetch, timeout=_FETCH_TIMEOUT)
        if proc.returncode == 0 and run_git(work, "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0:
            return f"commit {commit[:12]} was not in {src_top}; it was fetched from {url}"
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        tried.append(f"{url}: {detail[-1] if detail else 'not found there'}")
    raise CannotReplay(
        f"commit {commit} is not in {src_top} and could not be fetched from its remotes "
        f"({'; '.join(tried)}); {fix}"
    )


def checkout_submodules(work: Path, src_top: Path, git_data: dict[str, Any], risks: list[str]) -> None:
    """Each git submodule at the commit it is pinned to, cloned from the user's checkout of it.

    A submodule the source has not checked out, or whose pinned commit it lacks, makes the code
    impossible to rebuild: CannotReplay names it and the command that fixes it.
    """
    listed = run_git(work, "ls-files", "--stage", "-z").stdout.split(b"\0")
    pinned = [rec.split(b"\t", 1) for rec in listed if rec.startswith(b"160000 ")]
    changed = {e["path"] for e in git_data.get("changed") or [] if e.get("submodule")}
    for head, raw in pinned:
        path, commit = os.fsdecode(raw), head.split()[1].decode()
        src, dest = src_top / path, work / path
        fix = f"run `git submodule update --init --recursive {path}` in {src_top}, then replay again"
        if not (src / ".git").exists():  # a file (gitdir: ...) in a checked-out submodule
            raise CannotReplay(
                f"the run's code uses git submodule {path}, which {src_top} has not checked out; {fix}"
            )
        clone = ("clone", "--quiet", "--no-checkout", "--shared", str(src), str(dest))
        checked(run_git(work, *clone), f"cloning git submodule {path} from {src}")
        if run_git(dest, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
            raise CannotReplay(
                f"the run's code uses git submodule {path} at commit {commit[:12]}, which {src} lacks; {fix}"
            )
        checkout = ("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit)
        checked(run_git(dest, *checkout), f"`git checkout {commit[:12]}` in git submodule {path}")
        run_git(dest, "remote", "remove", "origin")
        if path in changed:
            risks.append(
                f"git submodule {path} had uncommitted changes or another commit checked out when the run "
                f"was recorded; the replay uses the commit the repository pins ({commit[:12]})"
            )
        checkout_submodules(dest, src, {}, risks)
