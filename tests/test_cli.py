"""The ``nbtrack`` command, run as a user runs it, on the project ``nbtrack demo`` builds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel


def nbtrack(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NBTRACK_TRACKING_URI")}
    return subprocess.run(
        [sys.executable, "-m", "nbtrack.cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    base = tmp_path_factory.mktemp("demo")
    return base / "project", nbtrack("demo", "project", cwd=base)


def test_demo_tracks_the_quickstart_notebook(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    project, proc = demo
    assert proc.returncode == 0, proc.stderr
    assert "status      FINISHED" in proc.stdout
    assert "notebook    quickstart.ipynb (found by papermill)" in proc.stdout
    assert "data/churn.csv  md5:" in proc.stdout and "clean" in proc.stdout
    assert "accuracy=" in proc.stdout
    assert f"sqlite:///{project}/.nbtrack/mlflow.db" in proc.stdout
    assert (project / ".git").is_dir() and (project / "data" / "churn.csv.dvc").is_file()
    # then it replays the run in an isolated workspace and shows the verdict
    verdict = proc.stdout.split("REPRODUCED", 1)[1]
    # the message names what was compared (issue 13: the cell outputs too, once they are recorded)
    assert re.search(r"3 metrics(,| and) 4 params.* match the original", verdict), verdict


def test_runs_lists_the_run(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    project, _ = demo
    table = nbtrack("runs", cwd=project)
    assert table.returncode == 0, table.stderr
    header, replayed, original = table.stdout.splitlines()
    assert header.split()[:3] == ["RUN", "ID", "NAME"]
    assert "random-forest" in original and "FINISHED" in original and "quickstart.ipynb" in original
    original_id = original.split()[0]
    assert f"replay-of:{original_id[:8]}:REPRODUCED" in replayed
    rows = json.loads(nbtrack("runs", "--json", "--notebook", "quickstart.ipynb", cwd=project).stdout)
    assert [r["name"] for r in rows] == ["random-forest", "random-forest"]
    assert [r["replay_of"] for r in rows] == [original_id, None]
    assert rows[1]["params"]["n_estimators"] == "50"
    assert rows[1]["data_status"] == "clean"
    mistyped = nbtrack("runs", "--notebook", "other.ipynb", cwd=project)
    assert mistyped.returncode == 12 and "--notebook other.ipynb: no such file" in mistyped.stderr
    (project / "other.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    other = nbtrack("runs", "--notebook", "other.ipynb", cwd=project)
    assert other.returncode == 0 and "no tracked runs for other.ipynb" in other.stdout


def test_show_prints_the_snapshot(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    project, _ = demo
    _replay, row = json.loads(nbtrack("runs", "--json", cwd=project).stdout)
    shown = json.loads(nbtrack("show", row["run_id"], "--json", cwd=project).stdout)
    sections = shown["snapshot"]["sections"]
    assert sections["parameters"]["data"]["values"]["max_depth"] == 4
    assert sections["git"]["data"]["commit"] == shown["run"]["tags"]["mlflow.source.git.commit"]
    text = nbtrack("show", row["run_id"], cwd=project).stdout
    assert f"run         {row['run_id']} (random-forest)" in text


def test_unknown_run_is_one_line_and_a_distinct_exit_code(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    project, _ = demo
    proc = nbtrack("show", "0123456789abcdef0123456789abcdef", cwd=project)
    assert proc.returncode == 15
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nbtrack: run 0123456789abcdef")
    assert "nbtrack runs" in proc.stderr


def test_usage_errors_exit_64(tmp_path: Path) -> None:
    proc = nbtrack("runs", "--bogus", cwd=tmp_path)
    assert proc.returncode == 64
    assert "unrecognized arguments: --bogus" in proc.stderr
    (tmp_path / "x").write_text("occupied")
    proc = nbtrack("demo", str(tmp_path), cwd=tmp_path.parent)
    assert proc.returncode == 64
    assert "is not empty" in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # nothing was touched


def test_bad_tracking_uri_is_a_config_error(tmp_path: Path) -> None:
    proc = nbtrack("--tracking-uri", "ftp://nowhere/x", "runs", cwd=tmp_path)
    assert proc.returncode == 11
    assert "unknown scheme 'ftp'" in proc.stderr
