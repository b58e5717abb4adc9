"""Placeholder: ``nbtrack replay --pushgateway URL`` (issue 15, Prometheus)."""

from __future__ import annotations

import argparse
from typing import Any


def add_push_option(rp: argparse.ArgumentParser) -> None:
    """No option yet."""


def push_if_asked(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    """Nothing to push yet."""
