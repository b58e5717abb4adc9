"""The benchmark's projects, built once and kept under a cache folder (``--cache-dir``).

Each fixture is a folder holding the project (``repo/``) and DVC's state and config for it
(``dvc-env/``, see ``dvc_helpers.hermetic_dvc_env``), built in place (DVC's state cache is keyed by
path, so a moved project would be hashed again) and stamped with what it was built from; a stamp that
does not match means a rebuild. Benchmarks that write runs work on copies (:func:`work_copy`).

- ``data-F-M``: git + DVC, ``data/many`` with F small files, ``data/big.bin`` of M MiB, ``nb.ipynb``;
- ``data-N-1``: the same with N small files and a 1 MiB file (the big-count project);
- ``small``: git + DVC, ``data/small.csv`` and ``nb00.ipynb`` ... (the runs and server benchmarks);
- ``runs-R``: ``small`` with an embedded store holding R runs of experiment ``bench`` over its
  notebooks, each a copy of one real tracked run (its tags, params and metrics);
- ``replay-M``: git + DVC, ``data/big.bin`` of M MiB and the 5-cell ``five.ipynb``.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import bench_env, in_child
from dvc_helpers import dvc, git, hermetic_dvc_env, make_big_repo, write

DEFAULT_CACHE = Path.home() / ".cache" / "nbtrack-bench"
STAMP = "bench-fixture.json"
EMPTY_NOTEBOOK = json.dumps(
    {
        "cells": [],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
)


def env_of(fixture: Path) -> dict[str, str]:
    """The environment a benchmark uses on a fixture: its own DVC state and config."""
    return bench_env(hermetic_dvc_env(fixture / "dvc-env"))


def _built(
    folder: Path, key: dict[str, Any], build: Callable[[Path], None], say: Callable[[str], None]
) -> Path:
    key = {**key, "dvc": importlib.metadata.version("dvc"), "mlflow": importlib.metadata.version("mlflow")}
    stamp = folder / STAMP
    try:
        if json.loads(stamp.read_text()) == key:
            return folder
    except (OSError, ValueError):
        pass
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    say(f"building fixture {folder.name} (cached for the next run) ...")
    started = time.perf_counter()
    build(folder)
    stamp.write_text(json.dumps(key))
    say(f"built {folder.name} in {time.perf_counter() - started:.0f} s")
    return folder


def data_project(cache: Path, files: int, big_mib: int, say: Callable[[str], None] = print) -> Path:
    """A git + DVC project with ``files`` small files and a ``big_mib`` MiB file; returns the fixture."""

    def build(folder: Path) -> None:
        root, env = folder / "repo", hermetic_dvc_env(folder / "dvc-env")
        make_big_repo(root, nfiles=files, big_bytes=big_mib << 20, env=env)
        (root / "nb.ipynb").write_text(EMPTY_NOTEBOOK)
        git(root, "add", "nb.ipynb", env=env)
        git(root, "commit", "-q", "-m", "notebook", env=env)

    return _built(cache / f"data-{files}-{big_mib}", {"files": files, "big_mib": big_mib}, build, say)


def small_project(cache: Path, notebooks: int, say: Callable[[str], None] = print) -> Path:
    """A small git + DVC project with ``notebooks`` empty notebooks ``nb00.ipynb`` ..."""

    def build(folder: Path) -> None:
        root, env = folder / "repo", hermetic_dvc_env(folder / "dvc-env")
        root.mkdir()
        git(root, "init", "-q", "-b", "main", env=env)
        dvc(root, "init", "-q", env=env)
        write(root / "data" / "small.csv", "id,label\n" + "".join(f"{i},{i % 2}\n" for i in range(100)))
        dvc(root, "add", "-q", "data/small.csv", env=env)
        for i in range(notebooks):
            (root / f"nb{i:02d}.ipynb").write_text(EMPTY_NOTEBOOK)
        git(root, "add", "-A", env=env)
        git(root, "commit", "-q", "-m", "project", env=env)

    return _built(cache / f"small-{notebooks}", {"notebooks": notebooks}, build, say)


def runs_store(cache: Path, runs: int, notebooks: int, say: Callable[[str], None] = print) -> Path:
    """``small`` with ``runs`` runs of experiment ``bench`` in its embedded store (built in a child
    process: it tracks one real run through IPython first, then copies it with ``MlflowClient``)."""
    template = small_project(cache, notebooks, say)

    def build(folder: Path) -> None:
        shutil.copytree(template / "repo", folder / "repo", symlinks=True)
        shutil.copytree(template / "dvc-env", folder / "dvc-env", symlinks=True)
        in_child(fill_store, folder, runs, notebooks)

    return _built(cache / f"runs-{runs}x{notebooks}", {"runs": runs, "notebooks": notebooks}, build, say)


def fill_store(folder: Path, runs: int, notebooks: int) -> None:
    """Track one run for real, then add copies of it until the store holds ``runs`` runs."""
    import contextlib
    import io
    import os

    os.environ.update(env_of(folder))
    root = folder / "repo"
    os.chdir(root)
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    with contextlib.redirect_stdout(io.StringIO()):
        ip.run_line_magic("load_ext", "nbtrack")
        ip.run_line_magic("track", "start --experiment bench --notebook nb00.ipynb --name run-0")
        ip.run_cell(
            "import mlflow\nmlflow.log_params({f'p{i}': i for i in range(5)})\n"
            "mlflow.log_metrics({'accuracy': 0.9, 'loss': 0.1, 'auc': 0.95})",
            store_history=True,
        )
        ip.run_line_magic("track", "stop")
    tracker = ip._nbtrack_tracker
    store = tracker.last_store
    client = store.client
    model = client.get_run(tracker.last["run_id"])
    exp_id = model.info.experiment_id
    tags = {k: v for k, v in model.data.tags.items() if k != "mlflow.runName"}
    from mlflow.entities import Metric, Param

    params = [Param(k, v) for k, v in model.data.params.items()]
    t0 = int(time.time() * 1000) - runs * 60_000  # one run a minute, the real one newest
    started = time.perf_counter()
    for i in range(1, runs):
        start = t0 + i * 60_000
        run_tags = {**tags, "mlflow.source.name": f"nb{i % notebooks:02d}.ipynb"}
        run = client.create_run(exp_id, start_time=start, tags=run_tags, run_name=f"run-{i}")
        metrics = [Metric(k, v + i * 1e-6, start + 1000, 0) for k, v in model.data.metrics.items()]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id, "FINISHED", end_time=start + 30_000)
        if i % 1000 == 0:
            rate = i / (time.perf_counter() - started)
            print(f"  {i:,}/{runs:,} runs ({rate:.0f}/s)", flush=True)
    ip.run_line_magic("unload_ext", "nbtrack")
    os.chdir(folder)


def replay_project(cache: Path, big_mib: int, say: Callable[[str], None] = print) -> Path:
    """A git + DVC project with a ``big_mib`` MiB file and the 5-cell tracked notebook."""
    from bench_replay import build_project

    def build(folder: Path) -> None:
        build_project(folder / "repo", big_mib, env_of(folder))

    return _built(cache / f"replay-{big_mib}", {"big_mib": big_mib}, build, say)


def work_copy(fixture: Path, dest: Path, *, store: bool = True) -> Path:
    """A copy of a fixture's project (and DVC folders) at ``dest``; ``store=False`` leaves out the
    embedded store. Returns the copied project."""
    ignore = None if store else shutil.ignore_patterns(".nbtrack")
    shutil.copytree(fixture / "repo", dest / "repo", symlinks=True, ignore=ignore)
    shutil.copytree(fixture / "dvc-env", dest / "dvc-env", symlinks=True)
    return dest / "repo"
