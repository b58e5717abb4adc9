"""The data section against real git + DVC repositories (built with the dvc CLI; no mocks)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from dvc_helpers import (
    LOCAL_SECRET,
    REMOTE_PASSWORD,
    REMOTE_USER,
    dvc,
    git,
    hermetic_dvc_env,
    make_git_dvc_repo,
    write,
)

from nbtrack.capture.base import CaptureContext, run_provider
from nbtrack.capture.data import DataProvider, dataset_inputs


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per module (each dvc command costs ~2 s); every test works on a copy."""
    base = tmp_path_factory.mktemp("dvc-template")
    return make_git_dvc_repo(base / "repo", env=hermetic_dvc_env(base / "dvc-env"))


@pytest.fixture
def project(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in hermetic_dvc_env(tmp_path / "dvc-env").items():
        monkeypatch.setenv(name, value)
    dest = tmp_path / "project"
    shutil.copytree(template, dest, symlinks=True)
    return dest


def capture(root: Path, ctx: CaptureContext | None = None) -> dict[str, Any]:
    section, files = run_provider(DataProvider(), ctx or CaptureContext(root))
    assert section.status == "ok", section.reason
    assert files == {}
    return section.data


def by_path(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["path"]: o for o in data["outputs"]}


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def recorded(dvcfile: Path) -> dict[str, Any]:
    out: dict[str, Any] = yaml.safe_load(dvcfile.read_text())["outs"][0]
    return out


def test_outputs_carry_the_hashes_dvc_recorded(project: Path) -> None:
    data = capture(project)
    outs = by_path(data)
    assert list(outs) == ["data/images", "data/train.csv", "out/prep.txt"]  # sorted by path
    assert data["root"] == str(project.resolve())
    assert data["summary"] == {"clean": 3, "modified": 0, "missing": 0, "unknown": 0}
    assert data["problems"] == []

    train = outs["data/train.csv"]
    content = (project / "data" / "train.csv").read_bytes()
    assert train == {
        "path": "data/train.csv",
        "hash_name": "md5",
        "hash": md5(content),
        "size": len(content),
        "nfiles": None,
        "is_dir": False,
        "source": "data/train.csv.dvc",
        "stage": None,
        "status": "clean",
    }
    assert train["hash"] == recorded(project / "data" / "train.csv.dvc")["md5"]

    images = outs["data/images"]
    on_disk = recorded(project / "data" / "images.dvc")
    assert images["hash"] == on_disk["md5"] and images["hash"].endswith(".dir")
    assert images["is_dir"] is True and images["nfiles"] == 3
    assert images["size"] == sum(p.stat().st_size for p in (project / "data" / "images").iterdir())
    assert images["status"] == "clean"


def test_dvc_lock_outputs_are_recorded_with_their_stage(project: Path) -> None:
    prep = by_path(capture(project))["out/prep.txt"]
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    locked = lock["stages"]["prep"]["outs"][0]
    assert prep["source"] == "dvc.lock:prep" and prep["stage"] == "prep"
    assert prep["hash"] == locked["md5"] == md5((project / "out" / "prep.txt").read_bytes())
    assert prep["size"] == locked["size"] and prep["status"] == "clean"


def test_modified_and_missing_outputs(project: Path) -> None:
    with (project / "data" / "train.csv").open("a") as f:
        f.write("4,0\n")
    with (project / "data" / "images" / "img0.txt").open("a") as f:
        f.write("changed\n")
    (project / "out" / "prep.txt").unlink()
    data = capture(project)
    outs = by_path(data)
    new_train = (project / "data" / "train.csv").read_bytes()
    assert outs["data/train.csv"]["status"] == "modified"
    assert outs["data/train.csv"]["workspace_hash"] == md5(new_train)
    assert outs["data/images"]["status"] == "modified"
    assert outs["data/images"]["workspace_hash"].endswith(".dir")
    assert outs["data/images"]["workspace_hash"] != outs["data/images"]["hash"]
    assert outs["out/prep.txt"]["status"] == "missing" and "workspace_hash" not in outs["out/prep.txt"]
    assert data["summary"] == {"clean": 0, "modified": 2, "missing": 1, "unknown": 0}

    # The workspace hashes are exactly what DVC records when the change is committed.
    dvc(project, "add", "-q", "data/train.csv", "data/images")
    assert recorded(project / "data" / "train.csv.dvc")["md5"] == outs["data/train.csv"]["workspace_hash"]
    assert recorded(project / "data" / "images.dvc")["md5"] == outs["data/images"]["workspace_hash"]


def test_deleted_folder_is_missing(project: Path) -> None:
    shutil.rmtree(project / "data" / "images")
    images = by_path(capture(project))["data/images"]
    assert images["status"] == "missing" and images["nfiles"] == 3


def test_status_comes_from_dvcs_state_cache(project: Path) -> None:
    """Same inode, size and mtime means "unchanged" to DVC's state, even if the bytes differ."""
    from dvc.repo import Repo

    ctx = CaptureContext(project)
    assert by_path(capture(project, ctx))["data/train.csv"]["status"] == "clean"
    for target, key in (
        (project / "data" / "train.csv", "data/train.csv"),
        (project / "data" / "images" / "img1.txt", "data/images"),
    ):
        before = target.stat()
        forged = target.read_bytes().swapcase()
        assert len(forged) == before.st_size and forged != target.read_bytes()
        with target.open("r+b") as f:  # rewritten in place: same inode, same size
            f.write(forged)
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert target.stat().st_ino == before.st_ino

        # Fresh context: no in-kernel memo, only DVC's on-disk state answers.
        assert by_path(capture(project))[key]["status"] == "clean"
        assert by_path(capture(project, ctx))[key]["status"] == "clean"

        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        out = by_path(capture(project, ctx))[key]
        assert out["status"] == "modified"

    assert out["workspace_hash"].endswith(".dir")
    # The capture filled DVC's state with what it hashed, so the next one (or `dvc status`) is warm.
    train = project / "data" / "train.csv"
    with Repo(str(project)) as repo:
        _, hash_info = repo.state.get(str(train), repo.fs)
    assert hash_info is not None and hash_info.value == md5(train.read_bytes())


def test_folder_memo_sees_every_kind_of_change(project: Path) -> None:
    folder = project / "data" / "images"
    old = time.time() - 100  # older than the racy window, so the folder answer is memoised
    for p in folder.iterdir():
        os.utime(p, (old, old))
    ctx = CaptureContext(project)
    assert by_path(capture(project, ctx))["data/images"]["status"] == "clean"
    assert ctx.state["data"].folders, "a warm folder answer was kept"
    assert by_path(capture(project, ctx))["data/images"]["status"] == "clean"

    write(folder / "extra.txt", "new file\n")
    assert by_path(capture(project, ctx))["data/images"]["status"] == "modified"
    (folder / "extra.txt").unlink()
    assert by_path(capture(project, ctx))["data/images"]["status"] == "clean"
    (folder / "img2.txt").rename(folder / "img9.txt")
    assert by_path(capture(project, ctx))["data/images"]["status"] == "modified"
    (folder / "img9.txt").rename(folder / "img2.txt")
    write(project / ".dvcignore", "img2.txt\n")  # DVC would now hash one file fewer
    assert by_path(capture(project, ctx))["data/images"]["status"] == "modified"


def test_a_new_kernel_reuses_the_last_build_and_rehashes_only_changed_files(project: Path) -> None:
    folder = project / "data" / "images"
    kept = project / ".dvc" / "tmp" / "nbtrack-folders"
    old = time.time() - 100
    for p in folder.iterdir():
        os.utime(p, (old, old))

    def fresh() -> dict[str, Any]:  # a new kernel: nothing in memory
        return by_path(capture(project, CaptureContext(project)))["data/images"]

    # Given a folder answer built by one kernel, kept for the next
    assert fresh()["status"] == "clean"
    assert len(list(kept.glob("*.json"))) == 1
    # When a file changes between kernels (same size, an old mtime), only it is rehashed
    original = (folder / "img1.txt").read_bytes()
    (folder / "img1.txt").write_bytes(b"X" * len(original))
    os.utime(folder / "img1.txt", (old, old + 1))
    changed = fresh()
    assert changed["status"] == "modified"
    # Then the hash is the one DVC's own full build gives
    shutil.rmtree(kept)
    assert fresh()["workspace_hash"] == changed["workspace_hash"]
    # and restoring the content makes the folder clean again, from the kept build
    (folder / "img1.txt").write_bytes(original)
    os.utime(folder / "img1.txt", (old, old + 2))
    assert fresh()["status"] == "clean"
    # and a change made a moment ago (within a timestamp tick) is rehashed every time, not remembered
    (folder / "img1.txt").write_bytes(b"Y" * len(original))
    assert fresh()["status"] == "modified"
    (folder / "img1.txt").write_bytes(original)
    assert fresh()["status"] == "clean"
    os.utime(folder / "img1.txt", (old, old + 3))
    # and a new file (which only DVC's ignore rules can judge) is seen too
    write(folder / "extra.txt", "new\n")
    os.utime(folder / "extra.txt", (old, old))
    assert fresh()["status"] == "modified"
    # and git does not see what is kept (DVC's own tmp folder is ignored)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True)
    assert status.returncode == 0 and "nbtrack-folders" not in status.stdout


def test_the_kept_build_gives_dvcs_hash_for_nested_and_unusual_names(project: Path) -> None:
    folder = project / "data" / "nested"
    names = ["a/b/deep.txt", "a/b c/space.txt", "é/ünïcode.txt", 'q/"quoted".txt', "a-b.txt", "a/z.txt"]
    for i, name in enumerate(names):
        write(folder / name, f"file {i}\n")
    dvc(project, "add", "data/nested")
    old = time.time() - 100
    for p in folder.rglob("*"):
        os.utime(p, (old, old))
    recorded_hash = recorded(project / "data" / "nested.dvc")["md5"]
    kept = project / ".dvc" / "tmp" / "nbtrack-folders"

    def fresh() -> dict[str, Any]:
        return by_path(capture(project, CaptureContext(project)))["data/nested"]

    # Given a kept file of an older nbtrack, DVC builds afresh and the answer is right
    assert fresh()["status"] == "clean"
    older = {"digest": "x", "value": "0" * 32 + ".dir", "files": {"a-b.txt": [1, 2, 3, "f"]}}
    for f in kept.glob("*.json"):
        f.write_text(json.dumps(older))
    assert fresh()["status"] == "clean"
    # When a nested file is rewritten with the same bytes, it is rehashed and the folder hash
    # computed from the kept build is exactly the one `dvc add` recorded
    target = folder / "é" / "ünïcode.txt"
    target.write_bytes(target.read_bytes())
    os.utime(target, (old, old + 1))
    assert fresh()["status"] == "clean"
    # and a changed one gives the hash DVC's own full build gives
    target.write_text("changed\n")
    os.utime(target, (old, old + 2))
    changed = fresh()
    assert changed["status"] == "modified" and changed["workspace_hash"] != recorded_hash
    shutil.rmtree(kept)
    assert fresh()["workspace_hash"] == changed["workspace_hash"]


def test_remote_is_recorded_without_credentials(project: Path) -> None:
    data = capture(project)
    assert data["remote"] == {"name": "storage", "url": "https://dvc.example.invalid/store"}
    assert data["remotes"] == {
        "storage": "https://dvc.example.invalid/store",
        "backup": "s3://bucket/dvc-backup",
    }
    inputs = dataset_inputs(data)
    text = json.dumps(data) + json.dumps(inputs)
    for secret in (REMOTE_PASSWORD, f"{REMOTE_USER}:", LOCAL_SECRET, "secret_access_key"):
        assert secret not in text


def test_dataset_inputs(project: Path) -> None:
    (project / "out" / "prep.txt").write_text("different\n")
    data = capture(project)
    inputs = {d["name"]: d for d in dataset_inputs(data)}
    assert set(inputs) == {"data/images", "data/train.csv", "out/prep.txt"}
    for out in data["outputs"]:
        item = inputs[out["path"]]
        assert item["digest"] == out["hash"][:36] and len(item["digest"]) <= 36
        assert item["source_type"] == "dvc"
        source = json.loads(item["source"])
        assert source["path"] == out["path"] and source["hash"] == out["hash"]
        assert source["remote"] == "storage" and source["url"] == "https://dvc.example.invalid/store"
    assert json.loads(inputs["out/prep.txt"]["source"])["workspace_hash"] == md5(b"different\n")
    assert len(inputs["data/images"]["digest"]) == 36  # 32 hex digits + ".dir"


def test_not_a_dvc_project_is_absent_with_the_fix(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    section, _ = run_provider(DataProvider(), CaptureContext(tmp_path))
    assert section.status == "absent"
    assert str(tmp_path.resolve()) in (section.reason or "") and "`dvc init`" in (section.reason or "")


def test_broken_dvc_files_become_problems(project: Path) -> None:
    write(project / "data" / "bad.dvc", "outs:\n- md5: [unclosed\n  path: bad\n")
    write(project / "data" / "empty.dvc", "outs: []\n")
    write(project / "data" / "odd.dvc", "outs:\n- path: odd\n  md5: abc\n  size: lots\n")
    write(project / "sub" / "dvc.yaml", "stages: [not, a, mapping\n")
    data = capture(project)
    problems = data["problems"]
    assert len(problems) == 4, problems
    bad, empty, odd, sub = problems
    assert bad.startswith("data/bad.dvc is not a valid DVC file (") and "line 3" in bad
    assert bad.endswith("fix it or run `dvc add data/bad` again")
    assert empty.startswith("data/empty.dvc") and "no outs" in empty
    assert odd.startswith("data/odd.dvc") and "size" in odd
    assert sub.startswith("sub/dvc.yaml is not a valid DVC pipeline") and "`dvc repro`" in sub
    assert all("\n" not in p for p in problems)
    assert set(by_path(data)) == {"data/images", "data/train.csv", "out/prep.txt"}
    assert data["summary"]["clean"] == 3


def test_all_digit_hashes_stay_strings(project: Path) -> None:
    """Unquoted, an all-digit md5 is a YAML int: leading zeros vanish and DVC itself crashes."""
    write(project / "data" / "digits.bin", b"abc")
    digits = "01234567890123456789012345678901"
    write(
        project / "data" / "digits.bin.dvc",
        f"outs:\n- md5: {digits}\n  size: 3\n  hash: md5\n  path: digits.bin\n",
    )
    floaty = "12345678901234567890123456789e01"  # a YAML float
    write(project / "data" / "floaty.bin", b"abc")
    write(
        project / "data" / "floaty.bin.dvc",
        f"outs:\n- md5: {floaty}\n  size: 3\n  hash: md5\n  path: floaty.bin\n",
    )
    lock = project / "dvc.lock"
    locked = yaml.safe_load(lock.read_text())["stages"]["prep"]["outs"][0]["md5"]
    lock.write_text(lock.read_text().replace(locked, "0" + digits[1:]))

    data = capture(project)
    assert data["problems"] == []
    outs = by_path(data)
    assert outs["data/digits.bin"]["hash"] == digits
    assert outs["data/floaty.bin"]["hash"] == floaty
    assert outs["out/prep.txt"]["hash"] == "0" + digits[1:]
    for key in ("data/digits.bin", "data/floaty.bin"):
        assert outs[key]["status"] == "modified" and outs[key]["workspace_hash"] == md5(b"abc")


def test_warm_captures_see_new_and_recommitted_outputs(project: Path) -> None:
    ctx = CaptureContext(project)
    first = capture(project, ctx)
    repo = ctx.state["data"].repo
    write(project / "data" / "new.csv", "x\n1\n")
    write(project / "data" / "train.csv", "id,label\n9,9\n")
    dvc(project, "add", "-q", "data/new.csv", "data/train.csv")
    second = capture(project, ctx)
    assert ctx.state["data"].repo is repo  # the open Repo is reused
    outs = by_path(second)
    assert outs["data/new.csv"]["status"] == "clean"
    assert outs["data/new.csv"]["hash"] == md5(b"x\n1\n")
    assert (
        outs["data/train.csv"]["hash"] == md5(b"id,label\n9,9\n") != by_path(first)["data/train.csv"]["hash"]
    )
    assert outs["data/train.csv"]["status"] == "clean"


def test_capture_works_while_another_process_holds_the_dvc_lock(project: Path) -> None:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    capture(project)  # imports DVC here, so the timing below is the capture's own
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from dvc.repo import Repo; r = Repo(sys.argv[1]); r.lock.lock(); "
            "print('locked', flush=True); time.sleep(120)",
            str(project),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        data = capture(project)
        elapsed = time.perf_counter() - started
        assert data["summary"]["clean"] == 3 and elapsed < 1.0, elapsed  # no wait for the lock
        with pytest.raises(DvcException, match="lock"), Repo(str(project)) as repo:
            repo.status()  # DVC's own status needs the lock (and gives up after ~3 s)
    finally:
        holder.kill()
        holder.wait()


def test_import_is_lazy_and_stdout_is_left_alone(project: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import nbtrack, nbtrack.capture.data as d\n"
        "assert 'dvc' not in sys.modules, 'importing nbtrack imported dvc'\n"
        "streams = sys.stdout, sys.stderr\n"
        "data = d.DataProvider().capture(d.CaptureContext(Path(sys.argv[1]))).data\n"
        "assert (sys.stdout, sys.stderr) == streams, (type(sys.stdout), type(sys.stderr))\n"
        "print(data['summary']['clean'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(project)], capture_output=True, text=True, check=False, cwd=project
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_unhashable_and_unrecorded_outputs_are_explained(project: Path) -> None:
    write(project / "data" / "images" / ".dvcignore", "*.tmp\n")  # DVC refuses to hash this folder
    with (project / "dvc.yaml").open("a") as f:
        f.write("  train:\n    cmd: echo never run\n    outs:\n    - model.pkl\n")
    data = capture(project)
    outs = by_path(data)
    assert outs["data/images"]["status"] == "unknown"
    assert data["summary"] == {"clean": 2, "modified": 0, "missing": 0, "unknown": 1}
    assert "model.pkl" not in outs
    unhashable, unrecorded = sorted(data["problems"])
    assert unhashable.startswith("could not hash data/images (") and ".dvcignore" in unhashable
    assert (
        unrecorded == "model.pkl (from dvc.lock:train) has no recorded hash; run `dvc repro dvc.yaml:train`"
    )


def test_dvc_root_is_found_above_the_project_root(project: Path) -> None:
    data = capture(project / "data" / "images")
    assert data["root"] == str(project.resolve()) and len(data["outputs"]) == 3
