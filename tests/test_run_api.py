"""The panel's "Clone with new parameters" API against a real Jupyter server, a real git + DVC project
and a real SQLite MLflow store: ``GET /nbtrack/parameters`` (the form, from the notebook's
``parameters`` cell) and ``POST /nbtrack/runs/{id}/clone`` (a job running one sweep trial of the run,
in an isolated workspace, with the new values).

One run is tracked per module (a real kernel through papermill); one clone job runs a second kernel.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import git, make_project, store_client, write_notebook
from server_helpers import conforms, cookies
from tornado.httpclient import HTTPClientError

from nbtrack.config import load_config
from nbtrack.track.headless import run_notebook

pytestmark = pytest.mark.kernel

ROWS_NB = "proj/analysis/rows.ipynb"
# An untouched notebook: no %track line (nbtrack's papermill engine tracks it).
ROWS = [
    ("parameters", "min_tenure = 0  # months\nlabel = 'all'\nscale: float = 1"),
    "import pandas as pd\nimport mlflow\ndata = pd.read_csv('data/churn.csv')\n"
    "kept = data[data.tenure >= min_tenure]\nmlflow.log_metric('rows', len(kept) * scale)",
]
PLAIN = ["import mlflow\nmlflow.log_metric('answer', 42)"]


@dataclass
class Project:
    root: Path  # the server root, holding proj/
    project: Path
    run: str  # analysis/rows.ipynb with min_tenure 3, tracked by `nbtrack run`'s service
    outside: Path  # a notebook beside the root


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    base = tmp_path_factory.mktemp("clone")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "NBTRACK_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(name, raising=False)
        mp.setenv("JUPYTER_DATA_DIR", str(base / "jupyter-data"))
        mp.setenv("DVC_NO_ANALYTICS", "1")
        project = make_project(base / "root" / "proj", rows=300)
        write_notebook(project / "analysis" / "rows.ipynb", ROWS)
        write_notebook(project / "plain.ipynb", PLAIN)
        git(project, "add", "-A")
        git(project, "commit", "-q", "-m", "notebooks")
        run = run_notebook(
            project / "analysis" / "rows.ipynb",
            config=load_config(),
            parameters={"min_tenure": 3},
            cwd=project,
            output=base / "executed.ipynb",
        )
        assert run.status == "FINISHED" and run.run_id, run.error
        outside = write_notebook(base / "outside" / "secret.ipynb", ROWS)
        yield Project(base / "root", project, run.run_id, outside)


@pytest.fixture
def jp_root_dir(tracked: Project) -> Path:
    return tracked.root


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbtrack": True}}}


async def _get(jp_fetch: Any, *parts: str, **params: str) -> Any:
    response = await jp_fetch("nbtrack", *parts, params=params)
    assert response.code == 200
    return json.loads(response.body)


async def _error(jp_fetch: Any, *parts: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of a request that must fail: one line, no traceback."""
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbtrack", *parts, **kwargs)
    assert info.value.response is not None
    body = json.loads(info.value.response.body)
    assert "\n" not in body["message"] and "Traceback" not in body["message"]
    conforms({k: v for k, v in body.items() if k != "parameter"}, "Error")
    return info.value.code, body


async def _clone(jp_fetch: Any, run_id: str, body: Any) -> Any:
    return await jp_fetch(
        "nbtrack", "runs", run_id, "clone", method="POST", body=json.dumps(body), params={"notebook": ROWS_NB}
    )


async def _wait_for_job(jp_fetch: Any, job_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = await _get(jp_fetch, "jobs", job_id)
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        await asyncio.sleep(0.5)


# --- the form -----------------------------------------------------------------------------------------
async def test_the_form_is_the_parameters_cell_prefilled_with_the_runs_values(
    jp_fetch: Any, tracked: Project
) -> None:
    # When the panel asks for the notebook's form
    form = await _get(jp_fetch, "parameters", notebook=ROWS_NB)
    # Then each parameter of the cell is a field typed by its default (or annotation)
    fields = {f["name"]: f for f in form["parameters"]}
    assert list(fields) == ["min_tenure", "label", "scale"] and form["why"] is None
    assert (fields["min_tenure"]["input"], fields["min_tenure"]["value"]) == ("int", 0)
    assert fields["min_tenure"]["help"] == "months"
    assert (fields["label"]["input"], fields["label"]["value"]) == ("str", "all")
    assert fields["scale"]["input"] == "float"
    # and for a run, the cell it recorded, prefilled with the values it ran with
    form = await _get(jp_fetch, "parameters", notebook=ROWS_NB, run=tracked.run[:8])
    assert form["run_id"] == tracked.run
    values = {f["name"]: f["value"] for f in form["parameters"]}
    assert values == {"min_tenure": 3, "label": "all", "scale": 1}


async def test_a_notebook_without_a_parameters_cell_says_why_there_is_no_form(
    jp_fetch: Any, tracked: Project
) -> None:
    form = await _get(jp_fetch, "parameters", notebook="proj/plain.ipynb")
    assert form["parameters"] == [] and "tag" in form["why"] and "`parameters`" in form["why"]


async def test_the_form_refuses_notebooks_outside_the_root_and_missing_ones(
    jp_fetch: Any, tracked: Project
) -> None:
    for notebook in ("../outside/secret.ipynb", str(tracked.outside)):
        code, body = await _error(jp_fetch, "parameters", params={"notebook": notebook})
        assert code == 403 and body["error"] == "OutsideRootError"
    code, body = await _error(jp_fetch, "parameters", params={"notebook": "proj/nope.ipynb"})
    assert code == 404 and "nope.ipynb" in body["message"]
    code, body = await _error(jp_fetch, "parameters", params={})
    assert code == 400 and "notebook" in body["message"]


# --- the clone ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "parameter", "words"),
    [
        ({"parameters": {"min_tenure": "twelve"}}, "min_tenure", "not a whole number"),
        ({"parameters": {"min_tenure": 1.5}}, "min_tenure", "not a whole number"),
        ({"parameters": {"scale": "x"}}, "scale", "not a number"),
        ({"parameters": {"label": 3}}, "label", "not text"),
        ({"parameters": {"epochs": 3}}, "epochs", "not in the notebook's parameters cell"),
        ({"parameters": [1]}, None, "JSON object"),
        ({"values": {}}, None, '{"parameters"'),
    ],
)
async def test_bad_values_are_a_400_naming_the_field(
    jp_fetch: Any, tracked: Project, body: Any, parameter: str | None, words: str
) -> None:
    code, reply = await _error(
        jp_fetch,
        "runs",
        tracked.run,
        "clone",
        method="POST",
        body=json.dumps(body),
        params={"notebook": ROWS_NB},
    )
    family = "ParameterValueError" if parameter else "UsageError"
    assert code == 400 and reply["error"] == family and words in reply["message"], reply
    assert reply.get("parameter") == parameter


