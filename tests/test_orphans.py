"""Killed kernels: a run whose kernel died mid-run is ended KILLED by the next look, never left RUNNING.

Real kernels (jupyter_client), killed with SIGKILL; real MLflow stores; the real ``nbtrack`` CLI.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import all_runs, download_all, git, make_project, snapshot_of, store_client, write_notebook

from nbtrack.cli import main as nbtrack_cli
from nbtrack.store.orphans import KILLED_REASON, OWNER_HOST, OWNER_PID, OWNER_STARTED


class Kernel:
    """A real IPython kernel in its own process, started in ``cwd``."""

    def __init__(self, cwd: Path) -> None:
        from jupyter_client.manager import KernelManager

        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NBTRACK_", "JPY_"))}
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(cwd), env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    @property
    def pid(self) -> int:
        return int(self.km.provisioner.process.pid)  # type: ignore[union-attr]

    def run(self, code: str) -> str:
        """Execute ``code``; its output as text; fail on an error."""
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            content = msg["content"]
            if msg["msg_type"] == "stream":
                out.append(content["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(content["traceback"]))

        reply = self.kc.execute_interactive(code, timeout=180, output_hook=hook)
        text = "".join(out)
        assert reply["content"]["status"] == "ok", f"{code!r} failed:\n{text}"
        return text

    def sigkill(self, *, reap: bool = True) -> None:
        """SIGKILL the kernel; unreaped, it stays a zombie (as under a parent that has not noticed)."""
        os.kill(self.pid, signal.SIGKILL)
        if reap:
            self.km.provisioner.process.wait(timeout=30)  # type: ignore[union-attr]
        else:
            deadline = time.time() + 30
            while psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE and time.time() < deadline:
                time.sleep(0.05)

    def close(self) -> None:
        self.kc.stop_channels()
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernels() -> Iterator[list[Kernel]]:
    started: list[Kernel] = []
    yield started
    for kernel in started:
        kernel.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "proj", use_dvc=False)
    write_notebook(root / "nb.ipynb", ["1 + 1"])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    return root


def runs_cli(root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    capsys.readouterr()
    assert nbtrack_cli(["--project", str(root), "runs", *extra]) == 0
    return capsys.readouterr().out


def start_tracked(root: Path, name: str) -> Kernel:
    kernel = Kernel(root)
    kernel.run("%load_ext nbtrack")
    kernel.run(f"%track start --experiment orphans --name {name} --notebook nb.ipynb")
    kernel.run("import mlflow\nmlflow.log_param('alpha', 0.5)\nmlflow.log_metric('loss', 0.25)")
    return kernel


def by_name(root: Path) -> dict[str, Any]:
    return {r.info.run_name: r for r in all_runs(store_client(root))}


@pytest.mark.kernel
def test_killed_kernel_is_ended_by_nbtrack_runs_and_a_live_one_is_not(
    project: Path, kernels: list[Kernel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two kernels in the middle of tracked runs
    doomed = start_tracked(project, "doomed")
    kernels.append(doomed)
    alive = start_tracked(project, "alive")
    kernels.append(alive)
    doomed_pid = doomed.pid
    # When one is killed with SIGKILL
    doomed.sigkill()
    assert not psutil.pid_exists(doomed_pid)
    # Then its run is still RUNNING, owned by it, with its start snapshot intact
    client = store_client(project)
    run = by_name(project)["doomed"]
    assert run.info.status == "RUNNING"
    assert run.data.tags[OWNER_PID] == str(doomed_pid)
    assert run.data.tags[OWNER_HOST] == socket.gethostname()
    files = download_all(client, run.info.run_id, tmp_path / "dl")
    snapshot = snapshot_of(files)
    assert snapshot["run"]["run_id"] == run.info.run_id
    assert snapshot["run"]["phase"] == "start"
    assert snapshot["sections"]["git"]["status"] == "ok"
    # When `nbtrack runs` looks at the store
    rows = {r["name"]: r for r in json.loads(runs_cli(project, capsys, "--json"))}
    # Then the orphan is KILLED, ended at its last activity and tagged why; the live run is untouched
    assert rows["doomed"]["status"] == "KILLED"
    assert rows["alive"]["status"] == "RUNNING"
    runs = by_name(project)
    killed = runs["doomed"]
    assert killed.info.status == "KILLED"
    assert f"kernel process {doomed_pid}" in killed.data.tags[KILLED_REASON]
    assert "nbtrack runs" in killed.data.tags[KILLED_REASON]
    loss = client.get_metric_history(killed.info.run_id, "loss")[0]
    assert killed.info.end_time == loss.timestamp  # its last known activity, not "now"
    assert killed.data.params == {"alpha": "0.5"}
    assert runs["alive"].info.status == "RUNNING"
    # And the live kernel ends its own run normally
    alive.run("%track stop")
    assert by_name(project)["alive"].info.status == "FINISHED"
    assert by_name(project)["doomed"].info.status == "KILLED"


@pytest.mark.kernel
def test_next_track_start_ends_the_orphan(project: Path, kernels: list[Kernel]) -> None:
    # Given a kernel killed in the middle of a tracked run (not yet reaped by its parent: a zombie)
    doomed = start_tracked(project, "doomed")
    kernels.append(doomed)
    doomed.sigkill(reap=False)
    assert by_name(project)["doomed"].info.status == "RUNNING"
    # When a new kernel starts a run in the same notebook
    fresh = Kernel(project)
    kernels.append(fresh)
    fresh.run("%load_ext nbtrack")
    fresh.run("%track start --experiment orphans --name next --notebook nb.ipynb")
    # Then the orphan is KILLED, and the new run is running under the new kernel
    runs = by_name(project)
    assert runs["doomed"].info.status == "KILLED"
    assert "zombie" in runs["doomed"].data.tags[KILLED_REASON]
    assert "%track start" in runs["doomed"].data.tags[KILLED_REASON]
    assert runs["next"].info.status == "RUNNING"
    assert runs["next"].data.tags[OWNER_PID] == str(fresh.pid)
    fresh.run("%track stop")
    assert by_name(project)["next"].info.status == "FINISHED"


def _running_run(root: Path, name: str, owner: dict[str, str]) -> str:
    """A RUNNING nbtrack run in the project's store with the given owner tags (as %track start leaves)."""
    from nbtrack.config import NbtrackConfig
    from nbtrack.store import MlflowStore

    store = MlflowStore.for_project(root, NbtrackConfig())
    exp_id = store.experiment_id("orphans")
    tags = {"nbtrack.schema_version": "1", "mlflow.source.name": "nb.ipynb", **owner}
    return str(store.client.create_run(exp_id, run_name=name, tags=tags).info.run_id)


