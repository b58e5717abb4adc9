"""``nbtrack sweep`` end to end: a real git + DVC project, real kernels, a real SQLite MLflow store.

One project for the module: a notebook with a ``parameters`` cell that reads the DVC-tracked data
and an *untracked* helper module (so a trial that did not get the working tree's changes fails).
Kernel executions: 4 (the 2x2 grid) + 1 (a replay of a trial) + 1 (a clone of a trial) + 3 (the
search) + 1 (a failing trial).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, git, make_project, store_client, write_notebook

from nbtrack.cli import main

pytestmark = pytest.mark.kernel

NOTEBOOK = [
    ("parameters", "lr = 0.1\ndepth = 2"),
    "import mlflow\nfrom helper import OFFSET\nrows = sum(1 for _ in open('data/churn.csv')) - 1\n"
    "if depth == 0:\n    raise ValueError('depth must be positive')\n"
    "score = lr * depth + OFFSET + rows / 1000\nmlflow.log_metric('score', score)\nprint(score)",
]
ROWS = 40


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed project, plus uncommitted work: an untracked module the notebook imports."""
    root = make_project(tmp_path_factory.mktemp("sweep") / "proj", rows=ROWS)
    write_notebook(root / "train.ipynb", NOTEBOOK)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    (root / "helper.py").write_text("OFFSET = 5\n")
    return root


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (working tree, untracked files, .git, the DVC cache),
    but the nbtrack store, which the sweep writes on purpose."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (Path(folder) == root and d == ".nbtrack")]
        for name in files:
            path = Path(folder, name)
            found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def runs_by_id(root: Path) -> dict[str, Any]:
    if not (root / ".nbtrack" / "mlflow.db").exists():
        return {}
    return {r.info.run_id: r for r in all_runs(store_client(root))}


