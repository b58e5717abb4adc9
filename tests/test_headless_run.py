"""``nbtrack run`` and ``papermill --engine nbtrack``: an untouched notebook recorded as one run.

Real kernels (papermill), a real git + DVC project, its real embedded SQLite store; the CLI called
in process (``nbtrack.cli.main``), the ``papermill`` command once (it proves the entry point).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, download_all, git, make_project, snapshot_of, store_client, write_notebook

from nbtrack.cli import main

pytestmark = pytest.mark.kernel

UNTOUCHED = [
    ("parameters", "alpha = 0.1"),
    "import mlflow\nimport pandas as pd\nrows = len(pd.read_csv('../data/churn.csv'))",
    "print('alpha is', alpha)",
    "mlflow.log_metric('score', alpha * 2)",
    "print('rows', rows)",
]
FAILING = ["x = 1", "raise ValueError('boom\\nsecond line')", "print('never')"]
SELF_TRACKED = [
    "%load_ext nbtrack",
    "%track start --experiment own",
    "import mlflow\nmlflow.log_metric('a', 1.0)",
    "%track stop",
    "%track start --experiment own",
    "mlflow.log_metric('b', 2.0)",
    "%track stop",
]


def _tracked(root: Path) -> dict[str, Any]:
    """The project's runs by id."""
    return {r.info.run_id: r for r in all_runs(store_client(root))}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("headless") / "proj")
    write_notebook(root / "nb" / "train.ipynb", UNTOUCHED)
    write_notebook(root / "nb" / "bad.ipynb", FAILING)
    write_notebook(root / "nb" / "own.ipynb", SELF_TRACKED)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebooks")
    return root


@pytest.fixture(scope="module")
def cli_run(project: Path) -> dict[str, Any]:
    """``nbtrack run nb/train.ipynb -p alpha 0.5`` once, in process."""
    import contextlib
    import io

    notebook = project / "nb" / "train.ipynb"
    before = notebook.read_bytes()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", str(notebook), "-p", "alpha", "0.5", "--tag", "team=churn", "--name", "quick"])
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), "before": before}


