"""``git.diff``: one patch that rebuilds the working tree from the recorded commit.

The tracked files' uncommitted changes come from ``git diff --binary HEAD`` (streamed, hashed in
full, kept in memory only under the size cap); every untracked, not-ignored file is appended as a
new-file patch built here. A file whose patch holds a credential is left out whole (a redacted hunk
would no longer apply), and so is an untracked file whose name marks a credentials file.

Example:
    >>> new_file_patch(b"hello.py", b"print(1)\\n", "100644").decode().splitlines()[-2:]
    ['@@ -0,0 +1 @@', '+print(1)']
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import subprocess
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nbtrack.capture.gitcmd import first_line, git_env
from nbtrack.errors import CaptureError
from nbtrack.redact import Redactor, is_credential_file

_DIFF_TIMEOUT = 60.0
_CHUNK = 1 << 16
# Flags that make `git diff` print what `git apply` reads, whatever the user's diff.noprefix,
# diff.mnemonicPrefix, color.ui, diff.external or textconv settings say.
_DIFF_ARGS = "diff --binary --no-color --no-ext-diff --no-textconv --src-prefix=a/ --dst-prefix=b/ HEAD --"
_EMPTY_BLOB_REVERSE = b"literal 0\nHcmV?d00001\n\n"
_FILE_HEADER_RE = re.compile(rb"^diff --git ", re.M)


@dataclass
class Patch:
    """The combined patch, hashed in full but kept in memory only while it fits under the cap.

    Example:
        >>> patch = Patch(cap=4)
        >>> patch.add(b"abc"); patch.add(b"de")
        >>> patch.size, patch.parts
        (5, None)
    """

    cap: int
    size: int = 0
    sha: Any = field(default_factory=hashlib.sha256)
    parts: list[bytes] | None = field(default_factory=list)

    def add(self, chunk: bytes) -> None:
        """Count and hash ``chunk``; keep it while the whole patch is still under the cap."""
        self.size += len(chunk)
        self.sha.update(chunk)
        if self.parts is not None:
            if self.size > self.cap:
                self.parts = None  # over the cap: stop keeping it, keep counting and hashing
            else:
                self.parts.append(chunk)


def stream_diff(root: Path, patch: Patch) -> None:
    """Feed ``git diff --binary HEAD`` into ``patch`` chunk by chunk.

    Streamed rather than ``capture_output``: a modified multi-GB tracked file must not be held in
    the kernel's memory just to learn that it is over the cap.

    Raises:
        CaptureError: git failed or was killed after a minute.

    Example:
        >>> stream_diff(Path("repo"), Patch(cap=1 << 20))  # doctest: +SKIP
    """
    with tempfile.TemporaryFile() as err:
        # stderr to a file: a pipe could fill up (e.g. one CRLF warning per file) and block git.
        proc = subprocess.Popen(
            ["git", *_DIFF_ARGS.split()], cwd=root, env=git_env(), stdout=subprocess.PIPE, stderr=err
        )
        timer = threading.Timer(_DIFF_TIMEOUT, proc.kill)
        timer.start()
        try:
            out: IO[bytes] = proc.stdout  # type: ignore[assignment]
            while chunk := out.read(_CHUNK):
                patch.add(chunk)
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.stdout is not None:
                proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if code != 0:
            err.seek(0)
            detail = first_line(err.read()) or f"killed after {_DIFF_TIMEOUT:.0f} s"
            raise CaptureError(f"`git diff HEAD` failed in {root}: {detail}")


def _quote(path: bytes) -> bytes:
    """A path as git writes it in patch headers (C-quoted when it has special bytes)."""
    if not any(b < 0x20 or b >= 0x7F or b in b'"\\' for b in path):
        return path
    escapes = {0x07: b"a", 0x08: b"b", 0x09: b"t", 0x0A: b"n", 0x0B: b"v", 0x0C: b"f", 0x0D: b"r"}
    out = bytearray(b'"')
    for b in path:
        if b in b'"\\':
            out += b"\\" + bytes([b])
        elif b in escapes:
            out += b"\\" + escapes[b]
        elif b < 0x20 or b >= 0x7F:
            out += b"\\%03o" % b
        else:
            out.append(b)
    return bytes(out + b'"')


def _binary_literal(data: bytes) -> bytes:
    """git's ``GIT binary patch`` literal: zlib data in base85 lines of <=52 bytes, length-prefixed."""
    packed = zlib.compress(data, 9)
    lines = []
    for i in range(0, len(packed), 52):
        chunk = packed[i : i + 52]
        n = len(chunk)
        length = bytes([ord("A") + n - 1]) if n <= 26 else bytes([ord("a") + n - 27])
        # Python's b85 alphabet is git's ("as used in git-style binary diffs").
        lines.append(length + base64.b85encode(chunk, pad=True) + b"\n")
    return b"literal %d\n" % len(data) + b"".join(lines) + b"\n"


