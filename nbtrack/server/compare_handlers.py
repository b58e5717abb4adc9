"""Routes of issue 14 (filled in by its owner)."""

from __future__ import annotations

from typing import Any


def routes() -> list[tuple[str, Any]]:
    """(pattern under <base_url>nbtrack/, handler class) pairs."""
    return []
