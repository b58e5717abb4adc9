"""Benchmark: the panel's first look, the first runs page after the Jupyter server starts.

    .venv/bin/python tests/bench/run.py --only first_look [--quick]

Starts a real ``jupyter server`` with the nbtrack extension (fresh config and runtime folders) on a
copy of the ``runs`` fixture (an embedded store with many runs), waits until ``/api/status``
answers, then times ``GET nbtrack/runs?notebook=nb00.ipynb`` sent at once (the first look) and the
same request again (warm: the baseline of the ratio). Target: the first page <= 1 s after the request
is sent. The same with the store on a real ``mlflow server``, where the first request needs
``import mlflow`` (1.5-3.5 s on an idle machine of this kind), which the extension imports in the
background from its start: asked at ``/api/status`` the request waits for the rest of that warm-up;
asked once the server logged it warm (as when Lab's page takes longer to load than the warm-up) it
does not. Each start is a new server process (cold imports); the time from launch to
``/api/status`` and the warm-up's own seconds (from the server's log) are shown too.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from common import Sizes, bench_env, isolate, row

GROUP = "first_look"
NOTEBOOK = "nb00.ipynb"
PAGE = f"nbtrack/runs?notebook={NOTEBOOK}&max_results=50"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, token: str, timeout: float = 120) -> Any:
    import json

    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


WARM_LINE = re.compile(r"nbtrack: warm in ([0-9.]+) s")


def _warm_seconds(log: Path, wait: float = 0.0) -> float | None:
    """The warm-up's seconds from the server's log line, waiting up to ``wait`` seconds for it."""
    deadline = time.perf_counter() + wait
    while True:
        found = WARM_LINE.search(log.read_text(errors="replace"))
        if found or time.perf_counter() >= deadline:
            return float(found.group(1)) if found else None
        time.sleep(0.05)


def one_start(
    root: Path, work: Path, env: dict[str, str], *, after_warm: bool = False
) -> tuple[float, float, float, int, float | None]:
    """Seconds from launch to ``/api/status``, of the first runs page (asked at once, or once the
    server logged its warm-up when ``after_warm``), of the same page warm; rows; warm-up seconds."""
    dirs = {n: work / n for n in ("config", "data", "runtime")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **env,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "server",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.jpserver_extensions={'nbtrack': True}",
    ]
    base = f"http://127.0.0.1:{port}"
    with open(work / "server.log", "wb") as log:
        launched = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"jupyter server exited:\n{(work / 'server.log').read_text()[-3000:]}")
                try:
                    _get(f"{base}/api/status", token, timeout=2)
                    break
                except (urllib.error.URLError, OSError):
                    if time.perf_counter() - launched > 120:
                        raise RuntimeError("jupyter server did not answer /api/status in 120 s") from None
                    time.sleep(0.05)
            up = time.perf_counter() - launched
            if after_warm and _warm_seconds(work / "server.log", wait=300) is None:
                raise RuntimeError("the server never logged `nbtrack: warm in`")
            started = time.perf_counter()
            page = _get(f"{base}/{PAGE}", token)
            first = time.perf_counter() - started
            started = time.perf_counter()
            _get(f"{base}/{PAGE}", token)
            warm = time.perf_counter() - started
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    if page.get("warning"):
        raise RuntimeError(f"the runs page warned: {page['warning']}")
    return up, first, warm, len(page.get("runs", [])), _warm_seconds(work / "server.log")


def _series(
    root: Path, tmp: Path, env: dict[str, str], reps: int, label: str, *, after_warm: bool = False
) -> list[dict[str, Any]]:
    ups, firsts, warms, warmups = [], [], [], []
    when = "once warm" if after_warm else "at /api/status"
    for i in range(reps):
        work = tmp / f"{label.replace(' ', '-')}-{'warm' if after_warm else 'now'}-{i}"
        up, first, warm, count, warmup = one_start(root, work, env, after_warm=after_warm)
        print(
            f"  {label}, asked {when} #{i}: up {up:.2f} s, first page {first:.3f} s ({count} runs), "
            f"warm {warm:.3f} s, warm-up {warmup} s",
            flush=True,
        )
        ups.append(up)
        firsts.append(first)
        warms.append(warm)
        warmups.append(warmup if warmup is not None else float("nan"))
    return [
        row(
            GROUP,
            f"first runs page, asked {when} ({label})",
            firsts,
            "s",
            baseline="the same request again (warm)",
            base_samples=warms,
            target="<= 1 s",
            ok=lambda value, _ratio: value <= 1.0,
        ),
        row(GROUP, f"jupyter server launch -> /api/status ({label}, {when})", ups, "s", note="for scale"),
        row(GROUP, f"nbtrack warm-up, per the server's log ({label}, {when})", warmups, "s", note="scale"),
    ]


def measure(fixture: Path, sizes: Sizes) -> list[dict[str, Any]]:
    """The first-look figures on a copy of the ``runs`` fixture (see fixtures.runs_store)."""
    isolate()
    from fixtures import env_of, work_copy

    reps = max(2, sizes.fresh_reps)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nbtrack-bench-first-", dir=fixture.parent) as tmp:
        project = work_copy(fixture, Path(tmp) / "proj")
        env = bench_env(env_of(fixture))
        rows += _series(project, Path(tmp), env, reps, "embedded store")
        from conftest import MlflowServer

        server = MlflowServer(Path(tmp) / "mlflow")
        try:
            remote = {**env, "NBTRACK_TRACKING_URI": server.url}
            rows += _series(project, Path(tmp), remote, reps, "tracking server store")
            rows += _series(project, Path(tmp), remote, reps, "tracking server store", after_warm=True)
        finally:
            server.stop()
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fixtures
    from common import QUICK, table

    got = measure(fixtures.runs_store(fixtures.DEFAULT_CACHE, QUICK.runs, QUICK.notebooks), QUICK)
    print(table(got))
    os._exit(0)
