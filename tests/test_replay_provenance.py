"""Provenance: a replay executes only code the repository holds, for runs from a shared store and in
a batch (issue 16 item 6).

Real git repositories, real kernels, a real SQLite MLflow store and one real ``mlflow server``. The
attacker plants a run the way anyone with write access to a store can: through MLflow's own API,
copying an honest run and changing its recorded notebook (or its ``git.diff``) so that it writes a
file, ``pwned``, outside the replay's workspace. The refusal comes before any kernel starts, so the
file never appears.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, download_all, git, make_project, store_client, write_notebook
from tornado.httpclient import HTTPClientError

from nbtrack.cli import main
from nbtrack.runner import execute_notebook

pytestmark = pytest.mark.kernel

NOTEBOOK = {"notebook": "proj/prov.ipynb"}
HONEST = [
    "%load_ext nbtrack",
    "%track start --experiment prov --name honest",
    "import mlflow\nfrom helper import VALUE\nmlflow.log_metric('value', VALUE)",
    "%track stop",
]


def _project(root: Path) -> Path:
    make_project(root, use_dvc=False, rows=50)
    (root / "helper.py").write_text("VALUE = 1\n")
    write_notebook(root / "prov.ipynb", HONEST)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    return root


def _track(root: Path) -> str:
    before = {r.info.run_id for r in all_runs(store_client(root))} if (root / ".nbtrack").exists() else set()
    execute_notebook(root / "prov.ipynb", root.parent / "executed.ipynb", cwd=root)
    [new] = [r for r in all_runs(store_client(root)) if r.info.run_id not in before]
    return str(new.info.run_id)


def _plant(
    source: Any, run_id: str, target: Any, work: Path, pwned: Path | None, diff: bytes | None = None
) -> str:
    """Copy run ``run_id`` of ``source`` into ``target`` (MlflowClients) through MLflow's API; with
    ``pwned``, its recorded notebooks also write that file; with ``diff``, that is its git.diff."""
    from mlflow.entities import Metric, Param, RunTag

    run = source.get_run(run_id)
    files = download_all(source, run_id, work / f"download-{run_id}")
    if pwned is not None:
        for name in ("nbtrack/notebook.ipynb", "nbtrack/notebook.input.ipynb"):
            if name in files:
                nb = json.loads(files[name])
                cell = next(c for c in nb["cells"] if "log_metric" in "".join(c["source"]))
                cell["source"] = f"open({str(pwned)!r}, 'w').write('x')\n" + "".join(cell["source"])
                files[name] = json.dumps(nb).encode()
    if diff is not None:
        files["nbtrack/git.diff"] = diff
    exp = target.get_experiment_by_name("prov")
    exp_id = exp.experiment_id if exp else target.create_experiment("prov")
    planted = target.create_run(exp_id, tags=run.data.tags)
    new_id = str(planted.info.run_id)
    target.log_batch(
        new_id,
        metrics=[Metric(k, v, 0, 0) for k, v in run.data.metrics.items()],
        params=[Param(k, v) for k, v in run.data.params.items()],
        tags=[RunTag("nbtrack.planted", "yes")],
    )
    upload = work / f"upload-{new_id}"
    for rel, data in files.items():
        (upload / rel).parent.mkdir(parents=True, exist_ok=True)
        (upload / rel).write_bytes(data)
    target.log_artifacts(new_id, str(upload))
    target.set_terminated(new_id, "FINISHED")
    return new_id


def _replay(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, Any]:
    code = main(["--project", str(root), *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A committed project and one honest run of it in its embedded store."""
    root = _project(tmp_path_factory.mktemp("prov") / "proj")
    return root, _track(root)


