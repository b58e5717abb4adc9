"""Benchmark: ``nbtrack replay`` against bare papermill, and the data restore against a copy.

    .venv/bin/python tests/bench/bench_replay.py [--runs 5] [--big-mib 1024] [--json out.json]

On a git + DVC project holding a 5-cell tracked notebook and a ``--big-mib`` data file (built once,
cached under ``--cache-dir``; its store is emptied each time), tracks one run, then measures in this
one process:

- ``nbtrack.replay(run)`` (workspace, data link, execution, verdict, logging) against bare
  ``papermill.execute_notebook`` of the same notebook in the same project (it tracks itself too,
  so both sides pay the kernel's MLflow logging); target: replay <= 1.5x papermill
  (``--env current``; ``--env recreate`` is excluded, it installs packages);
- restoring the data file into the replay workspace (DVC checkout from the cache, a link) against
  copying the same file (``shutil.copyfile`` + ``fsync``); target: well under the copy (<= 0.1x).

Runs alternate (papermill, replay, papermill, ...) after one warm-up of each; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common import FULL, GIT, Sizes, isolate, row, table, write_report

GROUP = "replay"
CELLS = [
    "%load_ext nbtrack",
    "seed = 0",
    "%track start --experiment bench --name five-cells",
    "import mlflow\nwith open('data/big.bin', 'rb') as f:\n    head = f.read(1 << 20)\n"
    "mlflow.log_metric('head_sum', sum(head[:4096]))",
    "%track stop",
]


def build_project(root: Path, big_mib: int, env: Mapping[str, str]) -> None:
    def sh(cmd: list[str]) -> None:
        subprocess.run(cmd, cwd=root, env=dict(env), check=True, capture_output=True)

    root.mkdir(parents=True)
    sh(["git", "init", "-q"])
    sh([sys.executable, "-m", "dvc", "init", "-q"])
    (root / "data").mkdir()
    with open(root / "data" / "big.bin", "wb") as f:
        chunk = os.urandom(1 << 20)
        for i in range(big_mib):
            f.write(i.to_bytes(8, "little") + chunk[8:])
    sh([sys.executable, "-m", "dvc", "add", "-q", "data/big.bin"])
    cells = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src}
        for src in CELLS
    ]
    cells[1]["metadata"]["tags"] = ["parameters"]
    nb = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (root / "five.ipynb").write_text(json.dumps(nb))
    sh(["git", "add", "-A"])
    sh([*GIT, "commit", "-q", "-m", "bench"])


def measure(fixture: Path, sizes: Sizes) -> list[dict[str, Any]]:
    """Replay and restore figures on a built fixture (see fixtures.replay_project)."""
    isolate()
    from fixtures import env_of

    os.environ.update(env_of(fixture))  # the kernels papermill starts inherit it
    root = fixture / "repo"
    shutil.rmtree(root / ".nbtrack", ignore_errors=True)  # a fresh store: one run to replay
    import papermill

    import nbtrack
    from nbtrack.replay.workspace import build_workspace
    from nbtrack.runner import execute_notebook
    from nbtrack.store import MlflowStore

    reps = sizes.replay_reps
    import warnings

    warnings.filterwarnings("ignore", message="Cell is missing an id field")  # papermill's nbformat
    # Beside the project (same file system: DVC can link from its cache).
    with tempfile.TemporaryDirectory(prefix="nbtrack-bench-", dir=fixture) as tmp:
        out = Path(tmp) / "out.ipynb"
        execute_notebook(root / "five.ipynb", out, cwd=root)  # the run to replay
        store = MlflowStore(f"sqlite:///{root / '.nbtrack' / 'mlflow.db'}")
        [run], _ = store.search_runs(experiment="bench", max_results=1)
        run_id = run.info.run_id

        def quiet(line: str) -> None:
            return None

        def bare() -> float:
            t0 = time.perf_counter()
            papermill.execute_notebook(
                str(root / "five.ipynb"), str(out), cwd=str(root), progress_bar=False, kernel_name="python3"
            )
            return time.perf_counter() - t0

        def replayed() -> float:
            t0 = time.perf_counter()
            result = nbtrack.replay(run_id, project=root, say=quiet, workspace_dir=Path(tmp))
            assert result.verdict == "REPRODUCED", result.message
            return time.perf_counter() - t0

        bare()
        replayed()  # warm-up: imports on both sides
        papermill_s, replay_s = [], []
        for _ in range(reps):
            papermill_s.append(bare())
            replay_s.append(replayed())

        # The data restore alone: build a workspace, time DVC's checkout of the big file.
        snap = store.load_snapshot(run_id)
        link_s, links = [], []
        for _ in range(reps):
            ws = build_workspace(
                snap, source=root, git_diff=None, base_dir=Path(tmp), say=quiet, progress=False
            )
            link_s.append(ws.data[0].seconds)
            links.append(ws.data[0].link)
            ws.cleanup()
        copy_s = []
        for _ in range(reps):
            target = Path(tmp) / "copy.bin"
            t0 = time.perf_counter()
            shutil.copyfile(root / "data" / "big.bin", target)
            with open(target, "rb+") as f:
                os.fsync(f.fileno())
            copy_s.append(time.perf_counter() - t0)
            target.unlink()

    mib = (root / "data" / "big.bin").stat().st_size >> 20
    link = max(set(links), key=links.count)
    judged = mib >= 1024  # a small file copies in about the time DVC's checkout takes to start
    return [
        row(
            GROUP,
            "nbtrack replay of a 5-cell notebook (--env current)",
            replay_s,
            "s",
            baseline="bare papermill",
            base_samples=papermill_s,
            target="<= 1.5x",
            ok=lambda v, r: r is not None and r <= 1.5,
        ),
        row(
            GROUP,
            f"data restore of {mib} MiB into the replay workspace ({link})",
            link_s,
            "s",
            baseline="copy + fsync",
            base_samples=copy_s,
            target="<= 0.1x (well under a copy)",
            ok=(lambda v, r: r is not None and r <= 0.1) if judged else None,
            note="" if judged else "judged only with a file of 1 GiB or more (a full-size run)",
        ),
    ]


def main() -> None:
    from fixtures import DEFAULT_CACHE, replay_project

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=FULL.replay_reps)
    parser.add_argument("--big-mib", type=int, default=FULL.big_mib)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = Sizes(big_mib=args.big_mib, replay_reps=args.runs)
    rows = measure(replay_project(args.cache_dir, sizes.big_mib), sizes)
    print(table(rows))
    if args.json:
        write_report(args.json, rows, sizes=sizes.__dict__)


if __name__ == "__main__":
    main()
