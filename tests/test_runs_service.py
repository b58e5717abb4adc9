"""The runs service: ids resolved by full id or unique prefix, in the service, the CLI and ``%track show``.

Real SQLite MLflow stores in ``tmp_path``; runs tracked for real by ``%track`` (the in-process shell,
and a real kernel for ``%track show``). Two runs whose ids share a prefix are made by MLflow itself,
with the id it draws (``uuid4``) chosen for the moment of the call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import git, make_project, write_notebook
from test_frontend import Lab, displays, kernel_env, own_jupyter_dirs, text_of

from nbtrack.cli import main
from nbtrack.config import NbtrackConfig
from nbtrack.errors import RunNotFoundError, UsageError
from nbtrack.runs.service import Runs
from nbtrack.store import MlflowStore

TWIN_A = "3f2a9c41" + "0" * 24
TWIN_B = "3f2a9c77" + "1" * 24


def make_run(store: MlflowStore, experiment: str, run_id: str, name: str) -> str:
    """A run MLflow creates, with ``run_id`` as the id it draws (a real row, real tags)."""
    exp_id = store.experiment_id(experiment)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(uuid, "uuid4", lambda: uuid.UUID(hex=run_id))
        run = store.client.create_run(exp_id, run_name=name, tags={"nbtrack.schema_version": "1"})
    store.client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def track(shell: Any, nb: Path, name: str) -> str:
    """A run tracked by ``%track start``/``stop`` in the shell; its id."""
    assert shell.run_cell(f"%track start --name {name} --notebook {nb}", store_history=True).success
    assert shell.run_cell(f"import mlflow; mlflow.log_metric('m', {len(name)})", store_history=True).success
    assert shell.run_cell("%track stop", store_history=True).success
    return str(shell._nbtrack_tracker.last["run_id"])


def tracked_with_twins(shell: Any, root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A committed project at ``root`` (the current directory) with two runs tracked by ``shell``
    ("first", "second"), and two runs whose ids share the prefix ``3f2a9c``; the tracked ids."""
    make_project(root, use_dvc=False)
    nb = write_notebook(root / "nb.ipynb", ["1"])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "nb")
    monkeypatch.chdir(root)
    first, second = track(shell, nb, "first"), track(shell, nb, "second")
    store = MlflowStore.for_project(root, NbtrackConfig())
    make_run(store, "twins", TWIN_A, "baseline")
    make_run(store, "twins", TWIN_B, "tuned")
    return first, second


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[tuple[Path, Runs]]:
    """A project whose store holds two runs sharing the prefix 3f2a9c, and a third run."""
    root = tmp_path / "proj"
    root.mkdir()
    store = MlflowStore.for_project(root, NbtrackConfig())
    make_run(store, "twins", TWIN_A, "baseline")
    make_run(store, "twins", TWIN_B, "tuned")
    make_run(store, "twins", "abcdef12" + "2" * 24, "other")
    yield root, Runs(NbtrackConfig())


# --- the service -------------------------------------------------------------------------------------
def test_a_run_is_found_by_its_id_or_a_unique_prefix(twins: tuple[Path, Runs]) -> None:
    root, runs = twins
    target = runs.locate(project=root)
    for given in (TWIN_A, "3f2a9c4", TWIN_A[:8], "3F2A9C41", f"  {TWIN_A[:10]} "):
        found = runs.resolve(target, given)
        assert (found.run_id, found.run.name, found.pending) == (TWIN_A, "baseline", False), given
    assert runs.resolve(target, "abcdef").run.name == "other"


def test_an_ambiguous_prefix_names_its_candidates_in_one_line(twins: tuple[Path, Runs]) -> None:
    root, runs = twins
    target = runs.locate(project=root)
    with pytest.raises(UsageError) as info:
        runs.resolve(target, "3f2a9c")
    assert str(info.value) == (
        "run id prefix 3f2a9c matches 2 runs: 3f2a9c77… (tuned), 3f2a9c41… (baseline); give more characters"
    )
    # Given five more runs with that prefix: five are named, and the message says there are more
    store = target.require_store(TWIN_A)
    for i in range(5):
        make_run(store, "twins", f"3f2a9c{i}" + "5" * 25, f"more{i}")
    with pytest.raises(UsageError) as info:
        runs.resolve(target, "3f2a9c")
    message = str(info.value)
    assert message.startswith("run id prefix 3f2a9c matches more than 5 runs: ")
    assert message.count("…") == 5 and "\n" not in message
    # Candidates sharing 8 characters are shown with as many as tell them apart
    make_run(store, "twins", TWIN_A[:10] + "9" * 22, "near")
    with pytest.raises(UsageError) as info:
        runs.resolve(target, TWIN_A[:9])
    assert f"{TWIN_A[:11]}… (baseline)" in str(info.value)
    # and the prefix query returns at most what is asked, newest first
    assert [r.name for r in store.runs_with_id_prefix("3f2a9c", max_results=2)] == ["near", "more4"]


