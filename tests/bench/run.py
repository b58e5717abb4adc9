"""Every performance figure of nbtrack, each against its baseline measured in the same run.

    .venv/bin/python tests/bench/run.py [--quick] [--json FILE] [--markdown FILE] [--cache-dir DIR]
                                        [--only GROUP,...] [--profile DIR]

Prints one table (figure, value, baseline, ratio, target, pass/fail) and, with ``--json``, writes
the same rows (every sample included) with the machine's facts (cores, load, Python, MLflow, DVC);
``--markdown`` writes the table for the README, whose Performance section quotes it. Not part of
the test run. Figures are medians; the machine's load average is recorded before and after, since
other work on a 2-core machine moves them.

Groups, each run in a fresh interpreter of its own:

- ``track``: ``%load_ext`` vs ``import mlflow``; first tracked run in a fresh kernel vs a fresh
  ``import mlflow`` + ``start_run``/``end_run``; warm start+stop vs bare MLflow start/end; the
  per-cell history hook and the history's memory over many cells (bench_track.py);
- ``data-main``: data capture on 10,000 files + 1 GiB (unchanged, one file changed, the large file
  changed) vs ``dvc status``, ``Repo.status()`` and ``md5sum`` (bench_data.py);
- ``data-many``: data capture on 100,000 files vs ``dvc status``, target <= 0.2x (bench_data.py);
- ``runs``: the first page of 10,000 runs (CLI and panel API) vs MLflow's ``search_runs``, target
  <= 0.5 s; start+stop with the 10,000 runs in the store vs an empty store (bench_runs.py);
- ``cli``: ``nbtrack runs`` / ``nbtrack show`` (a run, an unknown id) as fresh processes on the
  ``runs`` store vs a fresh ``python -c`` doing ``MlflowClient.search_runs``, target <= 1 s each
  (bench_cli.py);
- ``remote``: ``%track stop`` against a real ``mlflow server``, time beyond the snapshot, target
  <= 20 ms (bench_remote.py);
- ``replay``: ``nbtrack replay`` vs bare papermill, data restore vs copy (bench_replay.py);
- ``outputs``: papermill + the cell-output comparison vs papermill alone on a 30-cell notebook with
  3 figures, target <= 1.15x (bench_outputs.py);
- ``first_look``: the panel's first runs page right after ``jupyter server`` answers ``/api/status``
  (embedded store, and a real ``mlflow server`` store, asked at once and once the background
  warm-up is logged) vs the same request warm, target <= 1 s (bench_first_look.py);
- ``compare``: the compare view's first page (100 rows) over 1,000 runs with per-step metrics, request
  sent to reply received through a real ``jupyter server``, vs the panel's plain runs page on the same
  server, target <= 0.5 s; sorted + filtered too (bench_compare.py);
- ``run``: ``nbtrack run`` of a 5-cell notebook that logs a metric vs bare papermill of it (MLflow's own
  store), target <= 1.1x (bench_run.py).

``--quick`` shrinks every size (2,000 files, 64 MiB, 10,000 files instead of 100,000, 1,000 runs,
fewer repetitions) to check the whole thing in a few minutes. The projects and the runs store are
built once and kept under ``--cache-dir`` (default ``~/.cache/nbtrack-bench``); at full size the
first build takes a while (1 GiB files, 100,000 files through ``dvc add``, 10,000 runs).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_cli
import bench_compare
import bench_data
import bench_first_look
import bench_outputs
import bench_remote
import bench_replay
import bench_run
import bench_runs
import bench_track
import fixtures
from common import FULL, QUICK, Sizes, failed_row, in_child, machine_facts, markdown, table, write_report

GROUPS = (
    "track",
    "data-main",
    "data-many",
    "runs",
    "cli",
    "remote",
    "replay",
    "outputs",
    "first_look",
    "compare",
    "run",
)


def _plan(
    cache: Path, sizes: Sizes, profile: Path | None
) -> dict[str, tuple[Callable[[], Path], Any, tuple[Any, ...]]]:
    """Group -> (its fixture's builder, its measuring function, extra arguments)."""
    return {
        "track": (lambda: fixtures.data_project(cache, sizes.files, sizes.big_mib), bench_track.measure, ()),
        "data-main": (
            lambda: fixtures.data_project(cache, sizes.files, sizes.big_mib),
            bench_data.measure,
            (),
        ),
        "data-many": (lambda: fixtures.data_project(cache, sizes.many_files, 1), bench_data.measure_many, ()),
        "runs": (lambda: fixtures.runs_store(cache, sizes.runs, sizes.notebooks), bench_runs.measure, ()),
        "cli": (lambda: fixtures.runs_store(cache, sizes.runs, sizes.notebooks), bench_cli.measure, ()),
        "remote": (lambda: fixtures.small_project(cache, sizes.notebooks), bench_remote.measure, (profile,)),
        "replay": (lambda: fixtures.replay_project(cache, sizes.big_mib), bench_replay.measure, ()),
        "outputs": (lambda: bench_outputs.build(cache / "outputs"), bench_outputs.measure, ()),
        "first_look": (
            lambda: fixtures.runs_store(cache, sizes.runs, sizes.notebooks),
            bench_first_look.measure,
            (),
        ),
        "compare": (lambda: bench_compare.compare_store(cache), bench_compare.measure, ()),
        "run": (lambda: bench_run.build(cache / "run"), bench_run.measure, ()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run in a few minutes")
    parser.add_argument("--json", type=Path, help="write the rows and the machine's facts here")
    parser.add_argument("--cache-dir", type=Path, default=fixtures.DEFAULT_CACHE, help="built fixtures")
    parser.add_argument("--only", help=f"comma-separated groups of {', '.join(GROUPS)}")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown (for the README)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the remote stop here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    groups = GROUPS if not args.only else tuple(g.strip() for g in args.only.split(","))
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}; use {', '.join(GROUPS)}")
    plan = _plan(args.cache_dir.expanduser(), sizes, args.profile)
    facts_before = machine_facts()
    print(f"nbtrack benchmark ({'quick' if args.quick else 'full'} size): {sizes}", flush=True)
    rows: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for group in groups:
        build, measure, extra = plan[group]
        started = time.perf_counter()
        try:
            fixture = build()
            print(f"== {group} ...", flush=True)
            got = in_child(measure, fixture, sizes, *extra)
        except Exception as exc:  # noqa: BLE001 - one failing group must not cost the others
            traceback.print_exc()
            got = [failed_row(group, f"{type(exc).__name__}: {exc}")]
        seconds[group] = round(time.perf_counter() - started, 1)
        print(f"== {group} done in {seconds[group]:.0f} s", flush=True)
        rows.extend(got)
    print()
    print(table(rows))
    verdicts = [r["pass"] for r in rows if r["pass"] is not None]
    facts = machine_facts()
    print(
        f"\ntargets: {verdicts.count(True)} pass, {verdicts.count(False)} fail; load average "
        f"{facts_before['load_average'][0]:.2f} -> {facts['load_average'][0]:.2f}, CPU probe "
        f"{facts_before['cpu_probe_s']:.3f} s -> {facts['cpu_probe_s']:.3f} s (2M-iteration loop)"
    )
    if args.markdown:
        args.markdown.write_text(markdown(rows) + "\n")
        print(f"wrote {args.markdown}")
    if args.json:
        write_report(
            args.json,
            rows,
            machine_after=facts,
            size="quick" if args.quick else "full",
            sizes=sizes.__dict__,
            machine_before=facts_before,
            group_seconds=seconds,
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
