"""Is a SQLite store file damaged? Read from its 100-byte header, without opening it (SQLite would
try to use a damaged file, and MLflow would create tables in a file that is not a database)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["damage"]

_MAGIC = b"SQLite format 3\x00"


def damage(db: Path) -> str | None:
    """Why the database file is not a SQLite database SQLite could read whole, else None (also for a
    missing or empty file: MLflow creates those). Reads the 100-byte header only.

    Example:
        >>> damage(Path("/nonexistent.db")) is None
        True
    """
    try:
        size = db.stat().st_size
        if size == 0:
            return None
        with open(db, "rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if not header.startswith(_MAGIC):
        return "file is not a database"
    if len(header) < 100:
        return f"file is truncated ({size} bytes)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The header's page count is valid when its change counter matches "version-valid-for"; a hot
    # journal (a crash mid-write) may legitimately leave the file shorter: SQLite rolls it back.
    valid = header[24:28] == header[92:96]
    journal = any(_nonempty(db.with_name(db.name + suffix)) for suffix in ("-journal", "-wal"))
    if valid and not journal and pages * page_size > size:
        return f"file is truncated: {size} of {pages * page_size} bytes"
    return None


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False
