"""Recreate a run's recorded environment: a fresh virtualenv with its pins and a kernel for it.

``nbtrack replay RUN_ID --env recreate`` builds, under a folder the caller owns::

    dest/venv/                          the virtualenv (pins installed, nbtrack copied in)
    dest/venv/nbtrack-requirements.txt  the requirement lines that were installed
    dest/kernels/<kernel_name>/kernel.json

uv creates the venv and installs when it can be found (a warm cache makes ~30 pins take seconds);
otherwise ``python -m venv`` and pip. Nothing is downloaded but packages: ``UV_PYTHON_DOWNLOADS``
is ``never``, so the recorded Python must already be on the machine.

Example:
    >>> env = recreate_environment(snapshot.section("environment").data, Path("replay"))
    >>> env.kernel_name, env.installed, [s["name"] for s in env.skipped]
    ('nbtrack-replay-3f2a9c1e', 31, ['nbtrack'])
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import nbtrack
from nbtrack.capture.environment import normalize_name, requirement_line
from nbtrack.errors import CannotReplay, CaptureError, UsageError

__all__ = ["RecreatedEnv", "installable_pins", "interpreter_environment", "recreate_environment"]

SELF_REASON = "provided by the replaying nbtrack"
# nbtrack's requires-python: the kernel imports the replaying nbtrack (``%load_ext nbtrack``).
_MIN_PYTHON = (3, 10)
_PROBE = (
    "import json, platform, sysconfig; "
    "print(json.dumps([platform.python_version(), sysconfig.get_path('purelib')]))"
)
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


@dataclass
class RecreatedEnv:
    """A virtualenv rebuilt from a run's pins, with a kernelspec for it.

    ``notes`` lists the ways it departs from the record beyond ``skipped`` (another patch release
    of Python, an unpinned ipykernel), for the caller to report as drift.
    """

    path: Path
    python: Path
    kernel_name: str
    kernel_dir: Path
    installer: str
    installed: int
    skipped: list[dict[str, str]]
    seconds: float
    python_version: str = ""
    notes: list[str] = field(default_factory=list)


def _local_path(url: str) -> str | None:
    parts = urlsplit(url)
    return unquote(parts.path) if parts.scheme == "file" else None


def _why_not(pkg: dict[str, Any], key: str) -> str | None:
    """Why a recorded package cannot be reinstalled from a pin, None when it can."""
    if key == "nbtrack":
        # Never from the index: an unrelated project may own the name there.
        return SELF_REASON
    if not pkg.get("version"):
        return "no version was recorded"
    url = pkg.get("direct_url")
    if pkg.get("editable"):
        return f"editable install of {(_local_path(url) or url) if url else 'an unknown location'}"
    if not url:
        return None
    path = _local_path(url)
    if path is None:
        return None
    # A local folder or file may have changed or vanished since the run; a pin cannot name it.
    if pkg.get("vcs"):
        return f"checkout of the local repository {path}"
    if pkg.get("archive_hash") or path.endswith(_ARCHIVE_SUFFIXES):
        return f"local file {path}"
    return f"local directory {path}"


def installable_pins(packages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, str]]]:
    """Requirement lines uv or pip can install, and the recorded packages that cannot be reinstalled.

    A plain pin is ``name==version`` (PEP 503 normalised name); VCS and remote archive installs
    become ``name @ url``, reachable in principle. Editable installs, local folders and files, and
    nbtrack itself (the replaying copy is put in the venv instead) are skipped with the reason.

    Example:
        >>> lines, skipped = installable_pins([
        ...     {"name": "Typing_Extensions", "version": "4.12.2", "editable": False, "direct_url": None},
        ...     {"name": "mylib", "version": "0.3", "editable": True, "direct_url": "file:///src/mylib"},
        ... ])
        >>> lines, skipped[0]["reason"]
        (['typing-extensions==4.12.2'], 'editable install of /src/mylib')
    """
    lines: list[str] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    for pkg in packages:
        key = normalize_name(str(pkg.get("name") or ""))
        if not key or key in seen:
            continue
        seen.add(key)
        reason = _why_not(pkg, key)
        if reason is not None:
            skipped.append(
                {"name": str(pkg["name"]), "version": str(pkg.get("version") or ""), "reason": reason}
            )
        else:
            lines.append(requirement_line({**pkg, "name": key}))
    return lines, skipped


def _line_name(line: str) -> str:
    return normalize_name(re.split(r"[=@ ]", line, maxsplit=1)[0])


def _reason(output: str) -> tuple[str | None, str]:
    """(the package named, a one-line reason) from an installer's failure output."""
    text = " ".join(output.split())
    index = "on the package index"
    patterns = [
        (r"there is no version of ([\w.-]+)==([^\s,]+)", f"no version {{1}} of {{0}} {index}"),
        (r"([\w.-]+) was not found in the package registry", f"no project named {{0}} {index}"),
        (r"requirement ([\w.-]+)==\S+ \(from versions: none\)", f"no files of {{0}} for this Python {index}"),
        (r"No matching distribution found for ([\w.-]+)==(\S+)", f"no version {{1}} of {{0}} {index}"),
    ]
    for pattern, template in patterns:
        m = re.search(pattern, text)
        if m:
            return normalize_name(m.group(1)), template.format(*m.groups())
    # Otherwise the deepest cause the installer gives (uv chains them; pip ends with ERROR: lines).
    marks = re.compile(r"^\s*(?:[×╰├│─▶]+\s*|error:\s*|ERROR:\s*|cause(?:d by)?:\s*)", re.IGNORECASE)
    causes = [marks.sub("", ln).strip() for ln in output.splitlines() if marks.match(ln)]
    causes = [c for c in causes if c and not c.lower().startswith("hint")]
    return None, (causes[-1] if causes else (text[-300:] or "no output"))[:300]


