"""HTML tables (a displayed DataFrame) compared as tables: same shape and labels, values within tolerance.

pandas reads the tables (``pd.read_html`` with lxml); numbers are held to the same tolerance as the
numbers in text, other cells are compared as normalized text. Imported lazily: a notebook that
shows no table costs nothing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

from nbtrack.errors import NbtrackError
from nbtrack.replay.outputs.text import compare_numbers, compare_text, short

__all__ = ["compare_tables", "has_table"]


def has_table(html: str) -> bool:
    """Whether an HTML output holds a table (a DataFrame's ``_repr_html_`` does).

    Example:
        >>> has_table("<div><table class='dataframe'></table></div>")
        True
    """
    return "<table" in html.lower()


def _read(html: str) -> list[Any]:
    try:
        import lxml  # type: ignore[import-untyped]  # noqa: F401  (pd.read_html's parser)
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise NbtrackError(
            "comparing the tables in cell outputs needs lxml; install it: pip install lxml"
        ) from exc
    import pandas as pd

    try:
        return list(pd.read_html(io.StringIO(html), flavor="lxml"))
    except ValueError:  # "No tables found": markup that only mentions <table
        return []


def _cell_differs(
    a: Any, b: Any, tolerance: float | None, exact: bool, normalize: Callable[[str], str] | None
) -> bool:
    numeric = (int, float)
    if isinstance(a, numeric) and isinstance(b, numeric) and not isinstance(a, bool):
        fa, fb = float(a), float(b)
        if math.isnan(fa) and math.isnan(fb):
            return False
        return not compare_numbers(fa, fb, tolerance, exact=exact)
    text_a, text_b = str(a), str(b)
    if normalize is not None:
        text_a, text_b = normalize(text_a), normalize(text_b)
    return bool(compare_text(text_a, text_b, tolerance=tolerance, exact=exact))


def _compare_frame(
    a: Any, b: Any, tolerance: float | None, exact: bool, normalize: Callable[[str], str] | None
) -> str:
    if a.shape != b.shape:
        return f"table shape {a.shape[0]}x{a.shape[1]} -> {b.shape[0]}x{b.shape[1]}"
    if [str(c) for c in a.columns] != [str(c) for c in b.columns]:
        return f"table columns {short(str(list(a.columns)))} -> {short(str(list(b.columns)))}"
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            x, y = a.iat[i, j], b.iat[i, j]
            if _cell_differs(x, y, tolerance, exact, normalize):
                return f"table row {i + 1}, column {short(str(a.columns[j]), 30)!r}: {x} -> {y}"
    return ""


def compare_tables(
    original: str,
    replayed: str,
    *,
    tolerance: float | None = None,
    exact: bool = False,
    normalize: Callable[[str], str] | None = None,
) -> str:
    """What differs between the tables of two HTML outputs, '' when they match.

    Cells holding numbers are held to the tolerance, others compared as text after ``normalize``.

    Example:
        >>> compare_tables("<table><tr><th>a</th></tr><tr><td>0.5</td></tr></table>",
        ...                "<table><tr><th>a</th></tr><tr><td>0.7</td></tr></table>")
        "table row 1, column 'a': 0.5 -> 0.7"
    """
    tables_a, tables_b = _read(original), _read(replayed)
    if len(tables_a) != len(tables_b):
        return f"{len(tables_a)} table(s) -> {len(tables_b)}"
    if not tables_a:
        return compare_text(original, replayed, tolerance=tolerance, exact=exact)
    for a, b in zip(tables_a, tables_b, strict=True):
        detail = _compare_frame(a, b, tolerance, exact, normalize)
        if detail:
            return detail
    return ""
