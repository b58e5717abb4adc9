"""The replay workspace, built from real git + DVC projects and snapshots taken by the real providers."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import dvc, dvc_md5, git, make_project
from dvc_helpers import hermetic_dvc_env, write

from nbtrack.capture.base import CaptureContext, run_provider
from nbtrack.capture.data import DataProvider
from nbtrack.capture.git import GitProvider
from nbtrack.errors import CannotReplay
from nbtrack.models import Snapshot
from nbtrack.replay.workspace import Workspace, build_workspace


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed git + DVC project, built once (each dvc command costs ~3 s).

    Outputs: ``data/churn.csv`` (file), ``data/images`` (folder of 3 files), ``out/prep.txt`` (stage
    ``prep`` in dvc.lock) and ``out/metrics.json`` (``cache: false``: committed to git).
    """
    base = tmp_path_factory.mktemp("workspace-template")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in hermetic_dvc_env(base / "dvc-env").items():
            mp.setenv(name, value)
        root = make_project(base / "proj")
        write(root / "train.py", "print('train')\n")
        for i in range(3):
            write(root / "data" / "images" / f"img{i}.txt", f"image {i}\n" * (i + 1))
        dvc(root, "add", "-q", "data/images")
        write(
            root / "dvc.yaml",
            "stages:\n  prep:\n"
            "    cmd: python -c \"import pathlib; p = pathlib.Path('out'); p.mkdir(exist_ok=True); "
            "(p / 'prep.txt').write_text('prepared'); (p / 'metrics.json').write_text('{}')\"\n"
            "    deps:\n    - data/churn.csv\n    outs:\n    - out/prep.txt\n"
            "    metrics:\n    - out/metrics.json:\n        cache: false\n",
        )
        dvc(root, "repro", "-q")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "code and images")
    return root


