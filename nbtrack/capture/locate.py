"""Find the notebook a kernel is running, and the project it belongs to.

Methods are tried in order of reliability, and the one that answered is recorded:

1. ``explicit`` — ``%track start --notebook PATH``;
2. ``frontend`` — the path the JupyterLab panel told the kernel over the ``nbtrack`` comm (kept
   current across renames, unlike ``JPY_SESSION_NAME``; see :mod:`nbtrack.magics.frontend`);
3. ``papermill`` — the input notebook of a papermill run (``NBTRACK_PAPERMILL`` set by nbtrack's own
   runner, else the ``papermill`` command line of the kernel's parent process; relative paths are
   resolved against the folder papermill started in, not its ``--cwd``);
   ``nbconvert`` / ``jupyter-execute`` — the notebook on a ``jupyter nbconvert --execute`` or
   ``jupyter execute`` command line (the one in the kernel's folder when it names several);
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
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtrack.redact import policy

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
#: Commands that execute a notebook in a fresh kernel without saving it cell by cell.
_EXECUTORS = {
    "jupyter-nbconvert": "nbconvert",
    "nbconvert": "nbconvert",
    "jupyter-execute": "jupyter-execute",
}
#: Their options that take a value (its notebook-like value is no input).
_NBCONVERT_VALUES = {"--output", "--output-dir", "--to", "--template", "--config", "--writer", "--post"}


@dataclass
class NotebookLocation:
    """Where the notebook is, how we know, and what else was tried."""

    path: Path | None
    method: str | None
    tried: list[str] = field(default_factory=list)
    papermill: dict[str, Any] | None = None
    #: The ``jupyter nbconvert --execute`` / ``jupyter execute`` command that started the kernel.
    executor: dict[str, Any] | None = None

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


def _process(pid: int) -> tuple[list[str], Path] | None:
    """A process's command line and current directory (None when /proc cannot tell)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a], cwd


def _launch_dirs(pid: int, now: Path, cwd_option: str | None) -> list[Path]:
    """Where a process that ``chdir``-ed to ``--cwd`` was started: the folders its relative paths
    may be relative to, most reliable first.

    papermill resolves its input and output against the folder it was started in, then runs in
    ``--cwd`` (so ``/proc/PID/cwd`` is that folder by now): a relative ``--cwd`` is undone, else the
    shell's ``PWD`` in its environment and its parent's folder are the candidates.
    """
    if cwd_option is None:
        return [now]
    dirs: list[Path] = []
    rel = Path(cwd_option)
    depth = len([p for p in rel.parts if p != "."])
    if not rel.is_absolute() and ".." not in rel.parts and depth < len(now.parts):
        dirs.append(now.parents[depth - 1] if depth else now)
    with suppress(OSError, ValueError, IndexError):
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        pwd = next((e[4:].decode() for e in env if e.startswith(b"PWD=")), None)
        if pwd:
            dirs.append(Path(pwd))
    with suppress(OSError, ValueError, IndexError):
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        dirs.append(Path(os.readlink(f"/proc/{ppid}/cwd")))
    return list(dict.fromkeys(dirs))


def _safe_command(argv: list[str]) -> str:
    """A command line as it may be stored: ``papermill -p token VALUE`` keeps the name, not the value."""
    return shlex.join(policy().argv(argv))


