"""Find the notebook a kernel is running, and the project it belongs to.

Methods are tried in order of reliability, and the one that answered is recorded:

1. ``explicit`` — ``%track start --notebook PATH``;
2. ``frontend`` — the path the JupyterLab panel told the kernel over the ``nbtrack`` comm (kept
   current across renames, unlike ``JPY_SESSION_NAME``; see :mod:`nbtrack.magics.frontend`);
3. ``papermill`` — the input notebook of a papermill run (``NBTRACK_PAPERMILL`` set by nbtrack's own
   runner, else the ``papermill`` command line of the kernel's parent process);
4. ``jupyter-session`` — ``JPY_SESSION_NAME`` / ``__session__``, set by jupyter_server (absolute path;
   stale after a rename, so it must still exist);
5. ``vscode`` — ``__vsc_ipynb_file__``, set by VS Code;
6. ``server-sessions`` — the sessions API of a running Jupyter server, matched by kernel id (token from
   its ``jpserver-*.json``; short timeout, these files may be stale).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Options of the papermill CLI that take two values / none; every other option takes one.
_PM_TWO = {"-p", "--parameters", "-r", "--parameters_raw"}
_PM_FLAGS = {
    "--inject-input-path",
    "--inject-output-path",
    "--inject-paths",
    "--prepare-only",
    "--progress-bar",
    "--no-progress-bar",
    "--log-output",
    "--no-log-output",
    "--report-mode",
    "--no-report-mode",
    "--request-save-on-cell-execute",
    "--no-request-save-on-cell-execute",
    "--help-notebook",
    "--version",
    "--help",
}


@dataclass
class NotebookLocation:
    """Where the notebook is, how we know, and what else was tried."""

    path: Path | None
    method: str | None
    tried: list[str] = field(default_factory=list)
    papermill: dict[str, Any] | None = None

    @property
    def why_unknown(self) -> str:
        detail = "; ".join(self.tried) if self.tried else "no method applied"
        return f"notebook path unknown ({detail}); pass `%track start --notebook PATH`"


def nearest_ancestor(start: Path, holds: Callable[[Path], bool]) -> Path | None:
    """The nearest folder at or above ``start`` for which ``holds(folder)`` is true, else None."""
    start = start.resolve()
    return next((f for f in (start, *start.parents) if holds(f)), None)


def find_project_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding ``.git`` or ``.dvc``; else ``start``."""
    root = nearest_ancestor(start, lambda f: (f / ".git").exists() or (f / ".dvc").is_dir())
    return root or start.resolve()


def papermill_invocation(pid: int | None = None) -> dict[str, Any] | None:
    """Input/output notebooks of the papermill run that started this kernel, if one did.

    nbtrack's own runner says so in ``NBTRACK_PAPERMILL`` (JSON); a plain ``papermill`` command is
    read from the command line of the kernel's parent process.
    """
    announced = os.environ.get("NBTRACK_PAPERMILL")
    if announced and pid is None:
        try:
            told = json.loads(announced)
        except ValueError:
            told = None
        if isinstance(told, dict) and told.get("input_path"):
            return dict(told)
    pid = os.getppid() if pid is None else pid
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    start = next(
        (i + 1 for i, a in enumerate(argv) if Path(a).name == "papermill" or a.endswith("/papermill")),
        None,
    )
    if start is None:
        return None
    positional: list[str] = []
    i = start
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and arg != "-":
            if "=" in arg or arg in _PM_FLAGS:
                i += 1
            elif arg in _PM_TWO:
                i += 3
            else:
                i += 2
            continue
        positional.append(arg)
        i += 1
    if not positional:
        return None
    info: dict[str, Any] = {"input_path": str((cwd / positional[0]).resolve())}
    if len(positional) > 1:
        info["output_path"] = (
            positional[1] if "://" in positional[1] else str((cwd / positional[1]).resolve())
        )
    info["command"] = shlex.join(argv[start - 1 :])
    return info


