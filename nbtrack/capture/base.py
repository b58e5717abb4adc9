"""The interface every capture provider implements, and the loop that runs one safely."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nbtrack.config import NbtrackConfig
from nbtrack.errors import NbtrackError
from nbtrack.models import Section, SectionStatus

log = logging.getLogger("nbtrack")

# A file or folder changed this recently is not trusted to a cached answer keyed on its stat: a
# second write within the same timestamp tick keeps inode, mtime and size (git's "racy clean").
RACY_NS = 2_000_000_000


class SectionUnavailable(Exception):
    """Raised by a provider whose section does not apply here; the message says why (and the fix)."""


@dataclass
class CaptureContext:
    """What a provider may look at.

    Attributes:
        project_root: the repository root (git or DVC) found from the notebook's folder, else the
            notebook's folder, else the current directory.
        notebook_path: absolute path of the notebook, when known.
        cwd: the kernel's working directory.
        config: the shared configuration.
        state: provider-owned cache kept between runs of one tracker (e.g. an open DVC repo), keyed
            by provider name; providers must not rely on it being there.
    """

    project_root: Path
    notebook_path: Path | None = None
    cwd: Path = field(default_factory=Path.cwd)
    config: NbtrackConfig = field(default_factory=NbtrackConfig)
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaptureResult:
    """A provider's output: JSON-able ``data`` for snapshot.json and ``files`` to log as artifacts.

    ``files`` maps an artifact name under ``nbtrack/`` (e.g. ``git.diff``) to its bytes.
    """

    data: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


class SectionIncomplete(Exception):
    """Raised by a provider that took part of its section: ``result`` is what it did take, the
    message says what is missing, why, and the fix.

    ``status`` is ``absent`` when the missing part does not apply (the notebook's path is unknown,
    its execution history is still recorded) and ``error`` when it failed (the notebook file is not
    a notebook).
    """

    def __init__(self, reason: str, result: CaptureResult, status: SectionStatus = "error") -> None:
        super().__init__(reason)
        self.result = result
        self.status = status


class Provider(Protocol):
    name: str

    def capture(self, ctx: CaptureContext) -> CaptureResult: ...


def run_provider(provider: Provider, ctx: CaptureContext) -> tuple[Section, dict[str, bytes]]:
    """Run one provider; never raises. Returns its section and the files it produced.

    A section that does not apply is ``absent`` and one that failed is ``error``, with the reason: the
    message of an nbtrack error (which names the object and the fix), else the foreign exception's
    type and message (logged with its traceback: that is a bug to report).
    """
    started = time.perf_counter()
    files: dict[str, bytes] = {}
    try:
        result = provider.capture(ctx)
    except SectionUnavailable as exc:
        section = Section(provider.name, "absent", str(exc))
    except SectionIncomplete as exc:
        section = Section(provider.name, exc.status, str(exc), exc.result.data)
        files = exc.result.files
    except NbtrackError as exc:
        # Already one line that says what to do; the magics print it and the run card shows it.
        log.debug("nbtrack: could not capture %s: %s", provider.name, exc, exc_info=True)
        section = Section(provider.name, "error", str(exc))
    except Exception as exc:
        log.warning("nbtrack: could not capture %s: %s", provider.name, exc, exc_info=True)
        section = Section(provider.name, "error", f"{type(exc).__name__}: {exc}")
    else:
        section = Section(provider.name, "ok", None, result.data)
        files = result.files
    section.duration_ms = round((time.perf_counter() - started) * 1000, 3)
    return section, files