def _parse_papermill(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """papermill's positional arguments and its one-value options (``--cwd``, ...) from its argv."""
    positional: list[str] = []
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and arg != "-":
            if "=" in arg:
                key, _, value = arg.partition("=")
                options[key] = value
                i += 1
            elif arg in _PM_FLAGS:
                options[arg] = ""
                i += 1
            elif arg in _PM_TWO:
                i += 3
            else:
                if i + 1 < len(args):
                    options[arg] = args[i + 1]
                i += 2
            continue
        positional.append(arg)
        i += 1
    return positional, options


def papermill_invocation(pid: int | None = None) -> dict[str, Any] | None:
    """Input/output notebooks of the papermill run that started this kernel, if one did.

    nbtrack's own runner says so in ``NBTRACK_PAPERMILL`` (JSON, absolute paths); a plain
    ``papermill`` command is read from the command line of the kernel's parent process, its
    relative paths resolved against the folder papermill was started in (not ``--cwd``).

    Example:
        >>> papermill_invocation(os.getpid()) is None  # this process is no papermill
        True
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
    proc = _process(pid)
    if proc is None:
        return None
    argv, now = proc
    start = next(
        (i + 1 for i, a in enumerate(argv) if Path(a).name == "papermill" or a.endswith("/papermill")),
        None,
    )
    if start is None:
        return None
    positional, options = _parse_papermill(argv[start:])
    if not positional:
        return None
    cwd_option = options.get("--cwd")
    dirs = _launch_dirs(pid, now, cwd_option)
    raw_in = positional[0]
    base = next((d for d in dirs if (d / raw_in).is_file()), dirs[0] if dirs else now)
    info: dict[str, Any] = {"input_path": str((base / raw_in).resolve())}
    if len(positional) > 1:
        out = positional[1]
        info["output_path"] = out if "://" in out or out == "-" else str((base / out).resolve())
    if cwd_option is not None:
        info["cwd"] = cwd_option
        info["launch_dir"] = str(base)
    if "--no-request-save-on-cell-execute" in options:
        info["saves_each_cell"] = False
    info["command"] = _safe_command(argv[start - 1 :])
    return info


def _executor_inputs(tool: str, args: list[str]) -> list[str]:
    """The notebooks named on an nbconvert / ``jupyter execute`` command line (values of options
    such as ``--output x.ipynb`` excluded)."""
    found = []
    for i, arg in enumerate(args):
        if arg.startswith("-") or (i and args[i - 1] in _NBCONVERT_VALUES):
            continue
        if arg.endswith(".ipynb") or tool == "jupyter-execute":
            found.append(arg if arg.endswith(".ipynb") else f"{arg}.ipynb")
    return found


def executor_invocation(kernel_cwd: Path, pid: int | None = None) -> dict[str, Any] | None:
    """The notebook a ``jupyter nbconvert --execute`` / ``jupyter execute`` run gave this kernel.

    Both run a notebook's kernel in the notebook's folder, which tells apart several notebooks on
    one command line. ``input_path`` is None when it cannot be known (``candidates`` say which).

    Example:
        >>> executor_invocation(Path.cwd(), os.getpid()) is None  # this process is neither
        True
    """
    proc = _process(os.getppid() if pid is None else pid)
    if proc is None:
        return None
    argv, cwd = proc
    tool, start = next(
        ((_EXECUTORS[Path(a).name], i + 1) for i, a in enumerate(argv[:3]) if Path(a).name in _EXECUTORS),
        (None, 0),
    )
    if tool is None:
        return None
    named = [(cwd / p).resolve() for p in _executor_inputs(tool, argv[start:])]
    existing = [p for p in named if p.is_file()]
    if len(existing) > 1:
        existing = [p for p in existing if p.parent == kernel_cwd.resolve()]
    return {
        "tool": tool,
        "input_path": str(existing[0]) if len(existing) == 1 else None,
        "candidates": [str(p) for p in named],
        "command": _safe_command(argv[start - 1 :]),
    }


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


def _launch_notes(
    papermill: dict[str, Any] | None,
    executor: dict[str, Any] | None,
    launcher: tuple[list[str], Path] | None = None,
) -> list[str]:
    """Why the command that started the kernel did not give the notebook, when it should have."""
    notes = []
    if papermill and papermill.get("cwd") is not None and not Path(papermill["input_path"]).is_file():
        notes.append(
            f"papermill --cwd {papermill['cwd']}: its input path is relative to the folder papermill "
            "was started in, which is no longer known; give papermill an absolute input path"
        )
    if executor and executor["input_path"] is None:
        notes.append(
            f"{executor['tool']}: the kernel's notebook is none or several of {executor['candidates']}"
        )
    if launcher is not None and not any("ipykernel" in a or "jupyter" in a for a in launcher[0][:3]):
        # e.g. nbclient's NotebookClient in a script: the notebook's path is nowhere in this process
        notes.append(f"kernel started by `{shlex.join(launcher[0][:4])}`, which names no notebook")
    return notes


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
    # Before JPY_SESSION_NAME: a notebook executed from a server's terminal or a `!` cell inherits
    # the session name of another notebook.
    executor = executor_invocation(cwd) if papermill is None else None

    def found(raw: str | os.PathLike[str], method: str) -> NotebookLocation | None:
        path = Path(raw).expanduser()
        path = (cwd / path).resolve() if not path.is_absolute() else path.resolve()
        if path.is_file():
            return NotebookLocation(path, method, tried, papermill, executor)
        tried.append(f"{method}: {path} does not exist")
        return None

    if explicit:
        return NotebookLocation(_explicit(explicit, cwd), "explicit", tried, papermill, executor)
    tried.extend(_launch_notes(papermill, executor))
    candidates: list[tuple[str, str | None]] = [
        ("frontend", str(frontend) if frontend else None),
        ("papermill", papermill["input_path"] if papermill else None),
        (executor["tool"] if executor else "nbconvert", executor["input_path"] if executor else None),
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
    if papermill is None and executor is None:
        tried.extend(_launch_notes(None, None, launcher=_process(os.getppid())))
    return NotebookLocation(None, None, tried, papermill, executor)