def _failure(output: str, lines: list[str], installer: str, code: int) -> CannotReplay:
    named, reason = _reason(output)
    names = {_line_name(ln): ln for ln in lines}
    culprit = names.get(named or "")
    if culprit is None:
        # The requirement mentioned first in the output is the one the installer tripped on.
        hits = [
            (m.start(), ln)
            for n, ln in names.items()
            for m in [re.search(rf"\b{re.escape(n)}\b", output)]
            if m
        ]
        culprit = min(hits)[1] if hits else f"one of the {len(lines)} pins"
    return CannotReplay(
        f"cannot recreate the recorded environment: {installer} could not install `{culprit}` ({reason}, "
        f"exit {code}); make it installable here (package index, credentials), or replay with --env current"
    )


def _find_uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    candidate = Path(sysconfig.get_path("scripts")) / ("uv.exe" if os.name == "nt" else "uv")
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


class _Steps:
    """Runs the subprocesses of one recreate against one deadline, reporting each step."""

    def __init__(self, say: Callable[[str], None], timeout: float, cwd: Path) -> None:
        self.say, self.cwd = say, cwd
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1"}

    def run(self, cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise subprocess.TimeoutExpired(cmd, 0)
            return subprocess.run(
                cmd, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=left, check=False
            )
        except subprocess.TimeoutExpired:
            raise CannotReplay(
                f"recreating the recorded environment took longer than {self.timeout:.0f} s ({what}); "
                "pass a longer timeout, or replay with --env current"
            ) from None
        except OSError as exc:
            raise CannotReplay(f"cannot run {cmd[0]} ({what}): {exc}; replay with --env current") from exc


def _local_pythons(minor: str, implementation: str) -> list[tuple[str, str]]:
    """(version, path) of Python X.Y interpreters that uv does not look for: this one and pyenv's."""
    found = []
    if (
        platform.python_version().startswith(minor + ".")
        and platform.python_implementation() == implementation
    ):
        found.append((platform.python_version(), sys.executable))
    if implementation == "CPython":
        # pyenv keeps every installed version under versions/X.Y.Z, on PATH only when selected.
        root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
        for folder in sorted(root.glob(f"{minor}.*")):
            exe = folder / "bin" / f"python{minor}"
            if re.fullmatch(rf"{re.escape(minor)}\.\d+", folder.name) and exe.is_file():
                found.append((folder.name, str(exe)))
    return found


def _pick_python(steps: _Steps, uv: str | None, python: dict[str, Any]) -> str:
    """The interpreter to build the venv from: the recorded X.Y.Z, else another of the same X.Y."""
    version = str(python.get("version") or "")
    m = re.match(r"(\d+)\.(\d+)", version)
    if not m:
        raise CannotReplay(
            f"the run records no usable Python version ({version!r}); replay with --env current"
        )
    if (int(m.group(1)), int(m.group(2))) < _MIN_PYTHON:
        raise CannotReplay(
            f"the run used Python {version}, older than the 3.10 a replay kernel needs (the replaying "
            "nbtrack runs in it); replay with --env current"
        )
    minor = f"{m.group(1)}.{m.group(2)}"
    implementation = str(python.get("implementation") or "CPython")
    local = _local_pythons(minor, implementation)
    prefix = "" if implementation == "CPython" else f"{implementation.lower()}@"
    for request in (version, minor):
        if uv is not None:
            proc = steps.run([uv, "python", "find", prefix + request], f"looking for Python {request}")
            if proc.returncode == 0 and proc.stdout.strip():
                return proc.stdout.strip().splitlines()[-1]
        for found_version, exe in local:
            if request in (found_version, minor):
                return exe
    raise CannotReplay(
        f"the run used Python {version} and no Python {minor} interpreter is on this machine (looked "
        f"{'on PATH, in uv-managed Pythons' if uv else 'at this Python'} and in pyenv); "
        f"install Python {minor}, or replay with --env current"
    )


def _copy_nbtrack(site: Path) -> None:
    """Make the replaying nbtrack importable in the venv, with metadata for importlib.metadata."""
    src = Path(nbtrack.__file__).parent
    target = site / "nbtrack"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    info = site / f"nbtrack-{nbtrack.__version__}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: nbtrack\nVersion: {nbtrack.__version__}\n")
    (info / "INSTALLER").write_text("nbtrack-replay\n")
    records = []
    for path in sorted(p for p in [*target.rglob("*"), info / "METADATA", info / "INSTALLER"] if p.is_file()):
        digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
        records.append(f"{path.relative_to(site).as_posix()},sha256={digest},{path.stat().st_size}")
    records.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(records) + "\n")


