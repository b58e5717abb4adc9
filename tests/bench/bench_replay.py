"""Benchmark: ``nbtrack replay`` against bare papermill, and the data restore against a copy.

    .venv/bin/python tests/bench/bench_replay.py [--runs 5] [--big-mib 1024] [--json out.json]

Builds a git + DVC project holding a 5-cell tracked notebook and a ``--big-mib`` data file, tracks
one run, then measures in this one process:

- ``nbtrack.replay(run)`` (workspace, data link, execution, verdict, logging) against bare
  ``papermill.execute_notebook`` of the same notebook in the same project (it tracks itself too,
  so both sides pay the kernel's MLflow logging); target: replay <= 1.5x papermill
  (``--env current``; ``--env recreate`` is excluded, it installs packages);
- restoring the data file into the replay workspace (DVC checkout from the cache, a link) against
  copying the same file (``shutil.copyfile``); target: well under the copy.

Runs alternate (papermill, replay, papermill, ...) after one warm-up of each; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {**os.environ, "DVC_NO_ANALYTICS": "1"}
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@nbtrack.invalid"]
CELLS = [
    "%load_ext nbtrack",
    "seed = 0",
    "%track start --experiment bench --name five-cells",
    "import mlflow\nwith open('data/big.bin', 'rb') as f:\n    head = f.read(1 << 20)\n"
    "mlflow.log_metric('head_sum', sum(head[:4096]))",
    "%track stop",
]


def sh(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, env=ENV, check=True, capture_output=True)


def build_project(root: Path, big_mib: int) -> None:
    root.mkdir(parents=True)
    sh(["git", "init", "-q"], root)
    sh([sys.executable, "-m", "dvc", "init", "-q"], root)
    (root / "data").mkdir()
    with open(root / "data" / "big.bin", "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(big_mib):
            f.write(chunk)
    sh([sys.executable, "-m", "dvc", "add", "-q", "data/big.bin"], root)
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
    sh(["git", "add", "-A"], root)
    sh([*GIT, "commit", "-q", "-m", "bench"], root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import papermill

    import nbtrack
    from nbtrack.runner import execute_notebook

    with tempfile.TemporaryDirectory(prefix="nbtrack-bench-", dir=Path.home()) as tmp:
        root = Path(tmp) / "proj"
        t = time.perf_counter()
        build_project(root, args.big_mib)
        print(f"project with a {args.big_mib} MiB DVC file built in {time.perf_counter() - t:.1f} s")
        out = Path(tmp) / "out.ipynb"
        execute_notebook(root / "five.ipynb", out, cwd=root)  # the run to replay
        from nbtrack.store import MlflowStore

        store = MlflowStore(f"sqlite:///{root / '.nbtrack' / 'mlflow.db'}")
        [run], _ = store.search_runs(experiment="bench", max_results=1)
        run_id = run.info.run_id
        quiet = lambda line: None  # noqa: E731

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
        for _ in range(args.runs):
            papermill_s.append(bare())
            replay_s.append(replayed())

        # The data restore alone: build a workspace, time DVC's checkout of the big file.
        from nbtrack.workspace import build_workspace

        snap = store.load_snapshot(run_id)
        link_s, links = [], []
        for _ in range(args.runs):
            ws = build_workspace(
                snap, source=root, git_diff=None, base_dir=Path(tmp), say=quiet, progress=False
            )
            link_s.append(ws.data[0].seconds)
            links.append(ws.data[0].link)
            ws.cleanup()
        copy_s = []
        for _ in range(args.runs):
            target = Path(tmp) / "copy.bin"
            t0 = time.perf_counter()
            shutil.copyfile(root / "data" / "big.bin", target)
            with open(target, "rb+") as f:
                os.fsync(f.fileno())
            copy_s.append(time.perf_counter() - t0)
            target.unlink()

    med = statistics.median
    report = {
        "runs": args.runs,
        "papermill_s": round(med(papermill_s), 3),
        "replay_s": round(med(replay_s), 3),
        "replay_vs_papermill": round(med(replay_s) / med(papermill_s), 2),
        "replay_target": 1.5,
        "big_mib": args.big_mib,
        "restore_s": round(med(link_s), 4),
        "restore_link": max(set(links), key=links.count),
        "copy_s": round(med(copy_s), 3),
        "restore_vs_copy": round(med(link_s) / med(copy_s), 4),
    }
    rows = [
        (
            "replay of a 5-cell notebook",
            f"{report['replay_s']:.2f} s",
            f"papermill {report['papermill_s']:.2f} s",
            f"{report['replay_vs_papermill']:.2f}x (target <= 1.5x)",
        ),
        (
            f"restore {args.big_mib} MiB from the DVC cache ({report['restore_link']})",
            f"{report['restore_s']:.3f} s",
            f"copy {report['copy_s']:.2f} s",
            f"{report['restore_vs_copy']:.3f}x",
        ),
    ]
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, (52, 10, 18, 30), strict=True)))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
