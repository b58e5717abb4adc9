"""Finding the notebook from a kernel that a real Jupyter server started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, write_notebook

pytestmark = pytest.mark.kernel
TOKEN = "nbtrack-test-token"


class Server:
    def __init__(self, url: str, root: Path, runtime: Path) -> None:
        self.url, self.root, self.runtime = url, root, runtime

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    root, runtime = tmp_path / "root", tmp_path / "runtime"
    root.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    port = free_port()
    cmd = [
        sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={port}",
        "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
    ]  # fmt: skip
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed at teardown; read when it fails
    proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
    srv = Server(f"http://127.0.0.1:{port}", root, runtime)
    deadline = time.time() + 60
    while True:
        try:
            srv.call("GET", "/api/status")
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                log.close()
                tail = (tmp_path / "server.log").read_text()[-2000:]
                raise RuntimeError(f"jupyter server did not start:\n{tail}") from None
            time.sleep(0.3)
    yield srv
    proc.terminate()
    proc.wait(30)
    log.close()


def run_in_kernel(client: Any, code: str) -> str:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = client.execute_interactive(code, timeout=120, output_hook=hook)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out)


def test_session_path_then_sessions_api_after_a_rename(server: Server) -> None:
    from jupyter_client import BlockingKernelClient

    # Given a notebook opened in a real Jupyter server, whose kernel loads nbtrack
    nb_dir = server.root
    write_notebook(nb_dir / "first.ipynb", ["1"])
    session = server.call(
        "POST", "/api/sessions", {"path": "first.ipynb", "type": "notebook", "kernel": {"name": "python3"}}
    )
    client = BlockingKernelClient(
        connection_file=str(server.runtime / f"kernel-{session['kernel']['id']}.json")
    )
    client.load_connection_file()
    # No heartbeat channel: a standalone client reads one missed beat on a busy machine as a dead
    # kernel; waiting for the kernel_info reply is the real test of readiness.
    client.start_channels(hb=False)
    try:
        client.wait_for_ready(timeout=60)
        # When a run starts, the kernel's session variable names the notebook
        out = run_in_kernel(client, "%load_ext nbtrack\n%track start\n%track status")
        assert f"notebook: {nb_dir / 'first.ipynb'} (found by jupyter-session)" in out
        run_in_kernel(client, "%track stop")
        # When the notebook is renamed, JPY_SESSION_NAME goes stale and the sessions API is asked
        server.call("PATCH", "/api/contents/first.ipynb", {"path": "second.ipynb"})
        server.call("PATCH", f"/api/sessions/{session['id']}", {"path": "second.ipynb"})
        out = run_in_kernel(client, "%track start\n%track status\n%track stop")
        assert f"notebook: {nb_dir / 'second.ipynb'} (found by server-sessions)" in out
    finally:
        client.stop_channels()
        server.call("DELETE", f"/api/sessions/{session['id']}")
