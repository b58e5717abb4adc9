"""JSON outputs and widget state compared structurally: keys, lengths, numbers within tolerance.

A widget view (``application/vnd.jupyter.widget-view+json``) names a model by an id that is new in
every kernel; the view is compared through the model's saved state (the notebook's
``metadata.widgets``) with every model reference (``IPY_MODEL_<id>``) and ``model_id`` ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nbtrack.replay.outputs.text import compare_numbers, compare_text, short

__all__ = ["WIDGET_STATE", "WIDGET_VIEW", "compare_json", "compare_widget"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_IGNORED_KEYS = frozenset({"model_id"})
#: Applied to both sides' strings before they are compared (the text normalizers).
Normalizer = Callable[[str], str]


def _scalar(a: Any, b: Any, where: str, tolerance: float | None, exact: bool, norm: Normalizer | None) -> str:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return "" if a == b else f"{where}{short(repr(a), 30)} -> {short(repr(b), 30)}"
    if isinstance(a, int | float) and isinstance(b, int | float):
        ok = compare_numbers(float(a), float(b), tolerance, exact=exact)
        return "" if ok else f"{where}{a} -> {b}"
    if isinstance(a, str) and isinstance(b, str):
        if a.startswith("IPY_MODEL_") and b.startswith("IPY_MODEL_"):
            return ""
        if norm is not None:
            a, b = norm(a), norm(b)
        detail = compare_text(a, b, tolerance=tolerance, exact=exact)
        return f"{where}{detail}" if detail else ""
    return "" if a == b else f"{where}{short(repr(a), 30)} -> {short(repr(b), 30)}"


def compare_json(
    a: Any,
    b: Any,
    *,
    tolerance: float | None = None,
    exact: bool = False,
    normalize: Normalizer | None = None,
    path: str = "",
) -> str:
    """What differs between two JSON values, '' when they match (``model_id`` keys ignored).

    Strings are compared as text after ``normalize`` (numbers in them under the tolerance).

    Example:
        >>> compare_json({"acc": 0.81, "n": [1, 2]}, {"acc": 0.81, "n": [1, 3]})
        'n[1]: 2 -> 3'
    """
    where = f"{path}: " if path else ""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys_a, keys_b = set(a) - _IGNORED_KEYS, set(b) - _IGNORED_KEYS
        if keys_a != keys_b:
            missing, added = sorted(keys_a - keys_b), sorted(keys_b - keys_a)
            return f"{where}keys {short(str(missing), 30)} missing, {short(str(added), 30)} new"
        for key in sorted(keys_a):
            inner = f"{path}.{key}" if path else str(key)
            detail = compare_json(
                a[key], b[key], tolerance=tolerance, exact=exact, normalize=normalize, path=inner
            )
            if detail:
                return detail
        return ""
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}{len(a)} items -> {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            detail = compare_json(
                x, y, tolerance=tolerance, exact=exact, normalize=normalize, path=f"{path}[{i}]"
            )
            if detail:
                return detail
        return ""
    return _scalar(a, b, where, tolerance, exact, normalize)


def _model_state(nb: Mapping[str, Any], view: Mapping[str, Any]) -> Any:
    widgets = (nb.get("metadata") or {}).get("widgets") or {}
    state = (widgets.get(WIDGET_STATE) or {}).get("state") or {}
    return state.get(view.get("model_id") or "")


def compare_widget(
    original_nb: Mapping[str, Any],
    replayed_nb: Mapping[str, Any],
    view_a: Mapping[str, Any],
    view_b: Mapping[str, Any],
    *,
    tolerance: float | None = None,
    exact: bool = False,
    normalize: Normalizer | None = None,
) -> str:
    """What differs between two widget views: their models' saved state when both notebooks saved
    it, else the views themselves (ids ignored).

    Example:
        >>> view = {"model_id": "a1", "version_major": 2}
        >>> compare_widget({}, {}, view, {**view, "model_id": "b2"})
        ''
    """
    state_a, state_b = _model_state(original_nb, view_a), _model_state(replayed_nb, view_b)
    if state_a is not None and state_b is not None:
        detail = compare_json(state_a, state_b, tolerance=tolerance, exact=exact, normalize=normalize)
        return f"widget {detail}" if detail else ""
    detail = compare_json(dict(view_a), dict(view_b), tolerance=tolerance, exact=exact, normalize=normalize)
    return f"widget {detail}" if detail else ""
