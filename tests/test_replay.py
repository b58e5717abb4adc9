"""``nbtrack replay`` end to end: real git + DVC projects, real kernels, a real SQLite MLflow store.

Each test tracks a run through papermill (the notebook's own ``%track`` magics), changes the world
the way a user would, then replays through the CLI and checks the verdict, the exit code, the
replay run in MLflow and what the user's workspace still holds.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, dvc, dvc_md5, git, make_project, store_client, write_notebook

from nbtrack.capture.notebook import cell_source
from nbtrack.cli import main
from nbtrack.cli.demo import make_churn_csv
from nbtrack.runner import execute_notebook

pytestmark = pytest.mark.kernel

ROWS = [
    "%load_ext nbtrack",
    ("parameters", "min_tenure = 0"),
    "%track start --experiment replays --name rows --tag ci=true",
    "import pandas as pd\nimport mlflow\ndata = pd.read_csv('data/churn.csv')\n"
    "kept = data[data.tenure >= min_tenure]\n"
    "mlflow.log_metric('rows', len(kept))\n"
    "mlflow.log_metric('mean_charges', float(kept.monthly_charges.mean()))",
    "%track stop",
]
RANDOM = [
    "%load_ext nbtrack",
    "%track start --experiment replays --name unseeded --tag ci=true",
    "import random\nimport mlflow\nmlflow.log_metric('draw', random.random())",
    "%track stop",
]


def _project(tmp_path: Path, *notebooks: tuple[str, list[Any]], remote: bool = False) -> Path:
    root = make_project(tmp_path / "proj", rows=300)
    for name, cells in notebooks:
        write_notebook(root / name, cells)
    if remote:
        dvc(root, "remote", "add", "-q", "-d", "storage", str(tmp_path / "remote"))
        dvc(root, "push", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebooks")
    return root


def _track(root: Path, name: str, env: dict[str, str] | None = None) -> str:
    """Execute a notebook of the project through papermill; the id of the run it tracked."""
    before = {r.info.run_id for r in all_runs(store_client(root))} if (root / ".nbtrack").exists() else set()
    execute_notebook(root / name, root.parent / "executed.ipynb", cwd=root, env=env)
    new = [r for r in all_runs(store_client(root)) if r.info.run_id not in before]
    assert len(new) == 1, [r.info.run_name for r in new]
    return str(new[0].info.run_id)


def _replay(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, Any]:
    code = main(["--project", str(root), "replay", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_replay_reproduces_and_is_tracked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a run tracked in a git + DVC project
    root = _project(tmp_path, ("rows.ipynb", ROWS))
    run_id = _track(root, "rows.ipynb")
    status_before = git(root, "status", "--porcelain")
    junit, html = tmp_path / "reports" / "replay.xml", tmp_path / "reports" / "replay.html"
    # When it is replayed, with reports
    code, result = _replay(capsys, root, run_id, "--junit", str(junit), "--html", str(html))
    # Then it reproduced, and the replay is a run of its own, tagged with the original
    assert code == 0, result["message"]
    assert result["verdict"] == "REPRODUCED"
    assert result["mode"] == "notebook" and "top to bottom" in result["mode_reason"]
    assert {m["name"] for m in result["metrics"]} == {"rows", "mean_charges"}
    client = store_client(root)
    replay_run = client.get_run(result["replay_run_id"])
    assert replay_run.data.tags["nbtrack.replay_of"] == run_id
    assert replay_run.data.tags["nbtrack.replay.verdict"] == "REPRODUCED"
    assert replay_run.data.tags["mlflow.source.name"] == "rows.ipynb"
    assert replay_run.data.metrics["rows"] == 300
    # it ran on the recorded commit, and the workspace matched it exactly (not dirty)
    original = client.get_run(run_id)
    assert replay_run.data.tags["mlflow.source.git.commit"] == original.data.tags["mlflow.source.git.commit"]
    assert replay_run.data.tags["nbtrack.git.dirty"] == "false"
    # the data came from the DVC cache as a link, not a copy
    [data] = result["data"]
    assert data["path"] == "data/churn.csv" and data["link"] in ("hardlink", "symlink", "reflink")
    # the reports: JUnit with one passing test case, a self-contained HTML page
    cases = ET.parse(junit).getroot().iter("testcase")
    [case] = list(cases)
    assert case.find("failure") is None and case.find("error") is None
    page = html.read_text()
    assert "REPRODUCED" in page and "mean_charges" in page
    assert 'src="http' not in page and 'href="http' not in page
    # and the user's working copy is untouched
    assert git(root, "status", "--porcelain") == status_before


def test_old_run_replays_on_its_old_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a run on 300 rows, then a new data version (500 rows) added to DVC and committed
    root = _project(tmp_path, ("rows.ipynb", ROWS))
    run_id = _track(root, "rows.ipynb")
    make_churn_csv(root / "data" / "churn.csv", rows=500, seed=7)
    dvc(root, "add", "-q", "data/churn.csv")
    git(root, "commit", "-qam", "new data")
    new_md5 = dvc_md5(root, "data/churn.csv")
    # When the old run is replayed
    code, result = _replay(capsys, root, run_id)
    # Then it reproduced on the old data (300 rows), and the user's workspace keeps the new data
    assert code == 0, result["message"]
    rows = next(m for m in result["metrics"] if m["name"] == "rows")
    assert rows["original"] == rows["replayed"] == 300
    assert result["data"][0]["hash"] != new_md5
    assert sum(1 for _ in (root / "data" / "churn.csv").open()) == 501
    assert dvc_md5(root, "data/churn.csv") == new_md5
    assert git(root, "status", "--porcelain") == ""


def test_batch_with_an_unseeded_draw_diverges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given two CI-tagged runs of one experiment: one deterministic, one drawing an unseeded number
    root = _project(tmp_path, ("rows.ipynb", ROWS), ("random.ipynb", RANDOM))
    rows_id = _track(root, "rows.ipynb")
    random_id = _track(root, "random.ipynb")
    junit = tmp_path / "replay.xml"
    # When the experiment's CI runs are replayed as a batch, two at once
    batch = ["--experiment", "replays", "--tag", "ci=true", "--jobs", "2", "--junit", str(junit)]
    code = main(["--project", str(root), "replay", *batch, "--json"])
    results = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    # Then the batch exits 1: the random run DIVERGED, naming the metric and both values
    assert code == 1
    assert results[rows_id]["verdict"] == "REPRODUCED", results[rows_id]["message"]
    diverged = results[random_id]
    assert diverged["verdict"] == "DIVERGED" and diverged["exit_code"] == 1
    [draw] = diverged["metrics"]
    assert draw["name"] == "draw" and not draw["ok"] and draw["original"] != draw["replayed"]
    assert "draw" in diverged["message"]
    # and the JUnit report has one test case per replayed run, the divergence as a failure
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert len(cases) == 2
    failed = [c for c in cases.values() if c.find("failure") is not None]
    assert len(failed) == 1 and "draw" in (failed[0].find("failure").text or "")  # type: ignore[union-attr]


def test_cell_raising_at_replay_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a run that read a variable from the kernel's environment, absent at replay
    cells = [
        "%load_ext nbtrack",
        "%track start --experiment replays --name needs-env",
        "import os\nimport mlflow\nmlflow.log_metric('token_length', len(os.environ['NBTRACK_TEST_TOKEN']))",
        "%track stop",
    ]
    root = _project(tmp_path, ("env.ipynb", cells))
    run_id = _track(root, "env.ipynb", env={"NBTRACK_TEST_TOKEN": "abc"})
    # When it is replayed without it
    code, result = _replay(capsys, root, run_id)
    # Then the replay FAILED, naming the cell and the exception
    assert code == 2
    assert result["verdict"] == "FAILED"
    assert result["failure"]["cell"] == 3
    assert result["failure"]["ename"] == "KeyError"
    assert "cell 3 raised KeyError" in result["message"] and "NBTRACK_TEST_TOKEN" in result["message"]


def test_data_in_neither_cache_nor_remote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a run whose data was pushed to a DVC remote
    root = _project(tmp_path, ("rows.ipynb", ROWS), remote=True)
    run_id = _track(root, "rows.ipynb")
    md5 = dvc_md5(root, "data/churn.csv")
    # When the data is gone from both the cache and the remote
    shutil.rmtree(root / ".dvc" / "cache")
    shutil.rmtree(tmp_path / "remote")
    (tmp_path / "remote").mkdir()
    code, result = _replay(capsys, root, run_id)
    # Then the replay cannot start: exit 3, naming the path and the hash
    assert code == 3
    assert result["verdict"] == "CANNOT_REPLAY"
    assert "data/churn.csv" in result["message"] and md5 in result["message"]
    assert "\n" not in result["message"]


def test_fetches_from_the_remote_when_the_cache_lacks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run whose data is in the DVC remote but no longer in the local cache
    root = _project(tmp_path, ("rows.ipynb", ROWS), remote=True)
    run_id = _track(root, "rows.ipynb")
    shutil.rmtree(root / ".dvc" / "cache")
    # When it is replayed
    code, result = _replay(capsys, root, run_id)
    # Then the data was fetched and the run reproduced
    assert code == 0, result["message"]
    assert result["data"][0]["fetched"] is True


def _interactive_out_of_order(root: Path, notebook: Path) -> None:
    """Run the notebook's cells 1, 3, 2, 3, 4 in a real kernel, as a person clicking around would."""
    import os

    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "JPY_SESSION_NAME": str(notebook)}
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(root), env=env)
    try:
        cells = [cell_source(c) for c in json.loads(notebook.read_text())["cells"]]
        for index in (0, 2, 1, 2, 3):
            reply = kc.execute_interactive(cells[index], timeout=300, output_hook=lambda msg: None)
            assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_out_of_order_run_replays_its_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a run made interactively with cells executed 1, 3, 2, 3 (then the stop cell)
    cells = [
        "%load_ext nbtrack\n%track start --experiment replays --name clicked",
        "x = x * 2",
        "import mlflow\nx = globals().get('x', 1) + 3\nmlflow.log_metric('x', x)",
        "%track stop",
    ]
    root = _project(tmp_path, ("clicked.ipynb", cells))
    _interactive_out_of_order(root, root / "clicked.ipynb")
    [run] = all_runs(store_client(root))
    assert run.data.metrics["x"] == 11 and run.data.tags["nbtrack.out_of_order"] == "true"
    run_id = run.info.run_id
    # When replayed with --mode auto: the history is chosen, and it reproduces
    code, result = _replay(capsys, root, run_id)
    assert code == 0, result["message"]
    assert result["mode"] == "history" and "out of order" in result["mode_reason"]
    # When forced to the saved notebook, top to bottom: cell 2 needs x first, so it fails
    code, result = _replay(capsys, root, run_id, "--mode", "notebook")
    assert code == 2
    assert result["verdict"] == "FAILED" and result["mode"] == "notebook"
    assert result["failure"]["cell"] == 2 and result["failure"]["ename"] == "NameError"


