"""True status: a run whose cell raised ends FAILED (naming the user's cell), a killed kernel's KILLED;
a replay names the user's cell and expects the errors the original had.

Real kernels (papermill, nbclient, a jupyter_client kernel driven the way JupyterLab drives it), real
git repositories and real SQLite MLflow stores.
"""

from __future__ import annotations

import json
import os
import queue
import time
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import all_runs, download_all, git, make_project, snapshot_of, store_client, write_notebook

import nbtrack
from nbtrack.runner import ExecutionFailed, execute_notebook

pytestmark = pytest.mark.kernel

FAILURE_TAG = "nbtrack.failure"


def _project(tmp_path: Path, cells: list[Any], *, markdown_first: bool = True) -> Path:
    """A git project holding one notebook (a markdown title first: the user's cell numbers count
    code cells only)."""
    root = make_project(tmp_path / "proj", use_dvc=False)
    path = write_notebook(root / "nb.ipynb", cells)
    if markdown_first:
        nb = nbformat.read(str(path), as_version=4)
        nb.cells.insert(0, nbformat.v4.new_markdown_cell("# A title"))
        nbformat.write(nb, str(path))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    return root


def _only_run(root: Path, tmp_path: Path) -> tuple[Any, dict[str, bytes]]:
    client = store_client(root)
    (run,) = all_runs(client)
    return run, download_all(client, run.info.run_id, tmp_path / f"dl-{uuid.uuid4().hex[:6]}")


def _history_cells(files: dict[str, bytes]) -> list[dict[str, Any]]:
    history = nbformat.reads(files["nbtrack/history.ipynb"].decode(), as_version=4)
    nbformat.validate(history)
    return [{"source": c.source, **c.metadata["nbtrack"]} for c in history.cells]


PAPERMILL_FAILS = [
    "%load_ext nbtrack",
    ("parameters", "n = 1"),
    "%track start --experiment status --name boom",
    "import mlflow\nmlflow.log_metric('m', n)",
    "# the culprit\nz = {}['missing']",
    "%track stop",
]


def test_raising_cell_under_papermill_ends_the_run_failed_naming_the_users_cell(tmp_path: Path) -> None:
    # Given a notebook whose fifth code cell raises (after a markdown title, with papermill
    # injecting a parameters cell: papermill's own index of the culprit is 5, 0-based)
    root = _project(tmp_path, PAPERMILL_FAILS)
    # When papermill executes it, stopping at that cell (so `%track stop` never runs)
    with pytest.raises(ExecutionFailed):
        execute_notebook(root / "nb.ipynb", tmp_path / "out.ipynb", parameters={"n": 2}, cwd=root)
    # Then the run ended FAILED, the tag and the snapshot name the user's cell 5 and the exception
    run, files = _only_run(root, tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags[FAILURE_TAG] == "cell 5 raised KeyError: 'missing' (in `# the culprit`)"
    snapshot = snapshot_of(files)
    assert snapshot["run"]["phase"] == "end" and snapshot["run"]["status"] == "FAILED"
    assert snapshot["run"]["ended_by"] == "kernel exit"
    failure = snapshot["run"]["failure"]
    assert (failure["cell"], failure["source_head"]) == (5, "# the culprit")
    assert (failure["ename"], failure["evalue"]) == ("KeyError", "'missing'")
    # and the end capture happened: the metric, the params and the history with the failing cell
    assert run.data.metrics["m"] == 2
    assert run.data.params["n"] == "2"
    cells = _history_cells(files)
    assert cells[-1]["source"] == "# the culprit\nz = {}['missing']"
    assert (cells[-1]["status"], cells[-1]["error"], cells[-1]["evalue"]) == (
        "error",
        "KeyError",
        "'missing'",
    )
    assert all(c["status"] == "ok" for c in cells[:-1])


def test_raising_cell_under_nbclient_ends_the_run_failed(tmp_path: Path) -> None:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    # Given a notebook that names itself (nbclient tells the kernel nothing) and divides by zero
    cells = [
        "%load_ext nbtrack",
        "%track start --experiment status --name nbc --notebook nb.ipynb",
        "x = 1",
        "ratio = x / 0",
        "%track stop",
    ]
    root = _project(tmp_path, cells, markdown_first=False)
    nb = nbformat.read(str(root / "nb.ipynb"), as_version=4)
    # When nbclient executes it (it stops at the error and shuts the kernel down)
    client = NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(root)}})
    with pytest.raises(CellExecutionError):
        client.execute()
    # Then the run is FAILED with cell 4 and its exception, and the history and snapshot were logged
    run, files = _only_run(root, tmp_path)
    assert run.info.status == "FAILED"
    assert (
        run.data.tags[FAILURE_TAG] == "cell 4 raised ZeroDivisionError: division by zero (in `ratio = x / 0`)"
    )
    failure = snapshot_of(files)["run"]["failure"]
    assert (failure["cell"], failure["ename"]) == (4, "ZeroDivisionError")
    assert _history_cells(files)[-1]["status"] == "error"
    assert "nbtrack/notebook.ipynb" in files