def test_a_batch_refuses_a_planted_run_before_any_kernel(
    honest: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an honest run and, in the same experiment, a copy whose recorded notebook writes a file
    root, run_id = honest
    pwned = tmp_path / "pwned"
    client = store_client(root)
    planted = _plant(client, run_id, client, tmp_path, pwned)
    # When CI replays the experiment as a batch
    code, results = _replay(capsys, root, "replay", "--experiment", "prov", "--tag", "nbtrack.planted=yes")
    # Then the planted run is refused, saying what differs and how to run it anyway; no kernel ran
    [result] = results
    assert result["run_id"] == planted and code == 3
    assert result["verdict"] == "CANNOT_REPLAY" and result["exit_code"] == 3
    assert "prov.ipynb: 1 code cell(s) differ" in result["message"], result["message"]
    assert "--allow-uncommitted" in result["message"] and "\n" not in result["message"]
    assert result["provenance"]["refused"] and "pwned" in result["provenance"]["diff"]
    assert result["kernel"] is None and not pwned.exists()


def test_a_batch_replays_honest_committed_runs(
    honest: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, run_id = honest
    code, result = _replay(capsys, root, "replay", run_id, "--require-committed")
    assert code == 0 and result["verdict"] == "REPRODUCED", result["message"]
    assert result["provenance"]["checked"] and result["provenance"]["differs"] == []


def test_an_embedded_run_with_uncommitted_changes_replays_but_not_in_a_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run made with an uncommitted change to a module the notebook imports
    root = _project(tmp_path / "proj")
    (root / "helper.py").write_text("VALUE = 2\n")
    run_id = _track(root)
    # When it is replayed from the user's own store: its recorded diff is trusted, as today
    code, result = _replay(capsys, root, "replay", run_id)
    assert code == 0 and result["verdict"] == "REPRODUCED", result["message"]
    assert not result["provenance"]["checked"]
    # But a batch refuses it, naming the file, before any kernel
    code, results = _replay(capsys, root, "replay", "--experiment", "prov")
    assert code == 3 and results[0]["verdict"] == "CANNOT_REPLAY"
    assert "git.diff changes 1 file(s) that may run: helper.py" in results[0]["message"]
    assert results[0]["kernel"] is None


def test_runs_from_a_tracking_server_replay_only_committed_code(
    honest: tuple[Path, str], mlflow_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    # Given the honest run and a planted one on a shared MLflow server
    root, run_id = honest
    server = MlflowClient(tracking_uri=mlflow_server)
    copied = _plant(store_client(root), run_id, server, tmp_path, None)
    pwned = tmp_path / "pwned"
    planted = _plant(store_client(root), run_id, server, tmp_path, pwned)
    capsys.readouterr()  # MLflow's "View run ... at" lines
    on_server = ["--tracking-uri", mlflow_server, "replay"]
    # When the planted run is replayed from the server: refused, no kernel
    code, result = _replay(capsys, root, *on_server, planted)
    assert code == 3 and result["verdict"] == "CANNOT_REPLAY", result["message"]
    assert "tracking server" in result["message"] and "--allow-uncommitted" in result["message"]
    assert not pwned.exists() and result["kernel"] is None
    # With --allow-uncommitted it runs (and says so)
    code, result = _replay(capsys, root, *on_server, planted, "--allow-uncommitted")
    assert pwned.exists(), result["message"]
    assert result["provenance"]["allowed"] and any("--allow-uncommitted" in r for r in result["risks"])
    # And the honest copy replays from the server as before
    code, result = _replay(capsys, root, *on_server, copied)
    assert result["provenance"]["checked"] and result["provenance"]["differs"] == []
    assert code == 0 and result["verdict"] == "REPRODUCED", result["message"]


def test_a_sweep_or_clone_of_a_planted_server_run_is_refused_before_any_kernel(
    honest: tuple[Path, str], mlflow_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from nbtrack.config import load_config
    from nbtrack.errors import CannotReplay
    from nbtrack.runs.service import Runs
    from nbtrack.sweep.service import run_trial

    # Given a planted run on a shared MLflow server whose notebook writes a file when it runs
    root, run_id = honest
    server = MlflowClient(tracking_uri=mlflow_server)
    pwned = tmp_path / "pwned"
    planted = _plant(store_client(root), run_id, server, tmp_path, pwned)
    before = {r.info.run_id for r in all_runs(server)}
    capsys.readouterr()
    # When it is swept from the server, and cloned (the panel's "Clone with new parameters")
    code = main(["--project", str(root), "--tracking-uri", mlflow_server, "sweep", planted, "-p", "x", "1,2"])
    err = capsys.readouterr().err.strip()
    config = load_config()
    config.tracking_uri = mlflow_server
    with pytest.raises(CannotReplay) as clone:
        run_trial(planted, {"x": 3}, config=config, runs=Runs(config), project=root)
    # Then both refuse in one line, as its replay would (exit 3), before any workspace or kernel:
    # the file was never written, and no parent or trial run was recorded
    assert code == 3 and len(err.splitlines()) == 1 and "--allow-uncommitted" in err, err
    assert "tracking server" in str(clone.value)
    assert not pwned.exists()
    assert {r.info.run_id for r in all_runs(server)} == before


def test_a_batch_hands_a_300_kb_parameter_to_its_replays_off_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a committed run, when a batch replays it with a 300 KB parameter (over Linux's 128 KiB
    # limit for one argument, which the batch's child command line used to carry)
    root = _project(tmp_path / "proj")
    run_id = _track(root)
    big = "x" * 300_000
    code, results = _replay(capsys, root, "replay", "--experiment", "prov", "-p", "blob", big)
    # Then the replay runs (the parameter reached it through a private file) and reproduces
    [result] = results
    assert result["run_id"] == run_id and code == 0, result["message"]
    assert result["verdict"] == "REPRODUCED" and result["parameters"]["overrides"] == {"blob": big}


# --- the panel's replay job -------------------------------------------------------------------------
@pytest.fixture
def jp_root_dir(honest: tuple[Path, str]) -> Path:
    return honest[0].parent


@pytest.fixture
def jp_server_config(mlflow_server: str) -> dict[str, Any]:
    """A Jupyter server whose nbtrack reads runs from the shared MLflow server."""
    return {
        "ServerApp": {"jpserver_extensions": {"nbtrack": True}},
        "NbtrackConfig": {"tracking_uri": mlflow_server},
    }


async def _job(jp_fetch: Any, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a replay of ``run_id`` and wait for the job to end."""
    response = await jp_fetch(
        "nbtrack", "runs", run_id, "replay", method="POST", body=json.dumps(body), params=NOTEBOOK
    )
    job: dict[str, Any] = json.loads(response.body)
    deadline = time.monotonic() + 600
    while job["state"] in ("queued", "running") and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        job = json.loads((await jp_fetch("nbtrack", "jobs", job["job_id"])).body)
    return job


async def test_the_panel_replay_job_refuses_then_runs_with_consent(
    jp_fetch: Any, honest: tuple[Path, str], mlflow_server: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    # Given a planted run on the shared server the panel's Jupyter server reads
    root, run_id = honest
    pwned = tmp_path / "pwned"
    planted = _plant(store_client(root), run_id, MlflowClient(tracking_uri=mlflow_server), tmp_path, pwned)
    # When the panel replays it: the job ends CANNOT_REPLAY with what differs (the panel's question)
    job = await _job(jp_fetch, planted, {})
    assert job["state"] == "done" and job["verdict"] == "CANNOT_REPLAY", job
    provenance = job["result"]["provenance"]
    assert provenance["refused"] and "pwned" in provenance["diff"] and provenance["differs"]
    assert not pwned.exists()
    # Then, on the user's consent, the panel re-submits with allow_uncommitted and the code runs
    job = await _job(jp_fetch, planted, {"allow_uncommitted": True})
    assert job["allow_uncommitted"] is True and job["state"] == "done", job["error"]
    assert pwned.exists() and job["result"]["provenance"]["allowed"]
    # and a malformed flag is a 400
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(
            "nbtrack",
            "runs",
            planted,
            "replay",
            method="POST",
            body='{"allow_uncommitted": "yes"}',
            params=NOTEBOOK,
        )
    assert info.value.code == 400
