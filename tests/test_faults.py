"""Faults of the machine, caused for real: every one gives a one-line error with the store's exit
code (14) and leaves nothing corrupt.

- a damaged ``mlflow.db`` (garbage bytes; a copy truncated to half);
- a store locked by another process (a real second process holding ``BEGIN EXCLUSIVE``);
- a read-only project (a read-only bind mount as root, ``chmod a-w`` otherwise);
- a kernel SIGKILLed while ``%track stop`` rewrites ``snapshot.json`` (a test hook kills it between
  writing the new snapshot and renaming it over the old one);
- a wall-clock jump under a live kernel's run (simulated by what orphan detection reads: see
  :func:`test_a_clock_jump_does_not_make_a_live_run_look_dead`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import git, make_project, store_client, write_notebook
from IPython.core.error import UsageError as IPythonUsageError
from test_orphans import Kernel

from nbtrack.config import load_config
from nbtrack.errors import StoreDamagedError, StoreError
from nbtrack.runs.service import Runs
from nbtrack.store.orphans import OWNER_BOOT_ID, OWNER_START_TICKS, OWNER_STARTED, owner_tags

STORE_EXIT = StoreError.exit_code


def nbtrack(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real ``nbtrack`` command, in its own process (a traceback would show on its stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "nbtrack.cli", "--project", str(root), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def one_line_error(result: subprocess.CompletedProcess[str], *parts: str) -> str:
    """Assert the command failed with the store's exit code and one line naming ``parts``."""
    err = result.stderr.strip()
    assert result.returncode == STORE_EXIT, (result.returncode, result.stdout, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("nbtrack: "), err
    for part in parts:
        assert part in err, (part, err)
    return err


def magic_error(shell: Any, line: str) -> str:
    """The one-line error ``%track <line>`` shows (IPython's UsageError: no traceback)."""
    with pytest.raises(IPythonUsageError) as caught:
        shell.run_line_magic("track", line)
    text = str(caught.value)
    assert len(text.splitlines()) == 1, text
    return text


@pytest.fixture
def project(tmp_path: Path, shell: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed project with one finished tracked run in its embedded store."""
    root = make_project(tmp_path / "proj", use_dvc=False)
    write_notebook(root / "nb.ipynb", ["1 + 1"])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    monkeypatch.chdir(root)
    shell.run_line_magic("track", "start --experiment faults --name first --notebook nb.ipynb")
    shell.run_line_magic("track", "stop")
    return root


def db_of(root: Path) -> Path:
    return root / ".nbtrack" / "mlflow.db"


def first_run_id(root: Path) -> str:
    out = nbtrack(root, "runs", "--json")
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)[0]["run_id"])


# --- a damaged store ----------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_store_gives_one_line_everywhere_and_is_not_written(
    project: Path, shell: Any, damage: str
) -> None:
    # Given a store file damaged: garbage bytes, or a copy cut to half its size
    run_id = first_run_id(project)
    db = db_of(project)
    data = db.read_bytes()
    db.write_bytes(os.urandom(8192) if damage == "garbage" else data[: len(data) // 2])
    before = db.read_bytes()
    # When the CLI lists and replays, the panel's service lists, and the magic starts a run
    runs = nbtrack(project, "runs")
    replay = nbtrack(project, "replay", run_id)
    with pytest.raises(StoreDamagedError) as service:
        service_runs = Runs(load_config())
        service_runs.list_runs(service_runs.locate(project=project, cwd=project))
    start = magic_error(shell, "start --experiment faults --name second --notebook nb.ipynb")
    # Then each says, in one line, which file is damaged and what to do, with the store's exit code
    reason = "file is not a database" if damage == "garbage" else "file is truncated"
    for result in (runs, replay):
        one_line_error(result, str(db), "is not a readable MLflow store", reason, "move it aside")
    assert str(db) in str(service.value) and len(str(service.value).splitlines()) == 1
    assert str(db) in start and "move it aside" in start
    assert shell._nbtrack_tracker.active is None
    # And nothing was written into the file
    assert db.read_bytes() == before


# --- a locked store -------------------------------------------------------------------------------
HOLDER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
release_after = float(sys.argv[2])
if release_after < 0:
    sys.stdin.readline()  # held until the test says so
else:
    time.sleep(release_after)
con.execute("COMMIT")
print("released", flush=True)
sys.stdin.readline()
"""


@contextlib.contextmanager
def locked(db: Path, release_after: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``BEGIN EXCLUSIVE`` on ``db`` (released after ``release_after`` s,
    or, when negative, only once the block ends)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), str(release_after)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.write("\n\n")
            proc.stdin.flush()
        proc.wait(60)


def test_a_store_locked_longer_than_the_wait_gives_one_line_naming_the_holder(
    project: Path, shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given another process holding the store locked, and a short wait configured
    db = db_of(project)
    monkeypatch.setenv("NBTRACK_STORE_LOCK_TIMEOUT", "1")
    with locked(db, -1) as holder:
        # When the CLI lists runs and the magic starts one
        runs = nbtrack(project, "runs")
        start = magic_error(shell, "start --experiment faults --name second --notebook nb.ipynb")
    # Then both say, in one line, that the store is locked, by which process, and what to do
    one_line_error(runs, str(db), f"is locked by process {holder.pid}", "NBTRACK_STORE_LOCK_TIMEOUT")
    assert f"is locked by process {holder.pid}" in start and str(db) in start
    assert shell._nbtrack_tracker.active is None
    # And once the lock is gone, the store works
    assert nbtrack(project, "runs").returncode == 0


def test_a_lock_released_within_the_wait_is_waited_for(
    project: Path, shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given another process holding the store locked for 2 s, and a wait well beyond that
    db = db_of(project)
    monkeypatch.setenv("NBTRACK_STORE_LOCK_TIMEOUT", "120")
    with locked(db, 2.0):
        # When the CLI lists runs meanwhile
        runs = nbtrack(project, "runs", "--json")
    # Then it waited and succeeded
    assert runs.returncode == 0, runs.stderr
    assert [r["name"] for r in json.loads(runs.stdout)] == ["first"]
    with locked(db, 2.0):
        # And so does a tracked run started meanwhile
        shell.run_line_magic("track", "start --experiment faults --name second --notebook nb.ipynb")
    shell.run_line_magic("track", "stop")
    names = sorted(r["name"] for r in json.loads(nbtrack(project, "runs", "--json").stdout))
    assert names == ["first", "second"]


# --- a writer killed mid-transaction ---------------------------------------------------------------
KILLED_WRITER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA cache_size = 1")  # spill the changes into the file: the journal becomes hot
con.execute("BEGIN IMMEDIATE")
con.execute("UPDATE runs SET name = 'half-written'")
for i in range(3000):
    row = (f"k{i}", "x" * 500)
    con.execute("INSERT INTO tags (key, value, run_uuid) SELECT ?, ?, run_uuid FROM runs", row)
print("writing", flush=True)
time.sleep(600)
"""


def test_a_store_whose_writer_was_killed_mid_write_is_rolled_back_not_called_read_only(
    project: Path, shell: Any
) -> None:
    # Given a process killed in the middle of a write transaction on the store (a kernel killed at
    # shutdown while it logged): its hot journal is left beside the file
    db = db_of(project)
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    writer.kill()
    writer.wait(60)
    assert Path(f"{db}-journal").stat().st_size > 0  # (the fault is real)
    # When the CLI lists the runs (a read-only probe cannot roll a hot journal back)
    runs = nbtrack(project, "runs", "--json")
    # Then it reads the store as it was before the interrupted write, instead of calling a writable
    # folder read-only
    assert runs.returncode == 0, runs.stderr
    assert [r["name"] for r in json.loads(runs.stdout)] == ["first"]
    # And the store takes new runs
    shell.run_line_magic("track", "start --experiment faults --name second --notebook nb.ipynb")
    shell.run_line_magic("track", "stop")
    assert sorted(r["name"] for r in json.loads(nbtrack(project, "runs", "--json").stdout)) == [
        "first",
        "second",
    ]


# --- a read-only project --------------------------------------------------------------------------
@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` made read-only for real: a read-only bind mount as root (whom ``chmod`` does not
    stop), ``chmod a-w`` of the folder and everything in it otherwise."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
    for path, mode in modes.items():
        path.chmod(mode & 0o555)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_a_read_only_project_gives_one_line_naming_the_folder(project: Path, shell: Any) -> None:
    # Given a project with an embedded store, made read-only
    db = db_of(project)
    before = db.read_bytes()
    with read_only(project):
        with pytest.raises(OSError):
            (project / "probe").write_text("x")  # (the fault is real)
        # When the magic starts a run and the CLI lists runs
        start = magic_error(shell, "start --experiment faults --name second --notebook nb.ipynb")
        runs = nbtrack(project, "runs", "--json")
    # Then the start says, in one line, that the store's folder is read-only; nothing was started
    assert str(db.parent) in start and "read-only" in start and "Errno" not in start, start
    assert shell._nbtrack_tracker.active is None
    # And the listing still reads the store (reading needs no write)
    assert runs.returncode == 0, runs.stderr
    assert [r["name"] for r in json.loads(runs.stdout)] == ["first"]
    assert db.read_bytes() == before


def test_a_read_only_project_without_a_store_gives_one_line(
    tmp_path: Path, shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a project that has no store yet, made read-only
    root = make_project(tmp_path / "fresh", use_dvc=False)
    monkeypatch.chdir(root)
    with read_only(root):
        # When the magic starts a run, and the CLI lists runs
        start = magic_error(shell, "start --experiment faults --name first")
        runs = nbtrack(root, "runs")
    # Then one line names the folder the store cannot be created in; the listing has none to read
    assert f"{root} is read-only" in start and str(root / ".nbtrack") in start, start
    assert runs.returncode == 0 and "no nbtrack store" in runs.stdout, (runs.stdout, runs.stderr)
    assert not (root / ".nbtrack").exists()


# --- a kernel killed while %track stop rewrites snapshot.json --------------------------------------
@pytest.mark.kernel
def test_a_kernel_killed_while_the_snapshot_is_rewritten_keeps_the_start_snapshot(tmp_path: Path) -> None:
    # Given a kernel in a tracked run, set to die (SIGKILL) right after writing the end snapshot
    # to its temporary file and before renaming it over the start snapshot
    root = make_project(tmp_path / "proj", use_dvc=False)
    write_notebook(root / "nb.ipynb", ["1 + 1"])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    kernel = Kernel(root)
    try:
        kernel.run("%load_ext nbtrack")
        kernel.run("%track start --experiment faults --name doomed --notebook nb.ipynb")
        kernel.run("import os\nos.environ['NBTRACK_STORE_FAULT'] = 'rename:snapshot.json'")
        # When %track stop runs
        kernel.kc.execute("%track stop")
        kernel.km.provisioner.process.wait(timeout=300)  # type: ignore[union-attr]
    finally:
        kernel.close()
    # Then the kernel died by SIGKILL, with the end snapshot written in full beside the start one
    folders = list((root / ".nbtrack" / "artifacts").glob("**/artifacts/nbtrack"))
    assert len(folders) == 1
    folder = folders[0]
    snapshot = json.loads((folder / "snapshot.json").read_text())
    assert snapshot["run"]["phase"] == "start"
    pending = list(folder.glob(".artifact.uploading.snapshot.json.*"))
    assert len(pending) == 1 and json.loads(pending[0].read_text())["run"]["phase"] == "end"
    # And the next look ends the run KILLED, and its start snapshot reads whole
    rows = json.loads(nbtrack(root, "runs", "--json").stdout)
    assert [(r["name"], r["status"]) for r in rows] == [("doomed", "KILLED")]
    runs = Runs(load_config())
    target = runs.locate(project=root, cwd=root)
    _found, shown = runs.show(target, rows[0]["run_id"])
    assert shown.run["phase"] == "start" and shown.run["run_id"] == rows[0]["run_id"]


# --- clock jumps ----------------------------------------------------------------------------------
@pytest.mark.kernel
def test_a_clock_jump_does_not_make_a_live_run_look_dead(tmp_path: Path) -> None:
    """A wall-clock jump cannot be made in a test (it would move the machine's clock under every
    other process). What it changes is what orphan detection would read: every process's start time
    in epoch seconds (psutil's ``create_time``) is derived from the boot time, which the kernel
    computes as wall clock minus uptime, so after a jump of J seconds every live process's start
    time reads J seconds off what was recorded. Shifting the recorded ``nbtrack.owner.started`` by
    J is exactly that disagreement; the start ticks since boot (``/proc/<pid>/stat`` field 22) and
    the boot id do not move with the clock, and decide."""
    root = make_project(tmp_path / "proj", use_dvc=False)
    write_notebook(root / "nb.ipynb", ["1 + 1"])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    kernels = []
    try:
        # Given two kernels in tracked runs, one of them then killed
        for name in ("alive", "doomed"):
            kernel = Kernel(root)
            kernels.append(kernel)
            kernel.run("%load_ext nbtrack")
            kernel.run(f"%track start --experiment clock --name {name} --notebook nb.ipynb")
        client = store_client(root)
        experiments = [e.experiment_id for e in client.search_experiments()]
        by_name = {r.info.run_name: r for r in client.search_runs(experiments)}
        alive = by_name["alive"]
        assert alive.data.tags[OWNER_START_TICKS] and alive.data.tags[OWNER_BOOT_ID]
        kernels[1].sigkill()
        # When the wall clock jumps by 5 s either way (as the recorded start time then reads)
        for jump in (5.0, -5.0):
            recorded = float(alive.data.tags[OWNER_STARTED])
            client.set_tag(alive.info.run_id, OWNER_STARTED, f"{recorded - jump:.2f}")
            rows = {r["name"]: r["status"] for r in json.loads(nbtrack(root, "runs", "--json").stdout)}
            # Then the live kernel's run stays RUNNING; the killed kernel's is ended KILLED
            assert rows == {"alive": "RUNNING", "doomed": "KILLED"}, (jump, rows)
        assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    finally:
        for kernel in kernels:
            kernel.close()


def test_a_reused_pid_counts_as_gone_and_a_live_owner_does_not(tmp_path: Path) -> None:
    # Given runs owned by this (live) process: one with its real start ticks, one with the ticks
    # of an earlier process that had the same pid
    root = make_project(tmp_path / "proj", use_dvc=False, use_git=False)
    runs = Runs(load_config())
    from nbtrack.store import MlflowStore

    store = MlflowStore.for_project(root, load_config())
    exp = store.experiment_id("clock")
    client = store.client
    mine = owner_tags()
    ids = {}
    for name, ticks in (("live", mine[OWNER_START_TICKS]), ("reused", str(int(mine[OWNER_START_TICKS]) - 7))):
        tags = {**mine, OWNER_START_TICKS: ticks, "nbtrack.schema_version": "1"}
        ids[name] = client.create_run(exp, run_name=name, tags=tags).info.run_id
    # When nbtrack lists runs (it ends orphans first)
    runs.list_runs(runs.locate(project=root, cwd=root))
    # Then the reused pid's run is KILLED, saying so; the live owner's stays RUNNING
    got = {name: client.get_run(i) for name, i in ids.items()}
    assert got["live"].info.status == "RUNNING"
    assert got["reused"].info.status == "KILLED"
    assert "pid now belongs to another process" in got["reused"].data.tags["nbtrack.killed_reason"]
