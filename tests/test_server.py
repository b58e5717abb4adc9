"""The server extension's REST API against a real Jupyter server, a real git + DVC project and a real
SQLite MLflow store holding runs that real kernels tracked (papermill executing the notebooks' own
``%track`` magics); replays run as real subprocesses.

The runs are tracked once per module (``tracked``); each test gets its own in-process server
(pytest-jupyter's ``jp_serverapp``/``jp_fetch``) whose root holds the project.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, git, store_client
from server_helpers import (
    Tracked,
    alive,
    children,
    conforms,
    cookies,
    jupyter_server,
    openapi,
    shipped_config,
    track_runs,
)
from tornado.httpclient import HTTPClientError

from nbtrack import __version__
from nbtrack.server.errors import error_reply

pytestmark = pytest.mark.kernel

UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"
ROWS_NB = "proj/analysis/rows.ipynb"  # the notebook the panel names: it selects the project's store


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracked]:
    base = tmp_path_factory.mktemp("server")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "NBTRACK_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(name, raising=False)
        mp.setenv("JUPYTER_DATA_DIR", str(base / "jupyter-data"))  # the kernels' notebook signatures
        mp.setenv("DVC_NO_ANALYTICS", "1")
        yield track_runs(base)


@pytest.fixture
def jp_root_dir(tracked: Tracked, request: pytest.FixtureRequest) -> Path:
    """The server root: the folder holding the project, or one below it (``indirect`` parameter)."""
    below = getattr(request, "param", None)
    return tracked.root / below if below else tracked.root


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbtrack": True}}}


def _nb(rel: str) -> dict[str, str]:
    return {"notebook": rel}


async def _get(jp_fetch: Any, *parts: str, **params: str) -> Any:
    response = await jp_fetch("nbtrack", *parts, params=params)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


async def _error(jp_fetch: Any, *parts: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of a request that must fail."""
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbtrack", *parts, **kwargs)
    assert info.value.response is not None
    body = json.loads(info.value.response.body)
    assert set(body) >= {"error", "message"} and "\n" not in body["message"]
    assert "Traceback" not in body["message"]
    conforms(body, "Error")
    return info.value.code, body


async def _wait_for_job(jp_fetch: Any, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = await _get(jp_fetch, "jobs", job_id)
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        await asyncio.sleep(0.5)


# --- the extension is installed and light ---------------------------------------------------------
def test_extension_is_enabled_and_validates(tmp_path: Path) -> None:
    jupyter = str(Path(sys.executable).with_name("jupyter"))
    installed = Path(sys.prefix, "etc", "jupyter", "jupyter_server_config.d", "nbtrack.json")
    if installed.is_file():
        # Given the package installed (its wheel puts the config file in etc/jupyter)
        env = dict(os.environ)
    else:
        # Given the config file the wheel would install, in a config folder of its own
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(shipped_config(tmp_path / "config"))}
    # When `jupyter server extension list` reads the configuration
    proc = subprocess.run([jupyter, "server", "extension", "list"], env=env, capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).replace("\x1b[32m", "").replace("\x1b[0m", "")
    # Then nbtrack is enabled, and its extension point imports and has its loader
    assert "nbtrack enabled" in out, out
    assert f"nbtrack {__version__} OK" in out, out


def test_loading_the_extension_imports_no_mlflow_dvc_or_papermill(tmp_path: Path) -> None:
    code = f"""
import json, sys
from jupyter_server.serverapp import ServerApp
app = ServerApp(jpserver_extensions={{"nbtrack": True}}, root_dir={str(tmp_path)!r}, open_browser=False)
app.initialize(argv=[], new_httpserver=False)
patterns = [
    rule.matcher.regex.pattern
    for host in app.web_app.default_router.rules
    for rule in getattr(host.target, "rules", [])
    if hasattr(rule.matcher, "regex")
]
print(json.dumps({{
    "heavy": sorted(m for m in ("mlflow", "dvc", "papermill") if m in sys.modules),
    "loaded": "nbtrack" in app.web_app.settings,
    "routes": [p for p in patterns if "nbtrack" in p],
}}))
"""
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "c"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "r"),
    }
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["loaded"] and facts["heavy"] == []
    assert any(p.endswith("/nbtrack/runs$") for p in facts["routes"]), facts["routes"]