class LabKernel:
    """A kernel as JupyterLab runs one: started with the notebook's path in ``JPY_SESSION_NAME``,
    executing cells with their cell ids, shut down with a shutdown request (graceful)."""

    def __init__(self, root: Path, notebook: Path) -> None:
        from jupyter_client import KernelManager

        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NBTRACK_", "JPY_"))}
        env["JPY_SESSION_NAME"] = str(notebook)
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(root), env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str, cell_id: str | None = None) -> dict[str, Any]:
        """Execute a cell as JupyterLab does (its cell id in the request's metadata); the reply."""
        msg = self.kc.session.msg(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
            },
            metadata={"cellId": cell_id} if cell_id else {},
        )
        self.kc.shell_channel.send(msg)
        while True:
            reply = self.kc.get_shell_msg(timeout=300)
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                return dict(reply["content"])

    def shut_down(self) -> tuple[float, list[dict[str, Any]]]:
        """Shut the kernel down as the server does when the notebook is closed; the seconds it took
        and the nbtrack comm messages it sent meanwhile."""
        t0 = time.perf_counter()
        self.km.shutdown_kernel(now=False)
        took = time.perf_counter() - t0
        sent = []
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                break
            if msg["msg_type"] == "comm_msg":
                sent.append(msg["content"]["data"])
        self.kc.stop_channels()
        return took, sent

    def close(self) -> None:
        self.kc.stop_channels()
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=True)