def sweep(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--project", str(root), "sweep", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-p", "nope", "1,2"], "no such parameter"),
        (["-p", "lr", ""], "empty value"),
        (["-p", "lr", "0.1,,0.2"], "empty value"),
        (["-p", "lr", "0.1", "--random", "0"], "--random 0"),
        (["-p", "lr", "0.1", "--jobs", "0"], "--jobs 0"),
        (["-p", "lr", "0.1", "--optimize", "best:score", "--trials", "2"], "max:METRIC"),
        (["-p", "lr", "0.1", "--optimize", "max:score"], "--trials"),
        (["-p", "lr", "0.1", "--optimize", "max:score", "--trials", "0"], "--trials 0"),
        (["-p", "lr", "0.01:1"], "a range has no grid"),
        ([], "at least one parameter"),
    ],
)
def test_bad_input_exits_64_and_records_nothing(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    before = runs_by_id(project)
    code, out, err = sweep(project, capsys, "train.ipynb", *args)
    assert code == 64, err
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert out == ""
    assert runs_by_id(project).keys() == before.keys()


def test_grid_sweep_in_parallel_nests_ordinary_runs(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a project with uncommitted work, and its tree and DVC cache hashed
    before = tree_hashes(project)
    # When a 2x2 grid runs two trials at a time
    grid = ["-p", "lr", "0.1,0.2", "-p", "depth", "2,3"]
    code, out, err = sweep(project, capsys, "train.ipynb", *grid, "--jobs", "2")
    # Then: exit 0, one line per trial, then the parent and how to compare
    assert code == 0, err
    lines = out.splitlines()
    assert sum(line.startswith("[") and " FINISHED " in line for line in lines) == 4, out
    assert "4 of 4 trials FINISHED" in out and "nbtrack diff" in out
    runs = runs_by_id(project)
    parents = [r for r in runs.values() if "nbtrack.sweep" in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert json.loads(parent.data.tags["nbtrack.sweep"])["space"] == {"lr": [0.1, 0.2], "depth": [2, 3]}
    children = [r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4
    assert {(c.data.params["lr"], c.data.params["depth"]) for c in children} == {
        ("0.1", "2"),
        ("0.1", "3"),
        ("0.2", "2"),
        ("0.2", "3"),
    }
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.info.experiment_id == parent.info.experiment_id
        assert child.data.tags["mlflow.source.name"] == "train.ipynb"  # the user's notebook, not a copy
        lr, depth = float(child.data.params["lr"]), int(child.data.params["depth"])
        # the untracked helper (OFFSET) and the DVC data (ROWS) reached the trial's workspace
        assert child.data.metrics["score"] == pytest.approx(lr * depth + 5 + ROWS / 1000)
    # The user's tree (untracked files included), .git and the DVC cache are byte-identical
    assert tree_hashes(project) == before
    # Each trial is an ordinary run of the notebook: `nbtrack runs` lists it
    notebook = str(project / "train.ipynb")
    assert main(["--project", str(project), "runs", "--notebook", notebook, "--json"]) == 0
    listed = {row["run_id"] for row in json.loads(capsys.readouterr().out)}
    assert {c.info.run_id for c in children} <= listed
    assert parent.info.run_id not in listed


def _children(root: Path) -> list[Any]:
    return [r for r in runs_by_id(root).values() if "mlflow.parentRunId" in r.data.tags]


def test_a_trial_replays_and_clones(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nbtrack.config import load_config
    from nbtrack.runs.service import Runs
    from nbtrack.sweep.service import run_trial

    child = next(c for c in _children(project) if c.data.params.get("depth") == "3")
    # A trial replays like any run
    code = main(["--project", str(project), "replay", child.info.run_id, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert (code, result["verdict"]) == (0, "REPRODUCED"), result["message"]
    # "Clone with new parameters": the trial's code, data and parameters, lr overridden
    config = load_config()
    run = run_trial(child.info.run_id[:10], {"lr": 0.5}, config=config, runs=Runs(config), project=project)
    assert run.status == "FINISHED", run.error
    clone = runs_by_id(project)[run.run_id]
    assert clone.data.tags["nbtrack.clone_of"] == child.info.run_id
    assert clone.data.params == {"lr": "0.5", "depth": "3"}
    assert clone.data.metrics["score"] == pytest.approx(0.5 * 3 + 5 + ROWS / 1000)


def test_optimize_tags_the_best_trial(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["-p", "lr", "0.01:1:log", "-p", "depth", "1,2,3", "--optimize", "max:score", "--trials", "3"]
    code, out, err = sweep(project, capsys, "train.ipynb", *args, "--seed", "7", "--name", "search")
    assert code == 0, err
    runs = runs_by_id(project)
    parent = next(r for r in runs.values() if r.info.run_name == "search")
    children = [r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 3
    best = max(children, key=lambda r: r.data.metrics["score"])
    assert parent.data.tags["nbtrack.sweep.best_run_id"] == best.info.run_id
    assert parent.data.metrics["score"] == pytest.approx(best.data.metrics["score"])
    best_params = json.loads(parent.data.tags["nbtrack.sweep.best_params"])
    assert best_params["depth"] == int(best.data.params["depth"])
    assert f"best trial: run {best.info.run_id}" in out
    assert all(0.01 <= float(c.data.params["lr"]) <= 1 for c in children)


def test_a_failing_trial_fails_the_parent(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = sweep(project, capsys, "train.ipynb", "-p", "depth", "0", "--name", "broken")
    assert code == 18, err
    assert " FAILED " in out and "ValueError" in out
    parent = next(r for r in runs_by_id(project).values() if r.info.run_name == "broken")
    assert parent.info.status == "FAILED"
    assert parent.data.tags["nbtrack.sweep.failed"] == "1"


def test_points_of_a_space() -> None:
    from nbtrack.sweep.parameters import Range, grid_points, parse_space

    space = parse_space([("lr", "1e-3,0.01"), ("depth", "3,5"), ("kind", "a,b")])
    assert len(grid_points(space)) == 8
    assert grid_points(space)[0] == {"lr": 0.001, "depth": 3, "kind": "a"}
    sampled = grid_points(space, random=3, seed=4)
    assert sampled == grid_points(space, random=3, seed=4)  # the seed repeats the sample
    assert len({json.dumps(p, sort_keys=True) for p in sampled}) == 3  # distinct grid points
    ranged = parse_space([("lr", "1e-4:1e-1:log"), ("depth", "2:6")])
    assert ranged == {"lr": Range(1e-4, 1e-1, log=True), "depth": Range(2, 6, integer=True)}
    for point in grid_points(ranged, random=20, seed=1):
        assert 1e-4 <= point["lr"] <= 1e-1 and isinstance(point["depth"], int) and 2 <= point["depth"] <= 6
