"""The git section: commit, branch, remotes, status, and a patch that rebuilds the working tree.

``git.diff`` holds the whole repository's uncommitted changes against HEAD (staged and unstaged,
binary-safe) followed by every untracked, not-ignored file as a new-file patch, so that
``git apply git.diff`` on a fresh worktree at ``commit`` reproduces the working tree the notebook
ran in, including a new local module it imported. A patch over the size cap is not stored at all:
a truncated patch cannot be applied.

Costs four ``git`` processes (rev-parse, config, status, diff), ~10-30 ms on a small repository.
Every call runs with ``GIT_OPTIONAL_LOCKS=0`` so that ``git status`` never takes ``index.lock``
under the user's feet (an editor or a ``git commit`` running at the same time would fail).
"""

from __future__ import annotations

import base64
import fnmatch
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

from nbtrack.capture.base import CaptureContext, CaptureResult, SectionUnavailable
from nbtrack.errors import CaptureError
from nbtrack.redact import Redactor, policy

_TIMEOUT = 10.0
_DIFF_TIMEOUT = 60.0
_CHUNK = 1 << 16
# Variables that would point git at another repository or index than the project's (a kernel
# started from a git hook inherits them).
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_COMMON_DIR")
# Flags that make `git diff` print what `git apply` reads, whatever the user's diff.noprefix,
# diff.mnemonicPrefix, color.ui, diff.external or textconv settings say.
_DIFF_ARGS = "diff --binary --no-color --no-ext-diff --no-textconv --src-prefix=a/ --dst-prefix=b/ HEAD --"
# Untracked files that by their name hold credentials; they are listed as skipped, never stored.
# (File names, not variable names: nbtrack.redact judges values and variable names.)
# fmt: off
_SECRET_FILES = (
    ".env", ".env.*", ".envrc", ".netrc", ".pgpass", ".pypirc", ".npmrc", ".git-credentials",
    "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    "credentials", "credentials.json",
)
# fmt: on
_EMPTY_BLOB_REVERSE = b"literal 0\nHcmV?d00001\n\n"


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env.update(GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C", LANGUAGE="C")
    return env


def _git(cwd: Path, *args: str, timeout: float = _TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    """Run ``git args`` in ``cwd``; missing git or a timeout become one-line, fixable errors."""
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


def _first_line(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else ""


@dataclass
class _Patch:
    """The combined patch, hashed in full but kept in memory only while it fits under the cap."""

    cap: int
    size: int = 0
    sha: Any = field(default_factory=hashlib.sha256)
    parts: list[bytes] | None = field(default_factory=list)

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.sha.update(chunk)
        if self.parts is not None:
            if self.size > self.cap:
                self.parts = None  # over the cap: stop keeping it, keep counting and hashing
            else:
                self.parts.append(chunk)


def _stream_diff(root: Path, patch: _Patch) -> None:
    """Feed ``git diff --binary HEAD`` into ``patch`` chunk by chunk.

    Streamed rather than ``capture_output``: a modified multi-GB tracked file must not be held in
    the kernel's memory just to learn that it is over the cap.
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
            detail = _first_line(err.read()) or f"killed after {_DIFF_TIMEOUT:.0f} s"
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


def _untracked_patch(
    root: Path, path: bytes, max_bytes: int, object_format: str, redactor: Redactor
) -> tuple[bytes | None, str]:
    """The new-file patch of one untracked path, or None and why it was left out."""
    full = os.path.join(os.fsencode(root), path)
    name = os.fsdecode(os.path.basename(path.rstrip(b"/")))
    if any(fnmatch.fnmatch(name, pattern) for pattern in _SECRET_FILES):
        return None, "name marks a credentials file; never stored"
    try:
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            data, mode = os.readlink(full), "120000"
        elif stat.S_ISREG(st.st_mode):
            if st.st_size > max_bytes:
                return None, f"{st.st_size} bytes > NbtrackConfig.untracked_max_file_bytes ({max_bytes})"
            with open(full, "rb") as fh:
                data = fh.read(max_bytes + 1)
            mode = "100755" if st.st_mode & stat.S_IXUSR else "100644"
        elif stat.S_ISDIR(st.st_mode):
            return None, "a folder (nested git repository?); not included"
        else:
            return None, "not a regular file or symlink"
    except FileNotFoundError:
        return None, "deleted from the working tree"
    except OSError as exc:
        return None, f"unreadable: {exc.strerror}"
    if len(data) > max_bytes:  # grew while being read
        return None, f"more than NbtrackConfig.untracked_max_file_bytes ({max_bytes}) bytes"
    if redactor.looks_secret(data.decode("utf-8", "replace")):
        return None, "content looks like a credential (nbtrack.redact); never stored"
    return new_file_patch(path, data, mode, object_format), ""


_FILE_HEADER_RE = re.compile(rb"^diff --git ", re.M)


def _drop_secret_files(patch: _Patch, redactor: Redactor) -> list[dict[str, str]]:
    """Remove from ``patch`` (in place) each file's diff that holds a credential; what was removed.

    Per file, so the rest still applies: a redacted hunk would not (its context lines must match
    the commit), and a secret already committed is in the user's repository, not in the run.
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
        if redactor.looks_secret(piece.decode("utf-8", "replace")):
            header = piece.split(b"\n", 1)[0].decode("utf-8", "replace")
            path = header.removeprefix("diff --git ").split(" b/", 1)[0].removeprefix("a/")
            why = "its changes hold a credential (nbtrack.redact); never stored"
            dropped.append({"path": path, "reason": why})
        else:
            kept.append(piece)
    if dropped:
        patch.parts = [b"".join(kept)] if kept else []
    return dropped


def _parse_status(out: bytes) -> tuple[dict[str, str], list[dict[str, Any]], list[bytes], list[bytes]]:
    """``git status --porcelain=v2 --branch -z``: headers, changed entries, their raw paths, untracked."""
    headers: dict[str, str] = {}
    changed: list[dict[str, Any]] = []
    changed_raw: list[bytes] = []
    untracked: list[bytes] = []
    records = out.split(b"\0")
    i = 0
    while i < len(records):
        rec = records[i]
        i += 1
        kind = rec[:1]
        if kind == b"#":
            key, _, value = rec[2:].partition(b" ")
            headers[key.decode()] = value.decode("utf-8", "replace")
        elif kind == b"?":
            untracked.append(rec[2:])
        elif kind in (b"1", b"2", b"u"):
            # Fields before the path: 1 -> 8, 2 -> 9 (+ score), u -> 10; paths may contain spaces.
            nfields = {b"1": 8, b"2": 9, b"u": 10}[kind]
            parts = rec.split(b" ", nfields)
            entry: dict[str, Any] = {"path": os.fsdecode(parts[nfields]), "status": parts[1].decode()}
            if parts[2].startswith(b"S"):
                entry["submodule"] = True
            if kind == b"2":  # a rename/copy: its original path is the next NUL-separated record
                entry["orig_path"] = os.fsdecode(records[i])
                i += 1
            changed.append(entry)
            changed_raw.append(parts[nfields])
    return headers, changed, changed_raw, untracked


def _ahead_behind(value: str | None) -> list[int] | None:
    """``"+2 -1"`` -> ``[2, 1]``: commits ahead of / behind upstream (unpushed ones cannot be fetched)."""
    if not value:
        return None
    try:
        ahead, behind = value.split()
        return [int(ahead), -int(behind)]
    except ValueError:
        return None


def _remotes(root: Path, redactor: Redactor) -> dict[str, str]:
    """``{name: url}`` of every remote, in config order, credentials stripped (a plain user such
    as ``git@`` stays)."""
    proc = _git(root, "config", "-z", "--get-regexp", r"^remote\..*\.url$")
    remotes: dict[str, str] = {}
    for rec in proc.stdout.split(b"\0"):
        key, _, url = rec.decode("utf-8", "replace").partition("\n")
        if key.startswith("remote.") and key.endswith(".url"):
            remotes.setdefault(key[len("remote.") : -len(".url")], redactor.text(redactor.url(url)))
    return remotes


class GitProvider:
    """Captures the ``git`` section and ``git.diff``.

    Data: ``root``; ``commit`` (full id, None with ``commit_reason`` before the first commit);
    ``branch`` (None when detached); ``upstream``; ``ahead_behind``; ``remote_url`` (origin, else
    the first remote) and ``remotes``, credentials stripped; ``dirty`` (tracked changes *or*
    untracked files); ``changed`` (``{path, status}``, status = porcelain v2 ``XY``: staged,
    unstaged, ``.`` unchanged; plus ``orig_path`` for renames); ``untracked`` (capped list),
    ``untracked_count``, ``untracked_truncated``; ``diff`` (``bytes``/``sha256`` of the full patch,
    ``stored``, ``cap``, ``truncated``, ``reason``, ``complete`` = the patch rebuilds every
    non-ignored file, ``secret_suspected``, ``untracked_included``, ``untracked_skipped``).
    """

    name = "git"

    def capture(self, ctx: CaptureContext) -> CaptureResult:
        """Take the section; raises :class:`SectionUnavailable` outside a git work tree."""
        start = Path(ctx.project_root)
        if not start.is_dir():
            raise SectionUnavailable(f"project folder {start} does not exist; no code version recorded")
        proc = _git(start, "rev-parse", "--show-toplevel", "--show-object-format")
        if proc.returncode != 0:
            message = _first_line(proc.stderr)
            if "not a git repository" in message or "must be run in a work tree" in message:
                raise SectionUnavailable(
                    f"not a git repository: {start}; run `git init` and commit to record the code version"
                )
            if "dubious ownership" in message:
                raise CaptureError(
                    f"git refuses to read {start} (owned by another user); "
                    f"run `git config --global --add safe.directory {start}`"
                )
            raise CaptureError(f"git cannot read {start}: {message}")
        toplevel, object_format = proc.stdout.decode().splitlines()[:2]
        root = Path(toplevel)
        cfg = ctx.config

        redactor = policy(cfg)
        remotes = _remotes(root, redactor)
        remote_url = remotes.get("origin") or next(iter(remotes.values()), None)

        status = _git(root, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")
        if status.returncode != 0:
            raise CaptureError(f"`git status` failed in {root}: {_first_line(status.stderr)}")
        headers, changed, changed_raw, untracked_raw = _parse_status(status.stdout)
        oid = headers.get("branch.oid", "(initial)")
        commit = None if oid == "(initial)" else oid
        head = headers.get("branch.head")
        branch = None if head in (None, "(detached)") else head
        if commit is None:
            # No commit to diff against: every file, staged or not, is recreated from the patch.
            untracked_raw = sorted(set(untracked_raw) | set(changed_raw))
            changed = []

        listed = untracked_raw[: max(cfg.untracked_max_files, 0)]
        patch = _Patch(cap=cfg.git_diff_max_bytes)
        if commit is not None and changed:
            _stream_diff(root, patch)
        secret_skipped = _drop_secret_files(patch, redactor)
        included: list[str] = []
        skipped: list[dict[str, str]] = []
        for raw in listed:
            piece, why = _untracked_patch(root, raw, cfg.untracked_max_file_bytes, object_format, redactor)
            if piece is None:
                skipped.append({"path": os.fsdecode(raw), "reason": why})
            else:
                patch.add(piece)
                included.append(os.fsdecode(raw))

        stored = bool(patch.parts)
        if patch.parts is None:
            reason: str | None = (
                f"the uncommitted changes are {patch.size} bytes, over NbtrackConfig.git_diff_max_bytes "
                f"({cfg.git_diff_max_bytes}); not stored, since a partial patch cannot be applied: "
                "commit the changes or raise the cap"
            )
        elif patch.size == 0:
            reason = "nothing to store: the working tree matches the commit"
        elif not stored:
            reason = "every changed file holds a credential (nbtrack.redact); not stored"
        else:
            reason = None
        data: dict[str, Any] = {
            "root": str(root),
            "commit": commit,
            "commit_reason": None if commit else "no commits yet: every file is recorded as untracked",
            "branch": branch,
            "upstream": headers.get("branch.upstream"),
            "ahead_behind": _ahead_behind(headers.get("branch.ab")),
            "remote_url": remote_url,
            "remotes": remotes,
            "dirty": bool(changed or untracked_raw),
            "changed": changed,
            "untracked": [os.fsdecode(p) for p in listed],
            "untracked_count": len(untracked_raw),
            "untracked_truncated": len(untracked_raw) > len(listed),
            "diff": {
                "bytes": patch.size,
                "sha256": patch.sha.hexdigest(),
                "stored": stored,
                "cap": cfg.git_diff_max_bytes,
                "truncated": patch.parts is None,
                "reason": reason,
                "secret_suspected": bool(secret_skipped),
                # Changed tracked files whose patch holds a credential: left out, never stored.
                "secret_skipped": secret_skipped,
                "untracked_included": included,
                "untracked_skipped": skipped,
                # True when applying git.diff at `commit` rebuilds every non-ignored file.
                "complete": bool(
                    patch.parts is not None
                    and not skipped
                    and not secret_skipped
                    and len(listed) == len(untracked_raw)
                ),
            },
        }
        files = {"git.diff": b"".join(patch.parts)} if stored and patch.parts is not None else {}
        return CaptureResult(data=data, files=files)
