"""Benchmark: the data section's capture against `dvc status` and `md5sum`, on big DVC projects.

    .venv/bin/python tests/bench/bench_data.py [--small] [--many] [--runs 10] [--json out.json]

On a git + DVC project with one tracked folder of 10,000 small files and one tracked 1 GiB file
(``--small``: 2,000 files and 64 MiB), built once and cached with its own DVC state database,
measures the capture ``%track start``/``stop`` runs (``DataProvider``) in one process:

- cold: the first capture in a fresh interpreter, imports included;
- unchanged, warm: the same kernel's next captures (its open Repo and folder memo reused);
- the first capture of another kernel (a fresh context in a warm process: DVC's state only);
- one small file changed, and the 1 GiB file changed (each change made before each timed call,
  with an mtime a few seconds old, as for a file written earlier);

against ``dvc status`` (the command, on the same change), ``Repo.status()`` (DVC's Python API, warm,
same process) and ``md5sum`` of the large file. ``--many`` measures the project with 100,000 small
files instead, where the target is: unchanged and modified answered <= 5x faster than ``dvc status``
(ratio <= 0.2) without rehashing unchanged files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from common import FULL, QUICK, Sizes, command, interleaved, isolate, median, row, table, timed, write_report

GROUP = "data"


def _dvc_status(root: Path, env: dict[str, str], changed: bool) -> float:
    # `dvc status -q` exits 1 when something changed.
    return command([sys.executable, "-m", "dvc", "status", "-q"], root, env, ok=(1,) if changed else (0,))


class _Capture:
    """The data provider with one kernel's context; checks each answer."""

    def __init__(self, root: Path) -> None:
        from nbtrack.capture.base import CaptureContext
        from nbtrack.capture.data import DataProvider

        self.root = root
        self.provider, self.ctx = DataProvider(), CaptureContext(root)
        self.fresh_ctx = lambda: CaptureContext(root)

    def __call__(self, modified: int = 0, ctx: Any = None) -> None:
        try:
            data = self.provider.capture(ctx or self.ctx).data
        finally:
            if ctx is not None and "data" in ctx.state:  # another kernel's context: close its Repo
                ctx.state["data"].repo.close()
        summary = data["summary"]
        if summary["modified"] != modified or summary["missing"] or summary["unknown"] or data["problems"]:
            raise AssertionError(f"expected {modified} modified output(s): {summary} {data['problems']}")


class _Change:
    """Changes one file before each timed call, with an mtime a few seconds old (a file written a
    moment ago would bypass the in-kernel memo on purpose: see ``RACY_NS`` in capture/folders.py);
    puts the original content back at the end."""

    def __init__(self, path: Path, *, at_start: bool) -> None:
        self.path, self.at_start, self.n = path, at_start, 0
        with open(path, "rb") as f:
            self.original = f.read(8) if at_start else f.read()

    def __call__(self) -> None:
        self.n += 1
        if self.at_start:  # a large file: its first 8 bytes
            with open(self.path, "r+b") as f:
                f.write((self.n * 7919 + 1).to_bytes(8, "little"))
        else:
            self.path.write_bytes(self.original + f"changed {self.n}\n".encode())
        self._age()

    def restore(self) -> None:
        if self.at_start:
            with open(self.path, "r+b") as f:
                f.write(self.original)
        else:
            self.path.write_bytes(self.original)
        self._age()

    def _age(self) -> None:
        old = time.time_ns() - 5_000_000_000
        os.utime(self.path, ns=(old, old))


def _repo_status(root: Path) -> Any:
    from dvc.repo import Repo

    repo = Repo(str(root))

    def status(changed: bool = False) -> None:
        result = repo.status()
        if bool(result) != changed:
            raise AssertionError(f"Repo.status(): {result}")

    return repo, status


