"""Many kernels, one embedded SQLite store: every run of every kernel lands whole.

Eight separate Python processes each create a real IPython shell, ``%load_ext nbtrack``, wait at a
barrier (so they really collide), then track five runs into the same project's fresh store: the
first ``%track start`` of all eight creates the store's tables at the same moment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import all_runs, download_all, git, make_project, snapshot_of, store_client, write_notebook

pytestmark = pytest.mark.kernel

KERNELS = 8
RUNS = 5

#: One "kernel": a real IPython shell with nbtrack loaded, tracking RUNS runs after the barrier.
WORKER = """
import sys, time
from pathlib import Path
from IPython.core.interactiveshell import InteractiveShell

barrier, me, kernels, runs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "nbtrack")
import mlflow  # imported before the barrier: the processes collide on the store, not on imports

(barrier / f"ready-{me}").touch()
deadline = time.time() + 120
while len(list(barrier.glob("ready-*"))) < kernels and time.time() < deadline:
    time.sleep(0.005)
failed, t0 = 0, time.time()
for i in range(runs):
    for cell in (
        f"%track start --experiment load --name k{me}-r{i} --notebook nb.ipynb",
        f"import mlflow\\nmlflow.log_param('kernel', {me})\\nmlflow.log_param('round', {i})\\n"
        f"for step in range(3):\\n    mlflow.log_metric('loss', {me} + {i} / 10 + step, step=step)\\n"
        f"mlflow.log_metric('score', {me * 100 + i})\\nmlflow.log_text('k{me}-r{i}', 'out/result.txt')",
        "%track stop",
    ):
        t = time.time()
        result = ip.run_cell(cell, store_history=True)
        failed += not result.success
        print(f"CELL {i} {cell.split()[0][:12]} {time.time() - t:.2f}s", flush=True)
print(f"WORKER-DONE {me} failed={failed} in {time.time() - t0:.1f}s", flush=True)
sys.exit(1 if failed else 0)
"""


def test_eight_kernels_track_into_one_fresh_store_at_once(tmp_path: Path) -> None:
    # Given a git project with a notebook and no store yet, and eight kernels ready at a barrier
    root = make_project(tmp_path / "proj", use_dvc=False)
    write_notebook(root / "nb.ipynb", ["1 + 1"])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NBTRACK_"))}
    # When all eight track five runs each, at the same moment, into the same store
    t0 = time.time()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(barrier), str(k), str(KERNELS), str(RUNS)],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(KERNELS)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    elapsed = time.time() - t0
    # Then every kernel succeeded, and no error (a locked database least of all) reached its output
    for k, (proc, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
        text = out + err
        assert proc.returncode == 0, f"kernel {k} failed:\n{text[-4000:]}"
        assert f"WORKER-DONE {k} failed=0 " in out
        for bad in ("database is locked", "Traceback", "Error", "WARNING"):
            assert bad not in text, f"kernel {k} printed {bad!r}:\n{text[-4000:]}"
    # And the store holds 40 FINISHED runs, each whole
    client = store_client(root)
    runs = all_runs(client)
    assert len(runs) == KERNELS * RUNS, f"{len(runs)} runs in {elapsed:.1f} s"
    names = sorted(r.info.run_name for r in runs)
    assert names == sorted(f"k{k}-r{i}" for k in range(KERNELS) for i in range(RUNS))
    for run in runs:
        k, i = (int(x[1:]) for x in run.info.run_name.split("-"))
        assert run.info.status == "FINISHED", run.info.run_name
        assert run.data.params == {"kernel": str(k), "round": str(i)}
        assert run.data.metrics == {"loss": k + i / 10 + 2, "score": k * 100 + i}
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1, 2]
        assert run.data.tags["mlflow.source.name"] == "nb.ipynb"
        files = download_all(client, run.info.run_id, tmp_path / "dl" / run.info.run_id)
        assert files["out/result.txt"] == run.info.run_name.encode()
        snapshot = snapshot_of(files)
        # (each section's status is a snapshot fact; no longer the tag nbtrack.section.notebook)
        assert snapshot["sections"]["notebook"]["status"] == "ok"
        assert snapshot["run"]["run_id"] == run.info.run_id
        assert snapshot["run"]["phase"] == "end"
        assert {"nbtrack/notebook.ipynb", "nbtrack/history.ipynb", "nbtrack/requirements.txt"} <= set(files)


def test_a_locked_database_is_waited_out(tmp_path: Path) -> None:
    import sqlite3
    import threading

    from nbtrack.store.sqlite import is_locked_error, retry_locked

    # Given a SQLite database another connection holds an exclusive lock on, for 0.5 s
    db = tmp_path / "busy.db"
    with sqlite3.connect(db) as setup:
        setup.execute("create table t (x)")
    holder = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    holder.execute("begin exclusive")
    threading.Timer(0.5, holder.execute, ("commit",)).start()
    writer = sqlite3.connect(db, timeout=0, isolation_level=None)
    # Then a write fails at once with SQLite's own "database is locked"...
    with pytest.raises(sqlite3.OperationalError) as info:
        writer.execute("insert into t values (1)")
    assert is_locked_error(info.value)
    # ...and through retry_locked it lands once the lock is gone, exactly once
    retry_locked(lambda: writer.execute("insert into t values (2)"), "test insert")
    assert writer.execute("select x from t").fetchall() == [(2,)]
    holder.close()
    writer.close()