def test_runs_of_another_host_are_left_running_and_a_reused_pid_is_an_orphan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "plain"
    root.mkdir()
    me = psutil.Process()
    # Given a run owned by a kernel on another machine, and one whose pid now belongs to another
    # process (this one, started at another time), and one owned by this live process
    _running_run(root, "elsewhere", {OWNER_HOST: "gpu-box-7", OWNER_PID: "4242", OWNER_STARTED: "1.00"})
    here = {OWNER_HOST: socket.gethostname(), OWNER_PID: str(me.pid)}
    _running_run(root, "reused", {**here, OWNER_STARTED: f"{me.create_time() - 3600:.2f}"})
    _running_run(root, "mine", {**here, OWNER_STARTED: f"{me.create_time():.2f}"})
    # When `nbtrack runs` lists them
    table = runs_cli(root, capsys)
    # Then only the reused pid's run is KILLED; the other host's is RUNNING and says where
    runs = by_name(root)
    assert runs["reused"].info.status == "KILLED"
    assert "pid now belongs to another process" in runs["reused"].data.tags[KILLED_REASON]
    assert runs["elsewhere"].info.status == "RUNNING"
    assert runs["mine"].info.status == "RUNNING"
    line = next(x for x in table.splitlines() if "elsewhere" in x)
    assert "RUNNING" in line and "on-host:gpu-box-7" in line
    assert time.time() * 1000 - runs["reused"].info.end_time < 60_000