def measure(fixture: Path, sizes: Sizes, *, many: bool = False) -> list[dict[str, Any]]:
    """The capture against DVC on a built fixture (see fixtures.data_project); ``many``: the
    big-count project, with the <= 0.2 target and no 1 GiB file to change."""
    isolate()
    from fixtures import env_of

    env = env_of(fixture)
    os.environ.update(env)  # this process's DVC uses the fixture's state database too
    root = fixture / "repo"
    nfiles = sum(1 for _ in os.scandir(root / "data" / "many"))
    what = f"{nfiles:,} files" + (
        "" if many else f" + {(root / 'data' / 'big.bin').stat().st_size >> 20} MiB"
    )
    group = f"{GROUP}-{'many' if many else 'main'}"
    target = "<= 0.2x (5x faster)" if many else None
    ok = (lambda v, r: r is not None and r <= 0.2) if many else None

    def figure(text: str) -> str:
        return f"data capture, {text} [{what}]"

    started = time.perf_counter()
    capture = _Capture(root)  # imports nbtrack's data provider
    capture()  # imports DVC, opens the repo
    cold = time.perf_counter() - started
    reps, cmd_reps = sizes.reps, sizes.cmd_reps
    cli = [_dvc_status(root, env, False) for _ in range(cmd_reps)]
    repo, api_status = _repo_status(root)
    warm = interleaved({"capture": capture, "api": api_status}, reps if not many else max(3, reps // 2))
    fresh = [timed(lambda: capture(ctx=capture.fresh_ctx())) for _ in range(cmd_reps)]
    rows = [
        row(
            group,
            figure("cold (fresh interpreter, imports)"),
            cold,
            "s",
            baseline="`dvc status`",
            base_samples=cli,
            note="one sample; the `dvc status` command pays its imports too",
        ),
        row(
            group,
            figure("unchanged, warm kernel"),
            warm["capture"],
            "ms",
            baseline="`dvc status`",
            base_samples=cli,
            target=target,
            ok=ok,
        ),
        row(
            group,
            figure("unchanged, warm kernel"),
            warm["capture"],
            "ms",
            baseline="Repo.status() (warm, in process)",
            base_samples=warm["api"],
        ),
        row(
            group,
            figure("unchanged, first in a kernel (DVC state only)"),
            fresh,
            "ms",
            baseline="`dvc status`",
            base_samples=cli,
            target=target,
            ok=ok,
        ),
    ]

    small = _Change(root / "data" / "many" / sorted(os.listdir(root / "data" / "many"))[0], at_start=False)
    mine, theirs, api = [], [], []
    try:
        for _ in range(cmd_reps):
            small()
            mine.append(timed(lambda: capture(modified=1)))
            small()
            theirs.append(_dvc_status(root, env, True))
            small()
            api.append(timed(lambda: api_status(True)))
    finally:
        small.restore()
        capture()
    rows.append(
        row(
            group,
            figure("one small file changed"),
            mine,
            "ms",
            baseline="`dvc status` (same change)",
            base_samples=theirs,
            target=target,
            ok=ok,
            note=f"Repo.status() on the same change: {median(api) * 1000:.0f} ms",
        ),
    )
    if not many:
        rows += _big_changed(group, figure, root, env, capture, cmd_reps)
    repo.close()
    return rows


def measure_many(fixture: Path, sizes: Sizes) -> list[dict[str, Any]]:
    """:func:`measure` on the big-count project."""
    return measure(fixture, sizes, many=True)


def _big_changed(
    group: str, figure: Any, root: Path, env: dict[str, str], capture: _Capture, reps: int
) -> list[dict[str, Any]]:
    big = root / "data" / "big.bin"
    change = _Change(big, at_start=True)
    mine, theirs, md5 = [], [], []
    try:
        for _ in range(reps):
            change()
            mine.append(timed(lambda: capture(modified=1)))
            change()
            theirs.append(_dvc_status(root, env, True))
            md5.append(command(["md5sum", str(big)], root, env))
    finally:
        change.restore()
        capture()  # refills DVC's state with the original content's hash
    return [
        row(
            group,
            figure("the large file changed"),
            mine,
            "s",
            baseline="`dvc status` (same change)",
            base_samples=theirs,
        ),
        row(
            group,
            figure("the large file changed"),
            mine,
            "s",
            baseline="`md5sum` of the large file",
            base_samples=md5,
            note="page cache warm for both",
        ),
    ]


def main() -> None:
    from fixtures import DEFAULT_CACHE, data_project

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help=f"{QUICK.files:,} files and {QUICK.big_mib} MiB")
    parser.add_argument("--many", action="store_true", help="the project with 100,000 small files")
    parser.add_argument("--runs", type=int, default=FULL.reps, help="warm captures to time")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    sizes = Sizes(**{**(QUICK if args.small else FULL).__dict__, "reps": args.runs})
    if args.many:
        fixture = data_project(args.cache_dir, sizes.many_files, 1)
    else:
        fixture = data_project(args.cache_dir, sizes.files, sizes.big_mib)
    rows = measure(fixture, sizes, many=args.many)
    print(table(rows))
    if args.json:
        write_report(args.json, rows, sizes=sizes.__dict__)


if __name__ == "__main__":
    main()
