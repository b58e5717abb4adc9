"""Bad input: each fault caused for real, and what the user sees (issue 5, part 4).

Every row asserts a one-line message that names the object and the fix, and the exit code of the
family (see ``nbtrack.errors``): the CLI prints ``nbtrack: <message>`` and exits with the family's
code, the magics raise a one-line IPython ``UsageError``. Where tracking can go on (no git, no DVC, a
broken ``.dvc`` file, a notebook that cannot be read), the run succeeds and its snapshot says what is
missing and why; the verb that needs the missing part fails instead.

The CLI runs in process (``nbtrack.cli.main``); one test runs it as a subprocess, as a user does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from conftest import all_runs, download_all, make_project, snapshot_of, store_client, write_notebook
from dvc_helpers import git
from IPython.core.error import UsageError

from nbtrack.cli import main

# Faults are put on a run by changing its files in the embedded store's artifact folder, as a user
# (or a disk cleaner) would.
RUN_ID = "0123456789abcdef0123456789abcdef"


# --- helpers -------------------------------------------------------------------------------------
def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``nbtrack ARGS`` in process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The one error line the CLI printed (and nothing else on stderr)."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nbtrack: "), err
    return lines[0]


def magic_error(shell: Any, line: str) -> str:
    """The one-line UsageError ``%track LINE`` raises."""
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("track", line)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def artifact_dir(root: Path, run_id: str) -> Path:
    """Where the embedded store keeps the run's ``nbtrack/`` artifacts."""
    uri = store_client(root).get_run(run_id).info.artifact_uri
    return Path(unquote(urlparse(uri).path)) / "nbtrack"


def track(shell: Any, *lines: str) -> None:
    """Run cells in the shell; each must succeed."""
    for line in lines:
        result = shell.run_cell(line, store_history=True)
        assert result.success, result.error_in_exec or result.error_before_exec


def only_run(root: Path, tmp_path: Path) -> tuple[Any, dict[str, Any], dict[str, bytes]]:
    """The project's one run, its snapshot and its artifacts."""
    client = store_client(root)
    (run,) = all_runs(client)
    files = download_all(client, run.info.run_id, tmp_path / "dl")
    return run, snapshot_of(files), files


