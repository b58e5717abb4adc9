"""Honest verdicts (issue 13): the replay judges what the notebook showed and says what it compared.

Real components throughout: notebooks tracked through papermill in real kernels (their own
``%track`` magics), a real git + DVC project, the project's SQLite MLflow store, and ``nbtrack
replay`` through the CLI. None of the notebooks logs a metric the verdict could lean on, except
the one that counts its own calls, whose metric repeats only by chance.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, git, make_project, store_client, write_notebook

from nbtrack.cli import main
from nbtrack.runner import execute_notebook

pytestmark = pytest.mark.kernel

STEADY = [
    "%load_ext nbtrack",
    ("parameters", "label = 'a'"),
    "%track start --experiment honest --name steady",
    "import pandas as pd\ndata = pd.read_csv('data/churn.csv')\n"
    "print(f'rows: {len(data)}')\nprint(f'mean charges: {data.monthly_charges.mean():.4f}')",
    "data.describe().round(3)",
    ("nbtrack:ignore-output", "import time\nprint(f'timing: {time.time()}')"),
    "%track stop",
]
UNSEEDED = [
    "%load_ext nbtrack",
    "%track start --experiment honest --name unseeded",
    "import random\nvalues = [random.random() * 100 for _ in range(10)]\nprint(f'total: {sum(values):.2f}')",
    "%track stop",
]
FIGURE = [
    "%load_ext nbtrack",
    ("parameters", "colour = 'tab:blue'"),
    "%track start --experiment honest --name figure",
    "import numpy as np\nimport matplotlib.pyplot as plt\nrng = np.random.default_rng(7)\n"
    "fig, ax = plt.subplots(figsize=(4, 3))\nax.plot(rng.normal(size=60).cumsum(), color=colour, lw=3)\n"
    "plt.show()",
    "%track stop",
]
QUIET = [
    "%load_ext nbtrack",
    "%track start --experiment honest --name quiet",
    "total = sum(range(10))",
    "%track stop",
]


def _counter(marker: Path) -> list[Any]:
    """A notebook whose result is how often it ran before: 0 at first, then 1, ... (a file outside
    the project keeps count), so a replay matches the original once, and the next one does not."""
    return [
        "%load_ext nbtrack",
        "%track start --experiment honest --name counter",
        f"import mlflow, pathlib\nmarker = pathlib.Path({str(marker)!r})\n"
        "calls = len(marker.read_text()) if marker.exists() else 0\n"
        "marker.write_text('x' * (calls + 1))\nmlflow.log_metric('calls', calls)\n"
        "print(f'calls so far: {calls}')",
        "%track stop",
    ]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One git + DVC project, each notebook tracked once through papermill: their run ids."""
    base = tmp_path_factory.mktemp("honest")
    root = make_project(base / "proj", rows=200)
    marker = base / "counter.txt"
    notebooks = {
        "steady": STEADY,
        "unseeded": UNSEEDED,
        "quiet": QUIET,
        "counter": _counter(marker),
        "figure": FIGURE,
    }
    for name, cells in notebooks.items():
        write_notebook(root / f"{name}.ipynb", cells)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebooks")
    runs = {}
    for name in notebooks:
        before = (
            {r.info.run_id for r in all_runs(store_client(root))} if (root / ".nbtrack").exists() else set()
        )
        execute_notebook(root / f"{name}.ipynb", base / f"{name}.out.ipynb", cwd=root)
        [run_id] = [r.info.run_id for r in all_runs(store_client(root)) if r.info.run_id not in before]
        runs[name] = run_id
    return {"root": root, "base": base, "marker": marker, "runs": runs}


def _replay(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["--project", str(root), "replay", *args, "--json"])
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, result


