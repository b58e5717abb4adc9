"""A team's set-up, for real: ``mlflow server`` with a PostgreSQL backend store and proxied artifacts
(``--artifacts-destination``), a git origin and a DVC remote. A real kernel tracks a notebook against
the server, the panel's API lists the run, and a second clone of the repository with an empty DVC
cache (what a CI runner has) replays it.

PostgreSQL is Debian's (``tests/run.sh`` installs it), started on a free loopback port for the
session (``tests/team_helpers.py``); when it is missing the test fails, it is never skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import MlflowServer, dvc, dvc_md5, git, make_project, write_notebook
from team_helpers import Postgres, PostgresUnavailable, server_cli, start_postgres

from nbtrack.runner import execute_notebook

pytestmark = [pytest.mark.kernel, pytest.mark.server]

EXPERIMENT = "team"
TRAIN = [
    "%load_ext nbtrack",
    ("parameters", "threshold = 30"),
    f"%track start --experiment {EXPERIMENT} --name baseline",
    "import pandas as pd\nimport mlflow\ndata = pd.read_csv('data/churn.csv')\n"
    "share = float((data.tenure > threshold).mean())\n"
    "mlflow.log_metric('share_long_tenure', share)\nmlflow.log_metric('rows', len(data))",
    "%track stop",
]


@dataclass
class TeamServer:
    pg: Postgres
    server: MlflowServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def artifacts(self) -> Path:
        """The server's ``--artifacts-destination``: clients reach it only through the server."""
        return self.server.base / "artifacts"


@pytest.fixture(scope="session")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    """``mlflow server`` on loopback whose backend store is a throwaway PostgreSQL cluster's database."""
    try:
        pg = start_postgres(tmp_path_factory.mktemp("postgres"))
    except PostgresUnavailable as exc:
        missing = str(exc)  # fail outside the except: one message, no chained traceback
    else:
        missing = ""
    if missing:
        pytest.fail(f"cannot run the PostgreSQL-backed tracking server: {missing}", pytrace=False)
    try:
        server = MlflowServer(tmp_path_factory.mktemp("team-server"), backend_store_uri=pg.uri)
    except BaseException:
        pg.stop()
        raise
    try:
        yield TeamServer(pg, server)
    finally:
        server.stop()
        pg.stop()


@dataclass
class Tracked:
    root: Path  # the data scientist's checkout
    origin: Path  # the bare git repository everybody pushes to
    remote: Path  # the DVC remote
    commit: str
    run_id: str  # the run on the tracking server
    spool_run_id: str  # the same run in the kernel's local spool


def _server_runs(url: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name(EXPERIMENT)
    return list(client.search_runs([exp.experiment_id])) if exp else []


@pytest.fixture(scope="module")
def tracked(team_server: TeamServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracked]:
    """A git + DVC project pushed to its origin and DVC remote, whose notebook a real kernel tracked
    against the team's server."""
    base = tmp_path_factory.mktemp("team")
    spool = base / "spool"
    with pytest.MonkeyPatch.context() as mp:  # what conftest's per-test isolation gives, for the module
        for name in ("MLFLOW_TRACKING_URI", "NBTRACK_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(name, raising=False)
        mp.setenv("NBTRACK_SPOOL_DIR", str(spool))
        mp.setenv("DVC_NO_ANALYTICS", "1")
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")

        # Given a project whose code is pushed to a git origin and whose data to a DVC remote
        origin, remote = base / "origin.git", base / "dvc-remote"
        git(base, "init", "-q", "--bare", "-b", "main", str(origin))
        root = make_project(base / "proj")
        write_notebook(root / "train.ipynb", TRAIN)
        git(root, "remote", "add", "origin", str(origin))
        dvc(root, "remote", "add", "-q", "-d", "store", str(remote))
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "notebook and DVC remote")
        dvc(root, "push", "-q")
        git(root, "push", "-q", "origin", "main")
        assert any(p.is_file() for p in remote.rglob("*")), "dvc push left the remote empty"

        # When a real kernel executes the tracked notebook against the team's tracking server, and
        # exits while its background upload runs: the upload is made to stall once the server run
        # has its values (NBTRACK_SYNC_FAULT: a server that stops answering), so it never finishes
        # in the kernel, whatever the machine's speed (papermill kills a kernel 5 s after asking it
        # to shut down; a loaded machine used to reach this state only sometimes).
        execute_notebook(
            root / "train.ipynb",
            base / "out.ipynb",
            cwd=root,
            env={"MLFLOW_TRACKING_URI": team_server.url, "NBTRACK_SYNC_FAULT": "values+hang"},
        )
        # Then the run waits in the local spool: `nbtrack runs` lists it once, pending, saying what
        # to run; a server copy, if the upload got as far as making it, is RUNNING and tagged so
        listed = json.loads(server_cli(team_server.url, "runs", "--json", spool=spool, cwd=root).stdout)
        assert [r["pending_upload"] for r in listed] == [True], listed
        assert "`nbtrack sync`" in listed[0]["upload_note"]
        shown = server_cli(team_server.url, "runs", spool=spool, cwd=root).stdout  # and the table says it
        assert "pending-upload" in shown and f"note: {listed[0]['upload_note']}" in shown
        halves = _server_runs(team_server.url)
        assert [(h.info.status, bool(h.data.tags.get("nbtrack.upload.pending"))) for h in halves] in (
            [],
            [("RUNNING", True)],
        )

        # When the user runs `nbtrack sync`
        synced = server_cli(team_server.url, "sync", "--json", spool=spool, cwd=root)
        assert synced.returncode == 0, synced.stderr
        report = json.loads(synced.stdout)
        # Then the run is uploaded (completing the half-made copy, never a second one), nothing pending
        assert [u["run_id"] for u in report["uploaded"]] == [listed[0]["run_id"]], report
        assert report["failed"] == [] and report["running"] == [], report
        listed = json.loads(server_cli(team_server.url, "runs", "--json", spool=spool, cwd=root).stdout)
        assert [r["pending_upload"] for r in listed] == [False], listed
        (run,) = _server_runs(team_server.url)
        assert [h.info.run_id for h in halves] in ([], [run.info.run_id])
        commit = git(root, "rev-parse", "HEAD")
        yield Tracked(root, origin, remote, commit, run.info.run_id, run.data.tags["nbtrack.spool_run_id"])


def test_the_run_is_in_postgresql_and_its_artifacts_behind_the_server(
    tracked: Tracked, team_server: TeamServer
) -> None:
    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=team_server.url).get_run(tracked.run_id)
    # The server holds the finished run with what the notebook logged and what nbtrack captured
    assert run.info.status == "FINISHED" and run.info.run_name == "baseline"
    assert run.data.params == {"threshold": "30"}
    assert run.data.metrics["rows"] == 300 and 0 < run.data.metrics["share_long_tenure"] < 1
    tags = run.data.tags
    assert tags["mlflow.source.name"] == "train.ipynb"
    assert tags["mlflow.source.git.commit"] == tracked.commit
    assert tags["mlflow.source.git.repoURL"] == str(tracked.origin)
    assert tags["nbtrack.data.status"] == "clean" and tags["nbtrack.git.dirty"] == "false"
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert (dataset.name, dataset.digest) == ("data/churn.csv", dvc_md5(tracked.root, "data/churn.csv"))

    # in PostgreSQL's tables, not in some file store
    rows = team_server.pg.query("SELECT status, name FROM runs WHERE run_uuid = %s", tracked.run_id)
    assert rows == [("FINISHED", "baseline")]
    metrics = dict(
        team_server.pg.query("SELECT key, value FROM latest_metrics WHERE run_uuid = %s", run.info.run_id)
    )
    assert metrics == run.data.metrics

    # and its artifacts went through the server into its --artifacts-destination (proxied artifacts:
    # the client only ever saw an mlflow-artifacts: URI)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    stored = team_server.artifacts / run.info.experiment_id / tracked.run_id / "artifacts" / "nbtrack"
    assert {"snapshot.json", "notebook.ipynb", "history.ipynb", "requirements.txt"} <= {
        p.name for p in stored.iterdir()
    }
    snapshot = json.loads((stored / "snapshot.json").read_text())
    data = snapshot["sections"]["data"]["data"]
    assert data["remote"] == {"name": "store", "url": str(tracked.remote)}


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbtrack": True}}}