def recreate_environment(
    environment: dict[str, Any],
    dest: Path,
    *,
    say: Callable[[str], None] = print,
    timeout: float = 1800,
    run_id: str | None = None,
    installer: Literal["auto", "uv", "pip"] = "auto",
) -> RecreatedEnv:
    """Build ``dest/venv`` from a recorded environment section and register a kernel for it.

    Args:
        environment: the ``environment`` section's data (``python`` and ``packages``).
        dest: a folder for the venv and the kernelspec; created if missing. What this call makes
            in it is removed again when it fails.
        say: receives one progress line per step.
        timeout: seconds for the whole build, installs included.
        run_id: named in the kernel's display name.
        installer: ``"auto"`` uses uv when found, else ``python -m venv`` and pip.

    Raises:
        CannotReplay: no interpreter of the recorded Python X.Y, or a pin failed to install (the
            message names it and the installer's reason), or the timeout passed.

    Example:
        >>> env = recreate_environment(data, tmp / "replay", run_id="3f2a9c")
        >>> KernelSpecManager(kernel_dirs=[str(env.kernel_dir)]).get_kernel_spec(env.kernel_name)
    """
    start = time.monotonic()
    dest = Path(dest).absolute()
    venv, kernels = dest / "venv", dest / "kernels"
    for made in (venv, kernels):
        if made.exists():
            raise UsageError(f"{made} already exists; recreate the environment into an empty folder")
    uv = None if installer == "pip" else _find_uv()
    if installer == "uv" and uv is None:
        raise UsageError("uv is not on PATH nor beside this Python; install it (pip install uv) or use pip")
    created_dest = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    steps = _Steps(say, timeout, dest)
    try:
        return _build(environment, dest, steps, uv, start, run_id)
    except BaseException:
        for made in (venv, kernels):
            shutil.rmtree(made, ignore_errors=True)
        if created_dest:
            shutil.rmtree(dest, ignore_errors=True)
        raise