@pytest.fixture(autouse=True)
def _no_notebook_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing tells the in-process shell its notebook but ``--notebook``."""
    for name in ("JPY_SESSION_NAME", "NBTRACK_PAPERMILL", "NBTRACK_REPLAY"):
        monkeypatch.delenv(name, raising=False)


# --- a project with tracked runs, faults put on some of them -------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A committed git project (no DVC) with runs good, dirty, gone, future, ancient, damaged, stripped.

    ``dirty`` ran with an untracked module (so it has a ``git.diff``); its ``git.diff`` is deleted.
    ``gone`` has no artifacts at all; ``future`` and ``ancient`` have a snapshot of schema version 999
    and 0; ``damaged`` has a ``notebook.ipynb`` artifact that is not a notebook; ``stripped`` has none.
    """
    from IPython.core.interactiveshell import InteractiveShell

    base = tmp_path_factory.mktemp("bad-input")
    root = make_project(base / "proj", use_dvc=False)
    write_notebook(root / "nb.ipynb", [("parameters", "alpha = 0.5"), "import mlflow"])
    git(root, "add", "nb.ipynb")
    git(root, "commit", "-q", "-m", "notebook")
    ids: dict[str, str] = {}
    with pytest.MonkeyPatch.context() as mp:
        for name in (
            "MLFLOW_TRACKING_URI",
            "NBTRACK_TRACKING_URI",
            "MLFLOW_EXPERIMENT_NAME",
            "NBTRACK_EXPERIMENT",
        ):
            mp.delenv(name, raising=False)
        mp.setenv("NBTRACK_SPOOL_DIR", str(base / "spool"))
        mp.chdir(root)
        shell = InteractiveShell.instance()
        shell.history_manager.reset(new_session=True)
        shell.run_line_magic("load_ext", "nbtrack")
        try:
            for name in ("good", "dirty", "gone", "future", "ancient", "damaged", "stripped"):
                helper = root / "helper.py"
                if name == "dirty":
                    helper.write_text("VALUE = 1\n")
                track(
                    shell,
                    f"%track start --notebook nb.ipynb --name {name}",
                    "alpha = 0.5",
                    "import mlflow; mlflow.log_metric('m', 1.0)",
                    "%track stop",
                )
                helper.unlink(missing_ok=True)
        finally:
            shell.run_line_magic("unload_ext", "nbtrack")
    for run in all_runs(store_client(root)):
        ids[run.info.run_name] = run.info.run_id
    (artifact_dir(root, ids["dirty"]) / "git.diff").unlink()
    gone = artifact_dir(root, ids["gone"])
    for path in sorted(gone.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    gone.rmdir()
    for name, version in (("future", 999), ("ancient", 0)):
        snapshot = artifact_dir(root, ids[name]) / "snapshot.json"
        snapshot.write_text(json.dumps({**json.loads(snapshot.read_text()), "schema_version": version}))
    (artifact_dir(root, ids["damaged"]) / "notebook.ipynb").write_text("<html>not a notebook</html>")
    (artifact_dir(root, ids["stripped"]) / "notebook.ipynb").unlink()
    yield root, ids


# --- corrupt or non-notebook .ipynb --------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"cells": [ {"cell_type": "code"', "is not a notebook (invalid JSON: "),
        ("print('a script, not a notebook')\n", "is not a notebook (invalid JSON: "),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "is not a notebook (invalid JSON: "),
        ('{"name": "package.json"}', "is JSON but not a Jupyter notebook (no cells/nbformat)"),
        ('{"nbformat": 3, "worksheets": []}', "is an nbformat 3 notebook, nbtrack reads nbformat 4"),
    ],
    ids=["truncated", "text", "binary", "other-json", "nbformat-3"],
)
def test_notebook_that_is_not_one_fails_start_and_writes_nothing(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes, expected: str
) -> None:
    # Given a file named .ipynb that is not a notebook
    bad = tmp_path / "bad.ipynb"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.chdir(tmp_path)
    # When a run is started on it
    message = magic_error(shell, "start --notebook bad.ipynb")
    # Then one line names the file and the fix, and no run (nor store) was made
    assert message.startswith(f"%track start: {bad} ")
    assert expected in message
    assert any(fix in message for fix in ("restore it from git", "give the path of the .ipynb", "nbconvert"))
    assert not (tmp_path / ".nbtrack").exists()
    assert shell._nbtrack_tracker.active is None


@pytest.mark.parametrize(
    ("arg", "expected"),
    [("missing.ipynb", "--notebook missing.ipynb: no such file ("), ("folder.ipynb", "is a folder")],
)
def test_notebook_path_that_is_no_file_fails_start(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arg: str, expected: str
) -> None:
    (tmp_path / "folder.ipynb").mkdir()
    monkeypatch.chdir(tmp_path)
    message = magic_error(shell, f"start --notebook {arg}")
    assert expected in message and "give the path of the .ipynb" in message
    assert not (tmp_path / ".nbtrack").exists()


def test_notebook_damaged_during_the_run_keeps_the_run_and_its_history(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run started on a good notebook, whose file is overwritten with garbage before the stop
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / "nb.ipynb", ["x = 1"])
    monkeypatch.chdir(root)
    track(shell, "%track start --notebook nb.ipynb", "x = 1")
    nb.write_text("{ half-written")
    capsys.readouterr()
    track(shell, "%track stop")
    card = capsys.readouterr()
    # Then the run finished; the notebook section failed with a one-line reason naming the file and
    # the fix, printed on the card (no traceback); the execution history is still recorded
    run, snapshot, files = only_run(root, tmp_path)
    assert run.info.status == "FINISHED"
    section = snapshot["sections"]["notebook"]
    assert section["status"] == "error"
    assert section["reason"].startswith(f"{nb} is not a notebook (invalid JSON: ")
    assert section["reason"].endswith("restore it from git or re-save it in Jupyter")
    assert section["data"]["stored"] is False and section["data"]["relpath"] == "nb.ipynb"
    assert f"note: notebook: {section['reason']}" in card.out
    assert "Traceback" not in card.out + card.err
    assert "nbtrack/history.ipynb" in files and "nbtrack/notebook.ipynb" not in files
    # And a replay of the saved notebook says why there is none, and what to do (exit 3)
    code, out, _ = cli(capsys, "--project", str(root), "replay", run.info.run_id, "--mode", "notebook")
    assert code == 3
    assert f"the run's saved notebook was not recorded ({nb} is not a notebook" in out
    assert out.rstrip().endswith("replay with --mode history")