def test_run_records_one_full_run_and_leaves_the_notebook_alone(
    project: Path, cli_run: dict[str, Any], tmp_path: Path
) -> None:
    # Given an untouched notebook (no %track line) run with `nbtrack run -p alpha 0.5`
    assert cli_run["code"] == 0, cli_run["out"] + cli_run["err"]
    runs = _tracked(project)
    # Then exactly one FINISHED run, with the parameter, the metric and the user's tag and name
    assert len(runs) == 1
    ((run_id, run),) = runs.items()
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == "0.5"
    assert run.data.metrics == {"score": 1.0}
    assert run.data.tags["team"] == "churn" and run.data.tags["mlflow.runName"] == "quick"
    assert run.data.tags["nbtrack.started_by"] == "papermill engine"
    assert run.data.tags["mlflow.source.name"] == "nb/train.ipynb"
    # The output names the run and how to see and replay it
    assert f"run {run_id} FINISHED" in cli_run["out"]
    assert f"nbtrack replay {run_id[:8]}" in cli_run["out"]
    # Every section, and the executed notebook (injected parameters, outputs) as notebook.ipynb
    files = download_all(store_client(project), run_id, tmp_path / "art")
    snapshot = snapshot_of(files)
    sections = {name: s["status"] for name, s in snapshot["sections"].items()}
    for name in ("environment", "git", "data", "notebook", "parameters", "results"):
        assert sections[name] == "ok", (name, snapshot["sections"][name])
    executed = json.loads(files["nbtrack/notebook.ipynb"])
    texts = ["".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", [])]
    assert "alpha is 0.5\n" in texts and "rows 300\n" in texts
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    history = json.loads(files["nbtrack/history.ipynb"])
    assert len(history["cells"]) == 6  # the user's 5 cells and papermill's parameters: no hidden call
    # And the user's notebook is byte for byte what it was; nothing was written beside it
    assert (project / "nb" / "train.ipynb").read_bytes() == cli_run["before"]
    assert sorted(p.name for p in (project / "nb").iterdir()) == ["bad.ipynb", "own.ipynb", "train.ipynb"]
    assert git(project, "status", "--porcelain") == ""


def test_replay_of_a_headless_run_reproduces(project: Path, cli_run: dict[str, Any]) -> None:
    # Given the run `nbtrack run` recorded
    (run_id,) = [i for i, r in _tracked(project).items() if r.data.tags.get("nbtrack.replay_of") is None]
    # When it is replayed
    code = main(["replay", run_id, "--project", str(project)])
    # Then it reproduced, and the replay recorded its own run (tagged as the replay)
    assert code == 0
    replays = [r for r in _tracked(project).values() if r.data.tags.get("nbtrack.replay_of") == run_id]
    assert len(replays) == 1 and replays[0].data.params["alpha"] == "0.5"


def test_a_failing_cell_fails_the_run_in_one_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a notebook whose second cell raises
    before = set(_tracked(project))
    # When it is run
    code = main(["run", str(project / "nb" / "bad.ipynb")])
    # Then the exit code says the notebook failed, with its cell on one line (no traceback)
    captured = capsys.readouterr()
    assert code == 17
    (line,) = [x for x in captured.err.splitlines() if x.startswith("nbtrack run: cell")]
    assert line.startswith("nbtrack run: cell 2 of bad.ipynb raised ValueError: boom second line")
    assert "Traceback" not in captured.err + captured.out
    # And one FAILED run records the failing cell, as an interactive run would
    (new,) = [r for i, r in _tracked(project).items() if i not in before]
    assert new.info.status == "FAILED"
    assert new.data.tags["nbtrack.failure"].startswith("cell 2 raised ValueError: boom")


def test_a_notebook_that_tracks_itself_is_not_tracked_twice(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a notebook with two %track start ... %track stop stretches
    before = set(_tracked(project))
    # When it is run headlessly
    code = main(["run", str(project / "nb" / "own.ipynb")])
    # Then exactly its own two runs were recorded, and none by the engine
    assert code == 0, capsys.readouterr()
    new = [r for i, r in _tracked(project).items() if i not in before]
    assert sorted(r.data.metrics.popitem()[0] for r in new) == ["a", "b"]
    assert all("nbtrack.started_by" not in r.data.tags for r in new)
    assert "tracks itself" in capsys.readouterr().out


def test_usage_errors_record_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = set(_tracked(project))
    assert main(["run", str(project / "nb" / "train.ipynb"), "-p", "alpah", "1"]) == 64
    assert "no parameter alpah" in capsys.readouterr().err
    assert main(["run", str(project / "nb" / "missing.ipynb")]) == 12
    assert main(["run", str(project / "nb" / "train.ipynb"), "--tag", "novalue"]) == 64
    assert set(_tracked(project)) == before


def test_papermill_engine_entry_point_records_a_run(project: Path, tmp_path: Path) -> None:
    # Given papermill's own command with nbtrack's engine (the entry point), in the notebook's folder
    before = set(_tracked(project))
    out = tmp_path / "out.ipynb"
    papermill = Path(sys.executable).parent / "papermill"
    cmd = [str(papermill), "--engine", "nbtrack", "train.ipynb", str(out), "-p", "alpha", "0.25"]
    done = subprocess.run(cmd, cwd=project / "nb", capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # Then one FINISHED run with the parameter, its executed notebook, and no cell added
    (new,) = [r for i, r in _tracked(project).items() if i not in before]
    assert new.info.status == "FINISHED"
    assert new.data.params["alpha"] == "0.25" and new.data.metrics == {"score": 0.5}
    executed = json.loads(out.read_text())
    assert len(executed["cells"]) == len(UNTOUCHED) + 1  # papermill's injected parameters only
