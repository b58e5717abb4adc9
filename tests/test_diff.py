"""``nbtrack diff``: two real runs that differ in parameters, metrics, data, commit and code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, dvc, git, make_project, store_client, write_notebook

from nbtrack.cli import main
from nbtrack.config import NbtrackConfig
from nbtrack.runs.diff import diff_runs
from nbtrack.store import MlflowStore


def _tracked_run(shell: Any, nb: Path, name: str, metric: float) -> None:
    shell.run_cell(f"%track start --name {name} --notebook {nb}", store_history=True)
    shell.run_cell(f"import mlflow; mlflow.log_metric('score', {metric})", store_history=True)
    shell.run_cell("%track stop", store_history=True)


def test_diff_of_two_runs(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run, then a new data version, a new parameter value and an edited cell, then a run
    root = make_project(tmp_path / "proj")
    nb = write_notebook(root / "nb.ipynb", [("parameters", "alpha = 1"), "x = alpha * 2"])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "nb")
    monkeypatch.chdir(root)
    _tracked_run(shell, nb, "one", 1.0)
    write_notebook(nb, [("parameters", "alpha = 2"), "x = alpha * 3", "y = x + 1"])
    with open(root / "data" / "churn.csv", "a") as f:
        f.write("5,70.0,1,12,0\n")
    dvc(root, "add", "-q", "data/churn.csv")
    git(root, "commit", "-q", "-am", "v2")
    _tracked_run(shell, nb, "two", 3.5)
    two, one = (r.info.run_id for r in all_runs(store_client(root)))
    # When they are compared
    result = diff_runs(MlflowStore.for_project(root, NbtrackConfig()), one, two)
    # Then each difference is named with both sides
    assert result["params"] == [{"name": "alpha", "a": "1", "b": "2"}]
    assert result["metrics"] == [{"name": "score", "a": 1.0, "b": 3.5, "difference": 2.5}]
    (data,) = result["data"]
    assert data["path"] == "data/churn.csv" and data["a"]["hash"] != data["b"]["hash"]
    assert result["git"]["commit"]["b"] == git(root, "rev-parse", "HEAD")
    ops = [(c["op"], c.get("a_cell"), c.get("b_cell")) for c in result["cells"]]
    assert ops == [("changed", 1, 1), ("changed", 2, 2), ("added", None, 3)]
    assert "-x = alpha * 2" in result["cells"][1]["diff"] and "+x = alpha * 3" in result["cells"][1]["diff"]
    assert result["environment"]["available"] and not result["environment"]["changed"]
    # And the CLI prints the same, as text or JSON
    assert main(["diff", one, two]) == 0
    text = capsys.readouterr().out
    assert (
        "alpha: 1 -> 2" in text and "score: 1.0 -> 3.5  (+2.5)" in text and "cell 3 added: y = x + 1" in text
    )
    assert main(["diff", one, two, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == result["params"]
    assert main(["diff", one, "0" * 32]) == 15
    assert "nbtrack runs" in capsys.readouterr().err
