"""What really ran: papermill's executed notebook, ``papermill --cwd``, nbconvert and nbclient runs.

Real kernels started by the real ``papermill`` / ``jupyter nbconvert`` commands (and nbclient's API
from a script), a real git repository and the project's real embedded SQLite store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, download_all, make_project, snapshot_of, store_client, write_notebook

pytestmark = pytest.mark.kernel

BIN = Path(sys.executable).parent
NOTEBOOK = [
    "%load_ext nbtrack",
    ("parameters", "threshold = 30"),
    "%track start --experiment pm",
    "import os\nprint('threshold is', threshold)\nprint('cwd', os.getcwd())",
    "%track stop",
    "print('after stop')",
]

PLAIN = ["%load_ext nbtrack", "%track start --experiment plain", "print('hello')", "%track stop"]


def _run(cmd: list[str] | str, cwd: Path) -> None:
    done = subprocess.run(
        cmd, cwd=cwd, shell=isinstance(cmd, str), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _project(tmp_path: Path) -> tuple[Path, Path]:
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb_path = write_notebook(root / "nb" / "train.ipynb", NOTEBOOK)
    (root / "work").mkdir()
    return root, nb_path


def _tracked(root: Path, dest: Path) -> list[tuple[Any, dict[str, bytes]]]:
    """Every run of the project's store (newest first) with its artifacts."""
    client = store_client(root)
    runs = all_runs(client)
    return [(run, download_all(client, run.info.run_id, dest / run.info.run_id)) for run in runs]


def _code(nb: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _text(cell: dict[str, Any]) -> str:
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []))


def test_papermill_run_keeps_the_executed_notebook_and_its_input(tmp_path: Path) -> None:
    # Given a project notebook with a parameters cell
    root, nb_path = _project(tmp_path)
    given = nb_path.read_bytes()
    # When the papermill command runs it with -p, relative paths from the project folder
    _run([str(BIN / "papermill"), "nb/train.ipynb", "out.ipynb", "-p", "threshold", "12"], cwd=root)
    # Then notebook.ipynb is the executed notebook as of %track stop: the injected parameters, the
    # outputs so far, nothing after the stop
    ((run, files),) = _tracked(root, tmp_path / "artifacts")
    assert run.info.status == "FINISHED" and run.data.params["threshold"] == "12"
    executed = json.loads(files["nbtrack/notebook.ipynb"])
    cells = _code(executed)
    injected = next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))
    assert "threshold = 12" in "".join(injected["source"])
    shown = next(c for c in cells if "print('threshold is'" in "".join(c["source"]))
    assert "threshold is 12" in _text(shown) and shown["execution_count"] is not None
    assert _text(cells[-1]) == ""  # the cell after %track stop had not run yet
    assert "threshold is 12" in files["nbtrack/notebook.html"].decode()
    # And the input notebook is kept beside it, byte for byte, with its rendering
    assert files["nbtrack/notebook.input.ipynb"] == given
    assert b"<html" in files["nbtrack/notebook.input.html"]
    section = snapshot_of(files)["sections"]["notebook"]["data"]
    assert section["method"] == "papermill" and section["relpath"] == "nb/train.ipynb"
    assert section["executed"]["stored"] is True
    assert section["executed"]["path"] == str(root / "out.ipynb")
    # (the executed notebook's counts are the kernel's: nothing looks edited after execution)
    assert section["edited_after_execution"] == [] and section["out_of_order"] is False


def test_papermill_cwd_does_not_lose_the_notebook(tmp_path: Path) -> None:
    # Given a notebook run from the project folder in another working directory
    root, _ = _project(tmp_path)
    # When papermill gets a relative --cwd (started without a shell) and an absolute one (from a
    # shell that cd'ed into the project folder)
    _run([str(BIN / "papermill"), "--cwd", "work", "nb/train.ipynb", "out1.ipynb"], cwd=root)
    _run(f"cd {root} && {BIN / 'papermill'} --cwd {root / 'work'} nb/train.ipynb out2.ipynb", cwd=tmp_path)
    # Then both runs found the notebook and kept what ran, in the kernel's --cwd
    runs = _tracked(root, tmp_path / "artifacts")
    assert len(runs) == 2
    for run, files in runs:
        assert run.data.tags["mlflow.source.name"] == "nb/train.ipynb"
        snapshot = snapshot_of(files)
        assert snapshot["run"]["notebook_method"] == "papermill"
        assert snapshot["run"]["papermill"]["launch_dir"] == str(root)
        assert snapshot["sections"]["notebook"]["data"]["executed"]["stored"] is True
        cells = _code(json.loads(files["nbtrack/notebook.ipynb"]))
        shown = next(c for c in cells if "print('cwd'" in "".join(c["source"]))
        assert f"cwd {root / 'work'}" in _text(shown)
    outs = {json.loads(f["nbtrack/snapshot.json"])["run"]["papermill"]["output_path"] for _, f in runs}
    assert outs == {str(root / "out1.ipynb"), str(root / "out2.ipynb")}


def test_nbconvert_execute_finds_the_notebook(tmp_path: Path) -> None:
    # Given a notebook without parameters
    root = make_project(tmp_path / "proj", use_dvc=False)
    write_notebook(root / "nb" / "train.ipynb", PLAIN)
    # When `jupyter nbconvert --execute` runs it
    _run(
        [
            str(BIN / "jupyter"),
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "nb/train.ipynb",
            "--output",
            "x.ipynb",
        ],
        cwd=root,
    )
    # Then the notebook was found from nbconvert's command line, and the snapshot says why the
    # executed notebook could not be kept (nbconvert writes it only at the end)
    ((run, files),) = _tracked(root, tmp_path / "artifacts")
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.source.name"] == "nb/train.ipynb"
    snapshot = snapshot_of(files)
    assert snapshot["run"]["notebook_method"] == "nbconvert"
    executed = snapshot["sections"]["notebook"]["data"]["executed"]
    assert executed["stored"] is False and "only when execution ends" in executed["reason"]
    assert "nbtrack/notebook.input.ipynb" not in files


def test_nbclient_from_a_script_says_how_to_pass_the_notebook(tmp_path: Path) -> None:
    # Given a script that executes the notebook through nbclient's API (no path on any command line)
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb_path = write_notebook(root / "nb" / "train.ipynb", PLAIN)
    script = root / "go.py"
    script.write_text(
        "import nbformat, sys\nfrom nbclient import NotebookClient\n"
        f"nb = nbformat.read({str(nb_path)!r}, as_version=4)\n"
        f"NotebookClient(nb, resources={{'metadata': {{'path': {str(nb_path.parent)!r}}}}}).execute()\n"
    )
    # When it runs
    _run([sys.executable, str(script)], cwd=root)
    # Then the run is tracked without its notebook, and the reason says how to give it
    ((run, files),) = _tracked(root, tmp_path / "artifacts")
    assert run.info.status == "FINISHED"
    section = snapshot_of(files)["sections"]["notebook"]
    assert section["status"] != "ok"
    assert "names no notebook" in section["reason"] and "%track start --notebook PATH" in section["reason"]
    assert os.path.basename(sys.executable) in section["reason"]
