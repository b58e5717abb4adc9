"""The git section, against real repositories built with the git command line."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nbtrack.capture.base import CaptureContext, run_provider
from nbtrack.capture.git import GitProvider
from nbtrack.config import NbtrackConfig
from nbtrack.models import Section

GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
BINARY = bytes(range(256)) * 8 + b"\0tail"


@pytest.fixture(autouse=True)
def _no_outer_repo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """git must not find a repository above tmp_path, nor the machine's config."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    proc = subprocess.run(["git", *GIT_ID, *args], cwd=repo, capture_output=True, input=input, check=False)
    assert proc.returncode == 0, f"git {args} failed: {proc.stderr.decode()}"
    return proc.stdout.decode().strip()


def make_repo(path: Path) -> Path:
    """A repository with one commit: text, binary, executable, symlink and a nested module."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    (path / "train.py").write_text("import numpy\nprint('train')\n")
    (path / "model.bin").write_bytes(BINARY)
    (path / "run.sh").write_text("#!/bin/sh\necho run\n")
    (path / "run.sh").chmod(0o755)
    (path / "pkg").mkdir()
    (path / "pkg" / "util.py").write_text("X = 1\n")
    (path / "pkg" / "old_name.py").write_text("Y = 2\n" * 20)
    (path / "link").symlink_to("train.py")
    (path / ".gitignore").write_text("*.log\n.nbtrack/\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "init")
    return path


def capture(root: Path, **config: Any) -> tuple[Section, dict[str, bytes]]:
    return run_provider(GitProvider(), CaptureContext(project_root=root, config=NbtrackConfig(**config)))


def tree(root: Path) -> dict[str, tuple[str, bytes, bool]]:
    """Every file below root except .git: kind, content (or link target), executable bit."""
    out: dict[str, tuple[str, bytes, bool]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            p = Path(dirpath) / name
            if name == ".git":
                continue
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p).encode(), False)
            else:
                out[rel] = ("file", p.read_bytes(), bool(st.st_mode & stat.S_IXUSR))
    return out


def test_clean_repo(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    section, files = capture(repo)
    assert section.status == "ok", section.reason
    d = section.data
    assert d["commit"] == git(repo, "rev-parse", "HEAD")
    assert d["branch"] == "main"
    assert d["root"] == str(repo)
    assert d["dirty"] is False
    assert d["changed"] == [] and d["untracked"] == []
    assert d["diff"]["bytes"] == 0 and d["diff"]["stored"] is False and d["diff"]["truncated"] is False
    assert files == {}
    json.dumps(d)


def test_subfolder_and_detached_head(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "--detach")
    section, _ = capture(repo / "pkg")  # the notebook's folder may be below the root
    assert section.data["root"] == str(repo)
    assert section.data["branch"] is None
    assert section.data["commit"] == git(repo, "rev-parse", "HEAD")


def test_diff_applied_at_commit_reproduces_working_tree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    # staged and unstaged edits to one file, a modified binary, a deletion, a rename, a mode change
    (repo / "train.py").write_text("import numpy\nprint('train v2')\n")
    git(repo, "add", "train.py")
    (repo / "train.py").write_text("import numpy\nprint('train v3')\nLR = 0.1")  # no final newline
    (repo / "model.bin").write_bytes(BINARY[::-1])
    (repo / "run.sh").unlink()
    git(repo, "mv", "pkg/old_name.py", "pkg/new_name.py")
    (repo / "pkg" / "util.py").chmod(0o755)
    # untracked: a new local module, a binary, an executable, a symlink, awkward names, an empty file
    (repo / "features.py").write_text("def build():\n    return 42\n")
    (repo / "pkg" / "sub").mkdir()
    (repo / "pkg" / "sub" / "weights.npy").write_bytes(BINARY + b"more")
    (repo / "tool.sh").write_text("#!/bin/sh\n")
    (repo / "tool.sh").chmod(0o755)
    (repo / "newlink").symlink_to("features.py")
    (repo / "my notes.txt").write_text("spaces in the name\n")
    (repo / 'd\u00e9j\u00e0 "vu".txt').write_text("quotes and accents\n")
    (repo / "empty.txt").write_bytes(b"")
    (repo / "debug.log").write_text("ignored, so never recorded\n")
    expected = tree(repo)

    section, files = capture(repo)
    d = section.data
    assert section.status == "ok", section.reason
    assert d["dirty"] is True
    statuses = {c["path"]: c["status"] for c in d["changed"]}
    assert statuses["train.py"] == "MM" and statuses["run.sh"] == ".D"
    assert any(c.get("orig_path") == "pkg/old_name.py" for c in d["changed"])
    assert "features.py" in d["untracked"] and "debug.log" not in d["untracked"]
    diff = d["diff"]
    assert diff["stored"] is True and diff["truncated"] is False and diff["complete"] is True
    assert diff["bytes"] == len(files["git.diff"])
    assert diff["sha256"] == hashlib.sha256(files["git.diff"]).hexdigest()
    assert sorted(diff["untracked_included"]) == sorted(d["untracked"])
    assert b"ignored, so never recorded" not in files["git.diff"]

    # Rebuild: a fresh worktree at the recorded commit, then the recorded patch.
    patch = tmp_path / "git.diff"
    patch.write_bytes(files["git.diff"])
    rebuilt = tmp_path / "rebuilt"
    git(repo, "worktree", "add", "-q", "--detach", str(rebuilt), d["commit"])
    git(rebuilt, "apply", "--check", str(patch))
    git(rebuilt, "apply", str(patch))
    expected.pop("debug.log")
    assert tree(rebuilt) == expected


def test_diff_survives_user_diff_config(tmp_path: Path) -> None:
    """diff.noprefix / mnemonicPrefix / color.ui=always in the user's config must not break the patch."""
    repo = make_repo(tmp_path / "repo")
    for key, value in (("diff.noprefix", "true"), ("diff.mnemonicPrefix", "true"), ("color.ui", "always")):
        git(repo, "config", key, value)
    (repo / "train.py").write_text("changed\n")
    _, files = capture(repo)
    rebuilt = tmp_path / "rebuilt"
    git(repo, "worktree", "add", "-q", "--detach", str(rebuilt), "HEAD")
    git(rebuilt, "apply", "-", input=files["git.diff"])
    assert (rebuilt / "train.py").read_text() == "changed\n"


