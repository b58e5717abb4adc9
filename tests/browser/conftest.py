"""A real JupyterLab on a real git + DVC project, and Debian's chromium driven by playwright.

No browser download: playwright launches ``/usr/bin/chromium`` (``NBTRACK_CHROMIUM`` overrides).
JupyterLab runs from this interpreter's environment, with fresh config, settings, workspace and
runtime folders, so nothing from the machine's Jupyter set-up leaks in; the nbtrack server
extension is enabled on the command line, and the labextension is the one installed in
``sys.prefix`` (``pip install -e .`` or ``jupyter labextension develop .``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("NBTRACK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Variables that would point the kernel, the server or a replay at the machine's own MLflow.
_LEAKY_ENV = ("MLFLOW_TRACKING_URI", "NBTRACK_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "NBTRACK_EXPERIMENT")


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def api(self, path: str, method: str = "GET") -> Any:
        """A JSON endpoint of the server, token-authenticated."""
        req = urllib.request.Request(
            f"{self.url}/{path.lstrip('/')}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def _labextension_installed() -> bool:
    """The panel's built bundle where JupyterLab looks for it (this environment's share/)."""
    from jupyter_core.paths import jupyter_path

    return any(Path(p, "nbtrack", "package.json").is_file() for p in jupyter_path("labextensions"))


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers: up
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[Any]:
    """Start ``jupyter lab`` on a project folder: ``lab_factory(root) -> Lab``; stopped at teardown."""
    if not _labextension_installed():
        pytest.fail(
            "the nbtrack labextension is not installed in this environment: "
            "run `pip install -e .` (builds it) or `jupyter labextension develop --overwrite .`"
        )
    procs: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(root: Path) -> Lab:
        from conftest import free_port  # tests/conftest.py

        base = tmp_path / "jupyter"
        dirs = {
            name: base / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        # No "get notified about Jupyter news?" toast over the panel (and no request for news).
        news = dirs["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        news.parent.mkdir(parents=True)
        news.write_text(json.dumps({"fetchNews": "false"}))
        port, token = free_port(), secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
        env.update(
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            IPYTHONDIR=str(dirs["ipython"]),
            DVC_NO_ANALYTICS="1",
            GIT_CONFIG_NOSYSTEM="1",
            MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true",
            # The kernel finds `jupyter`, `python -m nbtrack` and git the way a user's would.
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        cmd = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.jpserver_extensions={'nbtrack': True}",
            f"--LabApp.user_settings_dir={dirs['settings']}",
            f"--LabApp.workspaces_dir={dirs['workspaces']}",
            # window.jupyterapp: the test runs Lab commands (Run All) without relying on menus.
            "--LabApp.expose_app_in_browser=True",
            "--ServerApp.open_browser=False",
        ]
        log_path = tmp_path / "jupyter-lab.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/api/status?token={token}", proc, log_path, timeout=90)
        return Lab(url=url, token=token, root=root, log=log_path)

    yield start
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@dataclass
class Browser:
    page: Any
    #: The page's console messages and uncaught errors, for failure reports.
    console: list[str]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """A playwright page in Debian's headless chromium, and what its console said."""
    if not Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (tests/run.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1500, "height": 950})
        page = context.new_page()
        messages: list[str] = []
        page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
        try:
            yield Browser(page, messages)
        finally:
            context.close()
            browser.close()


class Clock:
    """Prints each step's elapsed time since the test began (where a slow browser test spends it)."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()

    def __call__(self, step: str) -> None:
        now = time.monotonic()
        print(f"  {now - self.start:6.1f} s  (+{now - self.last:5.1f})  {step}")
        self.last = now


def shot(page: Any, out: Path, name: str) -> None:
    """A screenshot of the whole page into ``out``, its path printed (run with ``-s`` to see it)."""
    page.screenshot(path=str(out / f"{name}.png"))
    print(f"screenshot: {out / name}.png")
