"""Reports of ``nbtrack replay``: JUnit XML for CI, one self-contained HTML page, and the terminal text.

Every writer takes the :class:`~nbtrack.replay.result.ReplayResult` a replay returns (``verdict``,
``message``, the ``metrics`` / ``params`` / ``outputs`` comparison rows, ``failure``, ``environment``
drift, ``data`` versions and the cell-level ``code_diff`` of :func:`nbtrack.compare.diff_cells`),
or its JSON as a dict (what a batch reads from each replay's process and the server's replay job
sends), turned into the record at the entry with :meth:`ReplayResult.from_dict`: a dict may lack
keys, and a ``CANNOT_REPLAY`` result may hold little more than its message. Standard library
only; the HTML page loads nothing from anywhere (inline CSS, no scripts), so it can be archived by
any CI and opened offline.

Modules: :mod:`~nbtrack.replay.reports.text` (the terminal), :mod:`~nbtrack.replay.reports.junit`,
:mod:`~nbtrack.replay.reports.page` (HTML), :mod:`~nbtrack.replay.reports.common` (shared pieces).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from nbtrack.errors import NbtrackError
from nbtrack.replay.reports.common import VERDICTS, Result, as_result
from nbtrack.replay.reports.junit import junit_xml
from nbtrack.replay.reports.page import html_report
from nbtrack.replay.reports.text import format_result

__all__ = ["VERDICTS", "Result", "as_result", "format_result", "html_report", "junit_xml", "write_reports"]

# --- files ---------------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename over it: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:  # "x": umask-respecting, never reused
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise NbtrackError(
            f"could not write the replay report {path}: {exc.strerror or exc}; "
            "check that the folder is writable and the path is not a directory"
        ) from exc


def write_reports(results: Sequence[Result], *, junit: Path | None = None, html: Path | None = None) -> None:
    """Write the JUnit XML and/or HTML report atomically, creating parent folders.

    Both are rendered before either is written, so a rendering error leaves no half-updated pair.

    Example:
        >>> write_reports(results, junit=Path("reports/replay.xml"), html=Path("reports/replay.html"))
        ... # doctest: +SKIP

    Raises:
        NbtrackError: a report could not be written (the message names the file).
    """
    typed = [as_result(r) for r in results]
    pending = []
    if junit is not None:
        pending.append((Path(junit), junit_xml(typed)))
    if html is not None:
        pending.append((Path(html), html_report(typed)))
    for path, text in pending:
        _write_atomic(path, text)
