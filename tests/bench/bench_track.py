"""Benchmark: the cost of nbtrack against MLflow's own, as ratios measured in the same run.

    .venv/bin/python tests/bench/bench_track.py [--files 10000] [--big-mib 1024] [--runs 10] [--json out.json]

On a git + DVC project with ``--files`` small tracked files and one ``--big-mib`` file (built once,
cached under ``--cache-dir``), on its embedded SQLite store:

- ``%load_ext nbtrack`` in a fresh interpreter, against ``import mlflow`` in a fresh interpreter;
- the first tracked run in a fresh kernel (``%load_ext`` + ``%track start`` + ``%track stop`` in a
  fresh interpreter on a project without a store) against a fresh interpreter doing ``import
  mlflow`` + ``start_run()`` + ``end_run()`` on a new SQLite store;
- ``%track start`` + an empty cell + ``%track stop`` (warm), against bare ``mlflow.start_run()`` +
  ``mlflow.end_run()`` on the same store (warm); target: within 2x the bare pair + 100 ms;
- the per-cell history hook (pre + post) over 10,000 cells, against an empty hook pair; target
  <= 20 µs; and the history's memory over 100,000 cells against its memory at its cap (10,000 cells):
  it must stay bounded and record how many cells it dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from common import FULL, Sizes, fresh, interleaved, isolate, median, row, table, write_report

GROUP = "track"
LOAD_EXT = (
    "from IPython.core.interactiveshell import InteractiveShell; import time\n"
    "ip = InteractiveShell.instance(); t = time.perf_counter()\n"
    "ip.run_line_magic('load_ext', 'nbtrack')\n"
    "print(time.perf_counter() - t)"
)
IMPORT_MLFLOW = "import time; t = time.perf_counter(); import mlflow; print(time.perf_counter() - t)"
# The shell exists before the clock starts, as in a kernel that has just started.
FIRST_RUN = (
    "from IPython.core.interactiveshell import InteractiveShell; import contextlib, io, time\n"
    "ip = InteractiveShell.instance(); t = time.perf_counter()\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    ip.run_line_magic('load_ext', 'nbtrack')\n"
    "    ip.run_line_magic('track', 'start --experiment bench --notebook nb.ipynb')\n"
    "    ip.run_line_magic('track', 'stop')\n"
    "print(time.perf_counter() - t)"
)
FIRST_MLFLOW = (
    "import sys, time; t = time.perf_counter()\n"
    "import mlflow\n"
    "mlflow.set_tracking_uri('sqlite:///' + sys.argv[1])\n"
    "mlflow.start_run(); mlflow.end_run()\n"
    "print(time.perf_counter() - t)"
)


def load_ext(root: Path, env: dict[str, str], reps: int) -> list[dict[str, Any]]:
    ext, mlflow_ = [], []
    for _ in range(reps):
        ext.append(fresh(LOAD_EXT, root, env))
        mlflow_.append(fresh(IMPORT_MLFLOW, root, env))
    return [
        row(
            GROUP,
            "%load_ext nbtrack (fresh interpreter)",
            ext,
            "s",
            baseline="import mlflow",
            base_samples=mlflow_,
            target="< 0.25 s",
            ok=lambda v, r: v < 0.25,
        )
    ]


def first_run(root: Path, env: dict[str, str], reps: int) -> list[dict[str, Any]]:
    """Fresh interpreters; the project's store is deleted before each nbtrack run."""
    ours, bare = [], []
    with tempfile.TemporaryDirectory(prefix="nbtrack-bench-first-") as tmp:
        for i in range(reps):
            shutil.rmtree(root / ".nbtrack", ignore_errors=True)
            ours.append(fresh(FIRST_RUN, root, env))
            bare.append(fresh(FIRST_MLFLOW, Path(tmp), env, str(Path(tmp) / f"fresh{i}.db")))
    return [
        row(
            GROUP,
            "first tracked run in a fresh kernel (load_ext+start+stop, new store)",
            ours,
            "s",
            baseline="fresh interpreter: import mlflow + start_run/end_run on a new store",
            base_samples=bare,
            note="data capture, environment and git on the project included; DVC state warm",
        )
    ]


