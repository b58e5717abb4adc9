"""Normalizers: what in a cell's printed text changes from run to run without the result changing.

Memory addresses, timestamps and durations, progress bars (``\\r``-overwritten lines and tqdm's
timing), ANSI colour codes, the replay workspace's paths, IPython's per-kernel cell file names, and
MLflow/nbtrack run ids (32 hex digits) are replaced by placeholders before two texts are compared.
Numbers are left alone: :mod:`nbtrack.replay.outputs.text` compares them under a tolerance.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

__all__ = ["ansi_free", "normalize_text", "path_variants", "terminal_text"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), placeholder)
    for pattern, placeholder in (
        # ipykernel's per-kernel cell files and IPython's "Cell In[12]" (execution counts differ)
        (r"/tmp/ipykernel_\d+/\d+\.py", "<cell-file>"),
        (r"(Cell|Input) In ?\[\d*\]", r"\1 In[N]"),
        (r"\b0x[0-9a-fA-F]{6,16}\b", "0x<address>"),
        (r"\b[0-9a-f]{32}\b", "<run-id>"),
        # ISO 8601 / logging timestamps: 2024-05-01T12:00:00.123+02:00, 2024/05/01 12:00:00
        (
            r"\b\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?",
            "<timestamp>",
        ),
        # time.ctime(): Fri Dec  4 15:56:37 2026
        (r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) \w{3} +\d{1,2} \d{2}:\d{2}:\d{2}(?: \d{4})?", "<timestamp>"),
        # tqdm's elapsed<remaining, rate
        (r"\[\d+:\d{2}(?::\d{2})?<[^\]\n]*\]", "[<elapsed>]"),
        (r"\b\d+(?:\.\d+)?\s?(?:it/s|s/it)\b", "<rate>"),
        (r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b", "<time>"),
        # durations: "took 1.23s", "Wall time: 1.2 s", "CPU times: user 3 ms"
        (
            r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?\s?(?:ns|µs|us|ms|s|sec|secs|seconds?|min|mins|minutes?)\b",
            "<duration>",
        ),
    )
)
# A Python warning as printed to stderr ("file.py:12: FutureWarning: ...") and its source line:
# shown once per process and per library version, it says nothing about the result.
_WARNING = re.compile(r"^[^\n]*:\d+: \w*Warning: [^\n]*\n(?:[ \t]+[^\n]*\n?)?", re.MULTILINE)
_SPACES = re.compile(r"[ \t]+")


def ansi_free(text: str) -> str:
    """``text`` without ANSI escape sequences (colours, cursor moves).

    Example:
        >>> ansi_free("\\x1b[31mValueError\\x1b[0m: bad")
        'ValueError: bad'
    """
    return _ANSI.sub("", text)


def terminal_text(text: str) -> str:
    """What a terminal finally shows: each line keeps only what follows its last ``\\r``.

    Example:
        >>> terminal_text("10%\\r50%\\r100%\\ndone\\n")
        '100%\\ndone\\n'
    """
    if "\r" not in text:
        return text
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line else line for line in lines)


def path_variants(paths: Iterable[str]) -> list[str]:
    """The paths and their resolved forms, longest first (a symlinked tmp dir prints either way).

    Example:
        >>> path_variants(["/a", "/a/b"])
        ['/a/b', '/a']
    """
    found: set[str] = set()
    for path in paths:
        if not path:
            continue
        stripped = str(path).rstrip("/") or "/"
        found.add(stripped)
        found.add(os.path.realpath(stripped))
    return sorted((p for p in found if p != "/"), key=len, reverse=True)


def normalize_text(
    text: str, *, paths: Iterable[str] = (), strict: bool = False, stderr: bool = False
) -> str:
    """``text`` with what varies between runs replaced by placeholders, whitespace runs collapsed.

    Args:
        text: a stream, ``text/plain`` or traceback text.
        paths: folders to replace by ``<workspace>`` (the replay's workspace, temporary dirs).
        strict: only strip ANSI codes (cells tagged ``nbtrack:strict-output``).
        stderr: also drop Python warnings (printed once per process, not a result).

    Example:
        >>> normalize_text("<Model at 0x7f3a2b1c9d10> took 1.25s on 2024-05-01 12:00:03")
        '<Model at 0x<address>> took <duration> on <timestamp>'
    """
    text = ansi_free(text)
    if strict:
        return text
    text = terminal_text(text)
    if stderr:
        text = _WARNING.sub("", text)
    for path in path_variants(paths):
        text = text.replace(path, "<workspace>")
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)
