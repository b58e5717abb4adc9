"""The notebook diff of two runs (nbdime), on runs real kernels tracked: the Python result, the
``GET /nbtrack/nbdiff`` endpoint of a real Jupyter server, and ``nbtrack diff A B --html FILE``.

Run A draws a red line; run B is given ``color = "blue"`` by papermill, which inserts an
``injected-parameters`` cell, so every later cell of B runs with an execution count one higher:
the diff must show the inserted cell and the changed figure, and nothing for the cells whose code
and outputs are the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import git, make_project
from server_helpers import track
from tornado.httpclient import HTTPClientError

from nbtrack.cli import main
from nbtrack.config import NbtrackConfig
from nbtrack.runs.nbdiff import MissingNotebookError, runs_nbdiff
from nbtrack.runs.service import Runs

pytestmark = pytest.mark.kernel

CELLS = [
    ("code", "%load_ext nbtrack", []),
    ("code", "color = 'red'", ["parameters"]),
    ("code", "%track start --experiment nbdiff --name plot", []),
    ("markdown", "# Loss curve\nThe **plot** below changes with `color`.", []),
    ("code", "print('hello from an unchanged cell')", []),
    (
        "code",
        "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\nplt.figure(figsize=(2, 2))\n"
        "plt.plot([0, 1, 2], [2, 1, 0], color=color)\n"
        "plt.show()",
        [],
    ),
    ("code", "%track stop", []),
]


def _write(path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    nb = new_notebook()
    for kind, source, tags in CELLS:
        make = new_code_cell if kind == "code" else new_markdown_cell
        nb.cells.append(make(source, metadata={"tags": tags} if tags else {}))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


class Plotted:
    def __init__(self, root: Path, project: Path, red: str, blue: str) -> None:
        self.root, self.project, self.red, self.blue = root, project, red, blue


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plotted]:
    base = tmp_path_factory.mktemp("nbdiff")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "NBTRACK_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(name, raising=False)
        mp.setenv("JUPYTER_DATA_DIR", str(base / "jupyter-data"))
        mp.setenv("DVC_NO_ANALYTICS", "1")
        project = make_project(base / "root" / "proj", use_dvc=False, rows=20)
        _write(project / "plot.ipynb")
        git(project, "add", "-A")
        git(project, "commit", "-q", "-m", "plot")
        red = track(project, "plot.ipynb")
        blue = track(project, "plot.ipynb", {"color": "blue"})
        yield Plotted(base / "root", project, red, blue)


def _found(plotted: Plotted) -> tuple[Any, Any]:
    runs = Runs(NbtrackConfig())
    target = runs.locate(project=plotted.project)
    return runs.resolve(target, plotted.red), runs.resolve(target, plotted.blue[:8])


def _cell_ops(diff: list[Any]) -> list[dict[str, Any]]:
    return next(e["diff"] for e in diff if e["key"] == "cells")


def test_the_diff_ignores_execution_counts_and_shows_the_changed_figure(plotted: Plotted) -> None:
    red, blue = _found(plotted)
    reply = runs_nbdiff(red, blue, "saved", "saved").to_dict()
    base, ops = reply["base"], _cell_ops(reply["diff"])
    sources = ["".join(c["source"]) for c in base["cells"]]
    unchanged = sources.index("print('hello from an unchanged cell')")
    plot = next(i for i, s in enumerate(sources) if "plt.plot" in s)
    patched = {op["key"]: op["diff"] for op in ops if op["op"] == "patch"}
    # papermill's injected cell is the one cell added; the unchanged cell (its count moved) is no change
    added = [cell for op in ops if op["op"] == "addrange" for cell in op["valuelist"]]
    assert len(added) == 1 and "blue" in "".join(added[0]["source"])
    assert unchanged not in patched
    assert all(c["execution_count"] is None for c in base["cells"] if c["cell_type"] == "code")
    # the figure's cell changed in its outputs (a new PNG), not in its code
    assert {d["key"] for d in patched[plot]} == {"outputs"}
    assert "image/png" in json.dumps(patched[plot])
    assert base["metadata"] == {} and all(c["metadata"] == {} for c in base["cells"])
    assert reply["a"]["kind"] == "saved" and reply["a"]["run_id"] == plotted.red
    assert "saved" in reply["available"]["a"] and "live" not in reply["available"]["b"]
    # the same notebook on both sides: no difference at all
    assert runs_nbdiff(red, red).diff == []


def test_a_side_the_run_did_not_record_names_the_kinds_it_has(plotted: Plotted) -> None:
    red, blue = _found(plotted)
    with pytest.raises(MissingNotebookError, match=r"no live editor content .* it recorded: saved"):
        runs_nbdiff(red, blue, "live", "saved")


def test_html_page_is_self_contained(
    plotted: Plotted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "diff.html"
    argv = ["--project", str(plotted.project), "diff", plotted.red[:8], plotted.blue[:8], "--html", str(out)]
    assert main(argv) == 0
    assert str(out) in capsys.readouterr().out
    page = out.read_text()
    assert "<h1>Loss curve</h1>" in page and "<strong>plot</strong>" in page  # rendered markdown
    assert page.count("data:image/png;base64,") >= 2  # the figure of each side
    assert "<details" in page  # unchanged cells collapsed
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    # without --html, the plain-text diff is as it was
    assert main(["--project", str(plotted.project), "diff", plotted.red, plotted.blue]) == 0
    assert "<" not in capsys.readouterr().out.split("\n")[0]
    # a side the run lacks: one line, the snapshot family's exit code
    assert main([*argv, "--side-a", "live"]) == MissingNotebookError.exit_code
    assert "it recorded" in capsys.readouterr().err


# --- REST ----------------------------------------------------------------------------------------------
@pytest.fixture
def jp_root_dir(plotted: Plotted) -> Path:
    return plotted.root


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbtrack": True}}}


async def test_rest_nbdiff(jp_fetch: Any, plotted: Plotted) -> None:
    params = {"notebook": "proj/plot.ipynb", "a": plotted.red[:8], "b": plotted.blue}
    response = await jp_fetch("nbtrack", "nbdiff", params=params)
    reply = json.loads(response.body)
    assert set(reply) == {"base", "diff", "a", "b", "available"}
    assert reply["a"]["run_id"] == plotted.red and reply["b"]["kind"] == "saved"
    assert any(op["op"] == "patch" for op in _cell_ops(reply["diff"]))
    for bad, status in (({"side_b": "live"}, 404), ({"side_a": "nope"}, 400), ({"b": "xyz"}, 400)):
        with pytest.raises(HTTPClientError) as caught:
            await jp_fetch("nbtrack", "nbdiff", params={**params, **bad})
        assert caught.value.code == status, bad
        assert caught.value.response is not None
        assert "\n" not in json.loads(caught.value.response.body)["message"]
