"""What the benchmark scripts share: timing, the row every figure becomes, the table, machine facts.

A figure is one *row*: its value, the baseline measured in the same run (same machine, same moment,
same fixture) and their ratio, and, where the project set one, a target with pass/fail. Times are
medians over repetitions; every sample is kept in the JSON.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # dvc_helpers, conftest (MlflowServer)

GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@nbtrack.invalid"]


@dataclass(frozen=True)
class Sizes:
    """How big the fixtures are and how often each figure is repeated."""

    files: int = 10_000  # small files of the main DVC project
    big_mib: int = 1024  # its large file (and the replay project's)
    many_files: int = 100_000  # the big-count DVC project
    runs: int = 10_000  # runs in the listing store
    notebooks: int = 20  # notebooks those runs belong to
    hook_cells: int = 10_000  # cells timed through the history hook
    memory_cells: int = 100_000  # cells pushed through the history for its memory
    reps: int = 10  # warm, in-process repetitions
    fresh_reps: int = 5  # fresh-interpreter repetitions
    cmd_reps: int = 3  # `dvc status`, `md5sum` and friends
    replay_reps: int = 5


FULL = Sizes()
QUICK = Sizes(
    files=2_000,
    big_mib=64,
    many_files=10_000,
    runs=1_000,
    reps=5,
    fresh_reps=2,
    cmd_reps=2,
    replay_reps=2,
)


# --- timing ---------------------------------------------------------------------------------------
def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(
    fns: Mapping[str, Callable[[], Any]], reps: int, warmup: int = 1, settle: float = 0.0
) -> dict[str, list[float]]:
    """Seconds per call of each function, the functions taking turns (a load spike on the machine
    then hits both sides, not one); ``warmup`` untimed rounds first. ``settle`` seconds of sleep
    after the warm-up and after each call let background work a call leaves (nbtrack's signer
    process) finish instead of landing on the next call."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    time.sleep(settle * 4)
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            out[name].append(timed(fn))
            time.sleep(settle)
    return out


#: Variables of the machine that would send the benchmark's runs elsewhere.
FOREIGN = ("MLFLOW_TRACKING_URI", "NBTRACK_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "NBTRACK_EXPERIMENT")


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without a tracking URI from the machine, DVC analytics off."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env.update({"DVC_NO_ANALYTICS": "1", "GIT_CONFIG_NOSYSTEM": "1", **(extra or {})})
    return env


def isolate() -> None:
    """Drop the machine's tracking URI and experiment from this process (and its children)."""
    for name in FOREIGN:
        os.environ.pop(name, None)


def fresh(code: str, cwd: Path, env: Mapping[str, str] | None = None, *args: str) -> float:
    """Seconds the snippet prints last, run in a fresh interpreter (cold imports)."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=dict(env or bench_env()),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"snippet failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def command(
    cmd: list[str], cwd: Path, env: Mapping[str, str] | None = None, ok: tuple[int, ...] = (0,)
) -> float:
    """Seconds a command takes; it must exit with one of ``ok``."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=dict(env or bench_env()), capture_output=True, check=False)
    took = time.perf_counter() - started
    if proc.returncode not in ok:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return took


def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a fresh interpreter (spawned, not forked): each benchmark gets its own
    IPython shell, MLflow globals, imports and working directory. Its exceptions come back here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# --- rows -------------------------------------------------------------------------------------------
_SCALE = {"s": 1.0, "ms": 1e3, "µs": 1e6}


def row(
    group: str,
    figure: str,
    samples: Sequence[float] | float,
    unit: str = "ms",
    *,
    baseline: str | None = None,
    base_samples: Sequence[float] | float | None = None,
    target: str | None = None,
    ok: bool | Callable[[float, float | None], bool] | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One figure. Samples are seconds when ``unit`` is a time unit (shown in ``unit``), else raw.

    ``ok`` is the pass/fail verdict, or a function of (value, ratio) computing it.
    """
    scale = _SCALE.get(unit, 1.0)
    values = [samples] if isinstance(samples, (int, float)) else list(samples)
    value = median(values) * scale
    base = None
    base_values: list[float] = []
    if base_samples is not None:
        base_values = [base_samples] if isinstance(base_samples, (int, float)) else list(base_samples)
        base = median(base_values) * scale
    ratio = value / base if base else None
    verdict = ok(value, ratio) if callable(ok) else ok
    return {
        "group": group,
        "figure": figure,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": base,
        "ratio": ratio,
        "target": target,
        "pass": verdict,
        "note": note,
        "samples": [v * scale for v in values],
        "baseline_samples": [v * scale for v in base_values],
    }


def failed_row(group: str, error: str) -> dict[str, Any]:
    return {
        "group": group,
        "figure": f"{group}: benchmark failed",
        "value": None,
        "unit": "",
        "baseline": None,
        "baseline_value": None,
        "ratio": None,
        "target": None,
        "pass": False,
        "note": error,
        "samples": [],
        "baseline_samples": [],
    }


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


HEADERS = ("figure", "value", "baseline", "ratio", "target", "pass")


def _cells(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    lines = []
    for r in rows:
        base = "-"
        if r.get("baseline"):
            base = (
                f"{r['baseline']}: {fmt(r['baseline_value'], r['unit'])}"
                if r["baseline_value"]
                else r["baseline"]
            )
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.3g}x"
        verdict = {True: "PASS", False: "FAIL", None: "-"}[r.get("pass")]
        lines.append((r["figure"], fmt(r["value"], r["unit"]), base, ratio, r.get("target") or "-", verdict))
    return lines


def _notes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"- {r['figure']}: {r['note']}" for r in rows if r.get("note")]


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a plain-text table, notes below."""
    lines = _cells(rows)
    widths = [max(len(x) for x in col) for col in zip(HEADERS, *lines, strict=True)]
    out = [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in [HEADERS, *lines]
    ]
    notes = _notes(rows)
    return "\n".join(out + (["", "notes:", *notes] if notes else []))


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a Markdown table (for the README), notes below."""
    out = ["| " + " | ".join(HEADERS) + " |", "|" + " --- |" * len(HEADERS)]
    out += ["| " + " | ".join(x.replace("|", "\\|") for x in line) + " |" for line in _cells(rows)]
    notes = _notes(rows)
    return "\n".join(out + (["", *notes] if notes else []))


def write_report(path: Path, rows: Sequence[Mapping[str, Any]], **extra: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    facts = extra.pop("machine_after", None) or machine_facts()
    path.write_text(json.dumps({"machine": facts, **extra, "rows": list(rows)}, indent=1))


# --- facts ------------------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "--no-optional-locks", *args], cwd=REPO, capture_output=True, text=True, check=False
        )
    except OSError:
        return ""
    return proc.stdout.strip()


def cpu_probe(n: int = 2_000_000) -> float:
    """Seconds of a fixed pure-Python loop: how fast this (shared, virtual) machine runs right now.
    The load average misses a host that throttles or steals from the VM."""
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return round(time.perf_counter() - started, 3)


def machine_facts() -> dict[str, Any]:
    import psutil

    return {
        "cpu_probe_s": cpu_probe(),
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": {
            d: _version(d) for d in ("nbtrack", "mlflow", "dvc", "dvc-data", "papermill", "ipython")
        },
        "nbtrack_commit": _git("rev-parse", "HEAD"),
        "uncommitted": _git("diff", "--shortstat", "HEAD") or None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