def test_cap_exceeded_stores_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("x = 1\n" * 5000)
    (repo / "new.py").write_text("y = 2\n")
    full, full_files = capture(repo)
    section, files = capture(repo, git_diff_max_bytes=1000)
    diff = section.data["diff"]
    assert "git.diff" not in files
    assert diff["stored"] is False and diff["truncated"] is True and diff["complete"] is False
    assert diff["cap"] == 1000 and diff["bytes"] > 1000
    assert "NbtrackConfig.git_diff_max_bytes" in diff["reason"]
    # the size and hash still describe the full patch
    assert diff["bytes"] == len(full_files["git.diff"])
    assert diff["sha256"] == full.data["diff"]["sha256"]


def test_untracked_caps(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    for i in range(3):
        (repo / f"n{i}.py").write_text(f"N = {i}\n")
    (repo / "big.csv").write_text("a,b\n" * 100)
    section, files = capture(repo, untracked_max_files=3, untracked_max_file_bytes=100)
    d = section.data
    assert d["untracked"] == ["big.csv", "n0.py", "n1.py"]
    assert d["untracked_count"] == 4 and d["untracked_truncated"] is True
    assert d["diff"]["untracked_included"] == ["n0.py", "n1.py"]
    (skip,) = d["diff"]["untracked_skipped"]
    assert skip["path"] == "big.csv" and "untracked_max_file_bytes" in skip["reason"]
    assert d["diff"]["complete"] is False
    assert b"N = 2" not in files["git.diff"]


def test_credentials_never_recorded(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "backup", "ssh://git@backup.example.com/team/repo.git")
    git(repo, "remote", "add", "origin", "https://alice:hunter2-S3cret@git.example.com/team/repo.git")
    git(repo, "remote", "add", "fork", "git@github.com:alice/repo.git")
    # untracked files holding secrets are listed but never copied into git.diff
    (repo / ".env").write_text("DB_PASSWORD=env-file-secret-1\n")
    (repo / "keys.py").write_text("KEY = 'AKIAIOSFODNN7EXAMPLE'\n")
    # ...while ordinary code that merely passes a password along is kept
    (repo / "ok.py").write_text("conn = connect(host=h, password=os.environ['PGPASSWORD'])\n")
    section, files = capture(repo)
    d = section.data
    assert d["remote_url"] == "https://git.example.com/team/repo.git"
    assert d["remotes"] == {
        "backup": "ssh://git@backup.example.com/team/repo.git",  # a plain user is no secret
        "origin": "https://git.example.com/team/repo.git",
        "fork": "git@github.com:alice/repo.git",
    }
    text = json.dumps(d) + files["git.diff"].decode()
    for secret in ("hunter2-S3cret", "alice:", "env-file-secret-1", "AKIAIOSFODNN7EXAMPLE"):
        assert secret not in text
    skipped = {s["path"] for s in d["diff"]["untracked_skipped"]}
    assert skipped == {".env", "keys.py"}
    assert d["diff"]["untracked_included"] == ["ok.py"]


def test_first_remote_when_no_origin(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "upstream", "https://tok3n-value@example.com/x.git")
    section, _ = capture(repo)
    assert section.data["remote_url"] == "https://example.com/x.git"
    assert "tok3n-value" not in json.dumps(section.data)


def test_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    section, files = capture(plain)
    assert section.status == "absent"
    assert section.reason is not None
    assert "not a git repository" in section.reason and "git init" in section.reason
    assert files == {}


def test_git_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    section, _ = capture(repo)
    assert section.status == "absent"
    assert section.reason is not None and "git is not installed" in section.reason


def test_empty_repository(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "staged.py").write_text("A = 1\n")
    git(repo, "add", "staged.py")
    (repo / "data.bin").write_bytes(BINARY)
    (repo / "notes.md").write_text("todo\n")
    section, files = capture(repo)
    d = section.data
    assert section.status == "ok", section.reason
    assert d["commit"] is None and "no commits" in d["commit_reason"]
    assert d["branch"] == "main"  # the unborn branch
    assert d["dirty"] is True and d["changed"] == []
    assert d["untracked"] == ["data.bin", "notes.md", "staged.py"]
    # the patch alone recreates every file in an empty repository
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    git(rebuilt, "init", "-q")
    git(rebuilt, "apply", "-", input=files["git.diff"])
    assert tree(rebuilt) == tree(repo)


def test_status_does_not_need_index_lock(tmp_path: Path) -> None:
    """Another git process holding index.lock (a commit in a terminal) must not fail the capture."""
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("edited\n")
    lock = repo / ".git" / "index.lock"
    lock.write_bytes(b"")
    section, files = capture(repo)
    assert section.status == "ok", section.reason
    assert section.data["dirty"] is True and "git.diff" in files
    assert lock.exists() and lock.read_bytes() == b""


def test_sha256_object_format(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "--object-format=sha256")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-q", "-m", "i")
    (repo / "w.bin").write_bytes(BINARY)
    section, files = capture(repo)
    assert len(section.data["commit"]) == 64
    rebuilt = tmp_path / "rebuilt"
    git(repo, "worktree", "add", "-q", "--detach", str(rebuilt), "HEAD")
    git(rebuilt, "apply", "-", input=files["git.diff"])
    assert (rebuilt / "w.bin").read_bytes() == BINARY
