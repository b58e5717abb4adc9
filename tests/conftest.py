"""Fixtures that build real things: git + DVC repositories, notebooks, MLflow stores, servers."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dvc_helpers import dvc, git

# jp_fetch / jp_serverapp for the server extension's tests (tests/test_server.py)
pytest_plugins = ["pytest_jupyter.jupyter_server"]

__all__ = ["dvc", "git"]


_LEAKY = (
    "MLFLOW_TRACKING_URI",
    "NBTRACK_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "NBTRACK_EXPERIMENT",
    "NBTRACK_CONFIG",
    "JUPYTER_CONFIG_PATH",
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No tracking URI, experiment or config file from the machine leaks into a test (every front-end
    reads the Jupyter config folders and the IPython profile), nor from a test into the next."""
    for name in _LEAKY:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter-config"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    # The environment section's hash key (and notebook signatures) live in the Jupyter data folder.
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("NBTRACK_SPOOL_DIR", str(tmp_path / "spool"))  # runs bound for a server
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    yield
    _forget_tracking()


@pytest.fixture(autouse=True, scope="module")
def _module_starts_clean() -> None:
    """Before a module's own fixtures (autouse ones come first): no tracking URI an earlier module's
    fixture left in this worker, whose kernels would otherwise track into that deleted store."""
    _forget_tracking()


def _forget_tracking() -> None:
    # mlflow.set_tracking_uri (nbtrack's tracking in this process calls it) exports
    # MLFLOW_TRACKING_URI for subprocesses, and a monkeypatch restores only variables that existed
    # when it started: one set during a module fixture outlives the module.
    for name in _LEAKY:
        os.environ.pop(name, None)
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)


def make_project(root: Path, *, use_git: bool = True, use_dvc: bool = True, rows: int = 300) -> Path:
    """A project folder with ``data/churn.csv`` (DVC-tracked when ``use_dvc``), committed to git."""
    from nbtrack.cli.demo import make_churn_csv

    root.mkdir(parents=True, exist_ok=True)
    make_churn_csv(root / "data" / "churn.csv", rows=rows)
    if use_git:
        git(root, "init", "-q", "-b", "main")
    if use_dvc:
        dvc(root, "init", "-q") if use_git else dvc(root, "init", "-q", "--no-scm")
        dvc(root, "add", "-q", "data/churn.csv")
    if use_git:
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "data and code")
    return root


