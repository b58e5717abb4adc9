"""The panel's API while the tracking server is down: the runs waiting in the local spool are listed,
flagged, and the request fails fast instead of waiting out MLflow's retries."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, make_project, write_notebook


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbtrack": True}}}


@pytest.fixture
def project(tmp_path: Path, shell: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose one run is pending: tracked while its server (a dead loopback port) was down."""
    monkeypatch.setenv("NBTRACK_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NBTRACK_TRACKING_TIMEOUT", "2")
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / "train.ipynb", ["x = 1"])
    monkeypatch.chdir(root)
    assert shell.run_cell(f"%track start --notebook {nb} --experiment panel-outage").success
    assert shell.run_cell("%track stop").success
    return root


@pytest.fixture
def jp_root_dir(project: Path) -> Path:
    return project


async def test_pending_runs_are_listed_while_the_server_is_down(jp_fetch: Any, project: Path) -> None:
    # When the panel lists the notebook's runs while the tracking server is unreachable
    started = time.monotonic()
    response = await jp_fetch("nbtrack", "runs", params={"notebook": "train.ipynb"})
    took = time.monotonic() - started
    page = json.loads(response.body)
    # Then the spooled run is there, flagged as pending upload, and the page says why it is alone
    assert [(r["notebook"], r["pending_upload"]) for r in page["runs"]] == [("train.ipynb", True)]
    assert "searching runs" in page["warning"]
    assert took < 30  # not MLflow's ~4 minutes of retries
