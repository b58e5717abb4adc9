"""Two normalized texts compared with the numbers in them held to a tolerance.

A text is split into its numbers and the rest (its skeleton): the skeletons must be equal, and the
numbers pairwise equal within the tolerance :func:`nbtrack.replay.verdict.tolerance_for` gives a
metric (whole numbers exact, others within 1e-9 relative, unless the user gives a tolerance).
"""

from __future__ import annotations

import math
import re

from nbtrack.replay.verdict import close, tolerance_for

__all__ = ["compare_numbers", "compare_text", "first_difference", "short"]

# A number not glued to a word (x1, v2.0 stay text) with an optional exponent.
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?!\w)")
_HOLE = "\x00"
#: Absolute difference under which two non-integer numbers in outputs are equal (noise around 0).
ABSOLUTE_FLOOR = 1e-9


def short(text: str, width: int = 60) -> str:
    """``text`` on one line, cut to ``width`` characters.

    Example:
        >>> short("a\\nb" + "c" * 80, 8)
        'a⏎bcccc…'
    """
    one = text.replace("\n", "⏎")
    return one if len(one) <= width else one[: width - 1] + "…"


def compare_numbers(a: float, b: float, tolerance: float | None, *, exact: bool = False) -> bool:
    """``a`` and ``b`` equal under the metric tolerance rules (``exact``: no tolerance at all).

    Non-integers closer than :data:`ABSOLUTE_FLOOR` are equal too: floating-point noise around
    zero has no relative scale (a standardized column's mean shows as -2.7e-17, then 1.8e-17).

    Example:
        >>> compare_numbers(0.1, 0.1 + 1e-12, None), compare_numbers(3.0, 4.0, None)
        (True, False)
        >>> compare_numbers(-2.7e-17, 1.8e-17, None), compare_numbers(-2.7e-17, 1.8e-17, None, exact=True)
        (True, False)
    """
    if exact:
        return a == b or (math.isnan(a) and math.isnan(b))
    rel = tolerance_for("", a, b, tolerance=tolerance)
    if close(a, b, rel):
        return True
    return rel > 0 and math.isfinite(a) and math.isfinite(b) and abs(a - b) <= ABSOLUTE_FLOOR


def _split(text: str) -> tuple[str, list[str]]:
    return _NUMBER.sub(_HOLE, text), _NUMBER.findall(text)


def first_difference(a: str, b: str) -> str:
    """The first line where ``a`` and ``b`` differ, as ``'old' -> 'new'`` (line number when > 1).

    Example:
        >>> first_difference("x = 1\\ny = 2", "x = 1\\ny = 3")
        "line 2: 'y = 2' -> 'y = 3'"
    """
    lines_a, lines_b = a.split("\n"), b.split("\n")
    for i in range(max(len(lines_a), len(lines_b))):
        la = lines_a[i] if i < len(lines_a) else "(nothing)"
        lb = lines_b[i] if i < len(lines_b) else "(nothing)"
        if la != lb:
            where = f"line {i + 1}: " if i else ""
            return f"{where}{short(la)!r} -> {short(lb)!r}"
    return ""


def compare_text(a: str, b: str, *, tolerance: float | None = None, exact: bool = False) -> str:
    """What differs between two (normalized) texts, '' when they match.

    Args:
        a: the original text.
        b: the replayed text.
        tolerance: relative tolerance for the numbers in them (None: the metric defaults).
        exact: compare the texts character for character (``nbtrack:strict-output``).

    Example:
        >>> compare_text("sum = 57.59", "sum = 52.17")
        '57.59 -> 52.17'
        >>> compare_text("loss 0.25", "loss 0.2500000000001")
        ''
    """
    if a == b:
        return ""
    if exact:
        return first_difference(a, b)
    skeleton_a, numbers_a = _split(a)
    skeleton_b, numbers_b = _split(b)
    if skeleton_a != skeleton_b or len(numbers_a) != len(numbers_b):
        return first_difference(a, b)
    for x, y in zip(numbers_a, numbers_b, strict=True):
        if x != y and not compare_numbers(float(x), float(y), tolerance):
            return f"{x} -> {y}"
    return ""