def test_the_api_document_names_every_route() -> None:
    from nbtrack.server.handlers import route_table

    documented = {re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) for path in openapi()["paths"]}
    assert {pattern for pattern, _ in route_table("/")} == documented


# --- reading -----------------------------------------------------------------------------------------
async def test_info_names_the_store_of_the_notebook(jp_fetch: Any, tracked: Tracked) -> None:
    info = await _get(jp_fetch, "info", **_nb(ROWS_NB))
    assert info["store"] == f"sqlite:///{tracked.project / '.nbtrack' / 'mlflow.db'}"
    assert info["store_exists"] is True and info["notebook"] == "analysis/rows.ipynb"
    assert info["root_dir"] == str(tracked.root) and info["mlflow_ui"] is None
    assert info["version"] == __version__ and info["max_replays"] == 2 and info["replay_timeout"] == 1800


async def test_runs_of_a_notebook_newest_first(jp_fetch: Any, tracked: Tracked) -> None:
    page = await _get(jp_fetch, "runs", **_nb(ROWS_NB))
    conforms(page, "RunPage")
    originals = [r for r in page["runs"] if not r["replay_of"]]
    assert [r["run_id"] for r in originals] == [tracked.second, tracked.first]
    assert page["notebook"] == "analysis/rows.ipynb" and page["next_page_token"] is None
    second = originals[0]
    assert second["name"] == "rows" and second["status"] == "FINISHED"
    assert second["params"]["min_tenure"] == "12" and second["metrics"]["rows"] < 300
    assert originals[1]["metrics"]["rows"] == 300
    assert second["data_status"] == "clean" and second["git_dirty"] is False
    commit = git(tracked.project, "rev-parse", "HEAD")
    assert second["commit"] == commit[:7] and second["notebook"] == "analysis/rows.ipynb"
    assert isinstance(second["start_time"], int) and second["duration_s"] > 0
    assert second["start_time"] > originals[1]["start_time"]
    # the other notebook's run is listed with its own notebook only
    assert tracked.other not in {r["run_id"] for r in page["runs"]}
    other = await _get(jp_fetch, "runs", **_nb("proj/other.ipynb"))
    assert [r["run_id"] for r in other["runs"]] == [tracked.other]
    # the server root holds no project: without a notebook there is no store to list
    assert (await _get(jp_fetch, "runs"))["runs"] == []


@pytest.mark.parametrize("jp_root_dir", ["proj"], indirect=True)
async def test_a_server_rooted_in_the_project_lists_all_its_runs(jp_fetch: Any, tracked: Tracked) -> None:
    every = await _get(jp_fetch, "runs")
    assert {tracked.first, tracked.second, tracked.other} <= {r["run_id"] for r in every["runs"]}
    assert every["notebook"] is None
    only = await _get(jp_fetch, "runs", experiment="no-such-experiment")
    assert only["runs"] == []


@pytest.mark.parametrize("jp_root_dir", ["proj"], indirect=True)
async def test_pages_walk_every_run_newest_first(jp_fetch: Any, tracked: Tracked) -> None:
    # Given the store's own answer: every nbtrack run, newest first
    client = store_client(tracked.project)
    expected = [r.info.run_id for r in all_runs(client) if "nbtrack.schema_version" in r.data.tags]
    # When the runs are listed one per page
    seen, token, pages = [], None, 0
    while True:
        params = {"max_results": "1", **({"page_token": token} if token else {})}
        page = await _get(jp_fetch, "runs", **params)
        pages += 1
        seen += [r["run_id"] for r in page["runs"]]
        token = page["next_page_token"]
        if not token:
            break
        assert pages <= len(expected)
    # Then the pages hold every run once, in order
    assert seen == expected and len(seen) >= 3


