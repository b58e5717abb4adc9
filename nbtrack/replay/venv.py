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

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nbtrack
from nbtrack.errors import CannotReplay, UsageError
from nbtrack.replay.kernelspec import copy_nbtrack, interpreter_environment, register_kernel
from nbtrack.replay.pins import SELF_REASON, install_failure, installable_pins, line_name

__all__ = ["RecreatedEnv", "interpreter_environment", "recreate_environment"]

# nbtrack's requires-python: the kernel imports the replaying nbtrack (``%load_ext nbtrack``).
_MIN_PYTHON = (3, 10)
_PROBE = (
    "import json, platform, sysconfig; "
    "print(json.dumps([platform.python_version(), sysconfig.get_path('purelib')]))"
)


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
    """Create the virtualenv, install the pins and nbtrack, register the kernel."""
    venv = dest / "venv"
    recorded = dict(environment.get("python") or {})
    python, actual, site = _create_venv(steps, uv, venv, recorded)
    wanted = str(recorded.get("version"))
    notes = []
    if actual != wanted:
        notes.append(f"Python {actual} instead of the recorded {wanted} (no {wanted} interpreter here)")
    installer = _Installer(steps, uv, python)
    lines, skipped = installable_pins(list(environment.get("packages") or []))
    installer.pins(lines, skipped, venv / "nbtrack-requirements.txt")
    if "ipykernel" not in {line_name(ln) for ln in lines}:
        installer.ipykernel()
        notes.append("ipykernel was not among the recorded packages; the newest compatible one was installed")
    t = time.monotonic()
    copy_nbtrack(Path(site))
    steps.say(f"nbtrack {nbtrack.__version__} copied in (not from the index) in {time.monotonic() - t:.1f} s")
    kernel_name = register_kernel(dest / "kernels", python, actual, run_id, venv)
    seconds = time.monotonic() - start
    steps.say(f"kernel {kernel_name} registered in {dest / 'kernels'}; environment ready in {seconds:.1f} s")
    kernels, installed = dest / "kernels", len(lines)
    return RecreatedEnv(
        venv, python, kernel_name, kernels, installer.name, installed, skipped, seconds, actual, notes
    )


def _create_venv(
    steps: _Steps, uv: str | None, venv: Path, recorded: dict[str, Any]
) -> tuple[Path, str, str]:
    """A virtualenv of the recorded Python (else one of its X.Y); its interpreter, version, site folder."""
    base = _pick_python(steps, uv, recorded)
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
    steps.say(
        f"virtualenv {venv} with Python {actual}{' (recorded ' + wanted + ')' if actual != wanted else ''} "
        f"from {base} in {time.monotonic() - t:.1f} s"
    )
    return python, str(actual), str(site)


class _Installer:
    """Installs into the new virtualenv with uv when found, else with its own pip."""

    def __init__(self, steps: _Steps, uv: str | None, python: Path) -> None:
        self.steps = steps
        self.name = "uv" if uv is not None else "pip"
        self.command = (
            [uv, "pip", "install", "--python", str(python)]
            if uv
            else [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        )

    def pins(self, lines: list[str], skipped: list[dict[str, str]], reqs: Path) -> None:
        """Install the recorded pins from ``reqs`` (written here)."""
        if not lines:
            return
        # The recorded set is complete: installing it as is (no resolver) is the faithful copy. Only a
        # skipped package of the user's own (not nbtrack, whose copy comes in below) may need
        # dependencies the pins lack, so then the installer resolves.
        complete = all(s["reason"] == SELF_REASON for s in skipped)
        t = time.monotonic()
        reqs.write_text("".join(f"{ln}\n" for ln in lines))
        cmd = [*self.command, "-r", str(reqs), *(["--no-deps"] if complete else [])]
        proc = self.steps.run(cmd, "installing")
        if proc.returncode != 0:
            raise install_failure(proc.stderr + proc.stdout, lines, self.name, proc.returncode)
        flag = "no dependency resolution" if complete else "resolving dependencies"
        skip = f"; {len(skipped)} skipped: {', '.join(s['name'] for s in skipped)}" if skipped else ""
        self.steps.say(
            f"installed {len(lines)} recorded pins with {self.name} ({flag}{skip}) "
            f"in {time.monotonic() - t:.1f} s"
        )

    def ipykernel(self) -> None:
        """The newest compatible ipykernel, for a record that lacks one (the kernel needs it)."""
        t = time.monotonic()
        proc = self.steps.run([*self.command, "ipykernel"], "installing ipykernel")
        if proc.returncode != 0:
            raise install_failure(proc.stderr + proc.stdout, ["ipykernel"], self.name, proc.returncode)
        self.steps.say(
            f"installed ipykernel (not a recorded package) with {self.name} in {time.monotonic() - t:.1f} s"
        )
