"""Benchmark: ``nbtrack run`` of a 5-cell notebook vs bare papermill of the same notebook.

    .venv/bin/python tests/bench/bench_run.py [--runs 5] [--json out.json]

The notebook logs a metric to MLflow (what a notebook worth tracking does): bare papermill then
writes it to a plain MLflow SQLite store, ``nbtrack run`` (:func:`nbtrack.track.headless.run_notebook`,
the engine) to the project's embedded store with the whole snapshot. Both in this process, taking
turns, after one untimed round (the stores' creation). Issue 15's target: <= 1.1x.

A second figure, without a target, runs a notebook that never touches MLflow: there ``nbtrack run``
pays what bare papermill does not, the kernel's ``import mlflow`` and MLflow's SQLAlchemy store
(~2-3 s on a quiet machine; the snapshot itself is ~0.3 s at start and at stop).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from common import FULL, GIT, Sizes, interleaved, isolate, row, table, write_report

GROUP = "run"
CELLS = [
    "import mlflow\nimport numpy as np",
    "alpha = 0.5",
    "x = np.linspace(0, 1, 10_000)\ny = np.sin(x * alpha)",
    "print('mean', y.mean())",
    "mlflow.log_metric('mean', float(y.mean()))",
]


PLAIN = [CELLS[0].replace("import mlflow\n", ""), *CELLS[1:4], "mean = float(y.mean())"]


def _write(path: Path, sources: list[str]) -> None:
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"c{i}",
            "metadata": {"tags": ["parameters"]} if i == 1 else {},
            "outputs": [],
            "source": source,
        }
        for i, source in enumerate(sources)
    ]
    nb = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


def build(folder: Path) -> Path:
    """A git project with ``five.ipynb`` (the cells above, the second tagged ``parameters``) and
    ``plain.ipynb`` (the same without MLflow)."""
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "five.ipynb", CELLS)
    _write(folder / "plain.ipynb", PLAIN)
    if not (folder / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=folder, check=True)
        subprocess.run([*GIT, "add", "-A"], cwd=folder, check=True)
        subprocess.run([*GIT, "commit", "-q", "-m", "five"], cwd=folder, check=True)
    return folder


def _timed_pair(notebook: Path, tmp: str, reps: int) -> dict[str, list[float]]:
    """Seconds of bare papermill and of ``run_notebook`` on ``notebook``, taking turns."""
    import papermill

    from nbtrack.config import NbtrackConfig
    from nbtrack.track.headless import run_notebook

    plain_env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/plain.db"}
    statuses: list[str] = []

    def bare() -> None:
        before = dict(os.environ)
        os.environ.update(plain_env)  # the kernel papermill starts inherits it
        try:
            papermill.execute_notebook(
                str(notebook), f"{tmp}/bare.ipynb", cwd=str(notebook.parent), progress_bar=False
            )
        finally:
            os.environ.clear()
            os.environ.update(before)

    def tracked() -> None:
        run = run_notebook(notebook, config=NbtrackConfig(), output=Path(tmp) / "tracked.ipynb")
        statuses.append(run.status)

    samples = interleaved({"bare": bare, "tracked": tracked}, reps, settle=0.5)
    assert set(statuses) == {"FINISHED"}, statuses
    return samples


def measure(fixture: Path, sizes: Sizes) -> list[dict[str, Any]]:
    """``run_notebook`` vs ``papermill.execute_notebook`` (see the module docstring)."""
    isolate()
    build(fixture)
    with tempfile.TemporaryDirectory(prefix="nbtrack-bench-run-") as tmp:
        logging = _timed_pair(fixture / "five.ipynb", tmp, sizes.replay_reps)
        plain = _timed_pair(fixture / "plain.ipynb", tmp, sizes.replay_reps)
    return [
        row(
            GROUP,
            "nbtrack run, 5-cell notebook logging to MLflow",
            logging["tracked"],
            "s",
            baseline="bare papermill (MLflow's own store)",
            base_samples=logging["bare"],
            target="<= 1.1x",
            ok=lambda v, r: r is not None and r <= 1.1,
            note="both import mlflow and log a metric in the kernel",
        ),
        row(
            GROUP,
            "nbtrack run, 5-cell notebook without MLflow",
            plain["tracked"],
            "s",
            baseline="bare papermill",
            base_samples=plain["bare"],
            note="the difference is the kernel's import of mlflow and its SQLAlchemy store",
        ),
    ]


def main() -> None:
    from fixtures import DEFAULT_CACHE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=FULL.replay_reps)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = Sizes(replay_reps=args.runs)
    rows = measure(args.cache_dir.expanduser() / "run", sizes)
    print(table(rows))
    if args.json:
        write_report(args.json, rows, sizes=sizes.__dict__)


if __name__ == "__main__":
    main()
