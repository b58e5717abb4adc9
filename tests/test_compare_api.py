"""The compare view's REST endpoints against a real Jupyter server (pytest-jupyter's ``jp_fetch``):
``compare``, ``compare.csv``, ``histories``, ``gallery``; runs tracked for real in a real SQLite
MLflow store (see tests/test_compare_table.py), replies checked against ``openapi.yaml``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import server_helpers
from server_helpers import conforms, openapi
from test_compare_table import PNG, Compared, compared_project
from tornado.httpclient import HTTPClientError

NB = "proj/nb.ipynb"


@pytest.fixture
def compared(shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Compared:
    return compared_project(shell, tmp_path / "root", monkeypatch)


@pytest.fixture
def jp_root_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if "compared" in request.fixturenames:
        root: Path = request.getfixturevalue("compared").root
        return root
    return tmp_path


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbtrack": True}}}


def documented(path: str, document: Any) -> None:
    """Raise unless ``document`` matches the 200 reply documented for ``path``."""
    import jsonschema

    spec = openapi()
    schema = spec["paths"][f"/nbtrack/{path}"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    # (OpenAPI 3.0's ``nullable`` as JSON Schema, as ``conforms`` reads the named schemas)
    defs = server_helpers._json_schema(spec["components"]["schemas"])
    jsonschema.validate(document, {**server_helpers._json_schema(schema), "$defs": defs})


async def get(jp_fetch: Any, path: str, **params: str) -> Any:
    response = await jp_fetch("nbtrack", path, params=params)
    assert response.code == 200
    return json.loads(response.body)


async def error(jp_fetch: Any, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbtrack", path, **kwargs)
    assert info.value.response is not None
    body = json.loads(info.value.response.body)
    assert "\n" not in body["message"] and "Traceback" not in body["message"]
    conforms(body, "Error")
    return info.value.code, body


async def test_compare_table_csv_histories_and_gallery(jp_fetch: Any, compared: Compared) -> None:
    # the table: varying columns, sorted by a metric, filtered by a param
    page = await get(jp_fetch, "compare", notebook=NB, sort="metrics.loss.last", order="desc")
    documented("compare", page)
    assert [r["run_id"] for r in page["rows"]] == compared.ids[::-1]
    assert "params.lr" in {c["key"] for c in page["columns"]}
    found = await get(jp_fetch, "compare", notebook=NB, filter="params.lr = '0.3'", scope="project")
    assert [r["run_id"] for r in found["rows"]] == [compared.ids[2]] and found["scope"] == "project"
    # the CSV: an attachment holding every row
    response = await jp_fetch("nbtrack", "compare.csv", params={"notebook": NB, "keys": "run.name,params.lr"})
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"] == 'attachment; filename="nb-runs.csv"'
    rows = list(csv.reader(io.StringIO(response.body.decode())))
    assert rows[0] == ["run_id", "Name", "lr"] and sorted(r[2] for r in rows[1:]) == ["0.1", "0.2", "0.3"]
    # the histories, by id prefixes
    reply = await get(jp_fetch, "histories", notebook=NB, runs=",".join(i[:8] for i in compared.ids))
    documented("histories", reply)
    assert reply["keys"] == ["loss"] and len(reply["histories"][compared.ids[0]]["loss"]) == 3
    # the gallery: one figure per run
    gallery = await get(jp_fetch, "gallery", notebook=NB, runs=",".join(compared.ids), source="saved")
    documented("gallery", gallery)
    assert gallery["cell"] == "plot"
    assert [r["outputs"][0]["data"]["image/png"] for r in gallery["runs"]] == [PNG] * 3


async def test_compare_refuses_bad_requests_in_one_line(jp_fetch: Any, compared: Compared) -> None:
    code, body = await error(jp_fetch, "compare", params={"notebook": NB, "filter": "params.lr >>> 1"})
    assert code == 400 and body["message"].startswith("filter 'params.lr >>> 1' is not valid")
    code, body = await error(jp_fetch, "compare", params={"notebook": NB, "limit": "many"})
    assert code == 400 and "limit='many'" in body["message"]
    code, body = await error(jp_fetch, "histories", params={"notebook": NB})
    assert code == 400 and body["message"].startswith("runs=")
    code, body = await error(jp_fetch, "gallery", params={"notebook": NB, "runs": "0123456789abcdef" * 2})
    assert code == 404


@pytest.mark.parametrize("path", ["compare", "compare.csv", "histories", "gallery"])
@pytest.mark.parametrize("authorization", ["", "token not-the-token"])
async def test_compare_endpoints_need_authentication(jp_fetch: Any, path: str, authorization: str) -> None:
    code, body = await error(jp_fetch, path, headers={"Authorization": authorization})
    assert code == 403 and body["error"] == "HTTPError"
