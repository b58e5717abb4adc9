"""The spool's tags are persisted: a run an earlier nbtrack left pending must still be found."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbtrack.config import NbtrackConfig
from nbtrack.runs.rows import run_row
from nbtrack.store.spool import Spool


def test_a_pending_run_written_under_the_documented_tag_names_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    # Given a spool whose run carries the tags the README documents (`nbtrack.sync.*`), written
    # straight through MLflow as an earlier nbtrack wrote them
    monkeypatch.setenv("NBTRACK_SPOOL_DIR", str(tmp_path / "spool"))
    spool = Spool.for_server("http://127.0.0.1:9", NbtrackConfig())
    client = MlflowClient(tracking_uri=spool.store.uri)
    exp = client.create_experiment("old", artifact_location=(tmp_path / "a").as_uri())
    tags = {
        "nbtrack.schema_version": "1",
        "nbtrack.sync.state": "pending",
        "nbtrack.sync.last_error": "connection refused",
    }
    run = client.create_run(exp, tags=tags, run_name="left-behind")
    client.set_terminated(run.info.run_id, "FINISHED")
    # When the spool is read
    (pending,) = spool.pending()
    # Then the run is pending, with its reason, as the listing shows it
    row = run_row(pending)
    assert pending.run_id == run.info.run_id
    assert row["pending_upload"] is True and row["upload_error"] == "connection refused"
