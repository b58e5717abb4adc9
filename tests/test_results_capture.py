"""Results without logging: ``nbtrack:result`` cells and scrapbook scraps become metrics and artifacts.

Real kernels (papermill, and nbclient driven like JupyterLab, which saves the file before the last
cell), a real git repository and the project's embedded SQLite MLflow store.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import all_runs, download_all, git, make_project, snapshot_of, store_client

from nbtrack.capture.history import ExecutedCell
from nbtrack.capture.order import check_execution
from nbtrack.capture.results import parse_scalars, shown_results
from nbtrack.runner import execute_notebook

SCRAP = {"name": "auc", "data": 0.875, "encoder": "json", "version": 2}
GLUE = (
    "from IPython.display import display\n"  # what scrapbook's glue("auc", 0.875) displays
    f"display({{'application/scrapbook.scrap.json+json': {SCRAP!r}}}, raw=True,\n"
    "        metadata={'scrapbook': {'name': 'auc', 'data': True, 'display': False}})"
)
COMPUTE = (
    "import random\nrandom.seed(seed)\nvalues = [random.random() for _ in range(20)]\ntotal = sum(values)"
)
PLOT = "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot(values)\nplt.show()"
# (tags, source) of each code cell; the notebook logs no metric itself.
CELLS: list[tuple[list[str], str]] = [
    ([], "%load_ext nbtrack"),
    (["parameters"], "seed = 3"),
    ([], "%track start --experiment shown"),
    ([], COMPUTE),
    (["nbtrack:result"], "total"),
    (["nbtrack:result=summary"], "{'mean': total / len(values), 'count': len(values)}"),
    (
        ["nbtrack:result=curve"],
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot(values)\nplt.show()",
    ),
    (["nbtrack:result"], "import pandas as pd\ntable = pd.DataFrame({'value': values[:3]})\ntable"),
    ([], GLUE),
    ([], "%track stop"),
]


@pytest.fixture(autouse=True)
def _own_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The environment-hash key goes to this test's Jupyter data folder, not the user's."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))


def _expected_total(seed: int) -> float:
    rng = random.Random(seed)
    return sum(rng.random() for _ in range(20))


def _notebook(path: Path, cells: list[tuple[list[str], str]], *, stale: bool = False) -> Path:
    """Write the notebook; ``stale``: with the execution counts and outputs of an earlier session
    (1, 2, 3, ... as a JupyterLab "Run All" without parameters leaves them; a stale total)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for count, (tags, source) in enumerate(cells, start=1):
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {})
        if stale:
            cell.execution_count = count
            if source == "total":
                stale_total = nbformat.v4.new_output(
                    "execute_result", {"text/plain": "999.0"}, execution_count=count
                )
                cell.outputs = [stale_total]
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def _the_run(root: Path, tmp_path: Path) -> tuple[Any, dict[str, bytes]]:
    client = store_client(root)
    (run,) = all_runs(client)
    return run, download_all(client, run.info.run_id, tmp_path / "artifacts")


def _assert_results(run: Any, files: dict[str, bytes], total: float) -> dict[str, Any]:
    metrics = run.data.metrics
    assert metrics["result.total"] == pytest.approx(total)
    assert metrics["mean"] == pytest.approx(total / 20)
    assert metrics["auc"] == 0.875
    assert files["nbtrack/results/curve.png"].startswith(b"\x89PNG")
    assert b"<table" in files["nbtrack/results/table.html"]
    shown = snapshot_of(files)["sections"]["results"]["data"]["shown"]
    assert shown["metrics"]["auc"] == {"cell": 9, "from": "scrapbook"}
    assert set(shown["artifacts"]) == {"results/curve.png", "results/table.html"}
    return shown