async def test_a_folder_without_runs_lists_nothing_and_creates_no_store(
    jp_fetch: Any, tracked: Tracked
) -> None:
    (tracked.root / "scratch").mkdir(exist_ok=True)
    page = await _get(jp_fetch, "runs", **_nb("scratch/new.ipynb"))
    assert page["runs"] == [] and page["next_page_token"] is None
    assert page["store"] == f"sqlite:///{tracked.root / 'scratch' / '.nbtrack' / 'mlflow.db'}"
    assert not (tracked.root / "scratch" / ".nbtrack").exists()
    code, body = await _error(jp_fetch, "runs", tracked.first, params=_nb("scratch/new.ipynb"))
    assert code == 404 and body["error"] == "RunNotFoundError"


async def test_run_detail_summarises_the_snapshot(jp_fetch: Any, tracked: Tracked) -> None:
    detail = await _get(jp_fetch, "runs", tracked.first, **_nb(ROWS_NB))
    conforms(detail, "RunDetail")
    assert detail["run_id"] == tracked.first and detail["experiment"] == "server"
    env = detail["environment"]
    assert env["python"] == sys.version.split()[0] and env["packages"] > 50 and env["platform"]
    [data] = detail["data"]
    assert data["path"] == "data/churn.csv" and data["status"] == "clean" and data["hash_name"] == "md5"
    assert detail["git"]["commit"] == git(tracked.project, "rev-parse", "HEAD")
    assert detail["git"]["dirty"] is False and detail["git"]["remote"] is None
    nb = detail["notebook_info"]
    assert nb["relpath"] == "analysis/rows.ipynb" and nb["method"] == "papermill" and nb["stored"]
    assert {s["status"] for s in detail["sections"].values()} == {"ok"}
    assert {"nbtrack/snapshot.json", "nbtrack/notebook.ipynb", "nbtrack/history.ipynb"} <= set(
        detail["artifacts"]
    )
    assert detail["mlflow_url"] is None  # an embedded store has no UI unless one is configured


@pytest.mark.parametrize(
    "jp_server_config",
    [
        {
            "ServerApp": {"jpserver_extensions": {"nbtrack": True}},
            "NbtrackConfig": {"mlflow_ui_url": "http://ui:5000/"},
        }
    ],
)
async def test_configured_mlflow_ui_links_the_run(jp_fetch: Any, tracked: Tracked) -> None:
    detail = await _get(jp_fetch, "runs", tracked.other, **_nb("proj/other.ipynb"))
    experiment = detail["experiment_id"]
    assert detail["mlflow_url"] == f"http://ui:5000/#/experiments/{experiment}/runs/{tracked.other}"
    assert (await _get(jp_fetch, "info", **_nb("proj/other.ipynb")))["mlflow_ui"] == "http://ui:5000"


async def test_diff_of_two_runs(jp_fetch: Any, tracked: Tracked) -> None:
    diff = await _get(jp_fetch, "diff", a=tracked.first, b=tracked.second, **_nb(ROWS_NB))
    conforms(diff, "Diff")
    assert diff["a"]["run_id"] == tracked.first and diff["b"]["run_id"] == tracked.second
    assert {"name": "min_tenure", "a": "0", "b": "12"} in diff["params"]
    [rows] = [m for m in diff["metrics"] if m["name"] == "rows"]
    assert rows["a"] == 300 and rows["difference"] < 0
    assert diff["data"] == [] and diff["git"] == {}


