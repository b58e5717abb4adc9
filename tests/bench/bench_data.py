"""Benchmark: the data section's capture against `dvc status` and `md5sum`, on a big DVC project.

    .venv/bin/python tests/bench/bench_data.py [--small] [--runs 10] [--json out.json]

Builds (in a temporary folder, with DVC's state database kept there too) a git + DVC project with
one tracked folder of 10,000 small files and one tracked 1 GiB file (``--small``: 1,000 files and
64 MiB), then measures:

- a cold capture in a fresh interpreter (imports included), DVC's state as ``dvc add`` left it;
- warm captures (same kernel, same ``CaptureContext``: the open Repo and folder memo are reused);
- a capture with a fresh context in a warm process (DVC's state only, no in-kernel memo);
- ``Repo.status()`` through DVC's Python API, and the ``dvc status`` command;
- ``md5sum`` of the large file;
- a capture after DVC's state was deleted (every byte hashed), then ``dvc status`` again: it costs
  what a warm one does, because the capture refilled DVC's state.

Takes a few minutes at full size, mostly building the project (``dvc add`` copies 1 GiB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for dvc_helpers

from dvc_helpers import hermetic_dvc_env, make_big_repo

# Run in a fresh interpreter: prints one JSON line of timings (seconds).
CHILD = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from nbtrack.capture.base import CaptureContext
from nbtrack.capture.data import DataProvider
root, runs = Path(sys.argv[1]), int(sys.argv[2])
provider, ctx = DataProvider(), CaptureContext(root)
t1 = time.perf_counter()
data = provider.capture(ctx).data
t2 = time.perf_counter()
warm = []
for _ in range(runs):
    s = time.perf_counter(); provider.capture(ctx); warm.append(time.perf_counter() - s)
fresh_ctx = []
for _ in range(3):
    s = time.perf_counter(); provider.capture(CaptureContext(root)); fresh_ctx.append(time.perf_counter() - s)
print(json.dumps({"import": t1 - t0, "cold": t2 - t1, "warm": warm, "fresh_ctx": fresh_ctx,
                  "summary": data["summary"], "problems": data["problems"]}))
"""


def child(root: Path, runs: int, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(runs)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def api_status(root: Path, runs: int) -> list[float]:
    from dvc.repo import Repo

    times = []
    with Repo(str(root)) as repo:
        for _ in range(runs):
            started = time.perf_counter()
            status = repo.status()
            times.append(time.perf_counter() - started)
    assert status == {}, status
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1,000 files and a 64 MiB file")
    parser.add_argument("--runs", type=int, default=10, help="warm captures to time")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    nfiles, big = (1_000, 64 << 20) if args.small else (10_000, 1 << 30)

    import os

    with tempfile.TemporaryDirectory(prefix="nbtrack-bench-data-") as tmp:
        base = Path(tmp)
        dvc_env = hermetic_dvc_env(base / "dvc-env")
        os.environ.update(dvc_env)  # this process's Repo.status() uses the same state database
        env = {**os.environ}
        root = base / "repo"
        started = time.perf_counter()
        make_big_repo(root, nfiles=nfiles, big_bytes=big, env=dvc_env)
        build_s = time.perf_counter() - started
        dvc = [sys.executable, "-m", "dvc"]

        first = child(root, args.runs, env)
        api = api_status(root, 3)
        cli = [timed([*dvc, "status", "-q"], root, env) for _ in range(3)]
        md5 = [timed(["md5sum", "data/big.bin"], root, env) for _ in range(3)]
        shutil.rmtree(dvc_env["DVC_SITE_CACHE_DIR"])
        Path(dvc_env["DVC_SITE_CACHE_DIR"]).mkdir()
        no_state = child(root, 1, env)
        cli_after = timed([*dvc, "status", "-q"], root, env)

    warm = statistics.median(first["warm"])
    rows = [
        (
            "project",
            f"{nfiles:,} files in data/many + {big >> 20} MiB data/big.bin (built in {build_s:.0f} s)",
        ),
        ("import nbtrack data provider (fresh interpreter)", f"{first['import'] * 1000:8.1f} ms"),
        ("cold capture, fresh interpreter, DVC state from `dvc add`", f"{first['cold'] * 1000:8.1f} ms"),
        (
            f"warm capture, same context (median of {len(first['warm'])})",
            f"{warm * 1000:8.1f} ms  (min {min(first['warm']) * 1000:.1f})",
        ),
        (
            "capture, fresh context in a warm process (median of 3)",
            f"{statistics.median(first['fresh_ctx']) * 1000:8.1f} ms",
        ),
        ("Repo.status() Python API, warm (median of 3)", f"{statistics.median(api) * 1000:8.1f} ms"),
        ("`dvc status` command (median of 3)", f"{statistics.median(cli) * 1000:8.1f} ms"),
        ("`md5sum data/big.bin` (median of 3, page cache warm)", f"{statistics.median(md5) * 1000:8.1f} ms"),
        ("capture with DVC state deleted, fresh interpreter", f"{no_state['cold'] * 1000:8.1f} ms"),
        ("`dvc status` right after that capture", f"{cli_after * 1000:8.1f} ms"),
        ("ratio warm capture / Repo.status()", f"{warm / statistics.median(api):8.3f}"),
        ("ratio warm capture / `dvc status`", f"{warm / statistics.median(cli):8.3f}"),
        ("ratio warm capture / md5sum", f"{warm / statistics.median(md5):8.3f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("summary:", first["summary"], "problems:", first["problems"] or "none")
    if args.json:
        figures = {
            "nfiles": nfiles,
            "big_bytes": big,
            "first": first,
            "api_status": api,
            "cli_status": cli,
            "md5sum": md5,
            "no_state": no_state,
            "cli_status_after_capture": cli_after,
        }
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
