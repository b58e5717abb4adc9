"""Placeholder: the headless runs' routes (issue 15: "Run all and track", "Clone with new parameters")."""

from __future__ import annotations

from typing import Any


def routes() -> list[tuple[str, Any]]:
    """No routes yet."""
    return []