async def test_recorded_notebook_is_untrusted_until_signed_here(
    jp_fetch: Any, jp_serverapp: Any, tracked: Tracked, tmp_path: Path
) -> None:
    import nbformat
    from conftest import download_all, store_client

    saved = await _get(jp_fetch, "runs", tracked.first, "notebook", kind="saved", **_nb(ROWS_NB))
    assert saved["name"] == "rows.run-" + tracked.first[:8] + ".ipynb" and saved["kind"] == "saved"
    assert saved["trusted"] is False
    recorded = (tracked.project / "analysis" / "rows.ipynb").read_text()
    sources = [c["source"] for c in saved["content"]["cells"]]
    assert sources == ["".join(c["source"]) for c in json.loads(recorded)["cells"]]
    # best: no live notebook was sent (papermill has no panel), so the saved one
    best = await _get(jp_fetch, "runs", tracked.first, "notebook", **_nb(ROWS_NB))
    assert best["kind"] == "saved"
    history = await _get(jp_fetch, "runs", tracked.first, "notebook", kind="history", **_nb(ROWS_NB))
    assert history["name"].endswith(".history.ipynb") and history["content"]["nbformat"] == 4
    # When this Jupyter's notary signs the recorded notebook (under papermill, the executed one, its
    # outputs included: signing the input file trusts no output), it opens trusted, cells marked
    files = download_all(store_client(tracked.project), tracked.first, tmp_path / "artifacts")
    jp_serverapp.contents_manager.notary.sign(
        nbformat.reads(files["nbtrack/notebook.ipynb"].decode(), as_version=4)
    )
    signed = await _get(jp_fetch, "runs", tracked.first, "notebook", kind="saved", **_nb(ROWS_NB))
    assert signed["trusted"] is True
    assert all(c["metadata"]["trusted"] for c in signed["content"]["cells"] if c["cell_type"] == "code")
    code, body = await _error(
        jp_fetch, "runs", tracked.first, "notebook", params={"kind": "live", **_nb(ROWS_NB)}
    )
    assert code == 404 and body["error"] == "NotFoundError" and "notebook.live.ipynb" in body["message"]


# --- errors --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("parts", "params"),
    [
        (("runs",), {"max_results": "0"}),
        (("runs",), {"max_results": "1001"}),
        (("runs",), {"max_results": "ten"}),
        (("runs",), {"page_token": "not-a-token", "notebook": ROWS_NB}),
        (("runs", "not-a-run-id"), {}),
        (("diff",), {"a": UNKNOWN_RUN}),
        (("diff",), {"a": UNKNOWN_RUN, "b": "xyz"}),
        (("runs", UNKNOWN_RUN, "notebook"), {"kind": "draft"}),
        (("runs",), {"notebook": ""}),
    ],
)
async def test_bad_parameters_are_400(jp_fetch: Any, parts: tuple[str, ...], params: dict[str, str]) -> None:
    code, body = await _error(jp_fetch, *parts, params=params)
    assert code == 400 and body["error"] == "UsageError" and body["exit_code"] == 64


@pytest.mark.parametrize(
    "body",
    [
        '{"mode": "fast"}',
        '{"environment": "docker"}',
        '{"parameters": [1]}',
        '{"seed": 1}',
        "[1]",
        "{not json",
    ],
)
async def test_bad_replay_requests_are_400(jp_fetch: Any, tracked: Tracked, body: str) -> None:
    code, reply = await _error(jp_fetch, "runs", tracked.first, "replay", method="POST", body=body)
    assert code == 400 and reply["error"] == "UsageError"


async def test_unknown_run_and_job_are_404(jp_fetch: Any, tracked: Tracked) -> None:
    for parts, kwargs in [
        (("runs", UNKNOWN_RUN), {"params": _nb(ROWS_NB)}),
        (("runs", UNKNOWN_RUN, "notebook"), {"params": _nb(ROWS_NB)}),
        (("diff",), {"params": {"a": tracked.first, "b": UNKNOWN_RUN, **_nb(ROWS_NB)}}),
        (("runs", UNKNOWN_RUN, "replay"), {"method": "POST", "body": "{}", "params": _nb(ROWS_NB)}),
    ]:
        code, body = await _error(jp_fetch, *parts, **kwargs)
        assert (code, body["error"], body["exit_code"]) == (404, "RunNotFoundError", 15), parts
        assert UNKNOWN_RUN in body["message"]
    code, body = await _error(jp_fetch, "jobs", "no-such-job")
    assert code == 404 and body["error"] == "NotFoundError"