def start_stop(root: Path, reps: int) -> list[dict[str, Any]]:
    """Warm start + empty cell + stop against bare ``start_run``/``end_run``, in this process."""
    import mlflow
    from IPython.core.interactiveshell import InteractiveShell

    home = os.getcwd()
    os.chdir(root)
    ip = InteractiveShell.instance()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ip.run_line_magic("load_ext", "nbtrack")
            tracked = tracked_pair(ip, "bench", "nb.ipynb")
            tracked()  # the store, imports, the data check: the first run is not what is timed
            exp_id = mlflow.get_experiment_by_name("bench").experiment_id

            def bare() -> None:
                mlflow.start_run(experiment_id=exp_id)
                mlflow.end_run()

            # Settling: the first stop of a kernel starts its signer process (which imports
            # nbformat, ~1.5 s of CPU on this 2-core machine); each stop hands it notebooks.
            times = interleaved({"bare": bare, "tracked": tracked}, reps, warmup=2, settle=0.5)
            ip.run_line_magic("unload_ext", "nbtrack")
    finally:
        os.chdir(home)
    budget = 2 * median(times["bare"]) + 0.100
    return [
        row(
            GROUP,
            "%track start + empty cell + %track stop (warm)",
            times["tracked"],
            "ms",
            baseline="bare mlflow start_run+end_run",
            base_samples=times["bare"],
            target=f"aim: <= 2x bare + 100 ms ({budget * 1000:.0f} ms)",
            ok=lambda v, r: v <= budget * 1000,
        )
    ]


def tracked_pair(ip: Any, experiment: str, notebook: str) -> Any:
    """A function running ``%track start``, an empty cell and ``%track stop`` as cells of ``ip``."""

    def tracked() -> None:
        for cell in (f"%track start --experiment {experiment} --notebook {notebook}", "", "%track stop"):
            result = ip.run_cell(cell, store_history=True)
            if not result.success:
                raise RuntimeError(f"{cell!r} failed") from (result.error_in_exec or result.error_before_exec)

    return tracked


def history(hook_cells: int, memory_cells: int, reps: int = 5) -> list[dict[str, Any]]:
    """The history hooks' time per cell, and the history's memory at its cap and far beyond it."""
    import tracemalloc

    from nbtrack.capture.history import ExecutionHistory
    from nbtrack.config import NbtrackConfig

    cap = NbtrackConfig().history_max_cells
    info = SimpleNamespace(raw_cell="x = 1", cell_id=None)
    res = SimpleNamespace(execution_count=1, error_in_exec=None, error_before_exec=None, info=info)

    def per_cell(pre: Any, post: Any) -> float:
        started = time.perf_counter()
        for _ in range(hook_cells):
            pre(info)
            post(res)
        return (time.perf_counter() - started) / hook_cells

    def nothing(_: Any) -> None:
        return None

    hist = ExecutionHistory(cap)
    hook, empty = [], []
    for _ in range(reps):
        hook.append(per_cell(hist.pre_run_cell, hist.post_run_cell))
        empty.append(per_cell(nothing, nothing))

    # Memory: every cell a new source string (as in a session); measured while the history holds them.
    hist = ExecutionHistory(cap)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    at_cap = 0
    for n in range(1, memory_cells + 1):
        cell = SimpleNamespace(raw_cell=f"x = {n}\ny = x * 2  # a line of code\nprint(y)\n", cell_id=None)
        hist.pre_run_cell(cell)
        hist.post_run_cell(
            SimpleNamespace(execution_count=n, error_in_exec=None, error_before_exec=None, info=cell)
        )
        if n == cap:
            at_cap = tracemalloc.get_traced_memory()[0] - before
    at_end = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    summary = hist.summary()
    bounded = at_end <= 1.1 * at_cap and summary["dropped"] == memory_cells - cap
    return [
        row(
            GROUP,
            f"history hook per cell (pre+post, {hook_cells:,} cells)",
            hook,
            "µs",
            baseline="empty hook pair",
            base_samples=empty,
            target="<= 20 µs",
            ok=lambda v, r: v <= 20,
        ),
        row(
            GROUP,
            f"history memory after {memory_cells:,} cells (tracemalloc)",
            at_end / 2**20,
            "MiB",
            baseline=f"at its cap ({cap:,} cells)",
            base_samples=at_cap / 2**20,
            target="<= 1.1x the cap's, drops recorded",
            ok=bounded,
            note=f"summary {summary}",
        ),
    ]


def measure(fixture: Path, sizes: Sizes) -> list[dict[str, Any]]:
    """Every figure of this script on a built data fixture (see fixtures.data_project)."""
    isolate()
    from fixtures import env_of

    env = env_of(fixture)
    os.environ.update(env)
    root = fixture / "repo"
    rows = load_ext(root, env, sizes.fresh_reps)
    rows += first_run(root, env, sizes.fresh_reps)
    rows += start_stop(root, sizes.reps)
    rows += history(sizes.hook_cells, sizes.memory_cells)
    return rows


def main() -> int:
    from fixtures import DEFAULT_CACHE, data_project

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=FULL.files)
    ap.add_argument("--big-mib", type=int, default=FULL.big_mib)
    ap.add_argument("--runs", type=int, default=FULL.reps, help="warm repetitions")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sizes = Sizes(files=args.files, big_mib=args.big_mib, reps=args.runs)
    fixture = data_project(args.cache_dir, sizes.files, sizes.big_mib)
    rows = measure(fixture, sizes)
    print(table(rows))
    if args.json:
        write_report(args.json, rows, sizes=sizes.__dict__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
