"""The environment section: Python, platform, hardware, installed distributions, redacted env vars.

The installed distributions come from :mod:`nbtrack.capture.distributions` (a scan of ``sys.path``
in a few milliseconds); their names stay importable from here.

Example:
    >>> sorted(interpreter_facts())
    ['packages', 'python']
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from nbtrack.capture.base import CaptureContext, CaptureResult
from nbtrack.capture.distributions import (
    normalize_name,
    requirement_line,
    requirements_txt,
    scan_distributions,
)
from nbtrack.redact import policy

__all__ = [
    "EnvironmentProvider",
    "interpreter_facts",
    "normalize_name",
    "requirement_line",
    "requirements_txt",
    "scan_distributions",
]


def _python_info() -> dict[str, Any]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "in_virtualenv": sys.prefix != sys.base_prefix,
    }


def _platform_info() -> dict[str, Any]:
    system, release, machine = platform.system(), platform.release(), platform.machine()
    # platform.platform() would cost ~20 ms on first call (libc_ver() reads the interpreter binary);
    # build the same string from uname and confstr instead.
    libc = ""
    with contextlib.suppress(ValueError, OSError, AttributeError):  # not glibc, or not POSIX
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    suffix = f"-with-{libc.replace(' ', '')}" if libc else ""
    info: dict[str, Any] = {
        "system": system,
        "release": release,
        "machine": machine,
        "platform": f"{system}-{release}-{machine}{suffix}",
        "distro": None,
    }
    try:
        # /etc/os-release directly: platform.freedesktop_os_release() cost ~28 ms here.
        for line in Path("/etc/os-release").read_text(errors="replace").splitlines():
            if line.startswith("PRETTY_NAME="):
                info["distro"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return info


def _memory_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _memory_limit() -> int | None:
    """The cgroup v2 memory limit (a container's real ceiling), None when unlimited or unknown."""
    try:
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _gpus() -> tuple[list[dict[str, str]], str | None]:
    """GPUs listed by ``nvidia-smi -L``, with a note when the tool is there but fails."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return [], None
    try:
        proc = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi -L failed: {type(exc).__name__}"
    if proc.returncode != 0:
        return [], f"nvidia-smi -L exited {proc.returncode}: {proc.stderr.strip()[:200]}"
    gpus = []
    for line in proc.stdout.splitlines():
        # "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-6f1c...)"
        m = re.match(r"GPU (\d+): (.*?)(?: \(UUID: ([^)]+)\))?$", line.strip())
        if m:
            gpus.append({"index": m.group(1), "name": m.group(2), "uuid": m.group(3) or ""})
    return gpus, None


def _hardware_info() -> dict[str, Any]:
    try:
        available: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = None
    gpus, gpu_note = _gpus()
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_available": available,
        "cpu_model": _cpu_model(),
        "memory_total_bytes": _memory_total(),
        "memory_limit_bytes": _memory_limit(),
        "gpus": gpus,
    }
    if gpu_note:
        info["gpu_note"] = gpu_note
    return info


def interpreter_facts() -> dict[str, Any]:
    """The section's ``python`` and ``packages`` for this interpreter (what replay compares).

    Example:
        >>> sorted(interpreter_facts())
        ['packages', 'python']
    """
    return {"python": _python_info(), "packages": scan_distributions()}


class EnvironmentProvider:
    """Captures the ``environment`` section and ``requirements.txt``.

    Data: ``python`` (version, implementation, executable, prefix, base_prefix, in_virtualenv),
    ``platform`` (system, release, machine, platform, distro), ``hardware`` (cpu_count,
    cpu_available, cpu_model, memory_total_bytes, memory_limit_bytes, gpus), ``packages`` (see
    :func:`scan_distributions`) and ``env_vars`` (every variable, secrets ``[REDACTED]``).

    Example:
        >>> from nbtrack.capture.base import run_provider
        >>> section, files = run_provider(EnvironmentProvider(), CaptureContext(project_root=Path(".")))
        >>> section.status, "requirements.txt" in files
        ('ok', True)
    """

    name = "environment"

    def capture(self, ctx: CaptureContext) -> CaptureResult:
        """Take the section; never stores an environment variable the redaction policy flags."""
        facts = interpreter_facts()
        packages = facts["packages"]
        redactor = policy(ctx.config)
        data = {
            "python": facts["python"],
            "platform": _platform_info(),
            "hardware": _hardware_info(),
            "packages": packages,
            "env_vars": redactor.env(os.environ),
        }
        # Direct URLs lost their credentials when scanned; the user's own value patterns apply here.
        # Line by line: an entry is one line, and most lines skip the scan (~1 ms, not ~8 ms).
        lines = requirements_txt(packages).splitlines(keepends=True)
        requirements = "".join(redactor.text(line) for line in lines)
        return CaptureResult(data=data, files={"requirements.txt": requirements.encode()})
