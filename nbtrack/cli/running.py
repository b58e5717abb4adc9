"""Placeholder: filled by issue 15's work (the `running` verbs)."""

from __future__ import annotations

from typing import Any


def add_parsers(sub: Any, run_help: str) -> None:
    """No verbs yet."""


COMMANDS: dict[str, Any] = {}
