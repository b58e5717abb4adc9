"""The environment section: Python, platform, hardware, installed distributions, environment variables.

Environment variables are recorded twice: their values through the redaction policy (secrets
``[REDACTED]``), and a keyed hash of every value (HMAC-SHA256 with a per-user key kept in Jupyter's
data folder, never in the store), so that a replay can tell a changed secret without either value
being stored (:func:`env_hashes`). At ``%track stop`` the section also names the variables the
notebook's code read (:func:`variables_read`); drift is reported for those and for
:data:`nbtrack.compare.RESULT_VARIABLES` (see :func:`nbtrack.compare.diff_environment`).

The installed distributions come from :mod:`nbtrack.capture.distributions` (a scan of ``sys.path``
in a few milliseconds); their names stay importable from here.

Example:
    >>> sorted(interpreter_facts())
    ['packages', 'python']
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nbtrack.capture.base import CaptureContext, CaptureResult
from nbtrack.capture.distributions import (
    normalize_name,
    requirement_line,
    requirements_txt,
    scan_distributions,
)
from nbtrack.capture.history import ExecutedCell
from nbtrack.capture.nbfile import cell_source, code_cells
from nbtrack.models import Section
from nbtrack.redact import policy

__all__ = [
    "EnvironmentProvider",
    "env_hashes",
    "interpreter_facts",
    "normalize_name",
    "note_variables_read",
    "requirement_line",
    "requirements_txt",
    "scan_distributions",
    "variables_read",
]

_NAME = r"([A-Za-z_][A-Za-z0-9_]*)"
_READS = (
    # os.environ["X"], environ.get("X"), os.environ.setdefault("X", ...), os.getenv("X") -- not writes
    re.compile(r"\benviron(?:\.get|\.setdefault|\.pop)?\s*[\[(]\s*(['\"])" + _NAME + r"\1(?!\s*\]\s*=[^=])"),
    re.compile(r"\bgetenv\(\s*(['\"])" + _NAME + r"\1"),
    # "X" in os.environ
    re.compile(r"(['\"])" + _NAME + r"\1\s+(?:not\s+)?in\s+(?:os\.)?environ\b"),
    # %env X (shows it; %env X=1 and %env X 1 set it)
    re.compile(r"^\s*%env\s+()" + _NAME + r"\s*$", re.MULTILINE),
)
_KEY_ID_MESSAGE = b"nbtrack environment key id"
_key_cache: dict[Path, bytes] = {}


def _python_info() -> dict[str, Any]:
    build, built = platform.python_build()
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        # Same version, other build: another compiler or build can round floats differently.
        "build": f"{build}, {built}",
        "compiler": platform.python_compiler(),
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


def variables_read(sources: Iterable[str]) -> list[str]:
    """The environment variables code reads by name (``os.environ["X"]``, ``os.environ.get("X")``,
    ``os.getenv("X")``, ``"X" in os.environ``, ``%env X``); assignments are not reads.

    Example:
        >>> variables_read(['seed = int(os.environ["SEED"])', 'os.environ["OUT"] = "x"', "%env TZ"])
        ['SEED', 'TZ']
    """
    names: set[str] = set()
    for source in sources:
        if "environ" not in source and "getenv" not in source and "%env" not in source:
            continue  # most cells: one substring test each
        for pattern in _READS:
            names.update(m.group(2) for m in pattern.finditer(source))
    return sorted(names)


def note_variables_read(
    section: Section | None, nb: dict[str, Any] | None, executed: Sequence[ExecutedCell]
) -> None:
    """Add ``variables_read`` to an environment section: the variables named by the code the kernel
    ran and the notebook's code cells (the section was taken at start, before any code was known).

    Example:
        >>> section = Section("environment", "ok", None, {})
        >>> note_variables_read(section, None, [ExecutedCell(1, "os.getenv('SEED')")])
        >>> section.data["variables_read"]
        ['SEED']
    """
    if section is None or section.status != "ok":
        return
    sources = [ex.source for ex in executed] + ([cell_source(c) for c in code_cells(nb)] if nb else [])
    section.data["variables_read"] = variables_read(sources)


def _key_file() -> Path:
    from jupyter_core.paths import jupyter_data_dir  # already imported in a kernel (ipykernel)

    return Path(jupyter_data_dir()) / "nbtrack" / "environment.key"


def _env_key(path: Path) -> bytes:
    """The per-user HMAC key at ``path``, created (0600, atomically) the first time."""
    if path in _key_cache:
        return _key_cache[path]
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        try:
            os.link(draft, path)  # fails when another kernel created the key first: use theirs
        except FileExistsError:
            pass
        finally:
            draft.unlink()
        key = path.read_bytes()
    if len(key) < 16:
        raise OSError(f"{path} holds no usable key (delete it; nbtrack makes a new one)")
    _key_cache[path] = key
    return key


def env_hashes(env: Mapping[str, str], key_file: Path | None = None) -> dict[str, Any]:
    """A keyed hash of every variable's value, comparable between runs of one user, never reversible.

    HMAC-SHA256 (128 bits kept) with the user's key (Jupyter's data folder,
    ``nbtrack/environment.key``): a bare hash of a short secret could be brute-forced from the
    store. ``key_id`` tells whether two runs' hashes were made with the same key.

    Example:
        >>> sorted(env_hashes({"TZ": "UTC"}, tmp / "k"))  # doctest: +SKIP
        ['hashes', 'key_id']
    """
    key = _env_key(key_file or _key_file())
    keyed = hmac.new(key, digestmod=hashlib.sha256)  # keyed once, copied per value (~1/3 cheaper)
    hashes = {}
    for name, value in env.items():
        one = keyed.copy()
        one.update(value.encode("utf-8", "surrogateescape"))
        hashes[name] = one.hexdigest()[:32]
    return {"key_id": hmac.new(key, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16], "hashes": hashes}


class EnvironmentProvider:
    """Captures the ``environment`` section and ``requirements.txt``.

    Data: ``python`` (version, implementation, executable, prefix, base_prefix, in_virtualenv),
    ``platform`` (system, release, machine, platform, distro), ``hardware`` (cpu_count,
    cpu_available, cpu_model, memory_total_bytes, memory_limit_bytes, gpus), ``packages`` (see
    :func:`scan_distributions`), ``env_vars`` (every variable, secrets ``[REDACTED]``),
    ``env_hashes`` (:func:`env_hashes`; ``{"reason": ...}`` when there is no key) and, added at
    ``%track stop``, ``variables_read`` (:func:`variables_read`).

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
        try:
            data["env_hashes"] = env_hashes(os.environ)
        except OSError as exc:  # a read-only home: values are still compared where not secret
            data["env_hashes"] = {"reason": f"no environment key ({exc}); secret values not comparable"}
        # Direct URLs lost their credentials when scanned; the user's own value patterns apply here.
        # Line by line: an entry is one line, and most lines skip the scan (~1 ms, not ~8 ms).
        lines = requirements_txt(packages).splitlines(keepends=True)
        requirements = "".join(redactor.text(line) for line in lines)
        return CaptureResult(data=data, files={"requirements.txt": requirements.encode()})
