"""Never lose a run: the tracking server is down, dies in the middle of a run, or an upload crashes
halfway. Real kernels, real ``mlflow server`` processes, real process deaths."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import mlflow
import pytest
from conftest import LateServer, MlflowServer, free_port, git, make_project, write_notebook

from nbtrack.runner import execute_notebook

pytestmark = [pytest.mark.kernel, pytest.mark.server]

BOUND = 2.0  # NBTRACK_TRACKING_TIMEOUT for these tests, seconds
OUTAGE = f"outage-{uuid.uuid4().hex[:8]}"  # an experiment of this module's own on the shared server

TWO_RUNS = [
    "%load_ext nbtrack",
    "import time, mlflow",
    # (the first run of a kernel also imports MLflow and creates the spool's store: seconds)
    f"%track start --experiment {OUTAGE} --name first",
    "mlflow.log_metric('loss', 0.5, step=1)\nmlflow.log_metric('loss', 0.25, step=2)\n"
    "mlflow.log_param('lr', '0.1')",
    "%track stop",
    f"t0 = time.monotonic()\n%track start --experiment {OUTAGE} --name second\n"
    "start_s = time.monotonic() - t0",
    "mlflow.log_metric('acc', 0.9)",
    "t0 = time.monotonic()\n%track stop\nstop_s = time.monotonic() - t0\n"
    "print(f'BOUND start={start_s:.3f} stop={stop_s:.3f}')",
]

KILLED_MID_RUN = [
    "%load_ext nbtrack",
    ("parameters", "server_pid = 0"),
    "import time, mlflow, psutil\n%track start --experiment midrun --name doomed",
    "mlflow.log_metric('before', 1.0)",
    # the server dies in the middle of the run (SIGKILL, workers first). It is the test process's
    # child, not the kernel's: it stays a zombie (dead, serving nothing) until the test reaps it, so
    # wait for "zombie or gone" (psutil.wait_procs waited its whole timeout on the zombie: 30 s).
    "server = psutil.Process(server_pid)\nprocs = server.children(recursive=True) + [server]\n"
    "for p in procs:\n    p.kill()\n"
    "def dead(p):\n    try:\n        return p.status() == psutil.STATUS_ZOMBIE\n"
    "    except psutil.NoSuchProcess:\n        return True\n"
    "deadline = time.monotonic() + 120\n"
    "while not all(dead(p) for p in procs):\n"
    "    assert time.monotonic() < deadline, 'the killed server did not die'\n    time.sleep(0.05)",
    "t0 = time.monotonic()\nmlflow.log_metric('after', 2.0)\nlog_s = time.monotonic() - t0",
    "t0 = time.monotonic()\n%track stop\nstop_s = time.monotonic() - t0\n"
    "print(f'BOUND log={log_s:.3f} stop={stop_s:.3f}')",
]


def _nbtrack(uri: str, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "NBTRACK_TRACKING_TIMEOUT": str(BOUND)}
    if fault:
        env["NBTRACK_SYNC_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "nbtrack.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def _outputs(executed: Path) -> str:
    nb = json.loads(executed.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    return "".join("".join(o.get("text", "")) for o in outputs)


def _server_runs(url: str, experiment: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return list(client.search_runs([exp.experiment_id], order_by=["attributes.start_time"]))


def _artifacts(url: str, run_id: str) -> set[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    found, folders = set(), [None]
    while folders:
        for info in client.list_artifacts(run_id, folders.pop()):
            (folders.append(info.path) if info.is_dir else found.add(info.path))
    return found


def _project(tmp_path: Path, cells: list[Any]) -> tuple[Path, Path]:
    root = make_project(tmp_path / "proj")
    nb = write_notebook(root / "train.ipynb", cells)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    return root, nb


def test_a_dead_server_loses_nothing_and_sync_uploads_each_run_once(
    tmp_path: Path, late_server: LateServer
) -> None:
    # Given a tracking URI on a loopback port where nothing listens
    url = late_server.url
    root, nb = _project(tmp_path, TWO_RUNS)
    # When a real kernel executes a notebook with two tracked runs
    out = tmp_path / "out.ipynb"
    env = {"MLFLOW_TRACKING_URI": url, "NBTRACK_TRACKING_TIMEOUT": str(BOUND)}
    execute_notebook(nb, out, cwd=root, env=env)
    # Then it finished; start and stop each returned within the bound; the user was told once
    text = _outputs(out)
    start_s, stop_s = (float(x) for x in re.search(r"BOUND start=([\d.]+) stop=([\d.]+)", text).groups())
    assert start_s < BOUND + 3 and stop_s < BOUND + 3, text
    assert text.count("is unreachable") == 1, text
    assert "uploaded once the server answers, or by `nbtrack sync`" in text
    # and both runs wait in the spool, listed as pending
    listed = _nbtrack(url, "runs")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("pending-upload") == 2, listed.stdout
    runs_json = json.loads(_nbtrack(url, "runs", "--json").stdout)
    spool_ids = {r["name"]: r["run_id"] for r in runs_json}
    assert set(spool_ids) == {"first", "second"} and all(r["pending_upload"] for r in runs_json)
    # and `nbtrack sync` while the server is still down says so, in one line, exit 14
    down = _nbtrack(url, "sync")
    assert down.returncode == 14 and down.stderr.count("\n") == 1, down.stderr
    assert "unreachable" in down.stderr and "2 run(s) stay pending" in down.stderr

    # When a real mlflow server answers on that port, and uploads crash twice halfway
    late_server.up()
    crashed = _nbtrack(url, "sync", fault="create")
    assert crashed.returncode == 75, crashed.stderr
    (half,) = _server_runs(url, OUTAGE)
    assert half.info.status == "RUNNING"  # created, nothing copied yet
    assert _nbtrack(url, "sync", fault="artifacts").returncode == 75
    done = _nbtrack(url, "sync")
    assert done.returncode == 0, done.stderr
    assert "2 run(s) uploaded" in done.stdout

    # Then each run is there exactly once, complete
    runs = _server_runs(url, OUTAGE)
    assert [r.info.run_name for r in runs] == ["first", "second"]
    first, second = runs
    assert first.info.status == second.info.status == "FINISHED"
    assert first.data.tags["nbtrack.spool_run_id"] == spool_ids["first"]
    from mlflow.tracking import MlflowClient

    history = MlflowClient(tracking_uri=url).get_metric_history(first.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.5), (2, 0.25)]  # no duplicates
    assert first.data.params["lr"] == "0.1" and second.data.metrics == {"acc": 0.9}
    assert first.data.tags["mlflow.source.name"] == "train.ipynb"
    assert {d.dataset.name for d in first.inputs.dataset_inputs} == {"data/churn.csv"}
    files = _artifacts(url, first.info.run_id)
    assert {"nbtrack/snapshot.json", "nbtrack/notebook.ipynb", "nbtrack/history.ipynb"} <= files

    # And a second sync changes nothing
    again = _nbtrack(url, "sync", "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["uploaded"] == []
    assert len(_server_runs(url, OUTAGE)) == 2
    # and the spool id the run card showed still finds the run
    shown = _nbtrack(url, "show", spool_ids["second"])
    assert shown.returncode == 0, shown.stderr
    assert f"uploaded as run {second.info.run_id}" in shown.stderr
    assert "pending-upload" not in _nbtrack(url, "runs", "--experiment", OUTAGE).stdout


def test_a_server_killed_mid_run_loses_nothing(tmp_path: Path) -> None:
    # Given a real mlflow server, and a notebook that kills it in the middle of its tracked run
    server = MlflowServer(tmp_path / "server")
    root, nb = _project(tmp_path, KILLED_MID_RUN)
    out = tmp_path / "out.ipynb"
    env = {"MLFLOW_TRACKING_URI": server.url, "NBTRACK_TRACKING_TIMEOUT": str(BOUND)}
    try:
        # When a real kernel executes it
        execute_notebook(nb, out, cwd=root, env=env, parameters={"server_pid": server.proc.pid})
        server.proc.wait(30)
        # Then the user's own mlflow.log_metric did not hang, nor did %track stop
        text = _outputs(out)
        log_s, stop_s = (float(x) for x in re.search(r"BOUND log=([\d.]+) stop=([\d.]+)", text).groups())
        assert log_s < 1 and stop_s < BOUND + 3, text
        assert "pending-upload" in _nbtrack(server.url, "runs").stdout
        assert _server_runs_or_none(server.url) is None  # the server is really gone

        # When the server is back (same store) and `nbtrack sync` runs twice
        server = MlflowServer(server.base, server.port)
        first = _nbtrack(server.url, "sync")
        assert first.returncode == 0 and "1 run(s) uploaded" in first.stdout, first.stderr
        assert _nbtrack(server.url, "sync").returncode == 0
        # Then the run is there once, with the metrics logged before and after the crash
        (run,) = _server_runs(server.url, "midrun")
        assert run.info.status == "FINISHED"
        assert run.data.metrics == {"before": 1.0, "after": 2.0}
        assert "nbtrack/snapshot.json" in _artifacts(server.url, run.info.run_id)
    finally:
        server.stop()


def _server_runs_or_none(url: str) -> Any:
    from nbtrack.store.http import unreachable

    return None if unreachable(url, 2.0) else True


def test_the_run_card_follows_the_background_upload(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server: str
) -> None:
    from mlflow.tracking import MlflowClient

    from nbtrack.magics.card import RunCardWidget
    from nbtrack.store.sync import wait_for_uploads

    # Given a kernel tracking against a live server
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / "train.ipynb", ["x = 1"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(root)
    tracker = shell._nbtrack_tracker
    assert shell.run_cell(f"%track start --notebook {nb} --experiment card-upload").success
    assert shell.run_cell("import mlflow\nmlflow.log_metric('m', 1.5)").success
    # When the run stops: the card says it is uploading, in the background
    summary = tracker.stop()
    assert summary["upload"]["state"] == "uploading"
    card = RunCardWidget(summary, tracker.last_store)
    assert "uploading to " + mlflow_server in card.card.value
    seen: list[dict[str, str]] = []
    tracker.on_upload(summary["run_id"], lambda upload: (seen.append(upload), card.upload_finished(upload)))
    # Then, once the upload is over, the card shows the server's run, which holds the metric
    assert wait_for_uploads(120)
    (upload,) = seen
    assert upload["state"] == "uploaded"
    assert f"uploaded to {mlflow_server} as run {upload['detail']}" in card.card.value
    run = MlflowClient(tracking_uri=mlflow_server).get_run(upload["detail"])
    assert run.data.metrics == {"m": 1.5} and run.data.tags["nbtrack.spool_run_id"] == summary["run_id"]
    # and the kernel's own MLflow calls go to the server again, not to the spool
    assert mlflow.get_tracking_uri() == mlflow_server


def test_a_failed_upload_keeps_no_credentials_in_the_spool(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbtrack.store.spool import LAST_ERROR, Spool
    from nbtrack.store.sync import wait_for_uploads

    # Given a tracking URI with a password, on a port where nothing listens
    password = "Sp00l-pw-never-stored-4411"
    uri = f"http://mlflowuser:{password}@127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("NBTRACK_TRACKING_TIMEOUT", "1")
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / "train.ipynb", ["x = 1"])
    monkeypatch.chdir(root)
    # When a run is tracked and its upload fails
    assert shell.run_cell(f"%track start --notebook {nb} --experiment creds").success
    assert shell.run_cell("%track stop").success
    assert wait_for_uploads(60)
    # Then the spool says why the run is pending, without the password, in no file at all
    from nbtrack.config import NbtrackConfig

    (run,) = Spool.for_server(uri, NbtrackConfig()).pending()
    assert run.tags[LAST_ERROR]
    files = [p for p in Path(os.environ["NBTRACK_SPOOL_DIR"]).rglob("*") if p.is_file()]
    assert files and not [p for p in files if password.encode() in p.read_bytes()]
    # and `nbtrack sync` says the server is unreachable without echoing it either
    down = _nbtrack(uri, "sync")
    assert down.returncode == 14 and password not in down.stderr and "127.0.0.1" in down.stderr
