"""Replay: re-execute a tracked run on its recorded code, parameters and data, and give a verdict.

``nbtrack.replay`` is both this package and the public verb: the package is callable, so
``nbtrack.replay(run_id, ...)`` runs :func:`nbtrack.replay.replayer.replay` whether or not the
package was imported before.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def replay(run_id: str, **options: Any) -> Any:
    """Re-execute a tracked run and say whether it reproduced; see :func:`nbtrack.replay.replayer.replay`.

    Example:
        >>> import nbtrack
        >>> nbtrack.replay("3f2a9c41e0b84d0f", parameters={"seed": 1}).verdict  # doctest: +SKIP
        'REPRODUCED'
    """
    from nbtrack.replay.replayer import replay as _replay

    return _replay(run_id, **options)


class _CallablePackage(types.ModuleType):
    """``nbtrack.replay(...)``: importing the package replaces the function of that name on
    :mod:`nbtrack`, so the package itself calls the verb."""

    def __call__(self, run_id: str, **options: Any) -> Any:
        return replay(run_id, **options)


sys.modules[__name__].__class__ = _CallablePackage
