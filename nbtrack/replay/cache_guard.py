"""A replay never writes into the user's DVC cache: outputs are copies, linked inputs are watched.

DVC links a workspace file to its cache object (hard link or symlink) where it can: a notebook
that rewrites such a file in place (``open(path, "wb")``, ``df.to_csv(path)``) writes into the cache
object itself, so ``dvc checkout`` would later restore bytes nobody committed, and as a non-root
user (DVC makes cache objects read-only) the write fails with ``PermissionError``. So:

- the DVC outputs the run writes (:func:`written_outputs`: the outs of pipeline stages, the outputs
  the recorded run changed, and those it found modified or missing) are :func:`detach`-ed right after
  DVC's checkout: a reflink (copy-on-write) where the file system has them, else a plain copy;
- an input is linked only when a write through the link cannot happen (a read-only object, for a
  user other than root) or can be undone (the project holds its own copy of the file, a separate
  file of the same size): others are copied too (:meth:`CacheGuard.can_link`);
- every file still linked to a cache object is watched by :class:`CacheGuard`: after the run, an
  object whose inode change time, mtime or size moved is hashed; one whose content changed is
  written back from the project's own copy of the file when that copy has the recorded hash;
  else it is removed (DVC's checkout does not hash an object before using it: a damaged one would
  be checked out as the committed data) and the replay refuses with a line naming the file and
  the fix (``dvc fetch``).

Watching costs one ``stat`` per linked file; only an object that was written to is hashed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import sys
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtrack.errors import CannotReplay

__all__ = ["CacheGuard", "Damage", "detach", "written_outputs"]

_FICLONE = 0x40049409  # Linux ioctl: make dst share src's extents (btrfs, XFS, bcachefs, ...)
_LINKED = ("hardlink", "symlink")
_StatKey = tuple[int, int, int, int]


def written_outputs(data: dict[str, Any]) -> set[str]:
    """The DVC outputs (paths relative to the DVC root) the replayed run is expected to write.

    Outs of pipeline stages (``dvc.yaml``), the outputs the recorded run changed (``produced``),
    and those that were modified or missing when it was recorded (the run, or its author, wrote them).

    Example:
        >>> sorted(written_outputs({"outputs": [
        ...     {"path": "data/in.csv", "source": "data/in.csv.dvc", "status": "clean"},
        ...     {"path": "model.pkl", "source": "dvc.yaml:train", "status": "clean"},
        ...     {"path": "fig.png", "source": "fig.png.dvc", "status": "missing"}],
        ...     "produced": [{"path": "data/in.csv"}]}))
        ['data/in.csv', 'fig.png', 'model.pkl']
    """
    found = {p["path"] for p in data.get("produced") or [] if p.get("path")}
    for out in data.get("outputs") or []:
        if ":" in str(out.get("source") or "") or out.get("status") in ("modified", "missing"):
            found.add(out["path"])
    return found


def detach(path: Path) -> str:
    """Replace a file linked to a DVC cache object by a reflink of it, else a copy; the kind made.

    The new file takes the link's place atomically (a rename), with the user's default mode.

    Example:
        >>> detach(ws.dvc_root / "model.pkl")  # doctest: +SKIP
        'copy'
    """
    source = os.path.realpath(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.nbtrack"
    # Mode 0o666 less the umask: the mode a copy the user made would have.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        kind = "reflink" if _reflink(source, fd) else "copy"
        if kind == "copy":
            with open(source, "rb") as src, os.fdopen(os.dup(fd), "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return kind


def _reflink(source: str, fd: int) -> bool:
    if sys.platform != "linux":
        return False
    import fcntl

    try:
        with open(source, "rb") as src:
            fcntl.ioctl(fd, _FICLONE, src.fileno())
    except OSError:  # EOPNOTSUPP / EXDEV / EINVAL: the file system cannot share extents here
        return False
    return True


@dataclass
class Damage:
    """A cache object the replay wrote into: the workspace file (relative to the DVC root), the
    object, and whether it was written back from the project's copy."""

    rel: str
    obj: str
    restored: bool


@dataclass
class _Linked:
    rel: str
    obj: str
    hash_name: str
    key: _StatKey


