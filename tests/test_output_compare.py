"""Outputs are results: cell outputs of a notebook and of its replay, compared as a user would judge them.

Given a notebook executed by a real kernel (papermill) and executed again, when their outputs are
compared, then deterministic output (text, numbers, DataFrames, seeded figures, object reprs,
widgets) matches, an unseeded random number differs and is named, a timing cell tagged
``nbtrack:ignore-output`` is skipped, and a figure drawn in another colour (a papermill parameter)
differs with its thumbnails and a difference image. Part of the notebook is the "10 minutes to
pandas" and the pyplot tutorial cells, as published.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest

from nbtrack.replay.outputs import OUTPUT_MODES, OutputComparison, compare_outputs_of

CELLS: list[tuple[str, list[str]]] = [
    ("%load_ext nbtrack", []),
    ("color = 'C0'", ["parameters"]),
    ("%matplotlib inline\nimport numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt", []),
    # "10 minutes to pandas" (pandas.pydata.org), object creation
    ("s = pd.Series([1, 3, 5, np.nan, 6, 8])\ns", []),
    ('dates = pd.date_range("20130101", periods=6)\ndates', []),
    (
        "df2 = pd.DataFrame(\n"
        "    {\n"
        '        "A": 1.0,\n'
        '        "B": pd.Timestamp("20130102"),\n'
        '        "C": pd.Series(1, index=list(range(4)), dtype="float32"),\n'
        '        "D": np.array([3] * 4, dtype="int32"),\n'
        '        "E": pd.Categorical(["test", "train", "test", "train"]),\n'
        '        "F": "foo",\n'
        "    }\n"
        ")\n"
        "df2",
        [],
    ),
    ("df2.dtypes", []),
    # the pyplot tutorial (matplotlib.org), first figure
    ("plt.plot([1, 2, 3, 4])\nplt.ylabel('some numbers')\nplt.show()", []),
    ("print('total:', sum(range(10)))", []),
    ("import random\nprint('unseeded sum:', sum(random.random() for _ in range(100)))", []),
    ("import time\nprint('started at', time.time())", ["nbtrack:ignore-output"]),
    (
        "rng = np.random.default_rng(0)\n"
        "fig, ax = plt.subplots(figsize=(5, 3))\n"
        "ax.plot(rng.normal(size=60).cumsum(), color='C0')\n"
        "ax.set_title('random walk')\n"
        "plt.show()",
        [],
    ),
    (
        "rng = np.random.default_rng(1)\n"
        "fig, ax = plt.subplots(figsize=(5, 3))\n"
        "ax.plot(rng.normal(size=60).cumsum(), color=color)\n"
        "ax.set_title('another walk')\n"
        "plt.show()",
        [],
    ),
    (
        "noise = np.random.default_rng().normal(scale=1e-12, size=(4, 2))\n"
        "frame = pd.DataFrame(np.arange(8).reshape(4, 2) / 3 + noise, columns=['x', 'y'])\n"
        "print(float(frame['x'].sum()))\n"
        "frame",
        [],
    ),
    ("class Model:\n    pass\n\nModel()", []),
    (
        "import warnings\nfrom tqdm import tqdm\n"
        "warnings.warn('this API is deprecated')\n"
        "for _ in tqdm(range(3)):\n    time.sleep(0.01)\n"
        "print('trained in 0.03s at', time.ctime())",
        [],
    ),
    ("import ipywidgets as widgets\nwidgets.IntSlider(value=3, description='depth')", []),
]
RANDOM_CELL = 1 + next(i for i, (s, _) in enumerate(CELLS) if "unseeded" in s)
TIMING_CELL = 1 + next(i for i, (s, _) in enumerate(CELLS) if "time.time()" in s)
WALK_CELL = 1 + next(i for i, (s, _) in enumerate(CELLS) if "random walk" in s)
COLOUR_CELL = 1 + next(i for i, (s, _) in enumerate(CELLS) if "another walk" in s)
FRAME_CELL = 1 + next(i for i, (s, _) in enumerate(CELLS) if "noise" in s)
MODEL_CELL = 1 + next(i for i, (s, _) in enumerate(CELLS) if "Model()" in s)


def _execute(source: Path, out: Path, **parameters: Any) -> dict[str, Any]:
    import papermill

    nb = papermill.execute_notebook(
        str(source),
        str(out),
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        cwd=out.parent,
    )
    return dict(nb)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The notebook run twice by real kernels: the original, and a replay drawing one walk in red."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    folder = tmp_path_factory.mktemp("outputs")
    nb = new_notebook(cells=[new_markdown_cell("# Outputs are results")])
    nb.cells += [new_code_cell(source, metadata={"tags": tags}) for source, tags in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = folder / "tutorial.ipynb"
    nbformat.write(nb, str(source))
    return {
        "original": _execute(source, folder / "original.ipynb"),
        "replay": _execute(source, folder / "replay.ipynb", color="red"),
    }


@pytest.fixture(scope="module")
def found(runs: dict[str, dict[str, Any]]) -> OutputComparison:
    return compare_outputs_of(runs["original"], runs["replay"])


def _row(found: OutputComparison, cell: int) -> dict[str, Any]:
    return next(r for r in found.cells if r["cell"] == cell)


@pytest.mark.kernel
def test_a_replay_matches_every_deterministic_cell(found: OutputComparison) -> None:
    differing = [r["cell"] for r in found.cells if not r["ok"]]

    assert differing == [RANDOM_CELL, COLOUR_CELL], found.cells
    counts = found.counts()
    assert counts["cells"] >= 12 and counts["outputs"] >= 14 and counts["figures"] == 3, counts
    assert counts["differ"] == 2
    kinds = {k for r in found.cells for k in r["kinds"]}
    assert {"text", "table", "image", "widget"} <= kinds, kinds


@pytest.mark.kernel
def test_an_unseeded_printed_number_differs_and_is_named(found: OutputComparison) -> None:
    row = _row(found, RANDOM_CELL)

    assert not row["ok"] and row["source_head"] == "import random"
    assert row["detail"].startswith("stdout: ") and "->" in row["detail"]
    assert found.summary().startswith(f"cell {RANDOM_CELL} output differs (stdout: ")


@pytest.mark.kernel
def test_a_timing_cell_tagged_ignore_output_is_skipped(found: OutputComparison) -> None:
    skipped = {s["cell"]: s["reason"] for s in found.skipped}

    assert skipped[TIMING_CELL] == "tagged nbtrack:ignore-output"
    assert skipped[1] == "nbtrack's own magics"
    assert TIMING_CELL not in {r["cell"] for r in found.cells}


@pytest.mark.kernel
def test_seeded_figures_dataframes_with_noise_and_object_reprs_match(found: OutputComparison) -> None:
    walk = [f for f in found.figures if f["cell"] == WALK_CELL]

    assert [(f["ok"], f["mime"]) for f in walk] == [(True, "image/png")]
    assert "original_png" not in walk[0]
    assert _row(found, FRAME_CELL)["ok"] and _row(found, FRAME_CELL)["kinds"] == ["table", "text"]
    assert _row(found, MODEL_CELL)["ok"]


@pytest.mark.kernel
def test_a_figure_in_another_colour_differs_with_a_difference_image(found: OutputComparison) -> None:
    from PIL import Image

    row = _row(found, COLOUR_CELL)

    assert not row["ok"] and "figure differs" in row["detail"]
    (figure,) = [f for f in found.figures if f["cell"] == COLOUR_CELL]
    assert figure["distance"] > figure["threshold"]
    for key in ("original_png", "replayed_png", "difference_png"):
        image = Image.open(io.BytesIO(base64.b64decode(figure[key])))
        assert image.format == "PNG" and max(image.size) <= 320


@pytest.mark.kernel
def test_strict_comparison_holds_numbers_exactly(runs: dict[str, dict[str, Any]]) -> None:
    strict = compare_outputs_of(runs["original"], runs["replay"], strict=True)

    assert not _row(strict, FRAME_CELL)["ok"]  # the printed sum carries the 1e-12 noise
    assert _row(strict, FRAME_CELL)["strict"]


# --- without a kernel: the rules on hand-made notebooks -------------------------------------------


def _nb(*cells: dict[str, Any]) -> dict[str, Any]:
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _cell(
    source: str, *outputs: dict[str, Any], cell_id: str | None = None, tags: Any = ()
) -> dict[str, Any]:
    cell = {"cell_type": "code", "source": source, "outputs": list(outputs), "metadata": {"tags": list(tags)}}
    if cell_id:
        cell["id"] = cell_id
    return cell


def _out(text: str, name: str = "stdout") -> dict[str, Any]:
    return {"output_type": "stream", "name": name, "text": text}


def _result(**data: Any) -> dict[str, Any]:
    return {"output_type": "execute_result", "data": data, "metadata": {}, "execution_count": 1}


def test_cells_match_by_id_then_by_identical_source_in_order() -> None:
    original = _nb(
        _cell("a = 1\nprint(a)", _out("1\n"), cell_id="x"), _cell("print(2)", _out("2\n"), cell_id="y")
    )
    # a replay of the execution history: new ids, an extra cell, same sources
    replayed = _nb(
        _cell("import os"), _cell("a = 1\nprint(a)  ", _out("1\n")), _cell("print(2)", _out("3\n"))
    )

    found = compare_outputs_of(original, replayed)

    assert [(r["cell"], r["ok"]) for r in found.cells] == [(1, True), (2, False)]
    assert found.cells[1]["detail"] == "stdout: 2 -> 3"


def test_unmatched_and_outputless_cells_are_skipped_with_their_reason() -> None:
    original = _nb(_cell("x = 1"), _cell("print(x)", _out("1\n")), _cell("%track stop", _out("run 1")))
    replayed = _nb(_cell("x = 1"))

    found = compare_outputs_of(original, replayed)

    assert found.cells == []
    assert [s["reason"] for s in found.skipped] == [
        "no recorded outputs",
        "no matching replayed cell",
        "nbtrack's own magics",
    ]


@pytest.mark.parametrize(
    ("original", "replayed"),
    [
        ("<__main__.Model object at 0x7f3a2b1c9d10>", "<__main__.Model object at 0x7f00aa11bb22>"),
        ("\x1b[32mdone\x1b[0m in 1.25s", "done in 3.5 s"),
        ("logged run 0123456789abcdef0123456789abcdef", "logged run fedcba9876543210fedcba9876543210"),
        ("2024-05-01T12:00:03.25Z saved /tmp/ws-1/out.csv", "2025-01-02T08:01:00Z saved /tmp/ws-2/out.csv"),
        (
            " 10%|█ | 1/10\r100%|██████████| 10/10 [00:01<00:00,  9.50it/s]",
            "100%|██████████| 10/10 [00:02<00:00, 4.2it/s]",
        ),
        ("loss 0.2500000000001, rows 10", "loss 0.25, rows 10"),
        ("Wall time: 1.2 s", "Wall time: 980 ms"),
    ],
)
def test_text_that_varies_between_runs_without_the_result_changing_matches(
    original: str, replayed: str
) -> None:
    found = compare_outputs_of(
        _nb(_cell("f()", _out(original))),
        _nb(_cell("f()", _out(replayed))),
        normalize_paths=["/tmp/ws-1", "/tmp/ws-2"],
    )

    assert found.cells[0]["ok"], found.cells[0]["detail"]


def test_whole_numbers_are_exact_and_a_tolerance_loosens_the_rest() -> None:
    def detail(a: str, b: str, tolerance: float | None = None) -> str:
        found = compare_outputs_of(
            _nb(_cell("f()", _out(a))), _nb(_cell("f()", _out(b))), tolerance=tolerance
        )
        return str(found.cells[0]["detail"])

    assert detail("rows 2000", "rows 2001") == "stdout: 2000 -> 2001"
    assert detail("acc 0.8123", "acc 0.8124") == "stdout: 0.8123 -> 0.8124"
    assert detail("acc 0.8123", "acc 0.8124", tolerance=1e-3) == ""


def test_json_and_plain_numbers_compare_structurally() -> None:
    a = _cell("r", _result(**{"application/json": {"acc": 0.81, "model_id": "1"}, "text/plain": "r"}))
    b = _cell("r", _result(**{"application/json": {"acc": 0.79, "model_id": "2"}, "text/plain": "r"}))
    c = _cell("n", _result(**{"text/plain": "0.5"}))

    found = compare_outputs_of(_nb(a, c), _nb(b, c))

    assert found.cells[0]["detail"] == "json: acc: 0.81 -> 0.79"
    assert found.cells[1]["kinds"] == ["number"] and found.cells[1]["ok"]


def test_a_cell_tagged_strict_output_is_compared_exactly() -> None:
    original = _nb(_cell("f()", _out("at 0x7f3a2b1c9d10\n"), tags=["nbtrack:strict-output"]))
    replayed = _nb(_cell("f()", _out("at 0x7f00aa11bb22\n")))

    (row,) = compare_outputs_of(original, replayed).cells

    assert row["strict"] and not row["ok"]


def test_the_output_modes_are_the_cli_choices() -> None:
    assert OUTPUT_MODES == ("check", "report", "ignore")


def test_an_error_compares_by_type_and_message() -> None:
    def error(value: str) -> dict[str, Any]:
        return {"output_type": "error", "ename": "ValueError", "evalue": value, "traceback": ["\x1b[31m..."]}

    same = compare_outputs_of(_nb(_cell("f()", error("bad 3"))), _nb(_cell("f()", error("bad 3"))))
    other = compare_outputs_of(_nb(_cell("f()", error("bad 3"))), _nb(_cell("f()", error("bad 4"))))

    assert same.cells[0]["ok"] and same.cells[0]["kinds"] == ["error"]
    assert other.cells[0]["detail"] == "error: 3 -> 4"


def test_a_widget_compares_by_its_saved_state_with_ids_and_run_ids_ignored() -> None:
    def run(model: str, run_id: str, value: int) -> dict[str, Any]:
        view = {"model_id": model, "version_major": 2, "version_minor": 0}
        state = {
            model: {
                "model_name": "IntSliderModel",
                "state": {"value": value, "description": f"run {run_id}", "layout": f"IPY_MODEL_{model}x"},
            }
        }
        nb = _nb(_cell("slider", _result(**{"application/vnd.jupyter.widget-view+json": view})))
        nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
        return nb

    same = compare_outputs_of(run("aa11", "0" * 32, 3), run("bb22", "f" * 32, 3))
    other = compare_outputs_of(run("aa11", "0" * 32, 3), run("bb22", "f" * 32, 4))

    assert same.cells[0]["ok"] and same.cells[0]["kinds"] == ["widget"]
    assert other.cells[0]["detail"] == "widget state.value: 3 -> 4"


def test_tables_compare_cell_by_cell_within_tolerance() -> None:
    def frame(x: str, when: str) -> dict[str, Any]:
        html = (
            "<table><thead><tr><th></th><th>loss</th><th>saved</th></tr></thead>"
            f"<tbody><tr><th>0</th><td>{x}</td><td>{when}</td></tr></tbody></table>"
        )
        return _cell("df", _result(**{"text/html": html, "text/plain": "df"}))

    noise = compare_outputs_of(
        _nb(frame("0.250000000001", "2024-05-01 12:00:03")), _nb(frame("0.25", "2025-01-02 08:01:00"))
    )
    changed = compare_outputs_of(_nb(frame("0.25", "x")), _nb(frame("0.31", "x")))

    assert noise.cells[0]["ok"] and noise.cells[0]["kinds"] == ["table"]
    assert changed.cells[0]["detail"] == "table row 1, column 'loss': 0.25 -> 0.31"
