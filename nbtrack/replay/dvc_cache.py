"""The DVC cache objects of a replay's restored outputs: which exist, whether to trust them, and how
each workspace file is linked to its object (the replay reports hard links, symlinks, reflinks and
copies: a write through a link changes the user's cache).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from nbtrack.errors import CannotReplay

__all__ = ["cache_objects", "link_kind", "missing_objects", "verify_objects"]

_CACHE_MODE = 0o444  # DVC's mode for a cache object it trusts without hashing it again
_FS_IOC_FIEMAP = 0xC020660B
_FIEMAP_EXTENT_SHARED = 0x2000


def cache_objects(odb: Any, out: dict[str, Any]) -> list[tuple[str, str]] | None:
    """(workspace path relative to the DVC root, cache object path) of every file of an output.

    None when a folder's listing (its ``.dir`` object) is not in the cache.
    """
    top = odb.oid_to_path(out["hash"])
    if not out.get("is_dir"):
        return [(out["path"], top)]
    try:
        with open(top, encoding="utf-8") as fobj:
            entries = json.load(fobj)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise CannotReplay(
            f"the DVC cache object {top} listing {out['path']} is damaged; delete it and run "
            f"`dvc fetch {out['path']}`"
        ) from exc
    name = out.get("hash_name") or "md5"
    return [(f"{out['path']}/{e['relpath']}", odb.oid_to_path(e.get(name) or e["md5"])) for e in entries]


def missing_objects(odb: Any, out: dict[str, Any]) -> list[str]:
    """Cache objects of the output that are absent (just the ``.dir`` object if the listing is)."""
    objects = cache_objects(odb, out)
    if objects is None:
        return [odb.oid_to_path(out["hash"])]
    return [obj for _, obj in objects if not os.path.exists(obj)]


def verify_objects(odb: Any, out: dict[str, Any]) -> None:
    """Hash the objects DVC itself would not trust (not read-only), as ``dvc``'s cache check does."""
    from dvc_data.hashfile.hash import file_md5

    for rel, obj in cache_objects(odb, out) or []:
        if stat.S_IMODE(os.stat(obj).st_mode) == _CACHE_MODE:
            continue
        expected = os.path.basename(os.path.dirname(obj)) + os.path.basename(obj).removesuffix(".dir")
        actual = file_md5(obj, name=out.get("hash_name") or "md5")
        if actual != expected:
            raise CannotReplay(
                f"the DVC cache copy of {rel} ({obj}) is damaged: it hashes to {actual}, not {expected}; "
                f"delete it and run `dvc fetch {out['path']}`, or `dvc add` it again where the data is"
            )


def link_kind(path: Path, obj: str) -> str:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    cached = os.stat(obj)
    if (st.st_dev, st.st_ino) == (cached.st_dev, cached.st_ino):
        return "hardlink"
    return "reflink" if _shares_extents(path) else "copy"


def _shares_extents(path: Path) -> bool:
    """True when the file's first extent is shared (Linux FIEMAP): a reflink, not a copy.

    Other systems (and empty files) answer False: a clone is then reported as a copy.
    """
    if sys.platform != "linux":
        return False
    import fcntl
    import struct

    # struct fiemap (32 bytes) asking for one extent, then one struct fiemap_extent (56 bytes).
    buf = bytearray(struct.pack("=QQIIII", 0, 2**64 - 1, 0, 0, 1, 0) + bytes(56))
    try:
        with open(path, "rb") as fobj:
            fcntl.ioctl(fobj.fileno(), _FS_IOC_FIEMAP, buf)
    except OSError:
        return False
    mapped = struct.unpack_from("=I", buf, 20)[0]
    flags = struct.unpack_from("=I", buf, 32 + 40)[0]
    return bool(mapped and flags & _FIEMAP_EXTENT_SHARED)