async def test_a_run_without_snapshot_is_409_and_a_broken_notebook_500(
    jp_fetch: Any, tracked: Tracked
) -> None:
    # Given a run nbtrack did not record (plain MLflow), and a run whose live notebook is damaged
    client = store_client(tracked.project)
    experiment = client.get_experiment_by_name("server").experiment_id
    plain = client.create_run(experiment, run_name="plain").info.run_id
    client.set_terminated(plain)
    damaged = tracked.project.parent.parent / "notebook.live.ipynb"
    damaged.write_text("{ not a notebook")
    client.log_artifact(tracked.other, str(damaged), "nbtrack")
    # Then
    code, body = await _error(jp_fetch, "runs", plain, params=_nb(ROWS_NB))
    assert (code, body["error"], body["exit_code"]) == (409, "SnapshotError", 16)
    code, body = await _error(
        jp_fetch, "runs", tracked.other, "notebook", params={"kind": "live", **_nb(ROWS_NB)}
    )
    assert (code, body["error"], body["exit_code"]) == (500, "NotebookError", 12)


def test_unexpected_errors_say_nothing_of_their_internals() -> None:
    status, body = error_reply(KeyError("/srv/secret/path"), 500)
    assert status == 500 and body["error"] == "InternalError" and "secret" not in body["message"]


# --- authentication and paths ----------------------------------------------------------------------
ENDPOINTS = [
    ("GET", ("info",)),
    ("GET", ("runs",)),
    ("GET", ("runs", UNKNOWN_RUN)),
    ("GET", ("diff",)),
    ("GET", ("runs", UNKNOWN_RUN, "notebook")),
    ("POST", ("runs", UNKNOWN_RUN, "replay")),
    ("GET", ("jobs", "some-job")),
]


@pytest.mark.parametrize(("method", "parts"), ENDPOINTS)
@pytest.mark.parametrize("authorization", ["", "token not-the-token"])
async def test_every_endpoint_refuses_without_the_token(
    jp_fetch: Any, method: str, parts: tuple[str, ...], authorization: str
) -> None:
    code, body = await _error(
        jp_fetch,
        *parts,
        method=method,
        body="{}" if method == "POST" else None,
        headers={"Authorization": authorization},
    )
    assert code == 403 and body["error"] == "HTTPError"


async def test_cookie_sessions_need_the_xsrf_header_to_post(
    http_server_client: Any, jp_serverapp: Any, jp_base_url: str, tracked: Tracked
) -> None:
    # Given a browser session: the login form, posted with the token as password
    login = jp_base_url + "login"
    form = await http_server_client.fetch(login)
    jar = cookies(form)
    body = urllib.parse.urlencode({"password": jp_serverapp.identity_provider.token, "_xsrf": jar["_xsrf"]})
    header = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
    done = await http_server_client.fetch(
        login, method="POST", body=body, headers=header, follow_redirects=False, raise_error=False
    )
    assert done.code == 302, done.body
    jar.update(cookies(done))
    header = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
    url = f"{jp_base_url}nbtrack/runs/{tracked.first}/replay"
    # When it reads with the cookie alone, it may
    info = await http_server_client.fetch(jp_base_url + "nbtrack/info", headers=header)
    assert info.code == 200
    # When it posts without the XSRF header, it is refused; with it, the request reaches validation
    refused = await http_server_client.fetch(url, method="POST", body="{}", headers=header, raise_error=False)
    assert refused.code == 403 and "_xsrf" in json.loads(refused.body)["message"]
    with_xsrf = {**header, "X-XSRFToken": jar["_xsrf"]}
    checked = await http_server_client.fetch(
        url, method="POST", body='{"mode": "fast"}', headers=with_xsrf, raise_error=False
    )
    assert checked.code == 400 and json.loads(checked.body)["error"] == "UsageError"