def _build(
    environment: dict[str, Any], dest: Path, steps: _Steps, uv: str | None, start: float, run_id: str | None
) -> RecreatedEnv:
    say, notes = steps.say, []
    recorded = dict(environment.get("python") or {})
    base = _pick_python(steps, uv, recorded)
    venv = dest / "venv"
    t = time.monotonic()
    cmd = [uv, "venv", "--python", base, str(venv)] if uv else [base, "-m", "venv", str(venv)]
    proc = steps.run(cmd, "creating the virtualenv")
    if proc.returncode != 0:
        raise CannotReplay(
            f"cannot create a virtualenv from {base}: {(proc.stderr or proc.stdout).strip()[-300:]}; "
            "replay with --env current"
        )
    python = _venv_python(venv)
    probe = steps.run([str(python), "-c", _PROBE], "inspecting the new virtualenv")
    if probe.returncode != 0:
        raise CannotReplay(
            f"the new virtualenv's Python {python} does not run: {probe.stderr.strip()[-300:]}"
        )
    actual, site = json.loads(probe.stdout.strip().splitlines()[-1])
    wanted = str(recorded.get("version"))
    if actual != wanted:
        notes.append(f"Python {actual} instead of the recorded {wanted} (no {wanted} interpreter here)")
    say(
        f"virtualenv {venv} with Python {actual}{' (recorded ' + wanted + ')' if actual != wanted else ''} "
        f"from {base} in {time.monotonic() - t:.1f} s"
    )

    lines, skipped = installable_pins(list(environment.get("packages") or []))
    name = "uv" if uv is not None else "pip"
    installs = (
        [uv, "pip", "install", "--python", str(python)] if uv else [str(python), "-m", "pip", "install"]
    )
    if name == "pip":
        installs += ["--disable-pip-version-check", "--no-input"]
    # The recorded set is complete: installing it as is (no resolver) is the faithful copy. Only a
    # skipped package of the user's own (not nbtrack, whose copy comes in below) may need
    # dependencies the pins lack, so then the installer resolves.
    complete = all(s["reason"] == SELF_REASON for s in skipped)
    if lines:
        t = time.monotonic()
        reqs = venv / "nbtrack-requirements.txt"
        reqs.write_text("".join(f"{ln}\n" for ln in lines))
        proc = steps.run([*installs, "-r", str(reqs), *(["--no-deps"] if complete else [])], "installing")
        if proc.returncode != 0:
            raise _failure(proc.stderr + proc.stdout, lines, name, proc.returncode)
        flag = "no dependency resolution" if complete else "resolving dependencies"
        skip = f"; {len(skipped)} skipped: {', '.join(s['name'] for s in skipped)}" if skipped else ""
        say(
            f"installed {len(lines)} recorded pins with {name} ({flag}{skip}) in {time.monotonic() - t:.1f} s"
        )
    if "ipykernel" not in {_line_name(ln) for ln in lines}:
        t = time.monotonic()
        proc = steps.run([*installs, "ipykernel"], "installing ipykernel")
        if proc.returncode != 0:
            raise _failure(proc.stderr + proc.stdout, ["ipykernel"], name, proc.returncode)
        notes.append("ipykernel was not among the recorded packages; the newest compatible one was installed")
        say(f"installed ipykernel (not a recorded package) with {name} in {time.monotonic() - t:.1f} s")

    t = time.monotonic()
    _copy_nbtrack(Path(site))
    say(f"nbtrack {nbtrack.__version__} copied in (not from the index) in {time.monotonic() - t:.1f} s")

    kernel_name = f"nbtrack-replay-{secrets.token_hex(4)}"
    spec_dir = dest / "kernels" / kernel_name
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {actual} (nbtrack replay{' of run ' + run_id if run_id else ''})",
        "language": "python",
        "metadata": {"nbtrack": {"run_id": run_id, "venv": str(venv)}},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    seconds = time.monotonic() - start
    say(f"kernel {kernel_name} registered in {dest / 'kernels'}; environment ready in {seconds:.1f} s")
    return RecreatedEnv(
        venv, python, kernel_name, dest / "kernels", name, len(lines), skipped, seconds, actual, notes
    )


_SCAN = """\
import json, sys
sys.path.append({root!r})
from nbtrack.capture.environment import interpreter_facts
if sys.path[-1] == {root!r}:
    sys.path.pop()
print(json.dumps(interpreter_facts()))
"""


def interpreter_environment(python: Path) -> dict[str, Any]:
    """The ``python`` and ``packages`` of another interpreter's environment section, scanned there.

    Runs nbtrack's own scan in a subprocess of ``python``: its own nbtrack when it has one, else
    this one's (appended to its ``sys.path`` for the import and removed before the scan). The
    interpreter needs traitlets, which every venv with ipykernel has.

    Example:
        >>> interpreter_environment(env.python)["python"]["version"]
        '3.11.7'
    """
    root = str(Path(nbtrack.__file__).parent.parent)
    try:
        proc = subprocess.run(
            [str(python), "-c", _SCAN.format(root=root)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CaptureError(f"cannot scan the packages of {python}: {exc}; check that it runs") from exc
    if proc.returncode != 0 or not proc.stdout.strip():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CaptureError(
            f"cannot scan the packages of {python}: {last}; check that it runs and has traitlets"
        )
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data
