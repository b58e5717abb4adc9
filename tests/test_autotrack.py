"""Autotrack: ``c.NbtrackConfig.autotrack = True`` starts a tracked run at the kernel's first MLflow
call and ends it at ``%track stop`` or kernel shutdown; off, nbtrack starts nothing.

Real kernels (nbtrack loaded through ``c.InteractiveShellApp.extensions`` in the IPython profile, as
a user would configure it), a real git project and its real embedded SQLite store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, download_all, make_project, snapshot_of, store_client

pytestmark = pytest.mark.kernel


def _profile(ipython_dir: Path, autotrack: bool) -> None:
    profile = ipython_dir / "profile_default"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "ipython_kernel_config.py").write_text(
        f"c.InteractiveShellApp.extensions = ['nbtrack']\nc.NbtrackConfig.autotrack = {autotrack}\n"
    )


def _session(root: Path, env: dict[str, str], cells: list[str]) -> list[str]:
    """Run ``cells`` in a fresh kernel in ``root``, then shut it down gracefully (exit handlers run);
    the text each cell printed."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(root), env={**os.environ, **env})
    km.shutdown_wait_time = 120  # the end snapshot at exit must not be cut short on a busy machine
    printed = []
    try:
        for code in cells:
            out: list[str] = []

            def keep(msg: dict[str, Any], out: list[str] = out) -> None:
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

            reply = kc.execute_interactive(code, timeout=300, output_hook=keep)
            printed.append("".join(out))
            assert reply["content"]["status"] == "ok", printed[-1]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    return printed


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("auto") / "proj", use_dvc=False)


@pytest.fixture(scope="module")
def autotracked(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """One kernel with autotrack on: a metric (run 1), %track stop, another metric (run 2), exit."""
    ipython_dir = tmp_path_factory.mktemp("ipython")
    _profile(ipython_dir, autotrack=True)
    env = {"IPYTHONDIR": str(ipython_dir), "JUPYTER_CONFIG_DIR": str(ipython_dir / "jupyter")}
    yield _session(
        project,
        env,
        [
            "import mlflow\nmlflow.log_metric('loss', 0.5)",
            "mlflow.log_metric('acc', 0.9)\nmlflow.log_param('depth', 3)",
            "%track stop",
            "with mlflow.start_run() as r:\n    mlflow.log_metric('second', 1.0)",
        ],
    )


def test_autotrack_starts_at_the_first_mlflow_call_and_ends_at_stop_and_exit(
    project: Path, autotracked: list[str], tmp_path: Path
) -> None:
    # Given a kernel with autotrack on that logged to MLflow without any %track line
    runs = all_runs(store_client(project))  # newest first
    # Then: one run per tracked stretch, each holding what was logged in it
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"], autotracked
    second, first = runs
    assert first.data.metrics == {"loss": 0.5, "acc": 0.9}
    assert first.data.params == {"depth": "3"}
    assert second.data.metrics == {"second": 1.0}
    for run in runs:
        assert run.data.tags["nbtrack.started_by"] == "autotrack"
    assert "nbtrack: tracking run" in autotracked[0]
    # The first ended by %track stop; the second (its `with mlflow.start_run()` adopted the tracked
    # run, whose exit does not end it) at kernel shutdown.
    first_end = snapshot_of(download_all(store_client(project), first.info.run_id, tmp_path / "a"))
    second_end = snapshot_of(download_all(store_client(project), second.info.run_id, tmp_path / "b"))
    assert "ended_by" not in first_end["run"]
    assert second_end["run"]["ended_by"] == "kernel exit"


def test_autotrack_off_starts_no_run(project: Path, tmp_path: Path) -> None:
    # Given the extension loaded with autotrack off, and MLflow pointed at its own store
    root = make_project(tmp_path / "off", use_git=False, use_dvc=False)
    _profile(tmp_path / "ipy", autotrack=False)
    plain = tmp_path / "plain.db"
    env = {"IPYTHONDIR": str(tmp_path / "ipy"), "MLFLOW_TRACKING_URI": f"sqlite:///{plain}"}
    # When the notebook logs a metric
    printed = _session(
        root,
        env,
        [
            "print('loaded', 'TrackMagics' in get_ipython().magics_manager.registry)",
            "import mlflow\nmlflow.log_metric('loss', 0.5)\nmlflow.end_run()",
        ],
    )
    # Then MLflow logged it alone: nbtrack (loaded) started nothing and made no store
    assert printed[0].strip() == "loaded True"
    assert "nbtrack" not in printed[1]
    assert not (root / ".nbtrack").exists()
    assert plain.exists()