def _server_sessions(timeout: float) -> Path | None:
    """Ask running Jupyter servers which notebook owns this kernel (None when none says)."""
    try:
        from ipykernel.connect import get_connection_file  # already imported in a kernel
        from jupyter_core.paths import jupyter_runtime_dir

        kernel_file = Path(get_connection_file()).name
    except Exception:  # noqa: BLE001 - not in a kernel
        return None
    kernel_id = kernel_file.removeprefix("kernel-").removesuffix(".json")
    import urllib.request

    for info_file in sorted(Path(jupyter_runtime_dir()).glob("jpserver-*.json")):
        try:
            server = json.loads(info_file.read_text())
            request = urllib.request.Request(
                server["url"].rstrip("/") + "/api/sessions",
                headers={"Authorization": f"token {server.get('token', '')}"},
            )
            with urllib.request.urlopen(request, timeout=timeout) as response:
                sessions = json.loads(response.read())
        except Exception:  # noqa: BLE001 - stale or foreign server file
            continue
        for session in sessions:
            if (session.get("kernel") or {}).get("id") == kernel_id:
                rel = session.get("path") or (session.get("notebook") or {}).get("path")
                root = server.get("root_dir") or server.get("notebook_dir") or ""
                if rel:
                    return (Path(root) / str(rel)).resolve()
    return None


def _explicit(raw: str, cwd: Path) -> Path:
    """The ``--notebook`` path, resolved; a one-line :class:`NotebookError` unless it is a notebook.

    Parsed in full now (~5 ms a MB here), so that a wrong or corrupt file fails ``%track start`` before
    a run exists, rather than leaving a run without its notebook.
    """
    from nbtrack.capture.notebook import read_notebook  # imports this module
    from nbtrack.errors import NotebookError

    path = Path(raw).expanduser()
    path = (cwd / path).resolve() if not path.is_absolute() else path.resolve()
    if not path.exists():
        raise NotebookError(f"--notebook {raw}: no such file ({path}); give the path of the .ipynb")
    if path.is_dir():
        raise NotebookError(f"--notebook {raw}: {path} is a folder; give the path of the .ipynb")
    read_notebook(path)
    return path


def locate_notebook(
    explicit: str | None = None,
    user_ns: dict[str, Any] | None = None,
    *,
    cwd: Path | None = None,
    server_timeout: float = 1.0,
    frontend: Path | None = None,
) -> NotebookLocation:
    """Resolve the notebook path, trying each method in order (see the module docstring).

    Args:
        explicit: ``--notebook PATH``; when given, the only method tried, and it must be a
            notebook: else :class:`~nbtrack.errors.NotebookError`.
        user_ns: the kernel's namespace (``__session__``, ``__vsc_ipynb_file__``).
        cwd: relative paths are resolved against it.
        server_timeout: seconds to wait for a Jupyter server's sessions API.
        frontend: the absolute path the JupyterLab panel reported, if it did.
    """
    cwd = cwd or Path.cwd()
    ns = user_ns or {}
    tried: list[str] = []
    papermill = papermill_invocation()

    def found(raw: str | os.PathLike[str], method: str) -> NotebookLocation | None:
        path = Path(raw).expanduser()
        path = (cwd / path).resolve() if not path.is_absolute() else path.resolve()
        if path.is_file():
            return NotebookLocation(path, method, tried, papermill)
        tried.append(f"{method}: {path} does not exist")
        return None

    if explicit:
        return NotebookLocation(_explicit(explicit, cwd), "explicit", tried, papermill)
    candidates: list[tuple[str, str | None]] = [
        ("frontend", str(frontend) if frontend else None),
        ("papermill", papermill["input_path"] if papermill else None),
        ("jupyter-session", os.environ.get("JPY_SESSION_NAME") or ns.get("__session__")),
        ("vscode", ns.get("__vsc_ipynb_file__")),
    ]
    for method, raw in candidates:
        if raw and "://" not in raw:
            hit = found(raw, method)
            if hit:
                return hit
    server_path = _server_sessions(server_timeout)
    if server_path is not None:
        hit = found(server_path, "server-sessions")
        if hit:
            return hit
    else:
        tried.append("server-sessions: no Jupyter server knows this kernel")
    return NotebookLocation(None, None, tried, papermill)
