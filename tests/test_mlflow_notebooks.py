"""Notebooks that use MLflow themselves, tracked: their ``start_run``, ``end_run``, ``autolog`` and
``set_tracking_uri`` keep working, nbtrack's run ends FINISHED, and both replay.

Real kernels through papermill, a real git repository, real SQLite MLflow stores in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from conftest import all_runs, download_all, git, make_project, snapshot_of, store_client, write_notebook
from mlflow.tracking import MlflowClient

import nbtrack
from nbtrack.config import NbtrackConfig
from nbtrack.runner import execute_notebook
from nbtrack.store.tracking import Tracking

ADOPTING = [
    "%load_ext nbtrack",
    "%track start --experiment tutorial",
    # as MLflow's tutorials write it: end a stray run first, then a run with a nested one
    "import mlflow\nmlflow.end_run()\n"
    "with mlflow.start_run(run_name='baseline', tags={'team': 'ml'}) as run:\n"
    "    mlflow.log_param('alpha', 0.5)\n"
    "    mlflow.log_metric('acc', 0.75)\n"
    "    with mlflow.start_run(nested=True) as fold:\n"
    "        mlflow.log_metric('fold_acc', 0.7)\n"
    "print('run', run.info.run_id, 'fold', fold.info.run_id)",
    "import mlflow.sklearn\nfrom sklearn.linear_model import LogisticRegression\n"
    "mlflow.sklearn.autolog(log_models=False, log_datasets=False, silent=True)\n"
    "model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])",
    "%track stop",
]

ELSEWHERE = [
    "%load_ext nbtrack",
    "%track start --experiment tracked",
    "import mlflow\nmlflow.set_tracking_uri('sqlite:///other.db')\nmlflow.set_experiment('theirs')\n"
    "with mlflow.start_run() as mine:\n    mlflow.log_metric('loss', 0.25)\nprint('loss logged')",
    "%track stop",
]


def _project(tmp_path: Path, cells: list[Any]) -> tuple[Path, Path]:
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb_path = write_notebook(root / "train.ipynb", cells)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    return root, nb_path


def _tracked(client: Any) -> Any:
    (run,) = [r for r in all_runs(client) if "nbtrack.schema_version" in r.data.tags]
    return run


def _replays(run_id: str, root: Path) -> None:
    result = nbtrack.replay(run_id, project=root)
    assert result.verdict not in ("CANNOT_REPLAY", "FAILED"), (result.verdict, result.message)


@pytest.mark.kernel
def test_start_run_adopts_the_tracked_run_and_nested_runs_are_its_children(tmp_path: Path) -> None:
    # Given a notebook that calls end_run, start_run (a context manager, nested inside) and autolog
    root, nb_path = _project(tmp_path, ADOPTING)
    # When it is tracked through papermill
    execute_notebook(nb_path, tmp_path / "out.ipynb", cwd=root)
    # Then the tracked run is the notebook's run: its name, tags, param, metric and autolog's metrics
    client = store_client(root)
    run = _tracked(client)
    run_id = run.info.run_id
    assert run.info.status == "FINISHED" and run.info.run_name == "baseline"
    assert run.data.tags["team"] == "ml" and run.data.params["alpha"] == "0.5"
    assert run.data.metrics["acc"] == 0.75 and "training_score" in run.data.metrics
    # And the nested run is its child, beside it in its experiment, FINISHED
    (fold,) = [r for r in all_runs(client) if r.info.run_id != run_id]
    assert fold.data.tags["mlflow.parentRunId"] == run_id == fold.data.tags["nbtrack.tracked_run"]
    assert fold.info.experiment_id == run.info.experiment_id
    assert fold.info.status == "FINISHED" and fold.data.metrics == {"fold_acc": 0.7}
    # And the notebook saw the tracked run as its own; the snapshot says what its MLflow code did
    files = download_all(client, run_id, tmp_path / "artifacts")
    printed = "".join(
        "".join(o.get("text", ""))
        for c in json.loads(files["nbtrack/notebook.ipynb"])["cells"]
        for o in c.get("outputs", [])
    )
    assert f"run {run_id} fold {fold.info.run_id}" in printed
    facts = snapshot_of(files)["run"]["mlflow"]
    assert facts["adopted"] == 1 and facts["end_run_ignored"] == 1
    assert [(u["run_id"], u["relation"]) for u in facts["user_runs"]] == [(fold.info.run_id, "child")]
    # And it replays
    _replays(run_id, root)


@pytest.mark.kernel
def test_set_tracking_uri_sends_the_users_runs_elsewhere_and_nbtrack_keeps_its_own(tmp_path: Path) -> None:
    # Given a notebook that points MLflow at its own store and experiment
    root, nb_path = _project(tmp_path, ELSEWHERE)
    # When it is tracked
    execute_notebook(nb_path, tmp_path / "out.ipynb", cwd=root)
    # Then nbtrack's run ended FINISHED in the project's store, with the whole snapshot
    client = store_client(root)
    run = _tracked(client)
    assert run.info.status == "FINISHED" and "loss" not in run.data.metrics
    files = download_all(client, run.info.run_id, tmp_path / "artifacts")
    assert {"nbtrack/snapshot.json", "nbtrack/history.ipynb", "nbtrack/notebook.ipynb"} <= set(files)
    # And the notebook's run went where it said: its store and experiment, linked to the tracked run
    theirs = MlflowClient(tracking_uri=f"sqlite:///{root / 'other.db'}")
    (mine,) = all_runs(theirs)
    assert theirs.get_experiment(mine.info.experiment_id).name == "theirs"
    assert mine.info.status == "FINISHED" and mine.data.metrics == {"loss": 0.25}
    assert mine.data.tags["nbtrack.tracked_run"] == run.info.run_id
    # And the snapshot records where the notebook's runs went
    facts = snapshot_of(files)["run"]["mlflow"]
    assert facts["tracking_uri"] == "sqlite:///other.db"
    assert facts["user_runs"] == [
        {
            "run_id": mine.info.run_id,
            "relation": "separate",
            "experiment_id": mine.info.experiment_id,
            "tracking_uri": "sqlite:///other.db",
        }
    ]
    # And it replays
    _replays(run.info.run_id, root)


def test_the_rules_in_process_and_nothing_left_behind(tmp_path: Path) -> None:
    # Given a tracked run in a project's embedded store
    root = make_project(tmp_path / "proj", use_dvc=False)
    originals = (mlflow.start_run, mlflow.end_run, mlflow.set_tracking_uri)
    tracking = Tracking.for_project(root, NbtrackConfig())
    exp_id = tracking.experiment_id("rules")
    run_id = tracking.start_run(exp_id, "named", {})
    try:
        # When the notebook's code starts runs: plain (adopted), by the tracked run's id (adopted),
        # in another experiment (its own run, the tracked run beneath it), and ends the tracked run
        with mlflow.start_run(run_name="ignored") as adopted:
            assert adopted.info.run_id == run_id
        assert mlflow.start_run(run_id=run_id).info.run_id == run_id
        mlflow.end_run()
        assert mlflow.active_run().info.run_id == run_id  # end_run left the tracked run alone
        mlflow.set_experiment("elsewhere")
        with mlflow.start_run() as separate:
            mlflow.log_metric("m", 1.0)
        assert mlflow.active_run().info.run_id == run_id
        # And points MLflow at another store, and back
        other = f"sqlite:///{tmp_path / 'other.db'}"
        mlflow.set_tracking_uri(other)
        assert mlflow.active_run() is None  # bare log calls now go to a run of the user's store
        mlflow.set_tracking_uri(tracking.store.uri)
        assert mlflow.active_run().info.run_id == run_id
        mlflow.log_metric("tracked", 2.0)
        mlflow.set_tracking_uri(other)
        facts = tracking.mlflow_facts()
    finally:
        tracking.end_run(run_id, "FINISHED")
    # Then the tracked run kept its --name, got the bare metric, and ended FINISHED
    run = tracking.store.get_run(run_id)
    assert (run.status, run.name, run.metrics) == ("FINISHED", "named", {"tracked": 2.0})
    separate_run = tracking.store.get_run(separate.info.run_id)
    assert separate_run.metrics == {"m": 1.0} and separate_run.tags["nbtrack.tracked_run"] == run_id
    assert "mlflow.parentRunId" not in separate_run.tags
    assert facts["adopted"] == 2 and facts["end_run_ignored"] == 1
    assert [u["relation"] for u in facts["user_runs"]] == ["separate"]
    # And nothing is left behind: MLflow's own functions, no active run, the user's URI kept
    assert (mlflow.start_run, mlflow.end_run, mlflow.set_tracking_uri) == originals
    assert mlflow.active_run() is None and mlflow.get_tracking_uri() == other


@pytest.fixture(autouse=True)
def _mlflow_state() -> Iterator[None]:
    """MLflow's process-wide state the notebook code above sets (URI, experiment) goes with the test."""
    yield
    from mlflow.tracking import fluent

    for _ in range(5):  # (bounded: a guard a failed test left installed ignores end_run)
        mlflow.end_run()
    fluent._active_experiment_id = None
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI"):
        os.environ.pop(name, None)
    mlflow.set_tracking_uri(None)