@dataclass
class CacheGuard:
    """The cache objects a workspace's files are linked to, checked after the run.

    ``source_root`` is the user's DVC root: the project copy of a damaged object's file, when it
    has the recorded hash, is what the object is written back from.
    """

    source_root: Path | None = None
    linked: list[_Linked] = field(default_factory=list)
    found: list[Damage] = field(default_factory=list)

    def can_link(self, rel: str, obj: str) -> bool:
        """Whether a write through a link to ``obj`` is impossible (a read-only object, for a user
        other than root) or could be undone (the project holds its own copy of the file).

        Example:
            >>> guard.can_link("data/churn.csv", "/p/.dvc/cache/files/md5/3f/2a…")  # doctest: +SKIP
            True
        """
        if not os.access(obj, os.W_OK):
            return True
        copy = self.source_root / rel if self.source_root is not None else None
        try:
            return (
                copy is not None
                and copy.is_file()
                and not os.path.samefile(copy, obj)
                and copy.stat().st_size == os.stat(obj).st_size
            )
        except OSError:
            return False

    def watch(self, rel: str, obj: str, hash_name: str) -> None:
        """Remember a workspace file linked to cache object ``obj``, as the object is now."""
        self.linked.append(_Linked(rel, obj, hash_name, _key(obj)))

    def check(self) -> list[Damage]:
        """Find (and write back where possible) the objects written since :meth:`watch`.

        Returns every damage found so far; an object already reported is not checked again.

        Example:
            >>> guard.check()  # doctest: +SKIP
            [Damage(rel='data/churn.csv', obj='/p/.dvc/cache/files/md5/3f/2a…', restored=True)]
        """
        seen = {d.obj for d in self.found}
        for entry in self.linked:
            if entry.obj in seen or _key(entry.obj) == entry.key:
                continue
            expected = _oid(entry.obj)
            if _hash(entry.obj, entry.hash_name) == expected:
                entry.key = _key(entry.obj)  # touched (DVC's chmod, an identical rewrite): intact
                continue
            restored = self._restore(entry, expected)
            self.found.append(Damage(entry.rel, entry.obj, restored))
            seen.add(entry.obj)
        return list(self.found)

    def refuse(self, damages: list[Damage]) -> None:
        """Raise CannotReplay for the first damaged object that could not be written back."""
        lost = [d for d in damages if not d.restored]
        if not lost:
            return
        first = lost[0]
        others = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
        raise CannotReplay(
            f"the replayed notebook wrote into {first.rel}{others}, a link to the DVC cache object "
            f"{first.obj}, and the project has no intact copy to restore it from; nbtrack removed the "
            f"damaged object so that DVC cannot check it out: run `dvc fetch {first.rel}` (or `dvc add` "
            "the data again where it is intact), then `dvc checkout`"
        )

    def _restore(self, entry: _Linked, expected: str) -> bool:
        """Write the project's copy of the file back into the object (in place: every hard link of
        it is mended); when there is none, remove the object so that DVC cannot serve it."""
        copy = self.source_root / entry.rel if self.source_root is not None else None
        try:
            if (
                copy is not None
                and copy.is_file()
                and not os.path.samefile(copy, entry.obj)
                and _hash(str(copy), entry.hash_name) == expected
            ):
                mode = stat.S_IMODE(os.stat(entry.obj).st_mode)
                os.chmod(entry.obj, mode | stat.S_IWUSR)  # root writes anyway; its owner needs the bit
                with open(copy, "rb") as src, open(entry.obj, "r+b") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                    dst.truncate()
                os.chmod(entry.obj, mode)
                if _hash(entry.obj, entry.hash_name) == expected:
                    entry.key = _key(entry.obj)
                    return True
        except OSError:
            pass  # told below: the object is then handed to DVC's own check
        with suppress(OSError):
            # DVC's checkout does not hash a cache object before copying or linking it: one that
            # no longer matches its name must go, so that DVC reports it missing (and fetches it).
            os.unlink(entry.obj)
        return False


def _key(obj: str) -> _StatKey:
    """What any write to the object changes: the change time cannot be set back from user space."""
    try:
        st = os.stat(obj)
    except OSError:
        return (0, 0, -1, 0)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _oid(obj: str) -> str:
    """The hash a cache object is named after (``ab/cdef…`` -> ``abcdef…``)."""
    return os.path.basename(os.path.dirname(obj)) + os.path.basename(obj)


def _hash(path: str, name: str) -> str | None:
    from dvc_data.hashfile.hash import file_md5  # DVC's own hash (md5, or md5-dos2unix)

    try:
        return str(file_md5(path, name=name))
    except OSError:
        return None
