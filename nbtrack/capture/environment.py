"""The environment section: Python, platform, hardware, installed distributions, redacted env vars.

Installed distributions are found by scanning ``sys.path`` for ``*.dist-info`` / ``*.egg-info``
folders and reading only the ``Name:``/``Version:`` header lines of their metadata plus PEP 610's
``direct_url.json``: ~6-10 ms the first time for 230 packages (two small reads each, ~15 us per
open on this disk), ~0.2 ms afterwards (per-folder results are reused while the folder's mtime is
unchanged), where reading every version through ``importlib.metadata`` takes ~125 ms and
``pip freeze`` ~570 ms. A kernel pays it at every ``%track start``.

Example:
    >>> pkgs = scan_distributions()
    >>> any(p["name"] == "nbtrack" for p in pkgs)
    True
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from nbtrack.capture.base import RACY_NS, CaptureContext, CaptureResult
from nbtrack.redact import policy, strip_url_credentials

_NORMALIZE_RE = re.compile(r"[-_.]+")
# Metadata headers come first; the long description after them can be hundreds of KB, so read a
# small prefix and only continue when the headers were not all in it.
_HEAD_BYTES = 2048


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name (``Foo_Bar.baz`` -> ``foo-bar-baz``)."""
    return _NORMALIZE_RE.sub("-", name).lower()