@pytest.mark.kernel
def test_run_whose_notebook_was_damaged_replays_from_its_history(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run whose notebook file was damaged before %track stop
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / "nb.ipynb", ["import mlflow", "mlflow.log_metric('m', 2.0)"])
    git(root, "add", "nb.ipynb")
    git(root, "commit", "-q", "-m", "notebook")
    monkeypatch.chdir(root)
    track(shell, "%load_ext nbtrack", "%track start --notebook nb.ipynb", "import mlflow")
    track(shell, "mlflow.log_metric('m', 2.0)")
    nb.write_bytes(b"\x00" * 64)
    track(shell, "%track stop")
    run, _, _ = only_run(root, tmp_path)
    # When it is replayed (a real kernel, through papermill)
    code, out, _ = cli(capsys, "--project", str(root), "replay", run.info.run_id)
    # Then the recorded history is what runs, and the metric reproduces
    assert code == 0, out
    assert out.startswith(f"REPRODUCED  run {run.info.run_id[:8]}")
    assert "1 metric matches the original" in out
    assert f"mode history (the saved notebook was not recorded ({nb} is not a notebook" in out


# --- notebook path unknown -----------------------------------------------------------------------
def test_notebook_path_unknown_still_tracks_and_says_how_to_give_it(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a kernel nobody told its notebook (no --notebook, no Jupyter server, not papermill)
    root = make_project(tmp_path / "proj", use_dvc=False)
    monkeypatch.chdir(root)
    # When a run is tracked
    track(shell, "%track start")
    started = capsys.readouterr().out
    track(shell, "y = 2", "%track stop")
    card = capsys.readouterr().out
    # Then start and the card say why the notebook is unknown and how to name it
    fix = "pass `%track start --notebook PATH`"
    assert "nbtrack: notebook path unknown (" in started and fix in started
    assert "note: notebook: notebook path unknown (" in card
    # And the run finished, the notebook section absent with that reason, the history kept
    run, snapshot, files = only_run(root, tmp_path)
    assert run.info.status == "FINISHED"
    section = snapshot["sections"]["notebook"]
    assert section["status"] == "absent" and section["reason"].endswith(fix)
    assert "nbtrack/history.ipynb" in files
    # And `nbtrack show` says so; a replay of the saved notebook fails with exit 3
    code, out, _ = cli(capsys, "--project", str(root), "show", run.info.run_id)
    assert code == 0 and "notebook    notebook path unknown (" in out
    code, out, _ = cli(capsys, "--project", str(root), "replay", run.info.run_id, "--mode", "notebook")
    assert code == 3 and "the run's saved notebook was not recorded (notebook path unknown" in out


def test_runs_of_a_notebook_that_does_not_exist(
    runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = runs
    code, _, err = cli(capsys, "--project", str(root), "runs", "--notebook", str(root / "nb2.ipynb"))
    line = one_line(err)
    assert code == 12
    assert "nb2.ipynb" in line and "no such file" in line and "nbtrack runs" in line


# --- not a git repository ------------------------------------------------------------------------
def test_not_a_git_repository_tracks_but_cannot_replay(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a notebook in a plain folder
    root = tmp_path / "plain"
    write_notebook(root / "nb.ipynb", ["z = 3"])
    monkeypatch.chdir(root)
    # When a run is tracked, it finishes with the git section absent and why
    track(shell, "%track start --notebook nb.ipynb", "z = 3", "%track stop")
    run, snapshot, _ = only_run(root, tmp_path)
    assert run.info.status == "FINISHED"
    git_section = snapshot["sections"]["git"]
    assert git_section["status"] == "absent"
    assert git_section["reason"] == (
        f"not a git repository: {root}; run `git init` and commit to record the code version"
    )
    # Then replaying it fails before any kernel starts, in one line naming the fix (exit 3)
    code, out, _ = cli(capsys, "--project", str(root), "replay", run.info.run_id)
    assert code == 3
    assert out.startswith(f"CANNOT_REPLAY  run {run.info.run_id[:8]}")
    reason = out.splitlines()[1].strip()
    assert reason.startswith(f"the run recorded no code version (not a git repository: {root};")
    assert reason.endswith(
        "only runs made in a git repository can be replayed: `git init`, commit, and record the run again"
    )


# --- not a DVC repository; a DVC repository with broken files ------------------------------------
def test_not_a_dvc_repository_tracks_without_data(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(tmp_path / "proj", use_dvc=False)
    write_notebook(root / "nb.ipynb", ["1"])
    monkeypatch.chdir(root)
    track(shell, "%track start --notebook nb.ipynb")
    assert (
        "nbtrack: not captured: data (not a DVC project: no .dvc folder at or above"
        in capsys.readouterr().out
    )
    track(shell, "%track stop")
    run, snapshot, _ = only_run(root, tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["nbtrack.data.status"] == "absent"
    reason = snapshot["sections"]["data"]["reason"]
    assert reason == f"not a DVC project: no .dvc folder at or above {root}; run `dvc init` to track data"
    code, out, _ = cli(capsys, "--project", str(root), "show", run.info.run_id)
    assert code == 0 and f"data        absent: {reason}" in out


def test_broken_dvc_files_are_named_with_their_fix(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbtrack.models import Snapshot
    from nbtrack.replay.workspace import build_workspace

    # Given a committed DVC project whose .dvc files are broken three ways
    root = make_project(tmp_path / "proj")
    write_notebook(root / "nb.ipynb", ["1"])
    for name, text in (
        ("yaml", "outs:\n- md5: [unclosed\n  path: yaml.csv\n"),  # not YAML
        ("noouts", "md5: 0123\n"),  # no outs
        ("nohash", "outs:\n- path: nohash.csv\n"),  # no md5
    ):
        (root / "data" / f"{name}.csv").write_text("a,b\n")
        (root / "data" / f"{name}.csv.dvc").write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "broken dvc files")
    monkeypatch.chdir(root)
    # When a run is tracked
    track(shell, "%track start --notebook nb.ipynb")
    started = capsys.readouterr().out
    track(shell, "%track stop")
    # Then start names each broken file and its fix, the run finishes, the good output is recorded
    assert started.splitlines()[1:] == [
        "nbtrack: data: data/noouts.csv.dvc is not a valid DVC file (it lists no outs); "
        "fix it or run `dvc add data/noouts.csv` again",
        "nbtrack: data: data/yaml.csv.dvc is not a valid DVC file (expected ',' or ']', but got ':' at "
        "line 3); fix it or run `dvc add data/yaml.csv` again",
        "nbtrack: data: data/nohash.csv (from data/nohash.csv.dvc) has no recorded hash; "
        "run `dvc add data/nohash.csv`",
    ]
    run, snapshot, _ = only_run(root, tmp_path)
    assert run.info.status == "FINISHED"
    data = snapshot["sections"]["data"]
    assert data["status"] == "ok" and [o["path"] for o in data["data"]["outputs"]] == ["data/churn.csv"]
    assert len(data["data"]["problems"]) == 3
    # And a replay's workspace restores the good output, warning that what DVC could not read then
    # is not restored and leaving out the files DVC cannot load (its checkout would fail on them)
    with build_workspace(
        Snapshot.from_dict(snapshot), source=root, git_diff=None, progress=False, say=lambda _: None
    ) as workspace:
        then = [r for r in workspace.risks if r.startswith("when the run was recorded, DVC reported: ")]
        assert len(then) == 3 and all(
            r.endswith("what DVC could not read then is not restored") for r in then
        )
        commit = git(root, "rev-parse", "HEAD")[:12]
        assert (
            f"DVC cannot load data/noouts.csv.dvc, data/yaml.csv.dvc at commit {commit}; the workspace "
            "leaves them out so that DVC can check out the other outputs"
        ) in workspace.risks
        assert [d.path for d in workspace.data] == ["data/churn.csv"]
        assert (workspace.project / "data" / "churn.csv").read_bytes() == (
            root / "data" / "churn.csv"
        ).read_bytes()
    assert (root / "data" / "yaml.csv.dvc").is_file()  # the user's own file is untouched


def test_unreadable_dvc_config_is_one_reason_without_traceback(
    shell: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = make_project(tmp_path / "proj")
    write_notebook(root / "nb.ipynb", ["1"])
    (root / ".dvc" / "config").write_text("[core\nremote = \n")
    monkeypatch.chdir(root)
    track(shell, "%track start --notebook nb.ipynb")
    started = capsys.readouterr()
    track(shell, "%track stop")
    reason = (
        f"DVC could not open the project at {root} (Invalid line ('[core') (matched as neither section "
        "nor keyword) at line 1.); fix .dvc/config (see `dvc config --list`) or run `dvc doctor`"
    )
    assert f"nbtrack: not captured: data ({reason})" in started.out
    assert "Traceback" not in started.out + started.err
    assert not [r for r in caplog.records if r.levelname == "WARNING" and r.name == "nbtrack"]
    run, snapshot, _ = only_run(root, tmp_path)
    assert run.info.status == "FINISHED"
    assert (snapshot["sections"]["data"]["status"], snapshot["sections"]["data"]["reason"]) == (
        "error",
        reason,
    )


# --- unknown run id ------------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ["show", "diff"])
def test_unknown_run_id(
    runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    root, ids = runs
    args = [RUN_ID] if verb == "show" else [ids["good"], RUN_ID]
    code, out, err = cli(capsys, "--project", str(root), verb, *args)
    assert (code, out) == (15, "")
    assert one_line(err) == (
        f"nbtrack: run {RUN_ID}: Run with id={RUN_ID} not found; list runs with `nbtrack runs`"
    )


def test_unknown_run_id_cannot_be_replayed(
    runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = runs
    code, out, _ = cli(capsys, "--project", str(root), "replay", RUN_ID)
    assert code == 3
    assert out.splitlines()[1].strip() == (
        f"run {RUN_ID} is not in sqlite:///{root}/.nbtrack/mlflow.db; list runs with `nbtrack runs` "
        "(or pass --tracking-uri / --project for another store)"
    )


@pytest.mark.parametrize(
    "option",
    [("--tolerance", "-1"), ("--tolerance", "nan"), ("--tolerance", "inf"), ("--metric-tolerance", "a=-1")],
)
def test_a_tolerance_that_is_no_tolerance_is_a_usage_error(
    runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str], option: tuple[str, str]
) -> None:
    # Given a run; when it is replayed with a negative, NaN or infinite tolerance
    root, ids = runs
    store = store_client(root)
    before = len(all_runs(store))
    code, _, err = cli(capsys, "--project", str(root), "replay", ids["good"], *option)
    # Then it is a one-line usage error naming the option, and no replay ran
    line = one_line(err)
    assert code == 64 and option[0] in line and "0 or more" in line
    assert len(all_runs(store)) == before


def test_a_kernel_this_machine_lacks_is_a_usage_error(
    runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ids = runs
    code, _, err = cli(capsys, "--project", str(root), "replay", ids["good"], "--kernel", "no-such-kernel")
    line = one_line(err)
    assert code == 64 and "no-such-kernel" in line and "jupyter kernelspec list" in line


def test_malformed_run_id(runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = runs
    code, _, err = cli(capsys, "--project", str(root), "show", "../../etc")
    line = one_line(err)
    assert code == 15 and "../../etc" in line and "nbtrack runs" in line


def test_unknown_run_id_in_the_magic(
    shell: Any, runs: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = runs
    monkeypatch.chdir(root)
    message = magic_error(shell, f"show {RUN_ID}")
    assert message == (
        f"%track show: no run '{RUN_ID}' in sqlite:///{root}/.nbtrack/mlflow.db; copy the id from a run "
        "card or list the runs with `nbtrack runs`"
    )


# --- a run whose artifacts are missing or damaged ------------------------------------------------
def test_run_without_artifacts(runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    root, ids = runs
    gone = ids["gone"]
    for args in (["show", gone], ["diff", ids["good"], gone]):
        code, out, err = cli(capsys, "--project", str(root), *args)
        line = one_line(err)
        assert (code, out) == (16, "")
        assert line.startswith(f"nbtrack: run {gone} was tracked by nbtrack but its artifacts are missing ")
        assert line.endswith("; restore them from a backup or record the run again")
    code, out, _ = cli(capsys, "--project", str(root), "replay", gone)
    assert code == 3 and f"run {gone} was tracked by nbtrack but its artifacts are missing" in out


def test_run_with_a_damaged_notebook_artifact(
    runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ids = runs
    damaged = ids["damaged"]
    expected = (
        f"run {damaged}'s nbtrack/notebook.ipynb artifact is not a notebook (invalid JSON: Expecting value: "
        "line 1 column 1 (char 0)); the run's artifacts are damaged: record the run again"
    )
    code, out, err = cli(capsys, "--project", str(root), "diff", ids["good"], damaged)
    assert (code, out, one_line(err)) == (16, "", f"nbtrack: {expected}")
    code, out, _ = cli(capsys, "--project", str(root), "replay", damaged, "--mode", "notebook")
    assert code == 3 and out.splitlines()[1].strip() == expected
    # `show` reads only the snapshot: it still works
    assert cli(capsys, "--project", str(root), "show", damaged)[0] == 0


def test_run_whose_notebook_artifact_is_missing(
    runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ids = runs
    stripped = ids["stripped"]
    # `diff` compares what it can, and says why the code cells are not compared
    code, out, err = cli(capsys, "--project", str(root), "diff", ids["good"], stripped)
    assert (code, err) == (0, "")
    assert (
        f"code cells: \n  run {stripped} has no nbtrack/notebook.ipynb artifact (deleted?); "
        "code cells not compared"
    ) in out
    # `replay` of the saved notebook cannot, and says what to do instead (exit 3)
    code, out, _ = cli(capsys, "--project", str(root), "replay", stripped, "--mode", "notebook")
    assert code == 3 and out.splitlines()[1].strip() == (
        f"run {stripped} has no nbtrack/notebook.ipynb artifact (deleted?); replay with --mode history"
    )


def test_run_whose_git_diff_artifact_is_missing_cannot_be_replayed(
    runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ids = runs
    dirty = ids["dirty"]
    code, out, _ = cli(capsys, "--project", str(root), "replay", dirty)
    assert code == 3
    reason = out.splitlines()[1].strip()
    assert reason.startswith(
        f"run {dirty} has no nbtrack/git.diff artifact (deleted?), though its snapshot recorded "
    )
    assert reason.endswith("without them the replay would run other code: record the run again")


# --- snapshot.json of an unknown schema version --------------------------------------------------
@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("future", "it was written by a newer nbtrack: upgrade nbtrack (pip install -U nbtrack) to read it"),
        ("ancient", "no nbtrack wrote that version: the snapshot is damaged; record the run again"),
    ],
)
def test_snapshot_of_unknown_schema_version(
    runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str], name: str, fix: str
) -> None:
    root, ids = runs
    run_id = ids[name]
    version = 999 if name == "future" else 0
    expected = f"run {run_id} snapshot.json has schema version {version}, this nbtrack reads version 1; {fix}"
    for args in (["show", run_id], ["show", run_id, "--json"], ["diff", ids["good"], run_id]):
        code, out, err = cli(capsys, "--project", str(root), *args)
        assert (code, out, one_line(err)) == (16, "", f"nbtrack: {expected}")
    code, out, _ = cli(capsys, "--project", str(root), "replay", run_id)
    assert code == 3 and out.splitlines()[1].strip() == expected


def test_snapshot_of_unknown_schema_version_in_the_magic(
    shell: Any,
    runs: tuple[Path, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, ids = runs
    monkeypatch.chdir(root)
    capsys.readouterr()
    shell.run_line_magic("track", f"show {ids['future']}")
    card = capsys.readouterr().out
    assert "schema version 999" in card and "pip install -U nbtrack" in card


# --- an MLflow URI with an unknown scheme --------------------------------------------------------
def test_unknown_tracking_uri_scheme_in_the_cli(tmp_path: Path) -> None:
    # Run as a user runs it: the whole of stderr is one line
    env = {**os.environ, "MLFLOW_TRACKING_URI": "postgres://db/mlflow"}
    for args in (["runs"], ["show", RUN_ID], ["replay", RUN_ID]):
        proc = subprocess.run(
            [sys.executable, "-m", "nbtrack.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 11, proc.stderr
        assert one_line(proc.stderr) == (
            "nbtrack: tracking URI 'postgres://db/mlflow' has an unknown scheme 'postgres'; use "
            "sqlite:///PATH, http(s)://HOST, postgresql://... or unset MLFLOW_TRACKING_URI"
        )
        assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no store made anywhere


def test_unknown_tracking_uri_scheme_in_the_magic(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_notebook(tmp_path / "nb.ipynb", ["1"])
    monkeypatch.chdir(tmp_path)
    shell._nbtrack_tracker.config.tracking_uri = "ftp://user:pw@host/store"
    message = magic_error(shell, "start --notebook nb.ipynb")
    assert message == (
        "%track start: tracking URI 'ftp://host/store' has an unknown scheme 'ftp'; use sqlite:///PATH, "
        "http(s)://HOST, postgresql://... or unset MLFLOW_TRACKING_URI"
    )
    assert shell._nbtrack_tracker.active is None and not (tmp_path / ".nbtrack").exists()


# --- huge notebooks and huge diffs: capped, the cap recorded -------------------------------------
def test_huge_notebook_is_not_stored_and_the_cap_is_recorded(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a notebook over NbtrackConfig.notebook_max_bytes (set low: a real one would be 50 MB)
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / "nb.ipynb", ["big = 'x' * 10"])
    shell._nbtrack_tracker.config.notebook_max_bytes = 200
    monkeypatch.chdir(root)
    track(shell, "%track start --notebook nb.ipynb", "big = 'x' * 10", "%track stop")
    # Then it is left out, and the snapshot says why and what the cap is
    run, snapshot, files = only_run(root, tmp_path)
    assert run.info.status == "FINISHED"
    data = snapshot["sections"]["notebook"]["data"]
    size = nb.stat().st_size
    assert (data["stored"], data["size"]) == (False, size)
    assert data["stored_reason"] == (
        f"notebook is {size} bytes, over NbtrackConfig.notebook_max_bytes (200); "
        "raise it to keep such notebooks"
    )
    assert "nbtrack/notebook.ipynb" not in files and "nbtrack/history.ipynb" in files


def test_caps_are_said_on_the_card_and_by_show(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a notebook over its cap and uncommitted changes over theirs
    root = make_project(tmp_path / "proj", use_dvc=False)
    write_notebook(root / "nb.ipynb", ["big = 'x' * 10"])
    (root / "table.txt").write_text("row\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "table")
    (root / "table.txt").write_text("".join(f"row {i} of a generated table\n" for i in range(40_000)))
    shell._nbtrack_tracker.config.notebook_max_bytes = 200
    monkeypatch.chdir(root)
    # When a run is tracked, its card says both
    track(shell, "%track start --notebook nb.ipynb")
    capsys.readouterr()
    track(shell, "%track stop")
    card = capsys.readouterr().out
    for cap in (
        "over NbtrackConfig.notebook_max_bytes (200)",
        "over NbtrackConfig.git_diff_max_bytes (1000000)",
    ):
        assert cap in card
        # And so does `nbtrack show`
        run, _, _ = only_run(root, tmp_path)
        assert cap in cli(capsys, "--project", str(root), "show", run.info.run_id)[1]


def test_huge_git_diff_is_not_stored_and_the_cap_is_recorded(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given uncommitted changes over the default 1 MB cap (git_diff_max_bytes)
    root = make_project(tmp_path / "proj", use_dvc=False)
    write_notebook(root / "nb.ipynb", ["1"])
    (root / "table.txt").write_text("row\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "table")
    (root / "table.txt").write_text("".join(f"row {i} of a regenerated table\n" for i in range(40_000)))
    monkeypatch.chdir(root)
    # When a run is tracked, start says the diff is not stored, why, and what to do
    track(shell, "%track start --notebook nb.ipynb")
    started = capsys.readouterr().out
    track(shell, "%track stop")
    run, snapshot, files = only_run(root, tmp_path)
    diff = snapshot["sections"]["git"]["data"]["diff"]
    assert run.info.status == "FINISHED"
    assert (diff["stored"], diff["truncated"], diff["cap"]) == (False, True, 1_000_000)
    assert diff["bytes"] > 1_000_000 and len(diff["sha256"]) == 64
    assert diff["reason"] == (
        f"the uncommitted changes are {diff['bytes']} bytes, over NbtrackConfig.git_diff_max_bytes "
        "(1000000); not stored, since a partial patch cannot be applied: commit the changes or raise the cap"
    )
    assert f"nbtrack: git: git.diff not stored: {diff['reason']}\n" in started
    assert "nbtrack/git.diff" not in files


# --- nothing half-written ------------------------------------------------------------------------
def test_reading_outside_a_project_makes_no_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "--project", str(tmp_path), "show", RUN_ID)
    assert not (tmp_path / ".nbtrack").exists()
    assert code != 0 and "--project" in one_line(err)