def test_a_deterministic_metric_less_notebook_reproduces_naming_its_outputs(
    tracked: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run that logged no metric, printed deterministic results, showed a table and timed a
    # step in a cell tagged nbtrack:ignore-output
    root, run_id = tracked["root"], tracked["runs"]["steady"]
    junit = tracked["base"] / "steady.xml"
    # When it is replayed with its (unused) label overridden, as papermill's -p
    code, result = _replay(capsys, root, run_id, "-p", "label", "b", "--junit", str(junit))
    # Then it REPRODUCED on the evidence of its cell outputs, which the message counts
    assert code == 0, result["message"]
    assert result["verdict"] == "REPRODUCED"
    evidence = result["evidence"]
    assert evidence["metrics"] == 0 and evidence["params"] == 0 and evidence["cell_outputs"] >= 2
    assert f"{evidence['cell_outputs']} cell outputs" in result["message"]
    assert "match the original" in result["message"]
    assert all(row["ok"] for row in result["cell_outputs"])
    # the timing cell was skipped, by its tag
    [timing] = [row for row in result["skipped_outputs"] if row["source_head"] == "import time"]
    assert "nbtrack:ignore-output" in timing["reason"]
    assert not any(row["source_head"] == "import time" for row in result["cell_outputs"])
    # the override is reported as overridden, never as matching
    assert "1 param overridden (label a -> b)" in result["message"]
    [label] = [p for p in result["params"] if p["name"] == "label"]
    assert label["overridden"] and label["replayed"] == "b"
    # papermill's injected-parameters cell is no code change
    assert result["code_diff"] == []
    # and the verdict is on the replay run, and a passing JUnit case
    replay_run = store_client(root).get_run(result["replay_run_id"])
    assert replay_run.data.tags["nbtrack.replay.verdict"] == "REPRODUCED"
    [case] = list(ET.parse(junit).getroot().iter("testcase"))
    assert case.find("failure") is None and case.find("skipped") is None


def test_an_unseeded_printed_result_diverges(
    tracked: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run that printed the sum of unseeded random numbers, and logged nothing
    root, run_id = tracked["root"], tracked["runs"]["unseeded"]
    # When it is replayed
    code, result = _replay(capsys, root, run_id)
    # Then it did not pass: the printed total differs, and the message names the cell
    assert code == 1, result["message"]
    assert result["verdict"] == "DIVERGED"
    [row] = [r for r in result["cell_outputs"] if not r["ok"]]
    assert "total" in row["source_head"] or "random" in row["source_head"]
    assert f"cell {row['cell']}" in result["message"] and "output differs" in result["message"]


def test_a_notebook_with_nothing_to_compare_is_unverified(
    tracked: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run that logged nothing and showed nothing
    root, run_id = tracked["root"], tracked["runs"]["quiet"]
    junit = tracked["base"] / "quiet.xml"
    # When it is replayed
    code, result = _replay(capsys, root, run_id, "--junit", str(junit))
    # Then the verdict is UNVERIFIED, exit 4, saying what to do
    assert code == 4, result["message"]
    assert result["verdict"] == "UNVERIFIED" and result["exit_code"] == 4
    assert "nothing could be compared" in result["message"] and "nbtrack:result" in result["message"]
    assert not any(result["evidence"].values())
    replay_run = store_client(root).get_run(result["replay_run_id"])
    assert replay_run.data.tags["nbtrack.replay.verdict"] == "UNVERIFIED"
    # and the JUnit case is skipped, not passed
    [case] = list(ET.parse(junit).getroot().iter("testcase"))
    assert case.find("skipped") is not None


def test_repeat_shows_a_result_that_matched_only_by_chance(
    tracked: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run whose metric and printed result count the notebook's earlier executions (0 then)
    root, run_id = tracked["root"], tracked["runs"]["counter"]
    tracked["marker"].unlink()  # the first replay sees what the original saw, the second does not
    # When it is replayed twice
    code, result = _replay(capsys, root, run_id, "--repeat", "2")
    # Then the first replay matched the original, but what varies between the replays is marked
    # nondeterministic and the verdict is no pass
    assert code == 1, result["message"]
    assert result["verdict"] == "DIVERGED"
    [calls] = result["metrics"]
    assert calls["ok"] and calls["original"] == calls["replayed"] == 0
    varying = {r["kind"]: r for r in result["nondeterministic"]}
    assert varying["metric"]["name"] == "calls" and varying["metric"]["values"] == [0, 1]
    assert "cell_output" in varying
    assert "nondeterministic" in result["message"] and "only by chance" in result["message"]
    # both replays are runs of their own, recorded with the final verdict
    [second] = result["repeats"]
    client = store_client(root)
    for replay_id in (result["replay_run_id"], second["replay_run_id"]):
        assert client.get_run(replay_id).data.tags["nbtrack.replay.verdict"] == "DIVERGED"


def test_a_seeded_figure_reproduces_and_another_colour_diverges_with_a_difference_image(
    tracked: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run that drew a seeded matplotlib figure, and logged nothing
    root, run_id = tracked["root"], tracked["runs"]["figure"]
    # When it is replayed as recorded
    code, result = _replay(capsys, root, run_id)
    # Then it REPRODUCED on the evidence of the figure, compared perceptually
    assert code == 0, result["message"]
    assert result["evidence"]["figures"] == 1 and "1 figure" in result["message"]
    [figure] = result["figures"]
    assert figure["ok"] and "difference_png" not in figure
    # When it is replayed with the line drawn in another colour
    page = tracked["base"] / "figure.html"
    code, result = _replay(capsys, root, run_id, "-p", "colour", "tab:red", "--html", str(page))
    # Then it DIVERGED on the figure, and the report shows original, replayed and their difference
    assert code == 1, result["message"]
    [figure] = result["figures"]
    assert not figure["ok"] and figure["distance"] > figure["threshold"]
    html = page.read_text()
    for name in ("original_png", "replayed_png", "difference_png"):
        assert f"data:image/png;base64,{figure[name]}" in html