async def test_clone_runs_a_new_tracked_run_with_the_new_value(jp_fetch: Any, tracked: Project) -> None:
    # When the panel clones the run with min_tenure 12
    response = await _clone(jp_fetch, tracked.run[:8], {"parameters": {"min_tenure": 12}})
    assert response.code == 202
    job = json.loads(response.body)
    conforms({k: v for k, v in job.items() if k != "kind"}, "Job")
    assert job["kind"] == "clone" and job["run_id"] == tracked.run and job["parameters"] == {"min_tenure": 12}
    # Then the job ends with a new FINISHED run, with per-cell progress
    job = await _wait_for_job(jp_fetch, job["job_id"])
    assert job["state"] == "done", job["error"]
    result = job["result"]
    assert result["status"] == "FINISHED" and result["source"] == tracked.run, job["report"]
    assert job["report"].startswith("FINISHED  run ") and job["progress"]["done"] > 0
    new = result["run_id"]
    assert new and new != tracked.run
    # which ran with the new value (the others as the source run had them), tagged as its clone
    run = store_client(tracked.project).get_run(new)
    assert run.data.params["min_tenure"] == "12" and run.data.params["label"] == "all"
    assert run.data.tags["nbtrack.clone_of"] == tracked.run
    rows = store_client(tracked.project).get_run(tracked.run).data.metrics["rows"]
    assert run.data.metrics["rows"] < rows
    # and the panel lists it with the notebook's runs
    page = await _get(jp_fetch, "runs", notebook=ROWS_NB)
    assert new in [r["run_id"] for r in page["runs"]]


# --- authentication -------------------------------------------------------------------------------------
@pytest.mark.parametrize("authorization", ["", "token not-the-token"])
async def test_both_routes_refuse_without_the_token(
    jp_fetch: Any, tracked: Project, authorization: str
) -> None:
    headers = {"Authorization": authorization}
    code, body = await _error(jp_fetch, "parameters", params={"notebook": ROWS_NB}, headers=headers)
    assert code == 403 and body["error"] == "HTTPError"
    post = {"method": "POST", "body": "{}", "headers": headers}
    code, body = await _error(jp_fetch, "runs", tracked.run, "clone", **post)
    assert code == 403 and body["error"] == "HTTPError"


async def test_a_cookie_session_needs_the_xsrf_header_to_clone(
    http_server_client: Any, jp_serverapp: Any, jp_base_url: str, tracked: Project
) -> None:
    # Given a browser session: the login form, posted with the token as password
    login = jp_base_url + "login"
    jar = cookies(await http_server_client.fetch(login))
    body = urllib.parse.urlencode({"password": jp_serverapp.identity_provider.token, "_xsrf": jar["_xsrf"]})
    header = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
    done = await http_server_client.fetch(
        login, method="POST", body=body, headers=header, follow_redirects=False, raise_error=False
    )
    assert done.code == 302, done.body
    jar.update(cookies(done))
    header = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
    url = f"{jp_base_url}nbtrack/runs/{tracked.run}/clone?notebook={ROWS_NB}"
    # When it posts without the XSRF header, it is refused; with it, the request reaches validation
    refused = await http_server_client.fetch(url, method="POST", body="{}", headers=header, raise_error=False)
    assert refused.code == 403 and "_xsrf" in json.loads(refused.body)["message"]
    checked = await http_server_client.fetch(
        url,
        method="POST",
        body='{"parameters": {"min_tenure": "x"}}',
        headers={**header, "X-XSRFToken": jar["_xsrf"]},
        raise_error=False,
    )
    assert checked.code == 400 and json.loads(checked.body)["parameter"] == "min_tenure"
