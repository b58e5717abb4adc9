"""Benchmark: the cost of nbtrack against MLflow's own, in one process, as ratios.

    .venv/bin/python tests/bench/bench_track.py [--files 10000] [--big-mib 1024] [--runs 10] [--json out.json]

Builds a git + DVC repository with ``--files`` small tracked files and one ``--big-mib`` file, then
measures, on one embedded SQLite store:

- ``%load_ext nbtrack`` in a fresh interpreter, against ``import mlflow`` in a fresh interpreter;
- ``%track start`` + an empty cell + ``%track stop`` (warm), against bare ``mlflow.start_run()`` +
  ``mlflow.end_run()`` on the same store (warm); target: within 2x the bare pair + 100 ms;
- the per-cell history hook (pre + post), over 10,000 calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ENV = {**os.environ, "DVC_NO_ANALYTICS": "1"}
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@nbtrack.invalid"]


def sh(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, env=ENV, check=True, capture_output=True)


def build_repo(root: Path, files: int, big_mib: int) -> None:
    root.mkdir(parents=True)
    sh(["git", "init", "-q"], root)
    sh([sys.executable, "-m", "dvc", "init", "-q"], root)
    many = root / "data" / "many"
    many.mkdir(parents=True)
    for i in range(files):
        (many / f"f{i:06d}.txt").write_text(f"row {i}\n")
    with open(root / "data" / "big.bin", "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(big_mib):
            f.write(chunk)
    sh([sys.executable, "-m", "dvc", "add", "-q", "data/many", "data/big.bin"], root)
    (root / "nb.ipynb").write_text(
        json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    sh(["git", "add", "-A"], root)
    sh([*GIT, "commit", "-q", "-m", "bench"], root)


def fresh(code: str, cwd: Path) -> float:
    """Seconds the snippet reports, run in a fresh interpreter (cold imports)."""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def median_time(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="nbtrack-bench-") as tmp:
        root = Path(tmp) / "repo"
        t = time.perf_counter()
        build_repo(root, args.files, args.big_mib)
        print(f"built repo ({args.files} files + {args.big_mib} MiB) in {time.perf_counter() - t:.1f} s")

        results["import_mlflow_s"] = fresh(
            "import time; t=time.perf_counter(); import mlflow; print(time.perf_counter()-t)", root
        )
        results["load_ext_s"] = fresh(
            "from IPython.core.interactiveshell import InteractiveShell; import time\n"
            "ip = InteractiveShell.instance(); t=time.perf_counter()\n"
            "ip.run_line_magic('load_ext', 'nbtrack')\n"
            "print(time.perf_counter()-t)",
            root,
        )

        home = os.getcwd()
        os.chdir(root)
        import mlflow
        from IPython.core.interactiveshell import InteractiveShell

        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "nbtrack")

        def tracked() -> None:
            ip.run_cell("%track start --experiment bench --notebook nb.ipynb", store_history=True)
            ip.run_cell("", store_history=True)
            ip.run_cell("%track stop", store_history=True)

        t = time.perf_counter()
        tracked()  # creates the store, imports mlflow and dvc, hashes the data (cold)
        results["first_tracked_run_s"] = time.perf_counter() - t
        exp_id = mlflow.get_experiment_by_name("bench").experiment_id

        def bare() -> None:
            mlflow.start_run(experiment_id=exp_id)
            mlflow.end_run()

        results["bare_mlflow_pair_s"] = median_time(bare, args.runs)
        results["tracked_pair_s"] = median_time(tracked, args.runs)

        hist = ip._nbtrack_tracker.history
        info = SimpleNamespace(raw_cell="x = 1", cell_id=None)
        res = SimpleNamespace(execution_count=1, error_in_exec=None, error_before_exec=None, info=info)
        n = 10_000
        t = time.perf_counter()
        for _ in range(n):
            hist.pre_run_cell(info)
            hist.post_run_cell(res)
        results["hook_per_cell_us"] = (time.perf_counter() - t) / n * 1e6
        os.chdir(home)  # the repository is deleted next; IPython's exit handler reads the cwd

    bare_s, tracked_s = results["bare_mlflow_pair_s"], results["tracked_pair_s"]
    ratios = {
        "load_ext / import mlflow": results["load_ext_s"] / results["import_mlflow_s"],
        "tracked start+stop / bare MLflow start+end": tracked_s / bare_s,
    }
    budget = 2 * bare_s + 0.100
    print(f"\n{'figure':<44}{'value':>12}")
    for key, value in results.items():
        print(f"{key:<44}{value:>12.4f}")
    for key, value in ratios.items():
        print(f"{key:<44}{value:>11.2f}x")
    print(
        f"\n%load_ext target < 0.25 s: {results['load_ext_s']:.3f} s -> "
        f"{'OK' if results['load_ext_s'] < 0.25 else 'MISSED'}"
    )
    print(
        f"start+stop target <= 2x bare + 100 ms = {budget * 1000:.0f} ms: {tracked_s * 1000:.0f} ms -> "
        f"{'OK' if tracked_s <= budget else 'MISSED'}"
    )
    if args.json:
        args.json.write_text(json.dumps({"results": results, "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
