"""Running ``git`` for capture: the environment every call gets and one-line errors.

Every call runs with ``GIT_OPTIONAL_LOCKS=0`` so that ``git status`` never takes ``index.lock``
under the user's feet (an editor or a ``git commit`` running at the same time would fail).

Example:
    >>> git_env()["GIT_OPTIONAL_LOCKS"]
    '0'
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from nbtrack.capture.base import SectionUnavailable
from nbtrack.errors import CaptureError

GIT_TIMEOUT = 10.0
# Variables that would point git at another repository or index than the project's (a kernel
# started from a git hook inherits them).
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_COMMON_DIR")


def git_env() -> dict[str, str]:
    """The environment for a ``git`` process: no inherited repository, no locks, no prompts, C locale.

    Example:
        >>> "GIT_DIR" in git_env()
        False
    """
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env.update(GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C", LANGUAGE="C")
    return env


def run_git(cwd: Path, *args: str, timeout: float = GIT_TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    """Run ``git args`` in ``cwd``; missing git or a timeout become one-line, fixable errors.

    Raises:
        SectionUnavailable: git is not installed.
        CaptureError: git took longer than ``timeout``.

    Example:
        >>> run_git(Path("."), "--version").stdout.startswith(b"git version")
        True
    """
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=git_env(), capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise SectionUnavailable(
            "git is not installed (no `git` on PATH); install git to record the code version"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise CaptureError(
            f"`git {' '.join(args[:2])}` took over {timeout:.0f} s in {cwd}; the repository may be "
            "very large or on a slow disk (ignore large folders in .gitignore)"
        ) from exc


def first_line(raw: bytes) -> str:
    """The first line of a process's output, decoded, stripped ("" when there is none).

    Example:
        >>> first_line(b"fatal: not a git repository\\nmore")
        'fatal: not a git repository'
    """
    text = raw.decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else ""