@pytest.mark.kernel
def test_papermill_run_records_what_the_notebook_showed(tmp_path: Path) -> None:
    # Given a metric-less notebook with result cells and a scrap, whose file holds the execution
    # counts and a stale output of an earlier session
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb_path = _notebook(root / "shown.ipynb", CELLS, stale=True)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    # When papermill executes it in a real kernel with a parameter (its injected cell shifts the counts)
    execute_notebook(nb_path, tmp_path / "out.ipynb", parameters={"seed": 5}, cwd=root)
    # Then what the notebook showed is in the run: scalars, dict entries and the scrap as metrics,
    # the figure and the table as artifacts
    run, files = _the_run(root, tmp_path)
    assert run.info.status == "FINISHED"
    shown = _assert_results(run, files, _expected_total(5))
    assert run.data.metrics["count"] == 20
    assert not shown["not_logged"]
    # And the stale counts in the published file are not taken for edits made after execution
    notebook = snapshot_of(files)["sections"]["notebook"]["data"]
    assert notebook["edited_after_execution"] == []
    # (nor when the input file itself is checked against what the kernel ran)
    history = json.loads(files["nbtrack/history.ipynb"])["cells"]
    ran = [ExecutedCell(c["execution_count"], "".join(c["source"])) for c in history]
    assert check_execution(json.loads(nb_path.read_text()), ran).edited_after_execution == []


@pytest.mark.kernel
def test_saved_notebook_results_keep_the_users_metrics(tmp_path: Path) -> None:
    # Given a notebook that also logs a metric named like one of its displayed results
    root = make_project(tmp_path / "proj", use_dvc=False)
    cells = list(CELLS)
    cells[2] = ([], "%track start --experiment shown --notebook shown.ipynb")
    cells[3] = ([], COMPUTE + "\nimport mlflow\nmlflow.log_metric('count', 99)")
    nb_path = _notebook(root / "shown.ipynb", cells)
    # When a real kernel runs it cell by cell and the notebook is saved before `%track stop`, as
    # JupyterLab does (nbclient, no papermill)
    from nbclient import NotebookClient

    nb = nbformat.read(str(nb_path), as_version=4)
    client = NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(root)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.source == "%track stop":
                nbformat.write(nb, str(nb_path))
            client.execute_cell(cell, index)
    # Then the displayed results are recorded, and the user's own metric keeps its value
    run, files = _the_run(root, tmp_path)
    shown = _assert_results(run, files, _expected_total(3))
    assert run.data.metrics["count"] == 99
    assert [(r["name"], r["value"]) for r in shown["not_logged"]] == [("count", 20.0)]
    assert "logged a metric of this name" in shown["not_logged"][0]["reason"]


def _cell(count: int, source: str, outputs: list[dict[str, Any]], tags: list[str]) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": count,
        "source": source,
        "metadata": {"tags": tags},
        "outputs": outputs,
    }


def _shown(text: str, kind: str = "execute_result") -> dict[str, Any]:
    return {"output_type": kind, "data": {"text/plain": text}, "metadata": {}}


def test_outputs_of_another_session_are_not_results() -> None:
    # Given a saved notebook whose result cell's output is not what this kernel ran
    nb = {"cells": [_cell(4, "score", [_shown("0.5")], ["nbtrack:result"])]}
    # When its results are taken against a kernel that ran another cell under that count
    found = shown_results(nb, [ExecutedCell(4, "score = 0.7")], {})
    # Then nothing is recorded, and the snapshot says why
    assert found.metrics == {}
    assert "not from this kernel" in found.summary["skipped"][0]["reason"]


def test_result_cell_forms() -> None:
    # Given a result cell showing a numpy scalar, a print, a Series and a second scalar
    series = "model\naccuracy    0.91\nrecall      0.75\nName: scores, dtype: float64"
    outputs = [
        _shown("np.float64(0.25)", "display_data"),
        {"output_type": "stream", "name": "stdout", "text": "57.59\n"},
        _shown(series),
    ]
    cell = _cell(2, "loss", outputs, ["nbtrack:result"])
    found = shown_results({"cells": [_cell(1, "x = 1", [], []), cell]}, [ExecutedCell(2, "loss")], {})
    # Then each becomes a metric: the label's, numbered after the first, and the Series' keys
    assert found.metrics == {"result.loss": 0.25, "result.loss.2": 57.59, "accuracy": 0.91, "recall": 0.75}
    assert found.summary["metrics"]["recall"] == {"cell": 2, "from": "nbtrack:result"}


def test_parse_scalars_refuses_what_is_not_a_number() -> None:
    assert parse_scalars("True") is None
    assert parse_scalars("nan") is None
    assert parse_scalars("'0.5'") is None
    assert parse_scalars("a    1.0\n    ...\nb    2.0\ndtype: float64") is None
    assert parse_scalars("{'a': 'x'}") is None
    assert parse_scalars(json.dumps({"a": 1})) == {"a": 1.0}
