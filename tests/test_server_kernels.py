"""Kernels against a real ``mlflow server`` once the local spool exists (issue 16, items 2 and 3).

Every kernel's ``%track start`` probes the server beside the main thread's ``import mlflow``; the
spool's earlier pending runs are then uploaded on a background thread. That thread used to start
while the main thread was still importing MLflow, and ``%track start`` failed with ``partially
initialized module 'mlflow.tracking'`` in every new kernel. Here six real kernels in a row track
against the server with a pending run in the spool, and a kernel that exits while its upload runs
leaves a run that every reader calls "pending upload" until ``nbtrack sync`` completes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import LateServer, make_project, write_notebook

from nbtrack.runner import execute_notebook

pytestmark = [pytest.mark.kernel, pytest.mark.server]

EXPERIMENT = f"kernels-{uuid.uuid4().hex[:8]}"  # of this module's own, on the shared server
CELLS = [
    "%load_ext nbtrack",
    f"%track start --experiment {EXPERIMENT}",
    "import mlflow\nmlflow.log_metric('answer', 42)",
    "%track stop",
]

#: The last cell of a kernel whose upload stalls: it ends once the stalled upload has made the server
#: copy (a state to wait for, not a time), so the kernel then always exits mid-upload.
WAIT_FOR_SERVER_COPY = f"""
import os, time
from mlflow.tracking import MlflowClient
client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
exp = client.get_experiment_by_name("{EXPERIMENT}").experiment_id
deadline = time.monotonic() + 600
while not client.search_runs([exp], "tags.`nbtrack.upload.pending` != ''"):
    assert time.monotonic() < deadline, "the upload never made the server copy"
    time.sleep(0.2)
"""


@dataclass
class Setup:
    root: Path
    notebook: Path
    spool: Path
    server: LateServer  # the shared server, reached at a URL of its own
    pending_run: str  # tracked while the server was down: waiting in the spool

    @property
    def url(self) -> str:
        return self.server.url

    def env(self, **extra: str) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.url, "NBTRACK_SPOOL_DIR": str(self.spool), **extra}

    def cli(self, *args: str, spool: Path | None = None) -> Any:
        env = {**os.environ, **self.env(), "NBTRACK_SPOOL_DIR": str(spool or self.spool)}
        proc = subprocess.run(
            [sys.executable, "-m", "nbtrack.cli", *args, "--json"],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return json.loads(proc.stdout)

    def server_runs(self) -> list[Any]:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.url)
        exp = client.get_experiment_by_name(EXPERIMENT)
        return list(client.search_runs([exp.experiment_id])) if exp else []


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> Iterator[Setup]:
    """A project whose spool holds one pending run (tracked while the server was down), and the
    server, up afterwards at the URL that run is bound for."""
    base = tmp_path_factory.mktemp("kernels")
    server = LateServer(mlflow_server)
    spool = base / "spool"
    root = make_project(base / "proj", use_dvc=False)
    notebook = write_notebook(root / "train.ipynb", CELLS)
    env = {
        "MLFLOW_TRACKING_URI": server.url,
        "NBTRACK_SPOOL_DIR": str(spool),
        "NBTRACK_TRACKING_TIMEOUT": "2",
    }
    execute_notebook(notebook, base / "outage.ipynb", cwd=root, env=env)
    from nbtrack.store.spool import Spool

    (pending,) = Spool(next(spool.iterdir()), env["MLFLOW_TRACKING_URI"]).pending()
    server.up()
    try:
        yield Setup(root, notebook, spool, server, pending.run_id)
    finally:
        server.down()


def test_six_kernels_in_a_row_all_track_with_a_pending_run_in_the_spool(setup: Setup, tmp_path: Path) -> None:
    # Given a spool that exists and holds a pending run, and a server that answers
    # When six new kernels in a row track the notebook against the server
    for i in range(6):
        execute_notebook(setup.notebook, tmp_path / f"out{i}.ipynb", cwd=setup.root, env=setup.env())
    # Then all six tracked (none failed on MLflow's import), and after `nbtrack sync` the server
    # holds them and the run that was pending, all FINISHED, none flagged pending
    report = setup.cli("sync")
    assert report["failed"] == [] and report["running"] == [], report
    runs = setup.server_runs()
    assert len(runs) == 7
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert setup.pending_run in {r.data.tags["nbtrack.spool_run_id"] for r in runs}
    assert all("nbtrack.upload.pending" not in r.data.tags for r in runs)
    assert all(r.data.metrics["answer"] == 42 for r in runs)


def test_a_kernel_that_exits_while_its_upload_runs_leaves_the_run_pending_until_sync(
    setup: Setup, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    setup.cli("sync")  # nothing left over from another test
    before = {r.info.run_id for r in setup.server_runs()}
    # Given a kernel whose background upload stalls after the server run got its values (a server
    # that stops answering), and which exits meanwhile (papermill shuts it down after the last cell)
    notebook = write_notebook(setup.root / "stall.ipynb", [*CELLS, WAIT_FOR_SERVER_COPY])
    execute_notebook(
        notebook, tmp_path / "out.ipynb", cwd=setup.root, env=setup.env(NBTRACK_SYNC_FAULT="values+hang")
    )
    (half,) = [r for r in setup.server_runs() if r.info.run_id not in before]
    spool_id = half.data.tags["nbtrack.spool_run_id"]
    # Then the server copy is RUNNING, without artifacts, and tagged pending upload
    assert half.info.status == "RUNNING"
    assert half.data.tags["nbtrack.upload.pending"]
    assert MlflowClient(tracking_uri=setup.url).list_artifacts(half.info.run_id) == []
    # and on this machine `nbtrack runs` lists it once, as its pending spool run, saying what to run
    listed = setup.cli("runs", "--experiment", EXPERIMENT)
    rows = [r for r in listed if spool_id in (r["run_id"],) or r["run_id"] == half.info.run_id]
    assert [(r["run_id"], r["pending_upload"]) for r in rows] == [(spool_id, True)]
    assert "pending upload" in rows[0]["upload_note"] and "nbtrack sync" in rows[0]["upload_note"]
    # and on another machine (no spool) the server copy says the same, naming this host
    runs_elsewhere = setup.cli("runs", "--experiment", EXPERIMENT, spool=tmp_path / "other")
    elsewhere = [r for r in runs_elsewhere if r["run_id"] == half.info.run_id]
    assert [r["pending_upload"] for r in elsewhere] == [True]
    assert "run `nbtrack sync` on" in elsewhere[0]["upload_note"]

    # When the user runs `nbtrack sync`
    report = setup.cli("sync")
    assert [u["run_id"] for u in report["uploaded"]] == [spool_id], report
    # Then the same server run is complete: FINISHED, untagged, with its artifacts; nothing pending
    done = MlflowClient(tracking_uri=setup.url).get_run(half.info.run_id)
    assert done.info.status == "FINISHED" and "nbtrack.upload.pending" not in done.data.tags
    names = {a.path for a in MlflowClient(tracking_uri=setup.url).list_artifacts(done.info.run_id, "nbtrack")}
    assert {"nbtrack/snapshot.json", "nbtrack/notebook.ipynb"} <= names
    assert not [r for r in setup.cli("runs", "--experiment", EXPERIMENT) if r["pending_upload"]]
