"""Benchmark: ``nbtrack runs`` and ``nbtrack show`` as a user types them, on an embedded store.

    .venv/bin/python tests/bench/bench_cli.py [--runs 1000] [--notebooks 20] [--json out.json]

Each figure is the wall time of a fresh ``nbtrack`` process (``python -m nbtrack.cli``) on a copy of
the ``runs`` fixture (``--runs`` runs of experiment ``bench``, the newest one tracked for real, with
its snapshot): ``runs`` (the first 50), ``show`` of the tracked run, ``show`` of an unknown id (exit
15). The baseline, measured in the same run, is what ``mlflow runs list`` does: a fresh
``python -c`` that builds an ``MlflowClient`` and calls ``search_runs(max_results=50)``. Target:
<= 1 s each.

Processes run with a bytecode cache (``PYTHONPYCACHEPREFIX`` under the benchmark's cache folder,
warmed by one untimed round), as an installed package runs: this machine sets
``PYTHONDONTWRITEBYTECODE=1``, which would add the compilation of every imported module to both
sides. The ``runs`` command without that cache is shown too.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import FULL, Sizes, bench_env, command, interleaved, isolate, row, table, write_report

GROUP = "cli"
TARGET_S = 1.0
UNKNOWN = "0123456789abcdef0123456789abcdef"
#: What ``mlflow runs list --experiment-id ID`` does, in a fresh interpreter.
BARE = (
    "import sys\n"
    "from mlflow.tracking import MlflowClient\n"
    "client = MlflowClient(tracking_uri=sys.argv[1])\n"
    "exp = client.get_experiment_by_name('bench')\n"
    "assert len(client.search_runs([exp.experiment_id], max_results=50)) == 50\n"
)


def newest_run(db: Path) -> str:
    """The id of the store's newest run (the one tracked for real, with a snapshot)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        found = con.execute("SELECT run_uuid FROM runs ORDER BY start_time DESC LIMIT 1").fetchone()
    return str(found[0])


def commands(root: Path) -> dict[str, list[str]]:
    """The commands timed, by name."""
    nbtrack = [sys.executable, "-m", "nbtrack.cli", "--project", str(root)]
    uri = f"sqlite:///{root / '.nbtrack' / 'mlflow.db'}"
    return {
        "bare": [sys.executable, "-c", BARE, uri],
        "runs": [*nbtrack, "runs"],
        "show": [*nbtrack, "show", newest_run(root / ".nbtrack" / "mlflow.db")],
        "unknown": [*nbtrack, "show", UNKNOWN],
        "floor": [sys.executable, "-c", "pass"],
    }


def timings(root: Path, cache: Path, reps: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per command, with a bytecode cache (all of them) and without (``runs``, ``bare``)."""
    cached = {k: v for k, v in bench_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(cache)
    uncached = bench_env({"PYTHONDONTWRITEBYTECODE": "1"})
    cmds = commands(root)

    def run(name: str, env: dict[str, str]) -> Any:
        ok = (15,) if name == "unknown" else (0,)
        return lambda: command(cmds[name], root, env, ok=ok)

    warm = interleaved({name: run(name, cached) for name in cmds}, reps, warmup=1)
    cold = interleaved({name: run(name, uncached) for name in ("bare", "runs")}, max(1, reps // 2), warmup=0)
    return warm, cold


def measure(fixture: Path, sizes: Sizes) -> list[dict[str, Any]]:
    """The figures on a copy of a built ``runs`` fixture (see fixtures.runs_store)."""
    isolate()
    from fixtures import work_copy

    with tempfile.TemporaryDirectory(prefix="nbtrack-bench-cli-", dir=fixture.parent) as tmp:
        root = work_copy(fixture, Path(tmp) / "copy")
        warm, cold = timings(root, fixture.parent / "pycache", sizes.cmd_reps + 1)
    store = f"{sizes.runs:,} runs"
    base = "fresh `python -c`: MlflowClient.search_runs(max_results=50)"

    def ok(value: float, _ratio: float | None) -> bool:
        return value <= TARGET_S

    figures = [
        ("runs", f"`nbtrack runs` (first 50 of {store}), fresh process"),
        ("show", "`nbtrack show RUN` (a tracked run and its snapshot), fresh process"),
        ("unknown", "`nbtrack show UNKNOWN_ID` (exit 15), fresh process"),
    ]
    rows = [
        row(GROUP, figure, warm[name], "s", baseline=base, base_samples=warm["bare"], target="<= 1 s", ok=ok)
        for name, figure in figures
    ]
    rows.append(
        row(
            GROUP,
            "`nbtrack runs` without a bytecode cache (PYTHONDONTWRITEBYTECODE=1)",
            cold["runs"],
            "s",
            baseline=f"{base}, no bytecode cache",
            base_samples=cold["bare"],
            note="every imported module compiled from source on both sides",
        )
    )
    rows.append(row(GROUP, "fresh `python -c pass` (the floor of any command)", warm["floor"], "s"))
    return rows


def main() -> int:
    from fixtures import DEFAULT_CACHE, runs_store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--notebooks", type=int, default=FULL.notebooks)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = Sizes(runs=args.runs, notebooks=args.notebooks, cmd_reps=args.reps)
    rows = measure(runs_store(args.cache_dir, sizes.runs, sizes.notebooks), sizes)
    print(table(rows))
    if args.json:
        write_report(args.json, rows, sizes=sizes.__dict__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
