"""Which recorded packages a recreated environment can install, and why an install failed.

A plain pin is ``name==version``; VCS and remote archive installs become ``name @ url``. Editable
installs, local folders and files (they may have changed or vanished since the run), and nbtrack
itself (the replaying copy goes into the venv instead) are skipped with the reason.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

from nbtrack.capture.environment import normalize_name, requirement_line
from nbtrack.errors import CannotReplay

__all__ = ["SELF_REASON", "install_failure", "installable_pins", "line_name"]

SELF_REASON = "provided by the replaying nbtrack"
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


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


def line_name(line: str) -> str:
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


def install_failure(output: str, lines: list[str], installer: str, code: int) -> CannotReplay:
    named, reason = _reason(output)
    names = {line_name(ln): ln for ln in lines}
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