def _read_head(path: str, size: int) -> bytes | None:
    """The first ``size`` bytes of a file, None when it cannot be read.

    ``os.open``/``os.read`` rather than ``open()``: a file object costs ~2x more here, and this runs
    for every installed distribution.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_name_version(meta: str) -> tuple[str | None, str | None]:
    """``Name`` and ``Version`` from the RFC 822 header of a METADATA/PKG-INFO file."""
    name = version = None
    size = _HEAD_BYTES
    while True:
        head = _read_head(meta, size)
        if head is None:
            return None, None
        complete = len(head) < size
        # Only whole lines, unless the file has ended; the header ends at the first blank line.
        lines = head.split(b"\n")
        if not complete:
            lines.pop()
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line:
                return name, version
            if name is None and line[:5].lower() == b"name:":
                name = line[5:].strip().decode("utf-8", "replace")
            elif version is None and line[:8].lower() == b"version:":
                version = line[8:].strip().decode("utf-8", "replace")
            if name is not None and version is not None:
                return name, version
        if complete or size >= 1 << 20:
            return name, version
        # Headers longer than the prefix (rare: many Classifier lines before Version): read more.
        size *= 8


def _name_version_from_folder(folder: str) -> tuple[str | None, str | None]:
    """``foo_bar-1.2.dist-info`` -> (``foo_bar``, ``1.2``): the fallback when metadata is unreadable."""
    stem = folder.rsplit(".", 1)[0]
    name, _, version = stem.partition("-")
    # egg-info folders may carry a "-py3.11" suffix after the version.
    return (name or None), (version.split("-py", 1)[0] or None)


def _direct_url(dist_dir: str) -> tuple[bool, str | None, dict[str, Any] | None, str | None]:
    """PEP 610 facts: (editable, credential-free url, vcs info, archive hash) of one distribution."""
    head = _read_head(dist_dir + "/direct_url.json", 1 << 16)
    if head is None:
        return False, None, None, None
    try:
        raw = json.loads(head)
    except ValueError:
        return False, None, None, None
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
        return False, None, None, None
    url = strip_url_credentials(raw["url"])
    dir_info = raw.get("dir_info")
    editable = isinstance(dir_info, dict) and bool(dir_info.get("editable", False))
    vcs: dict[str, Any] | None = None
    if isinstance(raw.get("vcs_info"), dict):
        info = raw["vcs_info"]
        vcs = {
            "vcs": info.get("vcs"),
            "commit_id": info.get("commit_id"),
            "requested_revision": info.get("requested_revision"),
        }
    archive_hash = None
    if isinstance(raw.get("archive_info"), dict):
        info = raw["archive_info"]
        hashes = info.get("hashes")
        if isinstance(hashes, dict) and hashes.get("sha256"):
            archive_hash = f"sha256={hashes['sha256']}"
        elif isinstance(info.get("hash"), str):
            archive_hash = info["hash"]
    return editable, url, vcs, archive_hash


def _scan_folder_uncached(folder: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        with os.scandir(folder) as it:
            # Sorted so that two copies of one name in a folder resolve deterministically.
            names = sorted(e.name for e in it if e.name.endswith((".dist-info", ".egg-info")))
    except OSError:
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    for entry in names:
        # Plain concatenation: os.path.join costs more than the open it feeds, ~700 times a scan.
        dist_dir = f"{folder}{os.sep}{entry}"
        if entry.endswith(".dist-info"):
            meta = dist_dir + "/METADATA"
        elif os.path.isdir(dist_dir):
            meta = dist_dir + "/PKG-INFO"
        else:  # an old-style egg-info *file* is itself the PKG-INFO
            meta = dist_dir
        name, version = _read_name_version(meta)
        if name is None or version is None:
            fallback_name, fallback_version = _name_version_from_folder(entry)
            name, version = name or fallback_name, version or fallback_version
        if not name:
            continue
        editable, url, vcs, archive_hash = _direct_url(dist_dir)
        record: dict[str, Any] = {
            "name": name,
            "version": version,
            "editable": editable,
            "direct_url": url,
            "vcs": vcs,
        }
        if archive_hash:
            record["archive_hash"] = archive_hash
        out.append((normalize_name(name), record))
    return out


# folder -> (its mtime_ns, its distributions). Opening two small files per distribution costs
# ~15 us each on this disk (~7 ms for 230 packages); installing, upgrading or removing a
# distribution adds or removes a *.dist-info entry, which changes the folder's mtime, so a
# re-scan of an unchanged folder can reuse the last result.
_FOLDER_CACHE: dict[str, tuple[int, list[tuple[str, dict[str, Any]]]]] = {}


def _scan_folder(folder: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        st = os.stat(folder)
    except OSError:
        return []
    if not stat.S_ISDIR(st.st_mode):  # a zip file on sys.path
        return []
    cached = _FOLDER_CACHE.get(folder)
    if cached is not None and cached[0] == st.st_mtime_ns:
        return cached[1]
    result = _scan_folder_uncached(folder)
    # Folder mtimes tick at the kernel's coarse clock (a few ms): a change within the same tick as
    # this scan would not move the mtime, so only a folder untouched for a while is cached (git's
    # "racily clean" rule).
    if time.time_ns() - st.st_mtime_ns > RACY_NS:
        _FOLDER_CACHE[folder] = (st.st_mtime_ns, result)
    return result


def scan_distributions(paths: list[str] | None = None) -> list[dict[str, Any]]:
    """Every installed distribution visible on ``paths`` (default ``sys.path``), first one wins.

    Args:
        paths: folders to scan, in priority order; ``""`` means the current directory, as on
            ``sys.path``. Zip files and missing entries are skipped.

    Returns:
        Dicts ``{name, version, editable, direct_url, vcs}`` sorted by normalized name. A name found
        in several folders is reported once, from the earliest folder, which is the copy
        ``importlib.metadata.version`` and ``import`` see. ``direct_url`` has credentials stripped;
        ``vcs`` is ``{vcs, commit_id, requested_revision}`` for VCS installs. Archive installs also
        carry ``archive_hash`` so the requirement pin can name it.
    """
    found: dict[str, dict[str, Any]] = {}
    for entry in sys.path if paths is None else paths:
        try:
            folder = os.path.abspath(entry or os.curdir)
        except OSError:  # "" on sys.path while the working directory has been deleted
            continue
        for key, record in _scan_folder(folder):
            if key not in found:
                found[key] = record
    # Copies: the cached records must not change when a caller edits the result.
    return [{**found[k], "vcs": dict(found[k]["vcs"]) if found[k]["vcs"] else None} for k in sorted(found)]


def _url_to_path(url: str) -> str:
    """``file:///work/main`` -> ``/work/main``; other URLs unchanged."""
    parts = urlsplit(url)
    return unquote(parts.path) if parts.scheme == "file" else url


def requirement_line(pkg: dict[str, Any]) -> str:
    """The ``requirements.txt`` line for one distribution from :func:`scan_distributions`.

    Editable installs become a comment: their code is a local folder that a pin cannot bring back.
    """
    name, version, url = pkg["name"], pkg["version"], pkg.get("direct_url")
    if pkg.get("editable"):
        where = _url_to_path(url) if url else "an unknown location"
        return f"# {name}=={version} is an editable install from {where}; reinstall: pip install -e {where}"
    if url is None:
        return f"{name}=={version}"
    vcs = pkg.get("vcs")
    if vcs:
        rev = vcs.get("commit_id") or vcs.get("requested_revision")
        return f"{name} @ {vcs.get('vcs') or 'git'}+{url}{'@' + rev if rev else ''}"
    if pkg.get("archive_hash"):
        return f"{name} @ {url}#{pkg['archive_hash']}"
    return f"{name} @ {url}"


def requirements_txt(packages: list[dict[str, Any]]) -> str:
    """A ``pip freeze``-like file for ``packages``; see :func:`requirement_line`."""
    header = "# Captured by nbtrack from the kernel's sys.path (first copy of each name wins).\n"
    return header + "".join(requirement_line(p) + "\n" for p in packages)


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