def _lab_notebook(root: Path, cells: list[str]) -> tuple[Path, list[str]]:
    """Save a notebook with these code cells (as JupyterLab would) and return the cells' ids."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = root / "lab.ipynb"
    nbformat.write(nb, str(path))
    return path, [c.id for c in nb.cells]


def test_a_lab_kernel_shut_down_after_a_raising_cell_ends_the_run_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a JupyterLab kernel whose last cell in a tracked run raised
    root = make_project(tmp_path / "proj", use_dvc=False)
    cells = [
        "%load_ext nbtrack",
        "%track start --experiment lab --name broken",
        "x = 1",
        "print(undefined_name)",
    ]
    path, ids = _lab_notebook(root, cells)
    kernel = LabKernel(root, path)
    try:
        for code, cell_id in zip(cells, ids, strict=True):
            kernel.run(code, cell_id)
        assert all_runs(store_client(root))[0].info.status == "RUNNING"
        # When the notebook is closed and its kernel shut down (no `%track stop`)
        took, sent = kernel.shut_down()
    finally:
        kernel.close()
    with capsys.disabled():
        print(f"\n[true status] a lab kernel's graceful shutdown with the end capture: {took:.2f} s")
    # Then the run is FAILED at once (not RUNNING until a listing looks), naming cell 4 by its id
    run, files = _only_run(root, tmp_path)
    assert run.info.status == "FAILED"
    failure = snapshot_of(files)["run"]["failure"]
    assert (failure["cell"], failure["cell_id"], failure["ename"]) == (4, ids[3], "NameError")
    assert failure["source_head"] == "print(undefined_name)"
    assert "history.ipynb" in " ".join(files)
    # and the panel was told the run finished
    assert {"type": "run_finished", "run_id": run.info.run_id, "status": "FAILED"}.items() <= next(
        m for m in sent if m.get("type") == "run_finished"
    ).items()


def test_a_killed_kernel_whose_last_cell_raised_is_killed_not_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_orphans import Kernel, by_name, runs_cli

    # Given a kernel in a tracked run whose last cell raised
    root = make_project(tmp_path / "proj", use_dvc=False)
    kernel = Kernel(root)
    try:
        kernel.run("%load_ext nbtrack")
        kernel.run("%track start --experiment status --name doomed")
        reply = kernel.kc.execute_interactive("1 / 0", timeout=180)
        assert reply["content"]["status"] == "error"
        # When the kernel is killed outright (no exit handler runs)
        kernel.sigkill()
    finally:
        kernel.close()
    assert by_name(root)["doomed"].info.status == "RUNNING"
    # Then the next look ends it KILLED (it did not end on its own: nobody can say it failed)
    runs_cli(root, capsys)
    run = by_name(root)["doomed"]
    assert run.info.status == "KILLED"
    assert FAILURE_TAG not in run.data.tags


def test_the_exit_rule_an_error_a_later_cell_got_past_does_not_fail_the_run(
    shell: Any, tmp_path: Path
) -> None:
    from nbtrack.magics import stop_and_tell
    from nbtrack.magics.exit import end_at_exit

    root = make_project(tmp_path / "proj", use_dvc=False)
    path = write_notebook(root / "nb.ipynb", ["x = 21", "y = undefined_h3_name * 2"])
    tracker, frontend = shell._nbtrack_tracker, shell._nbtrack_frontend

    def stop(status: str, **kw: Any) -> Any:
        return stop_and_tell(tracker, frontend, status, **kw)

    # Given a tracked run in which a cell raised, then a later cell ran fine
    shell.run_line_magic("track", f"start --experiment rule --name fixed --notebook {path}")
    shell.run_cell("raise ValueError('first try')")
    shell.run_cell("x = 21")
    # When the kernel exits without `%track stop`
    end_at_exit(tracker, stop)
    # Then the run ended FINISHED with its end snapshot
    client = store_client(root)
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED"
    snapshot = snapshot_of(download_all(client, run.info.run_id, tmp_path / "dl"))
    assert snapshot["run"]["ended_by"] == "kernel exit" and "failure" not in snapshot["run"]
    # Given a second run whose last cell raised
    shell.run_line_magic("track", f"start --experiment rule --name broken --notebook {path}")
    shell.run_cell("x = 21")
    shell.run_cell("y = undefined_h3_name * 2")
    end_at_exit(tracker, stop)
    # Then it is FAILED, naming the notebook's cell 2
    broken = next(r for r in all_runs(client) if r.info.run_name == "broken")
    assert broken.info.status == "FAILED"
    assert broken.data.tags[FAILURE_TAG] == (
        "cell 2 raised NameError: name 'undefined_h3_name' is not defined (in `y = undefined_h3_name * 2`)"
    )


# --- replay ----------------------------------------------------------------------------------------
TOKEN_NB = [
    "%load_ext nbtrack",
    ("parameters", "n = 1"),
    "%track start --experiment replay --name token",
    "import os\ntoken = os.environ['H3_TEST_TOKEN']",
    "import mlflow\nmlflow.log_metric('m', n)",
    "%track stop",
]


def test_a_failed_replay_names_the_users_cell_and_its_first_line(tmp_path: Path) -> None:
    # Given a run made with a variable in its kernel's environment that the replay's kernel lacks
    root = _project(tmp_path, TOKEN_NB)
    execute_notebook(root / "nb.ipynb", tmp_path / "out.ipynb", cwd=root, env={"H3_TEST_TOKEN": "t"})
    (run,) = all_runs(store_client(root))
    assert run.info.status == "FINISHED"
    # When it is replayed
    result = nbtrack.replay(run.info.run_id, project=root, say=lambda line: None)
    # Then it FAILED at the user's code cell 4 (papermill counts its injected cell and the title)
    assert result.verdict == "FAILED", result.message
    assert (result.failure["cell"], result.failure["ename"]) == (4, "KeyError")
    assert result.failure["source_head"] == "import os"
    assert "cell 4 raised KeyError" in result.message


def test_a_session_with_an_error_fixed_later_replays_without_a_false_failure(tmp_path: Path) -> None:
    # Given a JupyterLab session that ran a cell before its setup cell (NameError), then fixed it
    root = make_project(tmp_path / "proj", use_dvc=False)
    cells = [
        "%load_ext nbtrack",
        "%track start --experiment replay --name fixed",
        "x = 21",
        "y = x * 2\nimport mlflow\nmlflow.log_metric('y', y)",
        "%track stop",
    ]
    path, ids = _lab_notebook(root, cells)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    kernel = LabKernel(root, path)
    try:
        for i in (0, 1, 3, 2, 3, 4):  # the fourth cell first: it raises
            kernel.run(cells[i], ids[i])
    finally:
        kernel.close()
    client = store_client(root)
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED"
    history = _history_cells(download_all(client, run.info.run_id, tmp_path / "dl"))
    assert [c["status"] for c in history[2:4]] == ["error", "ok"]
    # When it is replayed (from its history: it ran out of order)
    result = nbtrack.replay(run.info.run_id, project=root, say=lambda line: None)
    # Then the cell that raised in the original raised the same way, expected: no false FAILED
    assert result.mode == "history"
    assert result.verdict != "FAILED", result.message
    assert result.failure is None
    assert result.expected_errors == [{"cell": 4, "source_head": "y = x * 2", "ename": "NameError"}]
    assert result.verdict == "REPRODUCED", result.message


def test_replaying_a_failed_run_says_where_the_original_failed(tmp_path: Path) -> None:
    # Given a run that failed under papermill at the user's cell 5
    root = _project(tmp_path, PAPERMILL_FAILS)
    with pytest.raises(ExecutionFailed):
        execute_notebook(root / "nb.ipynb", tmp_path / "out.ipynb", cwd=root)
    (run,) = all_runs(store_client(root))
    assert run.info.status == "FAILED"
    # When it is replayed
    said: list[str] = []
    result = nbtrack.replay(run.info.run_id, project=root, say=said.append)
    # Then the replay says plainly that the original failed there, replays what ran up to it, and
    # the same failure is expected, not a replay failure
    assert result.mode == "history"
    assert "the run failed: cell 5 raised KeyError: 'missing' (in `# the culprit`)" in result.mode_reason
    assert any("the run failed: cell 5" in line for line in said)
    assert result.failure is None, result.message
    assert [e["ename"] for e in result.expected_errors] == ["KeyError"]
    replayed = next(r for r in all_runs(store_client(root)) if r.info.run_id == result.replay_run_id)
    assert replayed.info.status == "FAILED"  # it ended as the original did
    assert json.loads(json.dumps(result.expected_errors))[0]["source_head"] == "# the culprit"
