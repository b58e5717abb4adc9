"""The %track magics in an in-process IPython shell (fast; no kernel start-up)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, download_all, make_project, snapshot_of, store_client, write_notebook
from IPython.core.error import UsageError


def run(shell: Any, source: str, cell_id: str | None = None) -> Any:
    result = shell.run_cell(source, store_history=True, cell_id=cell_id)
    return result


def _single_run(root: Path, tmp_path: Path) -> tuple[Any, dict[str, bytes]]:
    client = store_client(root)
    (only,) = all_runs(client)
    return only, download_all(client, only.info.run_id, tmp_path / "dl")


def test_modified_and_missing_data_are_reported(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a DVC-tracked file modified without `dvc add`
    root = make_project(tmp_path / "proj")
    nb = write_notebook(root / "nb.ipynb", ["1 + 1"])
    monkeypatch.chdir(root)
    with open(root / "data" / "churn.csv", "a") as f:
        f.write("1,2.0,3,12,0\n")
    # When a run is tracked
    run(shell, f"%track start --notebook {nb}")
    run(shell, "%track stop")
    # Then its snapshot says modified, and the run is tagged so
    only, files = _single_run(root, tmp_path)
    (output,) = snapshot_of(files)["sections"]["data"]["data"]["outputs"]
    assert output["status"] == "modified"
    assert only.data.tags["nbtrack.data.status"] == "modified"
    # And deleting it gives missing
    (root / "data" / "churn.csv").unlink()
    run(shell, f"%track start --notebook {nb}")
    run(shell, "%track stop")
    latest = all_runs(store_client(root))[0]
    assert latest.data.tags["nbtrack.data.status"] == "missing"


def test_outside_git_and_dvc_still_tracks(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a plain folder
    root = tmp_path / "plain"
    nb = write_notebook(root / "nb.ipynb", ["x = 1"])
    monkeypatch.chdir(root)
    # When a run is tracked
    run(shell, f"%track start --notebook {nb}")
    run(shell, "import mlflow; mlflow.log_metric('m', 3.0)")
    run(shell, "%track stop")
    # Then it finished, with git and data marked absent and why
    only, files = _single_run(root, tmp_path)
    assert only.info.status == "FINISHED"
    assert only.data.metrics == {"m": 3.0}
    sections = snapshot_of(files)["sections"]
    assert sections["git"]["status"] == "absent"
    assert "git init" in sections["git"]["reason"]
    assert sections["data"]["status"] == "absent"
    assert "dvc init" in sections["data"]["reason"]
    assert sections["environment"]["status"] == "ok"
    assert only.data.tags["nbtrack.data.status"] == "absent"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%track stop", "no tracked run is active"),
        ("%track start --bogus", "unrecognized arguments: --bogus"),
        ("%track", "needs a verb"),
        ("%track launch", "invalid choice"),
        ("%track start --tag novalue", "is not KEY=VALUE"),
        ("%track start --notebook /no/such.ipynb", "no such file"),
    ],
)
def test_bad_use_is_a_one_line_usage_error(shell: Any, line: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("track", line.removeprefix("%track").strip())
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)


def test_start_while_active_ends_the_previous_run(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / "nb.ipynb", ["1"])
    monkeypatch.chdir(root)
    run(shell, f"%track start --name first --notebook {nb}")
    run(shell, f"%track start --name second --notebook {nb}")
    assert "ended the previous run first" in capsys.readouterr().out
    run(shell, "%track stop")
    runs = {r.info.run_name: r.info.status for r in all_runs(store_client(root))}
    assert runs == {"first": "FINISHED", "second": "FINISHED"}


def test_cell_magic_fails_the_run_and_reraises(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / "nb.ipynb", ["1"])
    monkeypatch.chdir(root)
    ok = run(shell, f"%%track --name good --notebook {nb}\nimport mlflow\nmlflow.log_metric('v', 1.0)")
    assert ok.success
    bad = run(shell, f"%%track --name bad --notebook {nb}\nraise ValueError('boom')")
    assert isinstance(bad.error_in_exec, ValueError)
    runs = {r.info.run_name: r for r in all_runs(store_client(root))}
    assert runs["good"].info.status == "FINISHED"
    assert runs["good"].data.metrics == {"v": 1.0}
    assert runs["bad"].info.status == "FAILED"


def test_out_of_order_and_edited_cells_are_flagged(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a notebook whose cells ran 1, 3, 2, 3, and whose cell 2 was edited after it ran
    root = make_project(tmp_path / "proj", use_dvc=False)
    cells = ["a = 1", "b = a + 1", "c = b * 10"]
    nb_path = write_notebook(root / "nb.ipynb", cells)
    monkeypatch.chdir(root)
    nb = json.loads(nb_path.read_text())
    ids = [c["id"] for c in nb["cells"]]
    run(shell, f"%track start --notebook {nb_path}")
    for i in (0, 2, 1, 2):
        run(shell, cells[i] if i != 1 else "b = a + 2", cell_id=ids[i])
    # the saved file records the execution counts the kernel gave (as Jupyter saves them)
    for cell, count in zip(nb["cells"], (2, 5, 6), strict=True):
        cell["execution_count"] = count
    nb_path.write_text(json.dumps(nb))
    run(shell, "%track stop")
    # Then the snapshot says so
    only, files = _single_run(root, tmp_path)
    notebook = snapshot_of(files)["sections"]["notebook"]["data"]
    assert notebook["out_of_order"] is True
    assert notebook["edited_after_execution"] == [2]
    assert only.data.tags["nbtrack.out_of_order"] == "true"
    history = json.loads(files["nbtrack/history.ipynb"])
    assert [c["source"] for c in history["cells"]][1:5] == ["a = 1", "c = b * 10", "b = a + 2", "c = b * 10"]


def test_run_all_again_in_one_kernel_is_in_order(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a notebook that starts and stops its own run, run top to bottom twice in one kernel
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb_path = write_notebook(
        root / "nb.ipynb", ["%track start --notebook nb.ipynb", "a = 1", "b = a + 1", "%track stop"]
    )
    monkeypatch.chdir(root)
    nb = json.loads(nb_path.read_text())
    cells = [(c["id"], "".join(c["source"])) for c in nb["cells"]]

    def run_cells(indexes: tuple[int, ...]) -> None:
        for i in indexes:
            assert run(shell, cells[i][1], cell_id=cells[i][0]).success

    run_cells((0, 1, 2, 3))
    run_cells((0, 1, 2, 3))
    # When a third run skips a cell (its state is the earlier pass's)
    run_cells((0, 2, 3))
    # Then the second full pass is in order, the partial one is not
    flags = [r.data.tags["nbtrack.out_of_order"] for r in reversed(all_runs(store_client(root)))]
    assert flags == ["false", "false", "true"]


def test_status_reports_sections(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    root = tmp_path / "plain"
    nb = write_notebook(root / "nb.ipynb", ["1"])
    monkeypatch.chdir(root)
    run(shell, "%track status")
    assert "no active run" in capsys.readouterr().out
    run(shell, f"%track start --notebook {nb}")
    run(shell, "%track status")
    out = capsys.readouterr().out
    assert "notebook: " in out and "found by explicit" in out
    assert "git: absent - not a git repository" in out
    run(shell, "%track stop")
