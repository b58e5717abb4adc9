"""The replay's stages: the kernel names its run through the runs file, its configuration is the
replayer's, a tracking server's run is followed out of the spool, and the reports take the typed result.

Real components throughout: a SQLite MLflow store in ``tmp_path``, the kernel's own writer of the
runs file (:func:`nbtrack.handoff.announce_run`), real git + DVC projects and real kernels
through papermill, a real ``mlflow server``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, git, make_project, store_client, write_notebook

from nbtrack.config import NbtrackConfig, to_env
from nbtrack.errors import CannotReplay
from nbtrack.handoff import announce_run
from nbtrack.replay.judge import announced_runs, find_replay_run
from nbtrack.replay.reports import format_result, html_report, junit_xml
from nbtrack.replay.result import ReplayResult
from nbtrack.replay.verdict import DIVERGED, FAILED, REPRODUCED, UNVERIFIED, compare_metrics, decide
from nbtrack.runner import execute_notebook
from nbtrack.store import MlflowStore

ROWS = [
    "%load_ext nbtrack",
    ("parameters", "min_tenure = 0"),
    "%track start --experiment stages --name rows",
    "import pandas as pd\nimport mlflow\ndata = pd.read_csv('data/churn.csv')\n"
    "kept = data[data.tenure >= min_tenure]\n"
    "mlflow.log_metric('rows', len(kept))",
    "%track stop",
]


# --- helpers -------------------------------------------------------------------------------------
def _project(tmp_path: Path, cells: list[Any]) -> Path:
    root = make_project(tmp_path / "proj", rows=300)
    write_notebook(root / "rows.ipynb", cells)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    return root


def _track(root: Path, env: dict[str, str] | None = None) -> str:
    """Execute rows.ipynb through papermill; the id of the run it tracked in the project's store."""
    execute_notebook(root / "rows.ipynb", root.parent / "executed.ipynb", cwd=root, env=env)
    [run] = all_runs(store_client(root))
    return str(run.info.run_id)