def test_parameter_override_changes_the_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a run with min_tenure = 0
    root = _project(tmp_path, ("rows.ipynb", ROWS))
    run_id = _track(root, "rows.ipynb")
    # When replayed with -p min_tenure 36, as papermill's -p
    code, result = _replay(capsys, root, run_id, "-p", "min_tenure", "36")
    # Then the override reached the notebook: fewer rows, a DIVERGED verdict; the param is marked
    assert code == 1
    rows = next(m for m in result["metrics"] if m["name"] == "rows")
    assert rows["original"] == 300 and 0 < rows["replayed"] < 300
    param = next(p for p in result["params"] if p["name"] == "min_tenure")
    assert param["overridden"] and param["ok"] and param["replayed"] == "36"
    assert result["parameters"]["overrides"] == {"min_tenure": 36}


def test_unknown_run_cannot_be_replayed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _project(tmp_path, ("rows.ipynb", ROWS))
    code, result = _replay(capsys, root, "0123456789abcdef0123456789abcdef")
    assert code == 3
    assert "0123456789abcdef0123456789abcdef" in result["message"] and "nbtrack runs" in result["message"]


def test_usage_errors_exit_64(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _project(tmp_path, ("rows.ipynb", ROWS))
    assert main(["--project", str(root), "replay"]) == 64
    assert "RUN_ID" in capsys.readouterr().err
    assert main(["--project", str(root), "replay", "abc", "--metric-tolerance", "acc"]) == 64
    assert "NAME=VALUE" in capsys.readouterr().err


def test_replay_in_a_recreated_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a tracked run
    root = _project(tmp_path, ("rows.ipynb", ROWS))
    run_id = _track(root, "rows.ipynb")
    # When replayed in a fresh virtual environment built from the recorded pins
    code, result = _replay(capsys, root, run_id, "--env", "recreate")
    # Then the kernel ran in that environment, with the recorded packages, and reproduced
    assert code == 0, result["message"]
    assert result["env"] == "recreate" and result["kernel"].startswith("nbtrack-replay-")
    env = result["environment"]
    assert env["available"] and env["python"] is None and env["changed"] == [] and env["removed"] == []
    from nbtrack.store import MlflowStore

    store = MlflowStore(f"sqlite:///{root / '.nbtrack' / 'mlflow.db'}")
    python = store.load_snapshot(result["replay_run_id"]).section("environment").data["python"]
    assert "/env/venv/" in python["executable"] and python["in_virtualenv"]