async def test_paths_outside_the_root_are_403(jp_fetch: Any, tracked: Tracked) -> None:
    link = tracked.root / "leak"
    if not link.is_symlink():
        link.symlink_to(tracked.outside, target_is_directory=True)
    for notebook in (
        "../../etc/passwd",
        "/etc/passwd",
        str(tracked.outside / "secret.ipynb"),
        "leak/secret.ipynb",
    ):
        for parts in (("runs",), ("info",), ("runs", tracked.first)):
            code, body = await _error(jp_fetch, *parts, params={"notebook": notebook})
            assert code == 403 and body["error"] == "OutsideRootError", (notebook, parts)
            if notebook.startswith("leak"):  # where the symlink leads is not told
                assert str(tracked.outside) not in body["message"]
    # an absolute path inside the root is fine
    page = await _get(jp_fetch, "runs", notebook=str(tracked.project / "other.ipynb"))
    assert [r["run_id"] for r in page["runs"]] == [tracked.other]


@pytest.mark.parametrize("jp_root_dir", ["proj/analysis"], indirect=True)
async def test_replay_refuses_a_run_tracked_outside_the_root(jp_fetch: Any, tracked: Tracked) -> None:
    # Given a server rooted in the project's analysis/ folder: the store is the project's, above it
    page = await _get(jp_fetch, "runs")
    assert tracked.other in {r["run_id"] for r in page["runs"]}
    # When a run of other.ipynb (outside analysis/) is replayed: refused, no job
    code, body = await _error(jp_fetch, "runs", tracked.other, "replay", method="POST", body="{}")
    assert code == 403 and body["error"] == "OutsideRootError"


# --- replay jobs ------------------------------------------------------------------------------------
async def test_replay_job_reproduces_the_run(jp_fetch: Any, jp_base_url: str, tracked: Tracked) -> None:
    # When the panel replays a run
    response = await jp_fetch(
        "nbtrack",
        "runs",
        tracked.second,
        "replay",
        method="POST",
        body="{}",
        params=_nb(ROWS_NB),
    )
    assert response.code == 202
    job = json.loads(response.body)
    conforms(job, "Job")
    assert job["state"] in ("queued", "running") and job["run_id"] == tracked.second
    assert response.headers["Location"] == f"{jp_base_url}nbtrack/jobs/{job['job_id']}"
    # Then the job runs to its verdict, with per-cell progress
    job = await _wait_for_job(jp_fetch, job["job_id"])
    conforms(job, "Job")
    assert job["state"] == "done", job["error"]
    assert job["verdict"] == "REPRODUCED", job["report"]
    assert job["progress"]["done"] == job["progress"]["total"] > 0
    assert job["report"].startswith("REPRODUCED  run ") and job["result"]["exit_code"] == 0
    replay_id = job["result"]["replay_run_id"]
    assert {m["name"] for m in job["result"]["metrics"]} == {"rows"}
    # and the replay is listed with the notebook's runs, its output notebook readable
    page = await _get(jp_fetch, "runs", **_nb(ROWS_NB))
    [replayed] = [r for r in page["runs"] if r["run_id"] == replay_id]
    assert replayed["replay_of"] == tracked.second and replayed["replay_verdict"] == "REPRODUCED"
    output = await _get(jp_fetch, "runs", tracked.second, "notebook", kind="replay", **_nb(ROWS_NB))
    assert output["kind"] == "replay" and output["name"] == f"rows.replay-{replay_id[:8]}.ipynb"
    assert any("min_tenure" in str(c["source"]) for c in output["content"]["cells"])


