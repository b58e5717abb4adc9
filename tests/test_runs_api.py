"""The panel's REST API takes run id prefixes (6 to 32 hex digits), as the CLI and ``%track show`` do.

A real Jupyter server (pytest-jupyter's ``jp_fetch``), a real git project and SQLite MLflow store
whose runs ``%track`` tracked in the in-process shell; two more runs whose ids share a prefix are
made by MLflow itself with the id it draws chosen (see tests/test_runs_service.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from server_helpers import conforms
from test_runs_service import tracked_with_twins
from tornado.httpclient import HTTPClientError

NB = "proj/nb.ipynb"
AMBIGUOUS = (
    "run id prefix 3f2a9c matches 2 runs: 3f2a9c77… (tuned), 3f2a9c41… (baseline); give more characters"
)


@dataclass
class Project:
    root: Path  # the server root, holding proj/
    first: str
    second: str


@pytest.fixture
def project(tmp_path: Path, shell: Any, monkeypatch: pytest.MonkeyPatch) -> Project:
    first, second = tracked_with_twins(shell, tmp_path / "root" / "proj", monkeypatch)
    return Project(tmp_path / "root", first, second)


@pytest.fixture
def jp_root_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The folder holding the project, for the tests that use it (the others need no runs)."""
    if "project" in request.fixturenames:
        root: Path = request.getfixturevalue("project").root
        return root
    return tmp_path


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbtrack": True}}}


async def get(jp_fetch: Any, *parts: str, **params: str) -> Any:
    response = await jp_fetch("nbtrack", *parts, params=params)
    assert response.code == 200
    return json.loads(response.body)


async def error(jp_fetch: Any, *parts: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of a request that must fail: one line, no traceback."""
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbtrack", *parts, **kwargs)
    assert info.value.response is not None
    body = json.loads(info.value.response.body)
    assert "\n" not in body["message"] and "Traceback" not in body["message"]
    conforms(body, "Error")
    return info.value.code, body


async def test_a_run_is_opened_by_a_prefix_of_its_id(jp_fetch: Any, project: Project) -> None:
    first, second = project.first, project.second
    # When the panel asks for a run by the 8 characters it shows
    detail = await get(jp_fetch, "runs", first[:8], notebook=NB)
    # Then it is that run's detail
    conforms(detail, "RunDetail")
    assert detail["run_id"] == first and detail["name"] == "first" and detail["pending_upload"] is False
    # and prefixes work for the recorded notebook and the diff too
    recorded = await get(jp_fetch, "runs", second[:6], "notebook", kind="history", notebook=NB)
    assert recorded["name"] == f"nb.run-{second[:8]}.history.ipynb"
    diff = await get(jp_fetch, "diff", a=first[:7], b=second.upper(), notebook=NB)
    assert (diff["a"]["run_id"], diff["b"]["run_id"]) == (first, second)
    # An unknown prefix is a 404; fewer than 6 hex digits, or not hex, a 400
    code, body = await error(jp_fetch, "runs", "ffffff", params={"notebook": NB})
    assert (code, body["error"]) == (404, "RunNotFoundError") and "no run id starts with ffffff" in body[
        "message"
    ]
    for bad in ("3f2a9", "3f2a9cz", "0" * 33):
        code, body = await error(jp_fetch, "runs", bad, params={"notebook": NB})
        assert (code, body["error"], body["exit_code"]) == (400, "UsageError", 64), bad


async def test_an_ambiguous_prefix_is_a_400_naming_the_candidates(jp_fetch: Any, project: Project) -> None:
    for parts, kwargs in [
        (("runs", "3f2a9c"), {}),
        (("runs", "3f2a9c", "notebook"), {}),
        (("diff",), {"params": {"a": project.first, "b": "3f2a9c"}}),
        (("runs", "3f2a9c", "replay"), {"method": "POST", "body": "{}"}),
    ]:
        params = {"notebook": NB, **kwargs.pop("params", {})}
        code, body = await error(jp_fetch, *parts, params=params, **kwargs)
        assert (code, body["error"], body["exit_code"]) == (400, "UsageError", 64), parts
        assert body["message"] == AMBIGUOUS


@pytest.mark.parametrize(
    ("method", "parts", "params"),
    [
        ("GET", ("runs", "3f2a9c41"), {}),
        ("GET", ("runs", "3f2a9c"), {}),
        ("GET", ("runs", "3f2a9c41", "notebook"), {}),
        ("GET", ("diff",), {"a": "3f2a9c41", "b": "3f2a9c77"}),
        ("POST", ("runs", "3f2a9c41", "replay"), {}),
    ],
)
@pytest.mark.parametrize("authorization", ["", "token not-the-token"])
async def test_prefix_requests_are_refused_without_the_token(
    jp_fetch: Any, method: str, parts: tuple[str, ...], params: dict[str, str], authorization: str
) -> None:
    code, body = await error(
        jp_fetch,
        *parts,
        method=method,
        body="{}" if method == "POST" else None,
        params={"notebook": NB, **params},
        headers={"Authorization": authorization},
    )
    assert code == 403 and body["error"] == "HTTPError"