@pytest.fixture
def jp_root_dir(tracked: Tracked, team_server: TeamServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The Jupyter server's root is the project; its nbtrack reads the team's tracking server."""
    monkeypatch.setenv("NBTRACK_TRACKING_URI", team_server.url)  # before the server app is made
    return tracked.root


async def test_the_panel_lists_the_run_from_the_server(jp_fetch: Any, tracked: Tracked) -> None:
    # When the panel asks for the notebook's runs
    response = await jp_fetch("nbtrack", "runs", params={"notebook": "train.ipynb"})
    page = json.loads(response.body)
    # Then it lists the server's run, not a spool copy, with its status, metrics and commit
    assert page["store"].startswith("http://127.0.0.1:")
    (row,) = [r for r in page["runs"] if r["run_id"] == tracked.run_id]
    assert tracked.spool_run_id not in {r["run_id"] for r in page["runs"]}
    assert row["status"] == "FINISHED" and row["name"] == "baseline"
    assert row["notebook"] == "train.ipynb"
    assert row["commit"] == tracked.commit[:7]
    assert row["metrics"]["rows"] == 300 and "share_long_tenure" in row["metrics"]
    assert row["params"] == {"threshold": "30"}
    assert row["pending_upload"] is False and row["data_status"] == "clean"


def test_a_second_clone_with_an_empty_dvc_cache_replays_the_run(
    tracked: Tracked, team_server: TeamServer, tmp_path: Path
) -> None:
    # Given another checkout of the repository, as a CI runner makes it: no data, no DVC cache
    clone = tmp_path / "ci-checkout"
    git(tmp_path, "clone", "-q", str(tracked.origin), str(clone))
    assert not (clone / ".dvc" / "cache").exists() and not (clone / "data" / "churn.csv").exists()
    # When it replays the run from the team's tracking server
    replayed = server_cli(
        team_server.url,
        "--project",  # a global option: before the command
        str(clone),
        "replay",
        tracked.run_id,
        "--json",
        spool=tmp_path / "spool",
        cwd=clone,
    )
    # Then the run reproduced, on data fetched from the DVC remote
    assert replayed.returncode == 0, replayed.stdout[-3000:] + replayed.stderr[-3000:]
    result = json.loads(replayed.stdout)
    assert result["verdict"] == "REPRODUCED", result["message"]
    (data,) = result["data"]
    assert data["path"] == "data/churn.csv" and data["fetched"] is True
    assert data["hash"] == dvc_md5(tracked.root, "data/churn.csv")
    assert {m["name"] for m in result["metrics"]} == {"rows", "share_long_tenure"}
    # and the replay is itself a run on the server, in PostgreSQL, pointing at the original
    from mlflow.tracking import MlflowClient

    replay_run = MlflowClient(tracking_uri=team_server.url).get_run(result["replay_run_id"])
    assert replay_run.data.tags["nbtrack.replay_of"] == tracked.run_id
    assert replay_run.data.tags["nbtrack.replay.verdict"] == "REPRODUCED"
    rows = team_server.pg.query("SELECT status FROM runs WHERE run_uuid = %s", result["replay_run_id"])
    assert rows == [("FINISHED",)]