@pytest.mark.parametrize(
    "jp_server_config",
    [
        {
            "ServerApp": {"jpserver_extensions": {"nbtrack": True}},
            "NbtrackConfig": {"max_replays": 1, "replay_timeout": 2.0},
        }
    ],
)
async def test_replays_queue_and_time_out(jp_fetch: Any, tracked: Tracked) -> None:
    # Given one replay slot and a 2 s limit, when two replays are requested at once
    jobs = []
    for run_id in (tracked.first, tracked.other):
        response = await jp_fetch(
            "nbtrack", "runs", run_id, "replay", method="POST", body="{}", params=_nb(ROWS_NB)
        )
        jobs.append(json.loads(response.body))
    await asyncio.sleep(0.3)
    states = [(await _get(jp_fetch, "jobs", j["job_id"]))["state"] for j in jobs]
    # Then the second waits for the first
    assert states == ["running", "queued"]
    # and each is stopped at the limit, saying why
    for job in jobs:
        ended = await _wait_for_job(jp_fetch, job["job_id"], timeout=120)
        assert ended["state"] == "failed" and ended["verdict"] is None
        assert "NbtrackConfig.replay_timeout (2 s)" in ended["error"]
    # and no replay process is left
    assert not children(os.getpid(), b"nbtrack.server.replay_job")


def test_stopping_the_server_stops_its_replays(tracked: Tracked, tmp_path: Path) -> None:
    # Given a real `jupyter server` process with the extension enabled by its shipped config file
    with jupyter_server(tracked.root, tmp_path) as server:
        # When a replay is executing its notebook (its kernel started)
        query = urllib.parse.urlencode(_nb(ROWS_NB))
        job = server.call("POST", f"/nbtrack/runs/{tracked.first}/replay?{query}")
        deadline = time.monotonic() + 120
        while job["progress"]["total"] == 0 and job["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
            job = server.call("GET", f"/nbtrack/jobs/{job['job_id']}")
        assert job["state"] == "running", job
        [replay] = children(server.proc.pid, b"nbtrack.server.replay_job")
        helpers = [replay, *children(replay)]
        # and the server is stopped as a user stops it
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(60)
        # Then the replay and the processes it started (its kernel) end too
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in helpers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in helpers if alive(pid)], server.log.read_text()[-3000:]


async def test_a_300_kb_parameter_replays_and_job_status_redacts_parameters(
    jp_fetch: Any, tracked: Tracked
) -> None:
    # Given a replay request with a 300 KB parameter and a secret one
    big = "x" * 300_000
    body = {"parameters": {"min_tenure": 12, "api_key": "sk-live-4f9a8b7c6d5e4f3a2b1c", "blob": big}}
    response = await jp_fetch(
        "nbtrack", "runs", tracked.second, "replay", method="POST", body=json.dumps(body), params=_nb(ROWS_NB)
    )
    job = json.loads(response.body)
    # Then the job's status shows the parameters redacted and the long one by its length only
    shown = job["parameters"]
    assert shown["api_key"] == "[REDACTED]" and shown["min_tenure"] == 12
    assert "300000 characters" in shown["blob"] and len(json.dumps(job)) < 10_000
    # and no process carries the parameters on its command line
    for pid in children(os.getpid(), b"nbtrack.server.replay_job"):
        assert b"sk-live" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    # and the replay runs to its verdict
    started = time.monotonic()
    job = await _wait_for_job(jp_fetch, job["job_id"])
    took = time.monotonic() - started
    assert job["state"] == "done", job["error"]
    assert job["verdict"] == "REPRODUCED", (job["report"], took)
    assert "sk-live" not in json.dumps(job)


async def test_a_notebook_path_too_long_for_the_file_system_is_400(jp_fetch: Any, tracked: Tracked) -> None:
    for path in ("a/" * 2100 + "x.ipynb", "x" * 300 + ".ipynb"):
        for parts in (("runs",), ("info",)):
            code, body = await _error(jp_fetch, *parts, params={"notebook": path})
            assert code == 400 and body["error"] == "UsageError", body
            assert "path" in body["message"]
