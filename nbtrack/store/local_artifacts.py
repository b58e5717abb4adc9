"""A run's artifacts read as local files, where MLflow itself would read them from the file system
(a ``file:`` URI or an absolute path): no MLflow import, no copy."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from nbtrack.redact import strip_url_credentials
from nbtrack.store.read_sqlite import Unsupported

__all__ = ["UPLOADING_PREFIX", "file_hashes", "local_artifacts", "local_folder", "local_listing", "walk"]

#: Files MLflow's local artifact repository is still writing (it hides them from listings).
UPLOADING_PREFIX = ".artifact.uploading."


def local_artifacts(uri: str) -> Path:
    """The folder of a run's artifact URI when MLflow would read it as local files (a ``file:`` URI
    or an absolute path); :class:`Unsupported` for any other (a server's, a relative path).

    Example:
        >>> local_artifacts("file:///work/p/.nbtrack/artifacts/1/0f3c/artifacts")
        PosixPath('/work/p/.nbtrack/artifacts/1/0f3c/artifacts')
    """
    parts = urlsplit(uri)
    if uri.startswith("file:") and parts.netloc in ("", "localhost") and not parts.query:
        return Path(unquote(parts.path))
    if uri.startswith("/") and "://" not in uri:
        return Path(uri)
    raise Unsupported(f"artifact URI {strip_url_credentials(uri)!r}")


def local_listing(root: Path, folder: str | None) -> list[tuple[str, bool]]:
    """(path, is_dir) of a local artifact folder's entries, as MLflow lists them: sorted by path,
    files still being uploaded left out.

    Example:
        >>> local_listing(Path("/work/p/.nbtrack/artifacts/1/0f3c/artifacts"), "nbtrack")  # doctest: +SKIP
        [('nbtrack/git.diff', False), ('nbtrack/snapshot.json', False)]
    """
    where = root / folder if folder else root
    if not where.is_dir():
        return []
    names = [n for n in os.listdir(where) if not n.startswith(UPLOADING_PREFIX)]
    entries = [(f"{folder}/{n}" if folder else n, (where / n).is_dir()) for n in names]
    return sorted(entries)


def walk(listing: Callable[[str | None], list[tuple[str, bool]]], limit: int) -> list[str]:
    """The files below an artifact root, breadth-first (at most ``limit``), sorted; ``listing`` gives
    (path, is_dir) of a folder's entries (None: the root).

    Example:
        >>> tree = {None: [("a", True), ("z.txt", False)], "a": [("a/b.txt", False)]}
        >>> walk(lambda folder: tree[folder], 10)
        ['a/b.txt', 'z.txt']
    """
    found: list[str] = []
    folders: list[str | None] = [None]
    while folders and len(found) < limit:
        for path, is_dir in listing(folders.pop(0)):
            (folders if is_dir else found).append(path)
    return sorted(found[:limit])


def local_folder(uri: str) -> Path | None:
    """:func:`local_artifacts`, or None where MLflow would not read local files."""
    try:
        return local_artifacts(uri)
    except Unsupported:
        return None


def file_hashes(path: Path) -> tuple[str, str]:
    """A file's sha256 and md5 (DVC's hash of a file), read once.

    Example:
        >>> file_hashes(Path("/dev/null"))[1]
        'd41d8cd98f00b204e9800998ecf8427e'
    """
    sha, md5 = hashlib.sha256(), hashlib.md5()  # (DVC's content hash, not for security)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()
