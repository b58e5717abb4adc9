"""Real things for the server extension's tests: a project with tracked runs, the API document as
JSON Schema, a ``jupyter server`` process, and a look at processes through ``/proc``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from conftest import all_runs, free_port, git, make_project, store_client, write_notebook

from nbtrack.runner import execute_notebook

REPO = Path(__file__).resolve().parents[1]
ROWS = [
    "%load_ext nbtrack",
    ("parameters", "min_tenure = 0"),
    "%track start --experiment server --name rows",
    "import pandas as pd\nimport mlflow\ndata = pd.read_csv('data/churn.csv')\n"
    "kept = data[data.tenure >= min_tenure]\nmlflow.log_metric('rows', len(kept))",
    "%track stop",
]
OTHER = [
    "%load_ext nbtrack",
    "%track start --experiment server --name other",
    "import mlflow\nmlflow.log_metric('answer', 42)",
    "%track stop",
]


# --- a project with runs ---------------------------------------------------------------------------
@dataclass
class Tracked:
    """A server root holding one git + DVC project whose notebooks real kernels tracked."""

    root: Path  # the server root
    project: Path  # root / "proj": its embedded store in .nbtrack/
    first: str  # analysis/rows.ipynb, min_tenure 0
    second: str  # analysis/rows.ipynb, min_tenure 12
    other: str  # other.ipynb, at the project's top
    outside: Path  # a folder beside the root, with a notebook


def track(project: Path, name: str, parameters: dict[str, Any] | None = None) -> str:
    """Execute a notebook of the project through papermill; the id of the run its kernel tracked."""
    before = (
        {r.info.run_id for r in all_runs(store_client(project))} if (project / ".nbtrack").exists() else set()
    )
    output = project.parent.parent / "executed.ipynb"
    execute_notebook(project / name, output, cwd=project, parameters=parameters)
    new = [r for r in all_runs(store_client(project)) if r.info.run_id not in before]
    assert len(new) == 1, [r.info.run_name for r in new]
    return str(new[0].info.run_id)


def track_runs(base: Path) -> Tracked:
    """``base/root/proj`` with two runs of ``analysis/rows.ipynb`` and one of ``other.ipynb``."""
    project = make_project(base / "root" / "proj", rows=300)
    write_notebook(project / "analysis" / "rows.ipynb", ROWS)
    write_notebook(project / "other.ipynb", OTHER)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "notebooks")
    first = track(project, "analysis/rows.ipynb")
    second = track(project, "analysis/rows.ipynb", {"min_tenure": 12})
    other = track(project, "other.ipynb")
    write_notebook(base / "outside" / "secret.ipynb", ["1"])
    return Tracked(base / "root", project, first, second, other, base / "outside")


# --- the API document --------------------------------------------------------------------------------
def openapi() -> dict[str, Any]:
    import yaml

    spec: dict[str, Any] = yaml.safe_load((REPO / "nbtrack" / "server" / "openapi.yaml").read_text())
    return spec


def _json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema: ``nullable`` becomes a null type, refs point at $defs."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _json_schema(value) for key, value in node.items() if key not in ("nullable", "example")}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def conforms(document: Any, schema: str) -> None:
    """Raise unless ``document`` is valid against the named schema of ``openapi.yaml``."""
    import jsonschema

    defs = _json_schema(openapi()["components"]["schemas"])
    jsonschema.validate(document, {"$ref": f"#/$defs/{schema}", "$defs": defs})


def cookies(response: Any) -> dict[str, str]:
    """The cookies a tornado response sets."""
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("Set-Cookie"):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


# --- a jupyter server process --------------------------------------------------------------------------
def shipped_config(config_dir: Path) -> Path:
    """A Jupyter config folder holding the file the wheel installs in ``etc/jupyter``."""
    target = config_dir / "jupyter_server_config.d" / "nbtrack.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text((REPO / "jupyter-config" / "server-config" / "nbtrack.json").read_text())
    return config_dir


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    log: Path

    def call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=b"{}" if method == "POST" else None,
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        # Generous: the first call into a fresh server process imports mlflow (5 s idle, far more
        # on a loaded CI machine).
        with urllib.request.urlopen(request, timeout=180) as response:
            return json.loads(response.read())


@contextmanager
def jupyter_server(root: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """``python -m jupyter_server`` on loopback, the extension enabled by its shipped config file."""
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(shipped_config(tmp_path / "config")),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
    }
    port, token = free_port(), "nbtrack-test-token"
    cmd = [
        sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={port}",
        "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
    ]  # fmt: skip
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        server = ServerProcess(
            subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT),
            f"http://127.0.0.1:{port}",
            token,
            log_path,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    server.call("GET", "/nbtrack/info")
                    break
                except OSError:
                    if time.monotonic() > deadline or server.proc.poll() is not None:
                        raise RuntimeError(
                            f"jupyter server did not start:\n{log_path.read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.3)
            yield server
        finally:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()


# --- processes ------------------------------------------------------------------------------------------
def _stat(pid: int | str) -> list[str]:
    """State, parent pid, ... of a process (``/proc/PID/stat`` after the command name)."""
    return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


def children(pid: int, command: bytes = b"") -> list[int]:
    """Live child processes of ``pid`` whose command line holds ``command``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, parent = _stat(entry.name)[:2]
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(parent) == pid and state != "Z" and command in cmdline:
            found.append(int(entry.name))
    return found
