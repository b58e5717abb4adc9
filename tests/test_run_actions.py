"""Run actions (rename, note, tag, archive, restore, purge) on runs real kernels tracked into a real
SQLite MLflow store, through the service, the CLI and the REST API of a real Jupyter server; and on a
real ``mlflow server``.

The runs are tracked once per module; the tests that archive or purge use runs of their own kind
(``other``) and leave the rest as they found them.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import store_client
from server_helpers import Tracked, conforms, cookies, track_runs
from tornado.httpclient import HTTPClientError

from nbtrack import tags as T
from nbtrack.cli import main
from nbtrack.config import NbtrackConfig
from nbtrack.errors import RunNotFoundError, UsageError
from nbtrack.runs.actions import Change, apply
from nbtrack.runs.service import PendingUploadError, Runs
from nbtrack.store.actions import ActionRefused

pytestmark = pytest.mark.kernel

UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"
ROWS_NB = "proj/analysis/rows.ipynb"


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracked]:
    base = tmp_path_factory.mktemp("actions")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "NBTRACK_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(name, raising=False)
        mp.setenv("JUPYTER_DATA_DIR", str(base / "jupyter-data"))
        mp.setenv("DVC_NO_ANALYTICS", "1")
        yield track_runs(base)


def _do(tracked: Tracked, action: str, ids: list[str], **change: Any) -> Any:
    runs = Runs(NbtrackConfig())
    return apply(runs, runs.locate(project=tracked.project), action, ids, Change(**change))


def _listed(tracked: Tracked, capsys: pytest.CaptureFixture[str]) -> set[str]:
    assert main(["--project", str(tracked.project), "runs", "--json"]) == 0
    return {row["run_id"] for row in json.loads(capsys.readouterr().out)}


# --- the service -------------------------------------------------------------------------------------
def test_name_note_and_tags_are_what_mlflows_client_sees(tracked: Tracked) -> None:
    client = store_client(tracked.project)
    # When the first run is renamed (by prefix), given a Markdown note, and both runs tagged at once
    _do(tracked, "rename", [tracked.first[:8]], name="baseline v2")
    _do(tracked, "note", [tracked.first], note="## Why\n**lr** was too high")
    result = _do(tracked, "tag", [tracked.first, tracked.second[:10]], set_tags={"team": "churn"})
    # Then MLflow's own client sees MLflow's conventions
    run = client.get_run(tracked.first)
    assert run.info.run_name == "baseline v2" and run.data.tags[T.RUN_NAME] == "baseline v2"
    assert run.data.tags[T.NOTE] == "## Why\n**lr** was too high"
    assert client.get_run(tracked.second).data.tags["team"] == "churn"
    assert result.done == [tracked.first, tracked.second] and result.runs[0].name == "baseline v2"
    # When the tag is removed (and an absent one with it), and the note emptied
    _do(tracked, "tag", [tracked.first, tracked.second], remove_tags=["team", "never-set"])
    _do(tracked, "note", [tracked.first], note="")
    tags = client.get_run(tracked.first).data.tags
    assert "team" not in tags and T.NOTE not in tags
    assert "team" not in client.get_run(tracked.second).data.tags


@pytest.mark.parametrize("key", ["mlflow.runName", "nbtrack.git.dirty", ""])
def test_reserved_tag_keys_are_refused_in_one_line(tracked: Tracked, key: str) -> None:
    with pytest.raises(UsageError) as caught:
        _do(tracked, "tag", [tracked.first], set_tags={key: "x"})
    assert "\n" not in str(caught.value)
    assert store_client(tracked.project).get_run(tracked.first).data.tags.get(key) != "x"


def test_a_bulk_call_with_one_bad_id_changes_nothing(tracked: Tracked) -> None:
    client = store_client(tracked.project)
    for bad, error in ((UNKNOWN_RUN, RunNotFoundError), ("abc", UsageError), ("fedcba98", RunNotFoundError)):
        with pytest.raises(error):
            _do(tracked, "tag", [tracked.first, tracked.second, bad], set_tags={"bulk": "yes"})
        with pytest.raises(error):
            _do(tracked, "archive", [tracked.first, bad])
        for run_id in (tracked.first, tracked.second):
            run = client.get_run(run_id)
            assert "bulk" not in run.data.tags and run.info.lifecycle_stage == "active"


def test_archive_hides_a_run_and_restore_brings_it_back(
    tracked: Tracked, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tracked.other in _listed(tracked, capsys)
    _do(tracked, "archive", [tracked.other[:8]])
    assert tracked.other not in _listed(tracked, capsys)
    assert store_client(tracked.project).get_run(tracked.other).info.lifecycle_stage == "deleted"
    # An archived run takes no writes until restored (one line saying how)
    with pytest.raises(ActionRefused, match="restore it first"):
        _do(tracked, "rename", [tracked.other], name="x")
    # Restored by the prefix nbtrack prints, although prefixes otherwise name active runs only
    _do(tracked, "restore", [tracked.other[:8]])
    assert tracked.other in _listed(tracked, capsys)


def test_cli_verbs(tracked: Tracked, capsys: pytest.CaptureFixture[str]) -> None:
    project = ["--project", str(tracked.project)]
    assert main([*project, "rename", tracked.second[:8], "tenure 12"]) == 0
    assert main([*project, "tag", tracked.first[:8], tracked.second[:8], "--set", "stage=dev"]) == 0
    assert main([*project, "tag", tracked.first[:8], "--remove", "stage"]) == 0
    assert main([*project, "tag", tracked.first[:8], "--set", "mlflow.user=x"]) == UsageError.exit_code
    assert "reserved" in capsys.readouterr().err
    assert main([*project, "purge", tracked.second[:8], "--yes"]) == ActionRefused.exit_code
    assert "not archived" in capsys.readouterr().err
    client = store_client(tracked.project)
    assert client.get_run(tracked.second).info.run_name == "tenure 12"
    assert client.get_run(tracked.second).data.tags["stage"] == "dev"
    assert "stage" not in client.get_run(tracked.first).data.tags
    _do(tracked, "tag", [tracked.second], remove_tags=["stage"])


def test_purge_removes_rows_and_artifacts_of_an_archived_run_only(tracked: Tracked) -> None:
    client = store_client(tracked.project)
    folder = Path(urllib.parse.urlparse(client.get_run(tracked.other).info.artifact_uri).path)
    assert (folder / "nbtrack" / "snapshot.json").is_file()
    # Given an active run, a purge is refused and changes nothing
    with pytest.raises(ActionRefused, match="archive it first"):
        _do(tracked, "purge", [tracked.other])
    assert folder.is_dir()
    # When it is archived, then purged
    _do(tracked, "archive", [tracked.other])
    result = _do(tracked, "purge", [tracked.other[:8]])
    # Then its artifacts and every row of it are gone
    assert result.done == [tracked.other] and result.runs == []
    assert not folder.exists() and not folder.parent.exists()
    db = sqlite3.connect(tracked.project / ".nbtrack" / "mlflow.db")
    for table in ("runs", "tags", "params", "metrics", "latest_metrics"):
        assert db.execute(
            f"SELECT count(*) FROM {table} WHERE run_uuid = ?", (tracked.other,)
        ).fetchone() == (0,), table
    db.close()
    with pytest.raises(RunNotFoundError):
        _do(tracked, "restore", [tracked.other])


def test_purge_never_deletes_outside_the_stores_artifact_folder(tracked: Tracked, tmp_path: Path) -> None:
    # Given an archived run whose row names a folder outside the store (an edited or copied database)
    elsewhere = tmp_path / "precious"
    (elsewhere / "artifacts").mkdir(parents=True)
    (elsewhere / "artifacts" / "keep.txt").write_text("mine")
    db_path = tracked.project / ".nbtrack" / "mlflow.db"
    (was,) = (
        sqlite3.connect(db_path)
        .execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (tracked.first,))
        .fetchone()
    )
    _do(tracked, "archive", [tracked.first])
    with sqlite3.connect(db_path) as db:
        db.execute(
            "UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?",
            ((elsewhere / "artifacts").as_uri(), tracked.first),
        )
    try:
        # When it is purged, then the purge is refused in one line and the folder is untouched
        with pytest.raises(ActionRefused, match="outside this store's artifact folder") as refused:
            _do(tracked, "purge", [tracked.first])
        assert "\n" not in str(refused.value)
        assert (elsewhere / "artifacts" / "keep.txt").read_text() == "mine"
        assert store_client(tracked.project).get_run(tracked.first).info.lifecycle_stage == "deleted"
    finally:
        with sqlite3.connect(db_path) as db:
            db.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (was, tracked.first))
        _do(tracked, "restore", [tracked.first])


# --- a tracking server -------------------------------------------------------------------------------
def test_on_a_tracking_server_purge_is_refused_and_pending_uploads_take_no_writes(mlflow_server: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("actions") or client.create_experiment("actions")
    exp_id = experiment if isinstance(experiment, str) else experiment.experiment_id
    done = client.create_run(exp_id, run_name="on-server", tags={T.SCHEMA_VERSION: "1"}).info.run_id
    half = client.create_run(exp_id, tags={T.SCHEMA_VERSION: "1", T.UPLOAD_PENDING: "ws-7"}).info.run_id
    runs = Runs(NbtrackConfig(tracking_uri=mlflow_server))
    target = runs.locate(project=Path.cwd())
    # rename, note, archive and restore go to the server
    apply(runs, target, "rename", [done[:8]], Change(name="renamed"))
    apply(runs, target, "note", [done], Change(note="*noted*"))
    apply(runs, target, "archive", [done])
    assert client.get_run(done).info.lifecycle_stage == "deleted"
    # a purge is the server's job, named in one line
    with pytest.raises(ActionRefused, match="mlflow gc") as caught:
        apply(runs, target, "purge", [done])
    assert "\n" not in str(caught.value)
    apply(runs, target, "restore", [done[:8]])
    run = client.get_run(done)
    assert run.info.run_name == "renamed" and run.data.tags[T.NOTE] == "*noted*"
    assert run.info.lifecycle_stage == "active"
    # a run whose upload has not finished refuses writes until `nbtrack sync`
    with pytest.raises((ActionRefused, PendingUploadError), match="nbtrack sync"):
        apply(runs, target, "tag", [half, done], Change(set_tags={"k": "v"}))
    assert "k" not in client.get_run(done).data.tags


# --- REST ----------------------------------------------------------------------------------------------
@pytest.fixture
def jp_root_dir(tracked: Tracked) -> Path:
    return tracked.root


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbtrack": True}}}


async def _post(jp_fetch: Any, action: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    try:
        response = await jp_fetch(
            "nbtrack",
            "actions",
            action,
            method="POST",
            body=json.dumps(body),
            params={"notebook": ROWS_NB},
            **kwargs,
        )
    except HTTPClientError as exc:
        assert exc.response is not None
        return exc.code, json.loads(exc.response.body)
    return response.code, json.loads(response.body)


async def test_rest_actions(jp_fetch: Any, tracked: Tracked) -> None:
    code, reply = await _post(jp_fetch, "tag", {"runs": [tracked.first[:8]], "set": {"via": "rest"}})
    assert code == 200 and reply["done"] == [tracked.first] and reply["action"] == "tag"
    conforms(reply["runs"][0], "RunRow")
    assert reply["runs"][0]["run_id"] == tracked.first
    assert store_client(tracked.project).get_run(tracked.first).data.tags["via"] == "rest"
    code, reply = await _post(jp_fetch, "tag", {"runs": [tracked.first], "remove": ["via"]})
    assert code == 200
    # errors: one line, the contract's status
    cases = [
        ("tag", {"runs": tracked.first}, 400, "UsageError"),
        ("tag", {"runs": [tracked.first], "set": {"mlflow.x": "1"}}, 400, "UsageError"),
        ("rename", {"runs": [tracked.first], "name": "x", "colour": 1}, 400, "UsageError"),
        ("explode", {"runs": [tracked.first]}, 400, "UsageError"),
        ("archive", {"runs": [UNKNOWN_RUN]}, 404, "RunNotFoundError"),
        ("purge", {"runs": [tracked.first]}, 409, "ActionRefused"),
    ]
    for action, body, status, error in cases:
        code, reply = await _post(jp_fetch, action, body)
        assert (code, reply["error"]) == (status, error), (action, body, reply)
        assert "\n" not in reply["message"]
    assert store_client(tracked.project).get_run(tracked.first).info.lifecycle_stage == "active"


@pytest.mark.parametrize("authorization", ["", "token not-the-token"])
async def test_actions_and_nbdiff_refuse_without_the_token(
    jp_fetch: Any, tracked: Tracked, authorization: str
) -> None:
    code, reply = await _post(
        jp_fetch, "archive", {"runs": [tracked.first]}, headers={"Authorization": authorization}
    )
    assert code == 403 and reply["error"] == "HTTPError"
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch(
            "nbtrack",
            "nbdiff",
            params={"a": tracked.first, "b": tracked.second},
            headers={"Authorization": authorization},
        )
    assert caught.value.code == 403
    assert store_client(tracked.project).get_run(tracked.first).info.lifecycle_stage == "active"


async def test_a_cookie_session_needs_the_xsrf_header_to_act(
    http_server_client: Any, jp_serverapp: Any, jp_base_url: str, tracked: Tracked
) -> None:
    login = jp_base_url + "login"
    jar = cookies(await http_server_client.fetch(login))
    form = urllib.parse.urlencode({"password": jp_serverapp.identity_provider.token, "_xsrf": jar["_xsrf"]})
    header = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
    done = await http_server_client.fetch(
        login, method="POST", body=form, headers=header, follow_redirects=False, raise_error=False
    )
    jar.update(cookies(done))
    header = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
    url = f"{jp_base_url}nbtrack/actions/tag?notebook={urllib.parse.quote(ROWS_NB)}"
    body = json.dumps({"runs": [tracked.first], "set": {"xsrf": "1"}})
    refused = await http_server_client.fetch(url, method="POST", body=body, headers=header, raise_error=False)
    assert refused.code == 403 and "_xsrf" in json.loads(refused.body)["message"]
    assert "xsrf" not in store_client(tracked.project).get_run(tracked.first).data.tags
    with_xsrf = {**header, "X-XSRFToken": jar["_xsrf"]}
    accepted = await http_server_client.fetch(
        url, method="POST", body=body, headers=with_xsrf, raise_error=False
    )
    assert accepted.code == 200, accepted.body
    _do(tracked, "tag", [tracked.first], remove_tags=["xsrf"])
