"""Benchmark: comparing cell outputs against the papermill execution that produced them.

    .venv/bin/python tests/bench/bench_outputs.py [--runs 5] [--json out.json]

A 30-cell notebook (pandas tables, printed numbers, object reprs, a progress bar, 3 matplotlib
figures, one of them unseeded so that it differs and its thumbnails and difference image are made)
is executed once by papermill as the "original"; then, taking turns, papermill executes it again
(the replay) and ``compare_outputs_of`` compares the two executed notebooks. Issue 13's target:
a replay with the output comparison <= 1.15x the replay without it, i.e. (papermill + comparison) /
papermill. The first comparison in a fresh process (imports of pandas, Pillow, imagehash included:
what one ``nbtrack replay`` pays) is reported apart from the warm ones.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import FULL, Sizes, isolate, median, row, table, write_report

GROUP = "outputs"
FIGURE = (
    "rng = np.random.default_rng({seed})\n"
    "fig, ax = plt.subplots(figsize=(6, 4))\n"
    "ax.plot(rng.normal(size=200).cumsum(), label='walk {n}')\n"
    "ax.scatter(range(0, 200, 10), rng.random(20) * 10, color='C3')\n"
    "ax.legend(); ax.set_title('figure {n}')\n"
    "plt.show()"
)


def cells() -> list[str]:
    """The 30 code cells: 3 figures (the last unseeded), tables, text, numbers."""
    out = [
        "%matplotlib inline\nimport time\n"
        "import numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt",
        "df = pd.DataFrame({'x': np.arange(50) / 7, 'y': np.arange(50) ** 0.5, 'g': list('abcde') * 10})",
    ]
    body = [
        "df.head(10)",
        "df.describe()",
        "df.groupby('g').mean()",
        "print('rows', len(df), 'mean x', df['x'].mean())",
        "class Model:\n    pass\n\nModel()",
        "float(df['y'].sum())",
        "print('done in 0.01s at', time.ctime())",
        "{'accuracy': 0.8125, 'rows': 50}",
    ]
    while len(out) < 27:
        out.append(body[(len(out) - 2) % len(body)])
    out.insert(8, FIGURE.format(seed=0, n=1))
    out.insert(16, FIGURE.format(seed=1, n=2))
    out.append(FIGURE.format(seed="None", n=3))
    return out


def build(folder: Path) -> Path:
    code = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"c{i}",
            "metadata": {},
            "outputs": [],
            "source": s,
        }
        for i, s in enumerate(cells())
    ]
    nb = {
        "cells": code,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for cell in code:
        cell["execution_count"] = None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "thirty.ipynb"
    path.write_text(json.dumps(nb))
    return folder


def measure(fixture: Path, sizes: Sizes) -> list[dict[str, Any]]:
    """papermill execution vs output comparison, taking turns (see the module docstring)."""
    isolate()
    import papermill

    source = build(fixture) / "thirty.ipynb"

    with tempfile.TemporaryDirectory(prefix="nbtrack-bench-outputs-") as tmp:

        def execute(name: str) -> tuple[float, dict[str, Any]]:
            t0 = time.perf_counter()
            nb = papermill.execute_notebook(
                str(source), str(Path(tmp) / name), cwd=tmp, progress_bar=False, kernel_name="python3"
            )
            return time.perf_counter() - t0, dict(nb)

        _, original = execute("original.ipynb")
        execute_s, compare_s = [], []
        first = None
        for i in range(sizes.replay_reps + 1):
            seconds, replayed = execute("replayed.ipynb")
            t0 = time.perf_counter()
            if i == 0:
                from nbtrack.replay.outputs import compare_outputs_of  # the import is part of the cost
            found = compare_outputs_of(original, replayed, normalize_paths=[tmp])
            took = time.perf_counter() - t0
            if i == 0:
                first = (seconds, took)
                counts = found.counts()
                assert counts["figures"] == 3 and counts["differ"] >= 1, counts
                continue
            execute_s.append(seconds)
            compare_s.append(took)
    assert first is not None
    with_compare = [e + c for e, c in zip(execute_s, compare_s, strict=True)]
    cold_ratio = (first[0] + first[1]) / first[0]
    note = (
        f"{counts['cells']} cells, {counts['outputs']} outputs, {counts['figures']} figures compared; "
        f"first comparison in a fresh process {first[1] * 1e3:.0f} ms (ratio {cold_ratio:.3f}); "
        f"warm comparison median {median(compare_s) * 1e3:.0f} ms"
    )
    return [
        row(
            GROUP,
            "papermill + output comparison, 30 cells, 3 figures",
            with_compare,
            "s",
            baseline="papermill alone",
            base_samples=execute_s,
            target="<= 1.15x",
            ok=lambda v, r: r is not None and r <= 1.15 and cold_ratio <= 1.15,
            note=note,
        ),
        row(GROUP, "output comparison alone (warm)", compare_s, "ms"),
    ]


def main() -> None:
    from fixtures import DEFAULT_CACHE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=FULL.replay_reps)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = Sizes(replay_reps=args.runs)
    rows = measure(args.cache_dir.expanduser() / "outputs", sizes)
    print(table(rows))
    if args.json:
        write_report(args.json, rows, sizes=sizes.__dict__)


if __name__ == "__main__":
    main()
