"""The panel opens a run that waits in the local spool (tracking server down), by id or prefix.

The run is made for real as tests/test_server_spool.py makes it: ``%track`` in the in-process shell
against a tracking URI where nothing listens, so it is kept in the spool, pending upload; the API
is a real Jupyter server (pytest-jupyter's ``jp_fetch``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, git, make_project, write_notebook
from server_helpers import conforms
from tornado.httpclient import HTTPClientError


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbtrack": True}}}


@pytest.fixture
def pending(tmp_path: Path, shell: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A project whose one run is pending in the spool: tracked while its server was down."""
    monkeypatch.setenv("NBTRACK_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NBTRACK_TRACKING_TIMEOUT", "2")
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / "train.ipynb", ["x = 1"])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    monkeypatch.chdir(root)
    assert shell.run_cell(f"%track start --notebook {nb} --experiment outage --name waiting").success
    assert shell.run_cell("%track stop").success
    return root, str(shell._nbtrack_tracker.last["run_id"])


@pytest.fixture
def jp_root_dir(pending: tuple[Path, str]) -> Path:
    return pending[0]


async def _get(jp_fetch: Any, *parts: str, **params: str) -> Any:
    response = await jp_fetch("nbtrack", *parts, params=params)
    assert response.code == 200
    return json.loads(response.body)


async def _error(jp_fetch: Any, *parts: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbtrack", *parts, **kwargs)
    assert info.value.response is not None
    body = json.loads(info.value.response.body)
    assert "\n" not in body["message"] and "Traceback" not in body["message"]
    return info.value.code, body


async def test_a_pending_spool_run_opens_in_the_panel(jp_fetch: Any, pending: tuple[Path, str]) -> None:
    root, spool_id = pending
    # Given the panel's list: the run, pending upload
    page = await _get(jp_fetch, "runs", notebook="train.ipynb")
    assert [(r["run_id"], r["pending_upload"]) for r in page["runs"]] == [(spool_id, True)]
    # When the panel opens it by the id it listed
    detail = await _get(jp_fetch, "runs", spool_id, notebook="train.ipynb")
    # Then its details are there, read from the spool, with no link to a server that lacks it
    conforms(detail, "RunDetail")
    assert detail["run_id"] == spool_id and detail["name"] == "waiting" and detail["pending_upload"]
    assert detail["status"] == "FINISHED" and detail["experiment"] == "outage"
    assert detail["mlflow_url"] is None
    assert detail["notebook_info"]["relpath"] == "train.ipynb"
    assert detail["git"]["commit"] == git(root, "rev-parse", "HEAD")
    assert "nbtrack/snapshot.json" in detail["artifacts"]
    # and by the 8 characters the panel shows, while the server still cannot be asked
    assert (await _get(jp_fetch, "runs", spool_id[:8]))["run_id"] == spool_id
    # and its recorded notebook opens
    recorded = await _get(jp_fetch, "runs", spool_id, "notebook", kind="saved")
    assert recorded["kind"] == "saved" and recorded["content"]["cells"][0]["source"] == "x = 1"
    # When it is replayed from the panel: refused, saying it must be uploaded first
    code, body = await _error(jp_fetch, "runs", spool_id, "replay", method="POST", body="{}")
    assert (code, body["error"]) == (409, "PendingUploadError")
    assert (
        f"run {spool_id} is still in the local spool" in body["message"] and "nbtrack sync" in body["message"]
    )


@pytest.mark.parametrize("authorization", ["", "token not-the-token"])
async def test_the_pending_run_is_refused_without_the_token(
    jp_fetch: Any, pending: tuple[Path, str], authorization: str
) -> None:
    _, spool_id = pending
    for parts in (("runs", spool_id), ("runs", spool_id[:8]), ("runs", spool_id, "notebook")):
        code, body = await _error(jp_fetch, *parts, headers={"Authorization": authorization})
        assert (code, body["error"]) == (403, "HTTPError"), parts