def test_a_short_or_unknown_id_is_one_line(twins: tuple[Path, Runs]) -> None:
    root, runs = twins
    target = runs.locate(project=root)
    with pytest.raises(UsageError, match=r"run id '3f2a9' is too short: give the full id or at least 6"):
        runs.resolve(target, "3f2a9")
    unknown = r"^no run id starts with ffffff in sqlite:///.*; list runs with `nbtrack runs`$"
    with pytest.raises(RunNotFoundError, match=unknown):
        runs.resolve(target, "ffffff")


def test_looking_creates_no_store(tmp_path: Path) -> None:
    runs = Runs(NbtrackConfig())
    target = runs.locate(cwd=tmp_path)
    assert target.store is None and target.database == tmp_path / ".nbtrack" / "mlflow.db"
    assert runs.list_runs(target).rows == [] and runs.search(target) == []
    with pytest.raises(RunNotFoundError, match="no runs tracked yet"):
        runs.resolve(target, TWIN_A)
    assert list(tmp_path.iterdir()) == []


# --- the CLI ------------------------------------------------------------------------------------------
def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_takes_prefixes_and_names_the_candidates_of_an_ambiguous_one(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two tracked runs, and two runs whose ids share a prefix
    first, second = tracked_with_twins(shell, tmp_path / "proj", monkeypatch)
    # When a run is shown by the 8 characters nbtrack prints
    code, out, _ = cli(capsys, "show", first[:8])
    # Then it is that run
    assert code == 0 and f"run         {first} (first)" in out
    code, out, _ = cli(capsys, "show", second[:6], "--json")
    assert code == 0 and json.loads(out)["run"]["run_id"] == second
    code, out, _ = cli(capsys, "diff", first[:7], second[:9], "--json")
    assert code == 0 and (json.loads(out)["a"]["run_id"], json.loads(out)["b"]["run_id"]) == (first, second)
    # When a prefix matches two runs: one line naming both, exit 64 (show, diff and replay alike)
    for args in (["show", "3f2a9c"], ["diff", first, "3f2a9c"], ["replay", "3f2a9c"]):
        code, out, err = cli(capsys, *args)
        assert (code, out) == (64, ""), args
        assert one_line(err) == (
            "nbtrack: run id prefix 3f2a9c matches 2 runs: 3f2a9c77… (tuned), 3f2a9c41… (baseline); "
            "give more characters"
        )
    # When it is too short: one line, exit 64; unknown: exit 15
    code, _, err = cli(capsys, "show", "3f2a")
    assert code == 64 and "run id '3f2a' is too short" in one_line(err)
    code, _, err = cli(capsys, "show", "ffffff")
    assert code == 15 and one_line(err).startswith("nbtrack: no run id starts with ffffff in sqlite:///")


# --- %track show in a real kernel ------------------------------------------------------------------------
@pytest.mark.kernel
def test_track_show_takes_a_prefix_in_a_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a project whose store holds two runs sharing a prefix
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / "train.ipynb", ["1"])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "nb")
    store = MlflowStore.for_project(root, NbtrackConfig())
    make_run(store, "twins", TWIN_A, "baseline")
    make_run(store, "twins", TWIN_B, "tuned")
    own_jupyter_dirs(tmp_path, monkeypatch)
    with Lab(root, kernel_env(tmp_path, JPY_SESSION_NAME=str(nb))) as lab:
        lab.load_nbtrack()
        # When a fresh kernel shows a run by a unique prefix: its card
        reply, shown = lab.execute("%track show 3f2a9c7")
        assert reply["status"] == "ok", text_of(shown, "stderr")
        (card,) = displays(shown)
        assert TWIN_B in card["text/html"] and "tuned" in card["text/plain"]
        # When the prefix is ambiguous: one line naming both, no card
        reply, failed = lab.execute("%track show 3f2a9c")
        assert reply["status"] == "error" and not displays(failed)
        assert one_line(text_of(failed, "stderr")) == (
            "UsageError: %track show: run id prefix 3f2a9c matches 2 runs: 3f2a9c77… (tuned), "
            "3f2a9c41… (baseline); give more characters"
        )
        # When the kernel tracked a run itself, its prefix shows it (looked up in the kernel's store)
        for cell in ("%track start --name mine", "%track stop"):
            reply, messages = lab.execute(cell)
            assert reply["status"] == "ok", text_of(messages, "stderr")
        (mine,) = [r.run_id for r in store.search_runs(notebook="train.ipynb")[0]]
        reply, shown = lab.execute(f"%track show {mine[:8]}")
        assert reply["status"] == "ok", text_of(shown, "stderr")
        (card,) = displays(shown)
        assert mine in card["text/html"] and "mine" in card["text/plain"]
