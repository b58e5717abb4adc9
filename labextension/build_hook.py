"""hatch build hook: Node.js for the JupyterLab panel, or the prebuilt panel, or one line saying why not.

Runs before hatch-jupyter-builder's hook (``[tool.hatch.build.hooks.custom]`` comes first in
pyproject.toml), for a wheel or an sdist:

- Node.js >= 18 and ``jlpm`` on PATH: nothing to do here; jupyter-builder builds the panel as before.
- Otherwise, when ``nbtrack/labextension`` already holds a complete panel that is not older than
  its TypeScript sources (an unpacked sdist, a checkout built earlier): the build packages that
  panel as it is and tells jupyter-builder to skip (``SKIP_JUPYTER_BUILDER``), so no Node is needed.
- Otherwise the build stops with one line that says what to install, instead of the traceback of
  a ``jlpm`` that cannot start.

A built wheel never runs this: installing ``nbtrack-*.whl`` needs no Node at all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

NODE_MIN = 18
BUNDLE = "nbtrack/labextension"
# What the bundle is built from; a source file newer than every built file makes the bundle stale.
SOURCES = ("labextension/src", "labextension/style", "labextension/package.json")
_HOW = "(apt-get install nodejs npm, or https://nodejs.org)"
_WHEEL = "or install a built wheel: pip install nbtrack-*.whl"


def node_problem() -> str | None:
    """What stops ``jlpm`` from building the panel here (None when Node >= 18 and jlpm are on PATH).

    Example:
        >>> node_problem() in (None, "no `node` on PATH")  # doctest: +SKIP
        True
    """
    node = shutil.which("node")
    if node is None:
        return "no `node` on PATH"
    try:
        found = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{node} --version` failed ({type(exc).__name__})"
    major = re.match(r"v?(\d+)\.", found)
    if major is None or int(major.group(1)) < NODE_MIN:
        return f"{node} is Node.js {found or '(unknown version)'}"
    if shutil.which("jlpm") is None:
        return "no `jlpm` on PATH"
    return None


def _newest(paths: list[Path]) -> float:
    """The newest modification time of any file under ``paths`` (0 when there is none)."""
    newest = 0.0
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        newest = max([newest, *(p.stat().st_mtime for p in files)])
    return newest


def bundle_state(root: Path, targets: list[str], editable: bool) -> str:
    """``fresh``, ``stale`` or ``absent``: can the panel in ``nbtrack/labextension`` be packaged as is?

    A wheel needs every ensured target (what jupyter-builder checks after a production build); an
    editable install needs only the folder.
    """
    needed = [root / BUNDLE] if editable else [root / t for t in targets]
    if not needed or not all(p.exists() for p in needed):
        return "absent"
    sources = [root / s for s in SOURCES if (root / s).exists()]
    return "stale" if _newest(sources) > _newest([root / BUNDLE]) else "fresh"


def failure(problem: str, state: str) -> str:
    """The one line the build stops with.

    Example:
        >>> failure("no `node` on PATH", "absent")  # doctest: +ELLIPSIS
        'nbtrack: building the JupyterLab panel needs Node.js >= 18 on PATH (apt-get install ...'
    """
    if problem.startswith("no `jlpm`"):
        need = "jlpm on PATH (it comes with jupyterlab>=4, a build requirement: build with isolation)"
    elif problem.startswith("no `node`"):
        need = f"Node.js >= {NODE_MIN} on PATH {_HOW}"
    else:
        need = f"Node.js >= {NODE_MIN} on PATH, found {problem.split(' is Node.js ')[-1]} {_HOW}"
    if state == "stale":
        what = f"the JupyterLab panel in {BUNDLE} is older than labextension/src; rebuilding it"
    else:
        what = "building the JupyterLab panel"
    return f"nbtrack: {what} needs {need}; {_WHEEL}"


class PanelBuildCheck(BuildHookInterface):
    """Checks for Node.js before jupyter-builder runs ``jlpm``; reuses a fresh prebuilt panel without it."""

    PLUGIN_NAME = "custom"
    _skip_set = False

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name not in ("wheel", "sdist") or os.environ.get("SKIP_JUPYTER_BUILDER"):
            return
        problem = node_problem()
        if problem is None:
            return
        builder = self.build_config.hook_config.get("jupyter-builder", {})
        targets = list(builder.get("ensured-targets", [f"{BUNDLE}/package.json"]))
        state = bundle_state(Path(self.root), targets, editable=version == "editable")
        if state != "fresh":
            # SystemExit: the build front-end shows this line, not a traceback through hatchling.
            raise SystemExit(failure(problem, state))
        self.app.display_info(f"nbtrack: {problem}; packaging the prebuilt JupyterLab panel in {BUNDLE}")
        os.environ["SKIP_JUPYTER_BUILDER"] = "1"
        self._skip_set = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._skip_set:
            os.environ.pop("SKIP_JUPYTER_BUILDER", None)
            self._skip_set = False
