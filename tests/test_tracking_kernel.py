"""End to end: a real kernel executes a tracked notebook in a real git + DVC repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import (
    all_runs,
    download_all,
    dvc_md5,
    git,
    make_project,
    snapshot_of,
    store_client,
    write_notebook,
)

from nbtrack.runner import execute_notebook

pytestmark = pytest.mark.kernel

TRAIN = [
    "%load_ext nbtrack",
    ("parameters", "threshold = 30\nlabel = 'base'"),
    "%track start --experiment churn --name baseline --tag owner=ana",
    "import pandas as pd\nimport mlflow\ndata = pd.read_csv('data/churn.csv')\n"
    "share = float((data.tenure > threshold).mean())\nmlflow.log_metric('share_long_tenure', share)",
    "%track stop",
]


def _track(root: Path, notebook: Path, *, parameters: dict | None = None, env: dict | None = None) -> None:
    execute_notebook(notebook, root.parent / "out.ipynb", parameters=parameters, cwd=root, env=env)


def test_tracked_run_matches_the_repository(tmp_path: Path) -> None:
    # Given a git + DVC project with a tracked notebook
    root = make_project(tmp_path / "proj")
    nb_path = write_notebook(root / "notebooks" / "train.ipynb", TRAIN)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    saved = nb_path.read_bytes()
    # When a real kernel executes it through papermill with a parameter override
    execute_notebook(nb_path, tmp_path / "out.ipynb", parameters={"threshold": 12}, cwd=root)
    # Then one FINISHED run holds what the repository holds
    client = store_client(root)
    runs = all_runs(client)
    assert len(runs) == 1
    run = runs[0]
    tags, params = run.data.tags, run.data.params
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "baseline"
    assert tags["mlflow.source.git.commit"] == git(root, "rev-parse", "HEAD")
    assert tags["mlflow.source.git.branch"] == "main"
    assert tags["mlflow.source.name"] == "notebooks/train.ipynb"
    assert tags["mlflow.source.type"] == "NOTEBOOK"
    assert tags["owner"] == "ana"
    assert tags["nbtrack.data.status"] == "clean"
    assert tags["nbtrack.out_of_order"] == "false"
    assert params == {"threshold": "12", "label": "base"}
    assert run.data.metrics["share_long_tenure"] > 0
    # each DVC output is a dataset input whose digest is the DVC hash
    datasets = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    assert datasets["data/churn.csv"].digest == dvc_md5(root, "data/churn.csv")
    assert datasets["data/churn.csv"].source_type == "dvc"
    files = download_all(client, run.info.run_id, tmp_path / "artifacts")
    # papermill: the input notebook as saved, and notebook.ipynb is what ran (injected cell, outputs)
    assert files["nbtrack/notebook.input.ipynb"] == saved
    executed_nb = nbformat.reads(files["nbtrack/notebook.ipynb"].decode(), as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed_nb.cells)
    assert any(c.get("outputs") for c in executed_nb.cells if c.cell_type == "code")
    assert b"<html" in files["nbtrack/notebook.html"]
    history = nbformat.reads(files["nbtrack/history.ipynb"].decode(), as_version=4)
    nbformat.validate(history)
    executed = [c.source for c in history.cells]
    injected = next(i for i, s in enumerate(executed) if s.startswith("# Parameters"))
    assert "threshold = 12" in executed[injected]
    assert [s for s in executed if not s.startswith("# Parameters")] == [
        c if isinstance(c, str) else c[1] for c in TRAIN
    ]
    assert [c.execution_count for c in history.cells][:-1] == list(range(1, len(executed)))
    assert all(c.metadata["nbtrack"]["status"] == "ok" for c in history.cells[:-1])
    assert history.cells[-1].metadata["nbtrack"]["status"] == "running"  # the %track stop cell
    snapshot = snapshot_of(files)
    assert snapshot["schema_version"] == 1
    # (the papermill input is a snapshot fact, no longer a tag: nbtrack.papermill[.input_path])
    assert snapshot["run"]["notebook_method"] == "papermill"
    assert snapshot["run"]["papermill"]["input_path"] == str(nb_path)
    assert snapshot["sections"]["notebook"]["data"]["method"] == "papermill"
    assert snapshot["sections"]["parameters"]["data"]["values"] == {"threshold": 12, "label": "base"}
    assert snapshot["sections"]["data"]["data"]["outputs"][0]["status"] == "clean"
    assert snapshot["sections"]["git"]["data"]["dirty"] is False
    assert {"requirements.txt", "snapshot.json", "history.ipynb"} <= {p.split("/")[-1] for p in files}


SECRET = "s3cr3t-Tok3n-value-9f8e7d"


def test_secrets_never_reach_the_store(tmp_path: Path) -> None:
    # Given a secret in the kernel's environment and credentials in the git remote
    root = make_project(tmp_path / "proj")
    git(root, "remote", "add", "origin", "https://alice:hunter2pass@git.example.com/team/churn.git")
    nb_path = write_notebook(root / "train.ipynb", TRAIN)
    # When the notebook is tracked
    _track(root, nb_path, env={"MY_SERVICE_TOKEN": SECRET, "DATABASE_URL": "postgresql://bob:pgpass77@db/x"})
    # Then neither appears in any artifact, tag or param
    client = store_client(root)
    (run,) = all_runs(client)
    files = download_all(client, run.info.run_id, tmp_path / "artifacts")
    everything = b"".join(files.values()) + json.dumps([run.data.tags, run.data.params]).encode()
    for secret in (SECRET, "hunter2pass", "pgpass77"):
        assert secret.encode() not in everything
    assert run.data.tags["mlflow.source.git.repoURL"] == "https://git.example.com/team/churn.git"
    env_vars = snapshot_of(files)["sections"]["environment"]["data"]["env_vars"]
    assert env_vars["MY_SERVICE_TOKEN"] == "[REDACTED]"


@pytest.mark.server
def test_same_run_against_a_real_mlflow_server(tmp_path: Path, mlflow_server: str) -> None:
    from mlflow.tracking import MlflowClient

    # Given a project and a running mlflow server the kernel is pointed at
    root = make_project(tmp_path / "proj")
    nb_path = write_notebook(root / "train.ipynb", TRAIN)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    # When the notebook is tracked against the server
    _track(root, nb_path, env={"MLFLOW_TRACKING_URI": mlflow_server})
    # (The kernel uploads the run in the background once it ends, unless papermill stops the kernel
    # first: it kills a kernel still there 5 s after the shutdown request, which a loaded machine
    # reaches mid-upload. `nbtrack sync`, what a user runs then, completes the upload or finds
    # nothing left to do.)
    synced = subprocess.run(
        [sys.executable, "-m", "nbtrack.cli", "sync"],
        cwd=root,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert synced.returncode == 0, synced.stderr
    # Then the run landed on the server, with the same content, and nothing in the embedded store
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("churn")
    (run,) = [
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("mlflow.source.name") == "train.ipynb"
    ][-1:]
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.source.git.commit"] == git(root, "rev-parse", "HEAD")
    assert run.data.params["threshold"] == "30"
    datasets = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert datasets == {"data/churn.csv": dvc_md5(root, "data/churn.csv")}
    files = download_all(client, run.info.run_id, tmp_path / "artifacts")
    assert files["nbtrack/notebook.input.ipynb"] == nb_path.read_bytes()
    assert snapshot_of(files)["run"]["tracking_uri"] == mlflow_server
    assert not (root / ".nbtrack" / "mlflow.db").exists()
