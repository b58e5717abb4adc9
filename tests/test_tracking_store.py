"""The one tracking object: embedded store, or a tracking server through the local spool.

Real MLflow stores (SQLite in ``tmp_path``), a real refused port for a server that is down, and a
real ``mlflow server`` for one that answers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from conftest import free_port, make_project
from mlflow.tracking import MlflowClient

from nbtrack.config import NbtrackConfig
from nbtrack.store.tracking import Tracking
from nbtrack.tags import OWNER_HOST, OWNER_PID, PENDING, SPOOL_RUN_ID, SYNC_STATE, SYNC_TARGET

#: Seconds the uploader may wait for a server; the refused port answers at once.
BOUND = 2.0


@pytest.fixture(autouse=True)
def _no_active_run() -> Iterator[None]:
    """Whatever a test leaves active (a failed assertion mid-run) is ended."""
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()


def _config(tracking_uri: str = "") -> NbtrackConfig:
    return NbtrackConfig(tracking_uri=tracking_uri, tracking_timeout=BOUND)


def _wait_upload(tracking: Tracking, run_id: str) -> tuple[str, str]:
    """Hand the run to the background uploader and wait for its outcome (state, detail)."""
    heard: list[tuple[str, str]] = []
    done = threading.Event()

    def on_done(state: str, detail: str) -> None:
        heard.append((state, detail))
        done.set()

    tracking.upload(run_id, on_done)
    assert done.wait(300), "the uploader never reported"
    return heard[0]


def test_embedded_store_without_a_server(tmp_path: Path) -> None:
    # Given a project and no tracking server configured
    root = make_project(tmp_path / "proj", use_dvc=False)
    # When a run is started and ended through the tracking object
    tracking = Tracking.for_project(root, _config())
    assert not tracking.spooled and tracking.spool is None and tracking.target is None
    assert (root / ".nbtrack" / ".gitignore").exists()  # made before any capture looks at git
    run_id = tracking.start_run(tracking.experiment_id("exp"), "one", {"k": "v"})
    # Then the run is MLflow's active run, in the project's embedded store
    assert mlflow.active_run().info.run_id == run_id
    assert mlflow.get_tracking_uri() == tracking.store.uri == tracking.uri
    assert tracking.uri == f"sqlite:///{root / '.nbtrack' / 'mlflow.db'}"
    tracking.end_run(run_id, "FINISHED")
    # And it ended FINISHED, with the owner's tags and no spool tags
    assert mlflow.active_run() is None
    run = tracking.store.get_run(run_id)
    assert run.status == "FINISHED" and run.tags["k"] == "v"
    assert {OWNER_HOST, OWNER_PID} <= set(run.tags) and SYNC_STATE not in run.tags
    assert tracking.probe() is None
    assert "mlflow ui --backend-store-uri" in tracking.run_view(run)


def test_server_down_runs_go_to_the_spool_and_stay_pending(tmp_path: Path) -> None:
    # Given a tracking server nobody answers for
    server = f"http://127.0.0.1:{free_port()}"
    root = make_project(tmp_path / "proj", use_dvc=False)
    tracking = Tracking.for_project(root, _config(server))
    # Then runs are bound for it through the local spool, and the probe says why it is unreachable
    assert tracking.spooled and tracking.target is not None and tracking.spool is not None
    assert tracking.uri == server and tracking.store.uri == tracking.spool.uri
    assert not (root / ".nbtrack").exists()  # no embedded store for a server's project
    reason = tracking.probe()
    assert reason
    assert server in tracking.outage_notice(reason) and "nbtrack sync" in tracking.outage_notice(reason)
    # When a run is started: the kernel's MLflow calls go to the spool while it is active
    run_id = tracking.start_run(tracking.experiment_id("exp"), "offline", {})
    assert mlflow.get_tracking_uri() == tracking.spool.uri
    mlflow.log_metric("loss", 0.5)
    # And when it ends: back to the server, the run pending in the spool
    tracking.end_run(run_id, "FINISHED")
    assert mlflow.get_tracking_uri() == server
    run = tracking.store.get_run(run_id)
    assert run.status == "FINISHED" and run.metrics == {"loss": 0.5}
    assert run.tags[SYNC_STATE] == PENDING and run.tags[SYNC_TARGET] == server
    assert [r.run_id for r in tracking.spool.pending()] == [run_id]
    # And the background upload reports it pending, with the reason
    state, detail = _wait_upload(tracking, run_id)
    assert state == PENDING and detail
    assert tracking.store.get_run(run_id).tags[SYNC_STATE] == PENDING


def test_a_discarded_run_is_failed_and_trashed_and_the_uri_restored(tmp_path: Path) -> None:
    # Given a spooled run whose start could not be logged
    server = f"http://127.0.0.1:{free_port()}"
    tracking = Tracking.for_project(make_project(tmp_path / "proj", use_dvc=False), _config(server))
    run_id = tracking.start_run(tracking.experiment_id("exp"), "doomed", {})
    # When it is discarded
    tracking.discard(run_id)
    # Then it ended FAILED, sits in MLflow's trash, and MLflow points at the server again
    info = MlflowClient(tracking_uri=tracking.store.uri).get_run(run_id).info
    assert (info.status, info.lifecycle_stage) == ("FAILED", "deleted")
    assert mlflow.active_run() is None and mlflow.get_tracking_uri() == server


@pytest.mark.server
def test_server_up_the_ended_run_is_uploaded(tmp_path: Path, mlflow_server: str) -> None:
    # Given a tracking server that answers
    tracking = Tracking.for_project(make_project(tmp_path / "proj", use_dvc=False), _config(mlflow_server))
    assert tracking.probe() is None
    # When a run is tracked through the spool and handed to the uploader
    run_id = tracking.start_run(tracking.experiment_id("up"), "online", {"k": "v"})
    mlflow.log_param("lr", "0.1")
    tracking.end_run(run_id, "FINISHED")
    state, server_id = _wait_upload(tracking, run_id)
    # Then the server holds it, linked to its spool copy, and the spool copy is marked uploaded
    assert state == "uploaded"
    copy = MlflowClient(tracking_uri=mlflow_server).get_run(server_id)
    assert copy.info.status == "FINISHED" and copy.data.params == {"lr": "0.1"}
    assert copy.data.tags[SPOOL_RUN_ID] == run_id and copy.data.tags["k"] == "v"
    assert SYNC_STATE not in copy.data.tags and OWNER_PID not in copy.data.tags
    assert tracking.store.get_run(run_id).tags[SYNC_STATE] == "uploaded"
