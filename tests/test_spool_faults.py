"""Faults of the local spool, caused for real (issue 16, item 7): a full spool disk (a small tmpfs
mounted on the spool folder) and a damaged spool file, then an upload to a real ``mlflow server``
(the worker's shared one, "up" at the URL the run is bound for once the test says so: LateServer).

What must hold: a one-line error naming the spool folder and the fix, no run left RUNNING, no
truncated file in the spool, and ``nbtrack sync`` never uploads a file that fails validation (the
run stays pending, with the reason listed).

Mounting needs root (CI runs as root) or an unprivileged user namespace; when neither works the
test fails saying so, it is never skipped.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LateServer, make_project, write_notebook
from team_helpers import server_cli

pytestmark = [pytest.mark.server]

EXPERIMENT = "faults"


def _experiment() -> str:
    """An experiment of this test's own on the shared server."""
    return f"{EXPERIMENT}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted on a folder: room for the spool's database, not for a big notebook."""
    folder = tmp_path / "spool"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs for the full-disk test (needs root): {mounted.stderr.strip()}",
            pytrace=False,
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _big_notebook(path: Path, megabytes: int) -> Path:
    """A notebook whose one cell has ``megabytes`` MiB of saved output."""
    write_notebook(path, ["x = 1"])
    doc = json.loads(path.read_text())
    text = ("0123456789abcdef" * 64 + "\n") * (megabytes * 1024)
    doc["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": text}]
    doc["cells"][0]["execution_count"] = 1
    path.write_text(json.dumps(doc))
    return path


def _spool_runs(spool: Path, url: str) -> list[Any]:
    from nbtrack.store.spool import Spool

    (folder,) = [p for p in spool.iterdir() if (p / "mlflow.db").exists()]
    return Spool(folder, url).runs(states=("pending", "uploaded"))


def test_a_full_spool_disk_fails_the_run_in_one_line_and_uploads_nothing_damaged(
    tmp_path: Path, small_disk: Path, shell: Any, monkeypatch: pytest.MonkeyPatch, late_server: LateServer
) -> None:
    # Given a kernel bound for a tracking server (down for now) whose spool is on a small disk
    url, experiment = late_server.url, _experiment()
    monkeypatch.setenv("NBTRACK_TRACKING_URI", url)
    monkeypatch.setenv("NBTRACK_TRACKING_TIMEOUT", "2")
    monkeypatch.setenv("NBTRACK_SPOOL_DIR", str(small_disk))
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = _big_notebook(root / "big.ipynb", megabytes=4)
    monkeypatch.chdir(root)
    assert shell.run_cell(f"%track start --notebook {nb} --experiment {experiment}").success

    # When the run ends and its notebook (4 MiB of outputs) does not fit in the spool
    result = shell.run_cell("%track stop")

    # Then %track stop fails with one line naming the spool folder and the fix
    message = str(result.error_in_exec)
    assert not result.success and "\n" not in message, message
    assert str(small_disk) in message and "free space" in message and "nbtrack sync" in message
    assert "autoflush" not in message and "Traceback" not in message
    # and the run is not left RUNNING: it ended FAILED, pending upload
    (run,) = _spool_runs(small_disk, url)
    assert run.status == "FAILED" and run.tags["nbtrack.sync.state"] == "pending"
    # and no file in the spool is truncated or left half-written
    for path in small_disk.rglob("nbtrack/*"):
        assert not path.name.startswith("."), f"a temporary file was left: {path}"
        if path.suffix in (".ipynb", ".json"):
            json.loads(path.read_bytes())

    # When the server comes up and `nbtrack sync` runs
    late_server.up()
    synced = server_cli(url, "sync", "--json", spool=small_disk, cwd=root)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    # Then the FAILED run is uploaded as FAILED, with only whole files
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    (uploaded,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert uploaded.info.status == "FAILED"
    local = client.download_artifacts(uploaded.info.run_id, "nbtrack", str(tmp_path / "down"))
    for path in Path(local).iterdir():
        if path.suffix in (".ipynb", ".json"):
            json.loads(path.read_bytes())


def test_sync_refuses_a_damaged_spool_file_and_the_run_stays_pending_with_the_reason(
    tmp_path: Path, shell: Any, monkeypatch: pytest.MonkeyPatch, late_server: LateServer
) -> None:
    # Given a run tracked into the spool while its server was down
    url, experiment = late_server.url, _experiment()
    spool = tmp_path / "spool"
    monkeypatch.setenv("NBTRACK_TRACKING_URI", url)
    monkeypatch.setenv("NBTRACK_TRACKING_TIMEOUT", "2")
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / "train.ipynb", ["x = 1"])
    monkeypatch.chdir(root)
    assert shell.run_cell(f"%track start --notebook {nb} --experiment {experiment}").success
    assert shell.run_cell("%track stop").success
    (run,) = _spool_runs(spool, url)
    # and whose notebook.ipynb in the spool was then cut short (a disk that failed under it)
    (saved,) = spool.rglob(f"{run.run_id}/artifacts/nbtrack/notebook.ipynb")
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])

    # When the server is up and `nbtrack sync` runs
    late_server.up()
    synced = server_cli(url, "sync", "--json", spool=spool, cwd=root)
    report = json.loads(synced.stdout)
    # Then the run is not uploaded: the report names the file and why
    (failed,) = report["failed"]
    assert failed["run_id"] == run.run_id and "notebook.ipynb" in failed["reason"]
    assert "damaged" in failed["reason"] and report["uploaded"] == []
    # and the server has no copy of it, not even a half-made one
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name(experiment)
    assert exp is None or list(client.search_runs([exp.experiment_id])) == []
    # and `nbtrack runs` lists it pending, with the reason
    listed = json.loads(server_cli(url, "runs", "--json", spool=spool, cwd=root).stdout)
    (row,) = [r for r in listed if r["run_id"] == run.run_id]
    assert row["pending_upload"] and "notebook.ipynb" in row["upload_error"]