def new_file_patch(path: bytes, data: bytes, mode: str, object_format: str = "sha1") -> bytes:
    """A ``git diff``-style patch creating ``path`` with ``data``.

    Built here rather than by ``git add -N`` + ``git diff``: that would have to write an index.

    Args:
        path: repository-relative path, as bytes (paths need not be UTF-8).
        data: the file's content, or a symlink's target.
        mode: ``100644``, ``100755`` or ``120000`` (symlink).
        object_format: the repository's hash, ``sha1`` or ``sha256``; ``git apply`` checks the
            blob id of a binary patch's result against the ``index`` line.

    Example:
        >>> new_file_patch(b"empty.txt", b"", "100644").splitlines()[1]
        b'new file mode 100644'
    """
    blob = hashlib.new(object_format, b"blob %d\0" % len(data) + data).hexdigest()
    a, b = _quote(b"a/" + path), _quote(b"b/" + path)
    head = b"diff --git %s %s\nnew file mode %s\nindex %s..%s\n" % (
        a,
        b,
        mode.encode(),
        b"0" * len(blob),
        blob.encode(),
    )
    if not data:
        return head
    if b"\0" in data:  # git's own test for "binary"
        return head + b"GIT binary patch\n" + _binary_literal(data) + _EMPTY_BLOB_REVERSE
    lines = data.split(b"\n")
    missing_newline = lines[-1] != b""
    if not missing_newline:
        lines.pop()
    # git ends a header path that has a space with a tab, so that apply knows where it stops.
    tab = b"\t" if b" " in b and not b.startswith(b'"') else b""
    hunk = b"@@ -0,0 +1 @@\n" if len(lines) == 1 else b"@@ -0,0 +1,%d @@\n" % len(lines)
    body = b"".join(b"+" + line + b"\n" for line in lines)
    if missing_newline:
        body += b"\\ No newline at end of file\n"
    return head + b"--- /dev/null\n+++ " + b + tab + b"\n" + hunk + body


def _read_untracked(full: bytes, max_bytes: int) -> tuple[bytes | None, str]:
    """An untracked path's content and git mode, or None and why it cannot be stored."""
    try:
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            return os.readlink(full), "120000"
        if stat.S_ISDIR(st.st_mode):
            return None, "a folder (nested git repository?); not included"
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file or symlink"
        if st.st_size > max_bytes:
            return None, f"{st.st_size} bytes > NbtrackConfig.untracked_max_file_bytes ({max_bytes})"
        with open(full, "rb") as fh:
            data = fh.read(max_bytes + 1)
        return data, "100755" if st.st_mode & stat.S_IXUSR else "100644"
    except FileNotFoundError:
        return None, "deleted from the working tree"
    except OSError as exc:
        return None, f"unreadable: {exc.strerror}"


def untracked_patch(
    root: Path, path: bytes, max_bytes: int, object_format: str, redactor: Redactor
) -> tuple[bytes | None, str]:
    """The new-file patch of one untracked path, or None and why it was left out.

    Example:
        >>> untracked_patch(Path("repo"), b".env", 1024, "sha1", Redactor())
        (None, 'name marks a credentials file; never stored')
    """
    rel = os.fsdecode(path.rstrip(b"/"))
    if is_credential_file(rel):  # by name or place (nbtrack.redact: the one list)
        return None, "name marks a credentials file; never stored"
    data, mode_or_reason = _read_untracked(os.path.join(os.fsencode(root), path), max_bytes)
    if data is None:
        return None, mode_or_reason
    if len(data) > max_bytes:  # grew while being read
        return None, f"more than NbtrackConfig.untracked_max_file_bytes ({max_bytes}) bytes"
    if redactor.file_text(rel, data.decode("utf-8", "replace"))[1]:
        return None, "content looks like a credential (nbtrack.redact); never stored"
    return new_file_patch(path, data, mode_or_reason, object_format), ""


def drop_secret_files(patch: Patch, redactor: Redactor) -> list[dict[str, str]]:
    """Remove from ``patch`` (in place) each file's diff that holds a credential; what was removed.

    Per file, so the rest still applies: a redacted hunk would not (its context lines must match
    the commit), and a secret already committed is in the user's repository, not in the run.

    Example:
        >>> drop_secret_files(Patch(cap=10), Redactor())
        []
    """
    if not patch.parts:
        return []
    text = b"".join(patch.parts)
    starts = [m.start() for m in _FILE_HEADER_RE.finditer(text)] or [0]
    bounds = zip(starts, [*starts[1:], len(text)], strict=True)
    kept: list[bytes] = [text[: starts[0]]] if starts[0] else []
    dropped: list[dict[str, str]] = []
    for a, b in bounds:
        piece = text[a:b]
        header = piece.split(b"\n", 1)[0].decode("utf-8", "replace")
        path = header.removeprefix("diff --git ").split(" b/", 1)[0].removeprefix("a/")
        if redactor.file_text(path, piece.decode("utf-8", "replace"))[1]:
            why = "its changes hold a credential (nbtrack.redact); never stored"
            dropped.append({"path": path, "reason": why})
        else:
            kept.append(piece)
    if dropped:
        patch.parts = [b"".join(kept)] if kept else []
    return dropped