def _replay_process(root: Path, run_id: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``nbtrack replay RUN_ID --json`` in its own process, as a batch runs each replay."""
    proc = subprocess.run(
        [sys.executable, "-m", "nbtrack.cli", "--project", str(root), "replay", run_id, *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["exit_code"] == proc.returncode
    return result


def _store_with_runs(tmp_path: Path, count: int) -> tuple[MlflowStore, list[str]]:
    """A real SQLite MLflow store holding ``count`` finished runs."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("stages", artifact_location=(tmp_path / "store" / "artifacts").as_uri())
    ids = []
    for _ in range(count):
        run = client.create_run(exp)
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    return MlflowStore(uri), ids


def _announce(monkeypatch: pytest.MonkeyPatch, runs_file: Path, entries: list[tuple[str, int, str]]) -> None:
    """Write the runs file with the kernel's own writer, as a replay's kernel does."""
    monkeypatch.setenv(
        "NBTRACK_REPLAY", json.dumps({"replay_of": "x", "replay_id": "y", "runs_file": str(runs_file)})
    )
    for run_id, index, uri in entries:
        announce_run(run_id, index, uri)
    monkeypatch.delenv("NBTRACK_REPLAY")


# --- the runs file -------------------------------------------------------------------------------
def test_the_replay_takes_the_run_announced_at_the_originals_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a kernel that announced three runs in the replay's runs file
    store, ids = _store_with_runs(tmp_path, 3)
    runs_file = tmp_path / "replay" / "runs.jsonl"
    runs_file.parent.mkdir()
    _announce(monkeypatch, runs_file, [(run_id, i + 1, store.uri) for i, run_id in enumerate(ids)])
    config = NbtrackConfig()
    # When the replay looks for the original's second run
    found = find_replay_run(store, config, runs_file, 2)
    # Then it is the kernel's second run, with the store that holds it
    assert found is not None and found.run.run_id == ids[1] and found.store is store
    # And without a run at that position (or no position recorded), the last run the kernel started
    assert (found := find_replay_run(store, config, runs_file, 7)) is not None and found.run.run_id == ids[2]
    assert (found := find_replay_run(store, config, runs_file, None)) is not None and found.run.run_id == ids[
        2
    ]


def test_no_announced_run_is_no_run_and_a_torn_line_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, ids = _store_with_runs(tmp_path, 1)
    runs_file = tmp_path / "runs.jsonl"
    # Given no runs file at all (the notebook never started a run): no run
    assert find_replay_run(store, NbtrackConfig(), runs_file, 1) is None
    # Given one announced run, then a line a killed kernel left half written
    _announce(monkeypatch, runs_file, [(ids[0], 1, store.uri)])
    with runs_file.open("a") as f:
        f.write('{"run_id": "dead')
    # Then the torn line is ignored
    assert [r["run_id"] for r in announced_runs(runs_file)] == ids
    found = find_replay_run(store, NbtrackConfig(), runs_file, 1)
    assert found is not None and found.run.run_id == ids[0]


def test_a_run_logged_to_another_store_is_named_not_searched_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a kernel that wrote its run into a store that is not the replay's (nor a spool of it)
    store, ids = _store_with_runs(tmp_path, 1)
    runs_file = tmp_path / "runs.jsonl"
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"
    _announce(monkeypatch, runs_file, [(ids[0], 1, elsewhere)])
    # When the replay looks for it: one line naming both stores
    with pytest.raises(CannotReplay) as caught:
        find_replay_run(store, NbtrackConfig(), runs_file, 1)
    message = str(caught.value)
    assert ids[0] in message and elsewhere in message and store.display_uri in message
    assert "\n" not in message


# --- real kernels --------------------------------------------------------------------------------
@pytest.mark.kernel
def test_two_replays_of_one_run_at_once_each_judge_their_own_run(tmp_path: Path) -> None:
    # Given a run tracked with min_tenure = 0 (300 rows)
    root = _project(tmp_path, ROWS)
    run_id = _track(root)
    # When it is replayed twice at the same time, each replay with another min_tenure
    with ThreadPoolExecutor(2) as pool:
        futures = {v: pool.submit(_replay_process, root, run_id, "-p", "min_tenure", v) for v in ("12", "36")}
        results = {v: f.result() for v, f in futures.items()}
    # Then each replay compared the run its own kernel logged: its own override, its own row count
    client = store_client(root)
    replay_ids = {r["replay_run_id"] for r in results.values()}
    assert len(replay_ids) == 2 and None not in replay_ids
    rows = {}
    for value, result in results.items():
        assert result["verdict"] == "DIVERGED", result["message"]
        [param] = [p for p in result["params"] if p["name"] == "min_tenure"]
        assert param["overridden"] and param["replayed"] == value
        replay_run = client.get_run(result["replay_run_id"])
        assert replay_run.data.params["min_tenure"] == value
        assert replay_run.data.tags["nbtrack.replay_of"] == run_id
        assert replay_run.data.tags["nbtrack.replay.verdict"] == "DIVERGED"
        [metric] = [m for m in result["metrics"] if m["name"] == "rows"]
        assert metric["replayed"] == replay_run.data.metrics["rows"]
        rows[value] = metric["replayed"]
    assert 0 < rows["36"] < rows["12"] < 300


@pytest.mark.kernel
def test_the_replay_kernel_runs_on_the_replayers_configuration(tmp_path: Path) -> None:
    # Given a notebook that logs a setting of nbtrack's configuration, tracked with a configuration
    # handed down whole (NBTRACK_CONFIG, as the server's replay job and a batch's replays get it)
    cells = [
        *ROWS[:-1],
        "from nbtrack.config import load_config\nmlflow.log_param('cap', load_config().git_diff_max_bytes)",
        ROWS[-1],
    ]
    root = _project(tmp_path, cells)
    handed = to_env(NbtrackConfig(git_diff_max_bytes=4321))
    run_id = _track(root, env=handed)
    assert store_client(root).get_run(run_id).data.params["cap"] == "4321"
    # When a replay process that was handed the same configuration (its store: the project's,
    # found from --project, not written in it) replays the run
    result = _replay_process(root, run_id, env=handed)
    # Then its kernel used that configuration, and logged its run where the original is
    assert result["verdict"] == "REPRODUCED", result["message"]
    [cap] = [p for p in result["params"] if p["name"] == "cap"]
    assert cap["original"] == cap["replayed"] == "4321"
    runs = {r.info.run_id: r for r in all_runs(store_client(root))}
    assert set(runs) == {run_id, result["replay_run_id"]}
    assert runs[result["replay_run_id"]].data.tags["nbtrack.replay_of"] == run_id


@pytest.mark.kernel
@pytest.mark.server
def test_a_replay_against_a_tracking_server_follows_its_run_out_of_the_spool(
    tmp_path: Path, mlflow_server: str
) -> None:
    from mlflow.tracking import MlflowClient

    from nbtrack.replay.replayer import replay
    from nbtrack.store.spool import Spool
    from nbtrack.store.sync import sync

    # Given a run tracked against a tracking server (through the local spool, then uploaded)
    cells = [ROWS[0], ROWS[1], ROWS[2].replace("stages", "stages-server"), *ROWS[3:]]
    root = _project(tmp_path, cells)
    execute_notebook(
        root / "rows.ipynb",
        tmp_path / "executed.ipynb",
        cwd=root,
        env={"NBTRACK_TRACKING_URI": mlflow_server},
    )
    server = MlflowStore(mlflow_server)
    sync(Spool.for_server(mlflow_server, NbtrackConfig()), server)
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("stages-server")
    [original] = [
        r for r in client.search_runs([exp.experiment_id]) if "nbtrack.replay_of" not in r.data.tags
    ]
    # When it is replayed from the server
    result = replay(original.info.run_id, tracking_uri=mlflow_server, project=root)
    # Then the replay's kernel wrote its run into the spool, and the replay uploaded it and judged
    # the server's copy
    assert result.verdict == REPRODUCED, result.message
    assert result.replay_run_id is not None
    replay_run = client.get_run(result.replay_run_id)
    spool_id = replay_run.data.tags["nbtrack.spool_run_id"]
    assert spool_id != result.replay_run_id
    assert replay_run.data.tags["nbtrack.replay_of"] == original.info.run_id
    assert replay_run.data.tags["nbtrack.replay.verdict"] == REPRODUCED
    assert result.view is not None and mlflow_server in result.view


@pytest.mark.kernel
def test_the_failure_names_the_cell_that_raised_not_papermills_error_banner(tmp_path: Path) -> None:
    from nbtrack.replay.execute import failure_info
    from nbtrack.runner import ExecutionFailed

    # Given a notebook whose third cell raises, executed by papermill (which then adds its error
    # banner and anchor cells to the output notebook)
    nb = write_notebook(
        tmp_path / "fails.ipynb", ["x = 1", "y = 2", "# the culprit\nz = {}['missing']", "w = 4"]
    )
    output = tmp_path / "out.ipynb"
    with pytest.raises(ExecutionFailed) as caught:
        execute_notebook(nb, output, cwd=tmp_path)
    # When the replay reads which cell failed
    failure = failure_info(output, caught.value)
    # Then it is the third cell, its first line and its exception
    assert failure["cell"] == 3 and failure["execution_count"] == 3
    assert failure["source_head"] == "# the culprit"
    assert (failure["ename"], failure["evalue"]) == ("KeyError", "'missing'")


# --- the verdict and the reports -----------------------------------------------------------------
def test_decide_names_the_failing_cell_the_missing_run_or_what_differs() -> None:
    failure = {"cell": 3, "ename": "KeyError", "evalue": "'TOKEN'", "source_head": "os.environ['TOKEN']"}
    assert decide(failure, True, [], [], []) == (
        FAILED,
        "cell 3 raised KeyError: 'TOKEN' (in `os.environ['TOKEN']`)",
    )
    verdict, message = decide(None, False, [], [], [])
    assert verdict == FAILED and "logged no tracked run" in message
    metrics = compare_metrics({"acc": 0.8}, {"acc": 0.7})
    assert decide(None, True, metrics, [], []) == (DIVERGED, "acc 0.8 -> 0.7")
    assert decide(None, True, compare_metrics({"acc": 0.8}, {"acc": 0.8}), [], [])[0] == REPRODUCED
    # issue 13: nothing compared is no pass
    verdict, message = decide(None, True, [], [], [])
    assert verdict == UNVERIFIED and "nothing could be compared" in message


def test_reports_take_the_typed_result_or_its_json_alike() -> None:
    # Given a result as replay() returns it, and the same result as JSON (a batch's subprocess)
    result = ReplayResult(
        "3f2a9b1c4d5e6f708192a3b4c5d6e7f8",
        verdict=DIVERGED,
        message="acc 0.8 -> 0.7",
        run_name="baseline",
        experiment="churn",
        notebook="train.ipynb",
        mode="notebook",
        metrics=compare_metrics({"acc": 0.8}, {"acc": 0.7}),
        environment={"available": True, "python": None, "added": [], "removed": [], "changed": []},
        duration_s=4.2,
    )
    data = json.loads(json.dumps(result.to_dict()))
    # Then the JSON reads back as the same record, and every report renders both the same way
    assert ReplayResult.from_dict(data) == result
    assert format_result(result) == format_result(data)
    assert junit_xml([result]) == junit_xml([data])
    assert html_report([result, data]) == html_report([data, result])
    assert format_result(result).startswith("DIVERGED  run 3f2a9b1c… (baseline) of train.ipynb")