def write_notebook(path: Path, cells: list[Any]) -> Path:
    """Write a notebook; a cell is source text, or ``("parameters", source)`` for a tagged cell."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook()
    for cell in cells:
        if isinstance(cell, tuple):
            tag, source = cell
            nb.cells.append(new_code_cell(source, metadata={"tags": [tag]}))
        else:
            nb.cells.append(new_code_cell(cell))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def store_client(root: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / '.nbtrack' / 'mlflow.db'}")


def all_runs(client: Any) -> list[Any]:
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids, order_by=["attributes.start_time DESC"])) if ids else []


def download_all(client: Any, run_id: str, dest: Path) -> dict[str, bytes]:
    """Every artifact of a run, by relative path."""
    from mlflow.artifacts import download_artifacts

    local = Path(
        download_artifacts(
            run_id=run_id, artifact_path="", dst_path=str(dest), tracking_uri=client.tracking_uri
        )
    )
    return {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The in-process IPython shell with nbtrack freshly loaded (new history, new tracker)."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.history_manager.reset(new_session=True)
    ip.execution_count = 1
    ip.run_line_magic("load_ext", "nbtrack")
    yield ip
    tracker = getattr(ip, "_nbtrack_tracker", None)
    if tracker is not None and tracker.active is not None:
        tracker.stop("KILLED")
    ip.run_line_magic("unload_ext", "nbtrack")
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """A real ``mlflow server`` process on loopback: SQLite backend and proxied artifacts in ``base``."""

    def __init__(self, base: Path, port: int | None = None, *, backend_store_uri: str | None = None) -> None:
        self.base = base
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = start_mlflow_server(base, self.port, backend_store_uri=backend_store_uri)

    def kill(self) -> None:
        """SIGKILL the server and its workers (a crash, not a shutdown)."""
        import psutil

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        for proc in [self.proc, *children]:
            with contextlib.suppress(Exception):
                proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


def start_mlflow_server(
    base: Path, port: int, *, backend_store_uri: str | None = None
) -> subprocess.Popen[bytes]:
    """Start ``mlflow server`` on ``port`` with its store in ``base`` (or ``backend_store_uri``, e.g. a
    PostgreSQL database; artifacts still in ``base / "artifacts"``); returns once /health answers."""
    base.mkdir(parents=True, exist_ok=True)
    fresh = backend_store_uri is None and not (base / "server.db").exists()
    if fresh and _TEMPLATE_DB.exists():
        # MLflow migrates a new database table by table (~12 s idle, far more loaded): a copy of one
        # that a server of this process already created starts as that server did.
        shutil.copyfile(_TEMPLATE_DB, base / "server.db")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    for name in ("MLFLOW_TRACKING_URI", "NBTRACK_TRACKING_URI"):
        env.pop(name, None)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        backend_store_uri or f"sqlite:///{base / 'server.db'}",
        "--artifacts-destination",
        str(base / "artifacts"),
        "--workers",
        "1",
    ]
    with open(base / "server.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    # Until it answers or dies: a loaded machine may take minutes to import mlflow's server (a fixed
    # deadline failed the team test under load); 900 s is the last resort against a hang.
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(base / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        raise RuntimeError("mlflow server did not answer /health within 900 s")
    if fresh and not _TEMPLATE_DB.exists():
        _keep_template(base / "server.db")
    return proc


#: A migrated, empty server database, made by this worker's first server (see start_mlflow_server).
_TEMPLATE_DB = Path(tempfile.gettempdir()) / f"nbtrack-tests-{os.getpid()}" / "mlflow-server.db"


def _keep_template(db: Path) -> None:
    """Copy the database a new server just made, before anything but /health reached it: its schema
    and the Default experiment, nothing else. SQLite's backup API reads it consistently while the
    server holds it open."""
    import sqlite3

    _TEMPLATE_DB.parent.mkdir(parents=True, exist_ok=True)
    atexit.register(shutil.rmtree, _TEMPLATE_DB.parent, True)
    partial = _TEMPLATE_DB.with_suffix(".part")
    with contextlib.closing(sqlite3.connect(db)) as src, contextlib.closing(sqlite3.connect(partial)) as dst:
        src.backup(dst)
    partial.replace(_TEMPLATE_DB)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on loopback (SQLite backend, proxied local artifacts), one per session
    (per xdist worker). Tests sharing it use experiments of their own names."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    yield server.url
    server.stop()


class LateServer:
    """A tracking URL where nothing listens until :meth:`up`, then the shared ``mlflow server``
    answers there: "the server was down, now it is back" without starting a server of its own (a
    start costs 15-60 s). Each connection to the URL is relayed, bytes as they are, to the server.

    For tests that only need the server to be missing for a while; a test that kills or breaks a
    server starts its own :class:`MlflowServer`.
    """

    def __init__(self, server_url: str) -> None:
        self.target = ("127.0.0.1", int(server_url.rsplit(":", 1)[1]))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    def up(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept() (Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for sock in self._open:  # shutdown() wakes the relaying threads blocked in recv()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by down()
                return
            try:
                server = socket.create_connection(self.target, timeout=30)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._open += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until ``src`` ends, then end ``dst``'s writing side."""
    with contextlib.suppress(OSError):
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def late_server(mlflow_server: str) -> Iterator[LateServer]:
    """A URL that refuses connections until ``.up()``, then reaches the shared server."""
    late = LateServer(mlflow_server)
    yield late
    late.down()


def dvc_md5(root: Path, rel: str) -> str:
    import yaml

    text = (root / f"{rel}.dvc").read_text()
    return str(yaml.load(text, Loader=yaml.BaseLoader)["outs"][0]["md5"])


def snapshot_of(files: dict[str, bytes]) -> dict[str, Any]:
    return json.loads(files["nbtrack/snapshot.json"])