@pytest.fixture
def project(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in hermetic_dvc_env(tmp_path / "dvc-env").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    dest = tmp_path / "project"
    shutil.copytree(template, dest, symlinks=True)
    return dest


def record(root: Path) -> tuple[Snapshot, bytes | None]:
    """The snapshot and git.diff the tracker would record for a run in ``root``."""
    ctx = CaptureContext(project_root=root)
    git_section, files = run_provider(GitProvider(), ctx)
    data_section, _ = run_provider(DataProvider(), ctx)
    if "data" in ctx.state:
        ctx.state["data"].repo.close()
    run = {"project_root": str(root)}
    return Snapshot(run=run, sections={"git": git_section, "data": data_section}), files.get("git.diff")


def build(snap: Snapshot, diff: bytes | None, source: Path, tmp_path: Path, **kw: Any) -> Workspace:
    said: list[str] = []
    ws = build_workspace(
        snap,
        source=source,
        git_diff=diff,
        base_dir=tmp_path / "replays",
        progress=False,
        say=said.append,
        **kw,
    )
    assert all("\n" not in line for line in said)
    return ws


def state_of(root: Path) -> dict[str, Any]:
    """Everything a replay must leave alone: git status, every file's bytes, mode, mtime and links."""
    files: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            digest = ""
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fobj:
                    digest = hashlib.sha1(fobj.read(), usedforsecurity=False).hexdigest()
            mtime = None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns  # dvc's tmp/ churns
            files[os.path.relpath(path, root)] = (st.st_mode, st.st_nlink, mtime, digest)
    files = {k: v for k, v in files.items() if not k.startswith(os.path.join(".dvc", "tmp"))}
    # GIT_OPTIONAL_LOCKS=0: a plain `git status` would itself refresh .git/index.
    status = git(root, "status", "--porcelain", "--untracked-files=all", env={"GIT_OPTIONAL_LOCKS": "0"})
    return {"status": status, "files": files}


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What differs between two ``state_of`` results (empty when nothing does)."""
    diff = {k: (v, after["files"].get(k)) for k, v in before["files"].items() if after["files"].get(k) != v}
    diff.update({k: (None, v) for k, v in after["files"].items() if k not in before["files"]})
    if before["status"] != after["status"]:
        diff["git status"] = (before["status"], after["status"])
    return diff


def cache_object(root: Path, md5: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def add_local_remote(root: Path, folder: Path) -> None:
    """What `dvc remote add -d storage FOLDER` writes, without its ~3 s start-up."""
    folder.mkdir(parents=True, exist_ok=True)
    with (root / ".dvc" / "config").open("a") as config:
        config.write(f"[core]\n    remote = storage\n['remote \"storage\"']\n    url = {folder}\n")


def test_clean_commit_gets_the_code_and_hard_links_the_data(project: Path, tmp_path: Path) -> None:
    # Given a clean run
    snap, diff = record(project)
    assert diff is None
    before = state_of(project)
    md5 = dvc_md5(project, "data/churn.csv")
    dvc_states = sorted(os.listdir(os.environ["DVC_SITE_CACHE_DIR"] + "/repo"))

    # When its workspace is built next to the cache
    ws = build(snap, diff, project, tmp_path)

    # Then it holds the commit's files and links the data from the cache
    assert ws.base.parent == tmp_path / "replays" and ws.base.name.startswith("nbtrack-replay-")
    assert ws.repo == ws.project == ws.dvc_root == ws.base / "work"
    assert git(ws.repo, "rev-parse", "HEAD") == snap.section("git").data["commit"]
    assert (ws.repo / "train.py").read_text() == "print('train')\n"
    assert git(ws.repo, "status", "--porcelain") == ""  # restored data and config.local are ignored
    assert git(ws.repo, "remote") == ""  # no remote recorded: the clone's source is not kept as one
    assert ws.risks == []
    assert [o.path for o in ws.data] == ["data/churn.csv", "data/images", "out/prep.txt"]
    assert (ws.repo / "out" / "prep.txt").read_text() == "prepared"  # from dvc.lock
    assert (ws.repo / "out" / "metrics.json").read_text() == "{}"  # from git: DVC keeps no copy
    churn = {o.path: o for o in ws.data}["data/churn.csv"]
    assert (churn.hash_name, churn.hash, churn.is_dir, churn.fetched) == ("md5", md5, False, False)
    assert churn.link == "hardlink" and churn.seconds < 5
    restored = ws.dvc_root / "data" / "churn.csv"  # type: ignore[operator]
    assert restored.read_bytes() == (project / "data" / "churn.csv").read_bytes()
    assert restored.stat().st_nlink > 1
    assert restored.stat().st_ino == cache_object(project, md5).stat().st_ino
    assert ws.modified_inputs() == []
    # an output the run writes (a pipeline stage's) is a copy: writing it cannot reach the cache
    prep = {o.path: o for o in ws.data}["out/prep.txt"]
    assert prep.link == "copy"
    assert (ws.repo / "out" / "prep.txt").stat().st_nlink == 1
    assert not os.path.islink(ws.repo / "out" / "prep.txt")

    # And the user's project is untouched once it is gone
    assert state_of(project)["status"] == before["status"]
    ws.cleanup()
    assert not ws.base.exists()
    assert changes(before, state_of(project)) == {}  # .git included: no worktree registered, no lock left
    assert sorted(os.listdir(os.environ["DVC_SITE_CACHE_DIR"] + "/repo")) == dvc_states


def test_dirty_tree_is_rebuilt_from_the_patch(project: Path, tmp_path: Path) -> None:
    git(project, "remote", "add", "origin", "https://example.invalid/team/churn.git")
    write(project / "train.py", "print('train, edited')\n")
    write(project / "features.py", "COLUMNS = ['tenure']\n")
    snap, diff = record(project)
    assert diff is not None
    before = state_of(project)

    ws = build(snap, diff, project, tmp_path)

    assert (ws.repo / "train.py").read_text() == "print('train, edited')\n"
    assert (ws.repo / "features.py").read_text() == "COLUMNS = ['tenure']\n"
    status = git(ws.repo, "status", "--porcelain").splitlines()
    assert sorted(line.strip() for line in status) == ["?? features.py", "M train.py"]
    assert git(ws.repo, "remote", "get-url", "origin") == "https://example.invalid/team/churn.git"
    assert ws.risks == []
    ws.cleanup()
    assert changes(before, state_of(project)) == {}


def test_data_changed_after_the_run_comes_back_at_the_recorded_version(project: Path, tmp_path: Path) -> None:
    # Given a run, then a new version of its input added to DVC and committed
    old = (project / "data" / "churn.csv").read_bytes()
    snap, diff = record(project)
    old_md5 = dvc_md5(project, "data/churn.csv")
    write(project / "data" / "churn.csv", old + b"9999,1,1,1\n")
    dvc(project, "add", "-q", "data/churn.csv")
    git(project, "commit", "-q", "-am", "new data")
    new = (project / "data" / "churn.csv").read_bytes()
    before = state_of(project)

    ws = build(snap, diff, project, tmp_path)

    assert (ws.repo / "data" / "churn.csv").read_bytes() == old
    assert (
        {o.path: o.hash for o in ws.data}["data/churn.csv"] == old_md5 != dvc_md5(project, "data/churn.csv")
    )
    ws.cleanup()
    assert (project / "data" / "churn.csv").read_bytes() == new
    assert changes(before, state_of(project)) == {}


def test_an_object_missing_from_the_cache_is_fetched_from_the_remote(project: Path, tmp_path: Path) -> None:
    add_local_remote(project, tmp_path / "remote")
    git(project, "commit", "-q", "-am", "remote")
    dvc(project, "push", "-q")
    md5 = dvc_md5(project, "data/churn.csv")
    cache_object(project, md5).unlink()
    snap, diff = record(project)
    before = state_of(project)

    ws = build(snap, diff, project, tmp_path)

    churn = {o.path: o for o in ws.data}
    assert churn["data/churn.csv"].fetched and not churn["data/images"].fetched
    restored = ws.repo / "data" / "churn.csv"
    assert restored.read_bytes() == (project / "data" / "churn.csv").read_bytes()
    assert restored.stat().st_ino == cache_object(project, md5).stat().st_ino
    ws.cleanup()
    # The fetched object joined the user's cache, as `dvc fetch` would; nothing else changed.
    fetched = os.path.relpath(cache_object(project, md5), project)
    assert list(changes(before, state_of(project))) == [fetched]


@pytest.mark.parametrize("remote", [True, False], ids=["empty-remote", "no-remote"])
def test_data_in_neither_cache_nor_remote_cannot_be_replayed(
    project: Path, tmp_path: Path, remote: bool
) -> None:
    if remote:
        add_local_remote(project, tmp_path / "remote")
        git(project, "commit", "-q", "-am", "remote")
    md5 = dvc_md5(project, "data/churn.csv")
    cache_object(project, md5).unlink()
    snap, diff = record(project)

    with pytest.raises(CannotReplay) as caught:
        build(snap, diff, project, tmp_path)

    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 3
    assert f"data/churn.csv (md5 {md5})" in message
    assert f"cache ({project / '.dvc' / 'cache'})" in message
    assert "dvc push data/churn.csv.dvc" in message
    if remote:
        assert f"nor the remote 'storage' ({tmp_path / 'remote'})" in message
    else:
        assert "no DVC remote" in message
    assert os.listdir(tmp_path / "replays") == []  # nothing half-made left behind


def test_a_folder_output_is_restored_file_by_file(project: Path, tmp_path: Path) -> None:
    snap, diff = record(project)
    ws = build(snap, diff, project, tmp_path)

    images = {o.path: o for o in ws.data}["data/images"]
    assert images.is_dir and images.hash.endswith(".dir") and images.link == "hardlink"
    restored = sorted(p.name for p in (ws.repo / "data" / "images").iterdir())
    assert restored == ["img0.txt", "img1.txt", "img2.txt"]
    assert (ws.repo / "data" / "images" / "img2.txt").read_text() == "image 2\n" * 3
    assert all(p.stat().st_nlink > 1 for p in (ws.repo / "data" / "images").iterdir())
    ws.cleanup()


def test_data_modified_when_recorded_is_a_risk(project: Path, tmp_path: Path) -> None:
    committed = (project / "data" / "churn.csv").read_bytes()
    write(project / "data" / "churn.csv", committed + b"edited,0,0,0\n")
    snap, diff = record(project)
    recorded = {o["path"]: o for o in snap.section("data").data["outputs"]}["data/churn.csv"]
    assert recorded["status"] == "modified"

    ws = build(snap, diff, project, tmp_path)

    assert ws.risks == [
        f"data/churn.csv was modified (md5 {recorded['workspace_hash']}, not committed to DVC) when the run "
        f"was recorded; the replay uses the DVC-recorded version {recorded['hash']}"
    ]
    assert (ws.repo / "data" / "churn.csv").read_bytes() == committed
    ws.cleanup()


def test_a_change_holding_a_credential_is_a_named_risk(project: Path, tmp_path: Path) -> None:
    # Given a run recorded while a committed file held an uncommitted token (left out of git.diff)
    write(project / "settings.py", "TOKEN = None\n")
    write(project / "util.py", "X = 1\n")
    git(project, "add", "settings.py", "util.py")
    git(project, "commit", "-q", "-m", "settings")
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    write(project / "settings.py", f"TOKEN = '{token}'\n")
    write(project / "util.py", "X = 2\n")
    snap, diff = record(project)
    assert token not in (diff or b"").decode()
    # When its workspace is built
    ws = build(snap, diff, project, tmp_path)
    # Then the replay says which file runs at its committed version
    assert ws.risks == [
        "changes to files holding credentials were left out of git.diff, so the replay runs their "
        "committed version: settings.py"
    ]
    assert (ws.repo / "settings.py").read_text() == "TOKEN = None\n"
    assert (ws.repo / "util.py").read_text() == "X = 2\n"  # the rest of the diff applied
    ws.cleanup()


def test_a_commit_the_source_lacks_cannot_be_replayed(project: Path, tmp_path: Path) -> None:
    snap, diff = record(project)
    commit = snap.section("git").data["commit"]
    other = make_project(tmp_path / "other", use_dvc=False)

    with pytest.raises(CannotReplay) as caught:
        build(snap, diff, other, tmp_path)

    message = str(caught.value)
    assert f"commit {commit} is not in {other}" in message and "no git remote" in message
    assert "git fetch" in message and caught.value.exit_code == 3
    assert os.listdir(tmp_path / "replays") == []


def test_a_commit_the_source_lacks_is_fetched_from_the_recorded_remote(project: Path, tmp_path: Path) -> None:
    # Given a CI clone taken before the run's commit was pushed, with no DVC cache of its own
    shared = tmp_path / "shared.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(shared))
    git(project, "remote", "add", "origin", str(shared))
    add_local_remote(project, tmp_path / "dvc-remote")
    git(project, "commit", "-q", "-am", "DVC remote")
    dvc(project, "push", "-q")
    git(project, "push", "-q", "origin", "main")
    clone = tmp_path / "ci-clone"
    git(tmp_path, "clone", "-q", str(shared), str(clone))
    write(project / "train.py", "print('v2')\n")
    git(project, "commit", "-q", "-am", "v2")
    git(project, "push", "-q", "origin", "main")
    snap, diff = record(project)
    commit = snap.section("git").data["commit"]

    ws = build(snap, diff, clone, tmp_path)

    assert git(ws.repo, "rev-parse", "HEAD") == commit
    assert (ws.repo / "train.py").read_text() == "print('v2')\n"
    assert f"commit {commit[:12]} was not in {clone}; it was fetched from {shared}" in ws.risks
    assert git(ws.repo, "remote", "get-url", "origin") == str(shared)
    # The data comes from the DVC remote into the clone's cache, as `dvc pull` there would do.
    assert all(o.fetched for o in ws.data) and len(ws.data) == 3
    assert (clone / ".dvc" / "cache" / "files" / "md5").is_dir()
    assert (ws.repo / "data" / "churn.csv").read_bytes() == (project / "data" / "churn.csv").read_bytes()
    ws.cleanup()


def test_the_snapshot_wins_over_a_dvc_file_that_disagrees(project: Path, tmp_path: Path) -> None:
    # Given a run on data added to DVC but not committed, and its git.diff not stored
    write(project / "data" / "churn.csv", (project / "data" / "churn.csv").read_bytes() + b"1,1,1,1\n")
    dvc(project, "add", "-q", "data/churn.csv")
    snap, _ = record(project)
    run_md5 = dvc_md5(project, "data/churn.csv")
    committed_md5 = git(project, "show", "HEAD:data/churn.csv.dvc").split("md5: ")[1].split()[0]

    ws = build(snap, None, project, tmp_path)

    assert any("uncommitted changes were not recorded" in r for r in ws.risks)
    assert any(f"says data/churn.csv is {committed_md5}, the run recorded {run_md5}" in r for r in ws.risks)
    restored = ws.repo / "data" / "churn.csv"
    assert restored.read_bytes() == (project / "data" / "churn.csv").read_bytes()
    assert dvc_md5(ws.repo, "data/churn.csv") == run_md5
    ws.cleanup()


def test_a_patch_that_does_not_apply_names_the_file(project: Path, tmp_path: Path) -> None:
    write(project / "train.py", "print('train, edited')\n")
    snap, diff = record(project)
    assert diff is not None

    with pytest.raises(CannotReplay, match=r"do not apply to commit \w{12} at train\.py"):
        build(snap, diff.replace(b"-print('train')", b"-print('other')"), project, tmp_path)
    assert os.listdir(tmp_path / "replays") == []


def test_a_run_without_git_cannot_be_replayed(tmp_path: Path) -> None:
    snap = Snapshot(run={"project_root": str(tmp_path)})
    with pytest.raises(CannotReplay, match="recorded no code version") as caught:
        build_workspace(snap, source=tmp_path, git_diff=None, base_dir=tmp_path / "replays")
    assert caught.value.exit_code == 3


def test_a_write_through_a_hard_link_is_reported_and_undone(project: Path, tmp_path: Path) -> None:
    # Given a workspace whose input is hard-linked to the user's cache object
    snap, diff = record(project)
    md5 = dvc_md5(project, "data/churn.csv")
    obj = cache_object(project, md5)
    committed = obj.read_bytes()
    with build(snap, diff, project, tmp_path) as ws:
        restored = ws.repo / "data" / "churn.csv"
        assert stat.S_IMODE(restored.stat().st_mode) == 0o444  # DVC's cache objects are read-only
        assert restored.stat().st_ino == obj.stat().st_ino
        # When the notebook writes into it (root writes through a read-only mode)
        restored.chmod(0o644)
        with restored.open("ab") as fobj:
            fobj.write(b"oops\n")
        assert obj.read_bytes() != committed
        # Then the write is reported, and the cache object holds the committed bytes again
        assert ws.modified_inputs() == ["data/churn.csv"]
        assert obj.read_bytes() == committed
        assert hashlib.md5(obj.read_bytes()).hexdigest() == md5
        assert "data/churn.csv" in ws.cache_risks()[0]
    assert not ws.base.exists()


def test_a_write_nothing_can_undo_is_refused_and_dvc_stops_trusting_the_object(
    project: Path, tmp_path: Path
) -> None:
    # Given a linked input, then the project's own copy of it gone
    snap, diff = record(project)
    md5 = dvc_md5(project, "data/churn.csv")
    obj = cache_object(project, md5)
    ws = build(snap, diff, project, tmp_path)
    (project / "data" / "churn.csv").unlink()
    # When the notebook writes into it
    restored = ws.repo / "data" / "churn.csv"
    restored.chmod(0o644)
    restored.write_bytes(b"not the committed data\n")
    # Then the replay refuses, naming the file and the fix, and removes its workspace
    refused = r"wrote into data/churn\.csv, a link to the DVC cache object"
    with pytest.raises(CannotReplay, match=refused) as caught:
        ws.cleanup()
    assert "dvc fetch" in str(caught.value) and "\n" not in str(caught.value)
    assert not ws.base.exists()
    # and DVC cannot check the written bytes out as the committed data: the object is gone
    assert not obj.exists()
    with pytest.raises(RuntimeError, match=r"data/churn\.csv"):
        dvc(project, "checkout", "--force", "data/churn.csv.dvc")
    assert not (project / "data" / "churn.csv").exists()


def test_an_input_the_project_holds_no_copy_of_is_copied(project: Path, tmp_path: Path) -> None:
    # Given a run, then the project's copy of its input deleted (only the cache holds it)
    snap, diff = record(project)
    (project / "data" / "churn.csv").unlink()
    # When its workspace is built, the input is a copy: a write could not be undone from the project
    with build(snap, diff, project, tmp_path) as ws:
        churn = {o.path: o for o in ws.data}["data/churn.csv"]
        assert churn.link == "copy"
        assert (ws.repo / "data" / "churn.csv").stat().st_nlink == 1
        assert ws.guard.linked and all(not e.rel.startswith("data/churn.csv") for e in ws.guard.linked)


def test_a_submodule_is_checked_out_at_its_pinned_commit(project: Path, tmp_path: Path) -> None:
    lib = make_lib(tmp_path / "lib")
    pinned = git(lib, "rev-parse", "HEAD")
    git(project, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "libs/helpers")
    git(project, "commit", "-qm", "submodule")
    write(lib / "helper.py", "VALUE = 2\n")  # a later commit the project does not pin
    git(lib, "commit", "-qam", "later")
    snap, diff = record(project)
    with build(snap, diff, project, tmp_path) as ws:
        assert (ws.repo / "libs" / "helpers" / "helper.py").read_text() == "VALUE = 1\n"
        assert git(ws.repo / "libs" / "helpers", "rev-parse", "HEAD") == pinned
        assert git(ws.repo, "status", "--porcelain") == ""
        assert ws.risks == []


def test_a_submodule_the_source_has_not_checked_out_cannot_be_replayed(project: Path, tmp_path: Path) -> None:
    lib = make_lib(tmp_path / "lib")
    git(project, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "libs/helpers")
    git(project, "commit", "-qm", "submodule")
    snap, diff = record(project)
    git(project, "submodule", "deinit", "-q", "-f", "libs/helpers")
    refused = r"git submodule libs/helpers, which .* has not checked out"
    with pytest.raises(CannotReplay, match=refused) as caught:
        build(snap, diff, project, tmp_path)
    assert "git submodule update --init --recursive libs/helpers" in str(caught.value)
    assert os.listdir(tmp_path / "replays") == []


def make_lib(path: Path) -> Path:
    """A second git repository, to be a submodule."""
    write(path / "helper.py", "VALUE = 1\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "lib")
    return path


def test_the_source_must_be_a_git_repository(project: Path, tmp_path: Path) -> None:
    snap, diff = record(project)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(CannotReplay, match="is not a git repository"):
        build(snap, diff, plain, tmp_path)
    assert not (tmp_path / "replays").exists() or os.listdir(tmp_path / "replays") == []
