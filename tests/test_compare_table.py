"""The compare view's runs table, metric histories and output gallery (``nbtrack.server.compare``).

Real things only: a git + DVC project, a real SQLite MLflow store in ``tmp_path``, runs tracked by
``%track start``/``stop`` in the in-process shell, each logging a per-epoch metric through MLflow's
fluent API inside the tracked run; the saved notebook on disk carries an image output (what the
gallery shows).
"""

from __future__ import annotations

import base64
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import git, make_project

from nbtrack.config import NbtrackConfig
from nbtrack.errors import UsageError
from nbtrack.runs.table import TableQuery
from nbtrack.server import compare
from nbtrack.server.service import NbtrackService

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 16).decode()
LRS = (0.1, 0.2, 0.3)


@dataclass
class Compared:
    root: Path  # the server root, holding proj/
    project: Path
    ids: list[str]  # nb.ipynb's runs, lr 0.1, 0.2, 0.3 (oldest first)
    other: str  # other.ipynb's run


def saved_notebook(path: Path, plot_source: str) -> Path:
    """A notebook file whose plotting cell has an image output (as Lab saves it)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    nb = new_notebook()
    nb.cells.append(new_code_cell("lr = 0.1", id="params"))
    cell = new_code_cell(plot_source, id="plot")
    cell.outputs = [new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})]
    nb.cells.append(cell)
    nb.cells.append(new_code_cell("print('done')", id="end"))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def track(shell: Any, nb: Path, name: str, lr: float, tag: str | None = None) -> str:
    """A tracked run logging ``lr`` and a 3-epoch ``loss``; its id."""
    assert shell.run_cell(f"%track start --name {name} --notebook {nb}", store_history=True).success
    code = (
        f"import mlflow\nmlflow.log_param('lr', {lr})\n"
        f"for epoch in range(3):\n    mlflow.log_metric('loss', {lr} * (3 - epoch), step=epoch)\n"
    )
    if tag:
        code += f"mlflow.set_tag('team', {tag!r})\n"
    assert shell.run_cell(code, store_history=True).success
    assert shell.run_cell("%track stop", store_history=True).success
    return str(shell._nbtrack_tracker.last["run_id"])


def compared_project(shell: Any, root: Path, monkeypatch: pytest.MonkeyPatch) -> Compared:
    """``root/proj`` with three runs of nb.ipynb (lr 0.1/0.2/0.3) and one of other.ipynb."""
    project = make_project(root / "proj", rows=50)
    nb = saved_notebook(project / "nb.ipynb", "plot(lr)")
    other = saved_notebook(project / "other.ipynb", "plot(2)")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "notebooks")
    monkeypatch.chdir(project)
    ids = [track(shell, nb, f"lr{lr}", lr, tag="churn" if lr == 0.3 else None) for lr in LRS]
    other_id = track(shell, other, "other", 0.5)
    return Compared(root, project, ids, other_id)


@pytest.fixture
def compared(shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Compared:
    return compared_project(shell, tmp_path / "root", monkeypatch)


def _service(root: Path) -> NbtrackService:
    return NbtrackService(str(root), NbtrackConfig())


def test_the_table_shows_varying_columns_sorted_filtered_and_searched(compared: Compared) -> None:
    service = _service(compared.root)
    # Given a notebook's three runs, when the compare view asks for its table
    page = compare.table(
        service, "proj/nb.ipynb", "notebook", None, TableQuery(sort="metrics.loss.min", order="asc")
    )
    # Then only the varying columns come back (plus name and status), lr as a number column
    keys = [c["key"] for c in page["columns"]]
    assert {
        "run.name",
        "run.status",
        "params.lr",
        "metrics.loss.last",
        "metrics.loss.min",
        "tags.team",
    } <= set(keys)
    assert "data.version" not in keys and "git.commit" not in keys  # the same data and commit
    assert next(c for c in page["columns"] if c["key"] == "params.lr")["kind"] == "number"
    assert page["total"] == 3 and page["scope"] == "notebook" and page["is_server"] is False
    # sorted by the metric's minimum, ascending: lr 0.1's loss went down to 0.1
    rows = page["rows"]
    assert [r["run_id"] for r in rows] == compared.ids
    first = rows[0]["values"]
    assert first["metrics.loss.min"] == pytest.approx(0.1) and first["metrics.loss.max"] == pytest.approx(0.3)
    assert first["metrics.loss.last"] == pytest.approx(0.1) and first["params.lr"] == "0.1"
    # every column exists on request, with the data hash and the commit (not varying)
    full = compare.table(service, "proj/nb.ipynb", "notebook", None, TableQuery(columns="all"))
    data = {c["key"]: c for c in full["columns"]}
    assert data["data.version"]["varies"] is False and data["git.commit"]["varies"] is False
    values = full["rows"][0]["values"]
    assert len(values["data.version"]) == 8 and len(values["git.commit"]) == 7
    assert values["git.dirty"] is False and values["nbtrack.replay"] is None
    assert not any(k.startswith(("tags.mlflow.", "tags.nbtrack.")) for k in values)
    # MLflow's filter syntax, text search, paging
    found = compare.table(service, "proj/nb.ipynb", "notebook", "params.lr = '0.2'", TableQuery())
    assert [r["run_id"] for r in found["rows"]] == [compared.ids[1]]
    found = compare.table(service, "proj/nb.ipynb", "notebook", "metrics.loss < 0.25", TableQuery())
    assert {r["run_id"] for r in found["rows"]} == {compared.ids[0], compared.ids[1]}
    assert compare.table(service, "proj/nb.ipynb", "notebook", None, TableQuery(q="CHURN"))["total"] == 1
    paged = compare.table(service, "proj/nb.ipynb", "notebook", None, TableQuery(offset=1, limit=1))
    assert paged["total"] == 3 and len(paged["rows"]) == 1
    # the project's scope holds the other notebook's run too
    project = compare.table(service, "proj/nb.ipynb", "project", None, TableQuery())
    assert project["total"] == 4 and "run.notebook" in {c["key"] for c in project["columns"]}


def test_special_filters_and_bad_requests(compared: Compared) -> None:
    service = _service(compared.root)
    nb = "proj/nb.ipynb"
    same = compare.table(service, nb, "project", None, TableQuery(same_data=compared.ids[0]))
    assert same["total"] == 4  # every run read the same DVC data
    clean = compare.table(service, nb, "notebook", None, TableQuery(only=["clean_git"]))
    assert clean["total"] == 3
    assert compare.table(service, nb, "notebook", None, TableQuery(only=["reproduced"]))["total"] == 0
    with pytest.raises(UsageError, match=r"^filter 'params.lr =' is not valid: .*MLflow's search syntax"):
        compare.table(service, nb, "notebook", "params.lr = ", TableQuery())
    with pytest.raises(UsageError, match="only='fast'"):
        compare.table(service, nb, "notebook", None, TableQuery(only=["fast"]))
    with pytest.raises(UsageError, match=r"sort='metrics\.nope\.last' is no column"):
        compare.table(service, nb, "notebook", None, TableQuery(sort="metrics.nope.last"))


def test_csv_histories_and_gallery(compared: Compared) -> None:
    service = _service(compared.root)
    nb = "proj/nb.ipynb"
    # CSV: every row, the columns asked in order, labels as header
    text = compare.table_as_csv(service, nb, "notebook", None, TableQuery(limit=1), ["run.name", "params.lr"])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["run_id", "Name", "lr"] and len(rows) == 4
    # histories: every step of the loss, in step order
    reply = compare.histories(service, nb, ",".join(compared.ids[:2]), None)
    assert reply["keys"] == ["loss"]
    loss = reply["histories"][compared.ids[0]]["loss"]
    assert [p[0] for p in loss] == [0, 1, 2] and loss[0][1] == pytest.approx(0.3) and loss[0][2] > 0
    # gallery: the plotting cell is chosen by default (the last one with an image), one figure a run
    gallery = compare.gallery(service, nb, ",".join([*compared.ids, compared.other]), None, "saved")
    assert gallery["cell"] == "plot"
    assert [c["key"] for c in gallery["cells"]] == ["params", "plot", "end"]
    assert next(c for c in gallery["cells"] if c["key"] == "plot")["outputs"] == 4
    assert [r["outputs"][0]["data"]["image/png"] for r in gallery["runs"]] == [PNG] * 4
    assert all(r["missing"] is None and r["source"] == "saved" for r in gallery["runs"])
    # the history holds no outputs: the default source falls back to the saved notebook, and says so
    fallback = compare.gallery(service, nb, compared.ids[0], "plot", None)
    assert fallback["runs"][0]["source"] == "saved" and fallback["runs"][0]["outputs"]
    with pytest.raises(UsageError, match="cell='nope' is no cell"):
        compare.gallery(service, nb, compared.ids[0], "nope", None)


@pytest.mark.kernel
def test_track_compare_and_runs_frame_in_a_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_frontend import WIDGET_VIEW, Lab, displays, kernel_env, nbtrack_msgs, own_jupyter_dirs, text_of

    # Given a notebook whose kernel has the panel connected, and two runs with different params
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb_path = saved_notebook(root / "train.ipynb", "plot(lr)")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    own_jupyter_dirs(tmp_path, monkeypatch)
    with Lab(root, kernel_env(tmp_path)) as lab:
        lab.load_nbtrack()
        lab.send({"type": "path", "path": "train.ipynb", "abs_path": str(nb_path)})
        ids = []
        for lr in (0.1, 0.2):
            lab.execute(f"%track start --name lr{lr}")
            lab.execute(
                f"import mlflow\nfor e in range(3):\n    mlflow.log_metric('loss', {lr} * (3 - e), step=e)"
            )
            lab.execute(f"mlflow.log_param('lr', {lr})")
            reply, stopped = lab.execute("%track stop")
            assert reply["status"] == "ok", text_of(stopped, "stderr")
            ids.append(nbtrack_msgs(stopped, lab.comm_id)[0]["run_id"])
        # Then the run card carries the "Compare runs" button the panel listens to
        (card,) = displays(stopped)
        assert f'class="nbtrack-open-compare" data-nbtrack-run="{ids[1]}"' in card["text/html"]
        assert f'data-nbtrack-notebook="{nb_path}"' in card["text/html"]
        # When `%track compare` runs
        reply, shown = lab.execute("%track compare")
        assert reply["status"] == "ok", text_of(shown, "stderr")
        # Then it displays a widget whose table has the varying columns, newest run first
        (table,) = displays(shown)
        assert WIDGET_VIEW in table
        states = [m["content"]["data"]["state"] for m in shown if m["msg_type"] == "comm_open"]
        (page,) = [s["value"] for s in states if "nbtrack-compare" in str(s.get("value", ""))]
        assert "<th title='params.lr'>lr</th>" in page and "<th title='metrics.loss.min'>" in page
        assert page.index(ids[1]) < page.index(ids[0]) and "2 run(s)" in page
        reply, shown = lab.execute("%track compare --last 1 --all-columns")
        (page,) = [
            m["content"]["data"]["state"]["value"]
            for m in shown
            if m["msg_type"] == "comm_open"
            and "nbtrack-compare" in str(m["content"]["data"]["state"].get("value"))
        ]
        assert "1 run(s)" in page and "<th title='git.commit'>" in page
        # And runs_frame gives the same rows as a DataFrame
        reply, out = lab.execute(
            "import nbtrack\ndf = nbtrack.runs_frame('train.ipynb')\n"
            "print(df.index.tolist(), df['params.lr'].tolist(), df['metrics.loss.min'].round(3).tolist(), "
            "df['run.start'].dtype.kind)"
        )
        assert reply["status"] == "ok", text_of(out, "stderr")
        assert text_of(out).strip() == f"{ids[::-1]} [0.2, 0.1] [0.2, 0.1] M"
