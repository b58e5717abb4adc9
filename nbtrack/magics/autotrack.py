"""Autotrack (``c.NbtrackConfig.autotrack = True``): a tracked run starts by itself the first time the
kernel starts an MLflow run, and ends at ``%track stop`` or at kernel shutdown.

Every fluent way MLflow starts a run goes through ``mlflow.tracking.fluent.start_run``: an explicit
``mlflow.start_run()``, a bare ``mlflow.log_metric`` with no active run (``_get_or_start_run``), an
autolog integration's managed run. Autotrack wraps that one function, once ``mlflow.tracking.fluent``
is loaded (a finder on ``sys.meta_path`` notices its import; nbtrack never imports MLflow just to
watch). The wrapper starts nbtrack's run first, then hands the call to whatever ``start_run`` is
then (nbtrack's adoption rules, :mod:`nbtrack.store.adopt`): the call gets the tracked run, so the
metric lands in it. With a run already tracked the wrapper just passes the call on.

Cost: nothing when off (nothing installed); when on, one Python call per module imported for the
first time, and one attribute check per MLflow ``start_run``; no per-cell hook.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable, Sequence
from typing import Any

from nbtrack import tags

__all__ = ["STARTED_BY", "Autotrack"]

FLUENT = "mlflow.tracking.fluent"
#: The tag value (``nbtrack.started_by``) of a run autotrack started.
STARTED_BY = "autotrack"
_TAG = tags.STARTED_BY


class _Loader(importlib.abc.Loader):
    """A module's own loader, and a call once the module has executed."""

    def __init__(self, loader: Any, loaded: Callable[[Any], None]) -> None:
        self._loader, self._loaded = loader, loaded

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        self._loaded(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_code, ... (tracebacks, inspect)
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Notices the import of MLflow's fluent module (and nothing else)."""

    def __init__(self, loaded: Callable[[Any], None]) -> None:
        self._loaded = loaded

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname != FLUENT:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader, self._loaded)
                return spec
        return None


class Autotrack:
    """Starts a tracked run when the kernel starts an MLflow run and none is tracked.

    ``start(tags)`` starts the run (``%track start``'s work); ``active()`` says whether one is tracked.

    Example:
        >>> auto = Autotrack(start=lambda tags: None, active=lambda: True)
        >>> auto.install(); auto.remove()
    """

    def __init__(self, start: Callable[[dict[str, str]], None], active: Callable[[], bool]) -> None:
        self._start, self._active = start, active
        self._finder: _Finder | None = None
        self._wrapped: tuple[Any, Callable[..., Any], Callable[..., Any]] | None = None
        self._starting = False

    def install(self) -> None:
        """Watch for MLflow's fluent module (wrap it now when it is loaded already)."""
        fluent = sys.modules.get(FLUENT)
        if fluent is not None:
            self._wrap(fluent)
            return
        self._finder = _Finder(self._wrap)
        sys.meta_path.insert(0, self._finder)

    def remove(self) -> None:
        """Stop watching; put MLflow's ``start_run`` back where nobody replaced the wrapper since."""
        if self._finder is not None and self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        self._finder = None
        if self._wrapped is not None:
            fluent, original, wrapper = self._wrapped
            for module in (fluent, sys.modules.get("mlflow")):
                if module is not None and getattr(module, "start_run", None) is wrapper:
                    setattr(module, "start_run", original)  # noqa: B010 - a module typed as such
        self._wrapped = None

    def _wrap(self, fluent: Any) -> None:
        """Wrap ``fluent.start_run``: before ``mlflow/__init__`` binds ``mlflow.start_run`` to it
        (the finder calls this as soon as the fluent module has executed), or both when later."""
        if self._finder is not None and self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        original = fluent.start_run
        auto = self

        def start_run(*args: Any, **kwargs: Any) -> Any:
            if auto._starting or auto._active():
                return original(*args, **kwargs)
            if not auto._begin():
                return original(*args, **kwargs)
            # Through what start_run is now: the tracked run's adoption (or a child, or the user's
            # own run elsewhere), as for any MLflow call during a tracked run.
            current = fluent.start_run
            return (original if current is start_run else current)(*args, **kwargs)

        fluent.start_run = start_run
        mlflow = sys.modules.get("mlflow")
        if mlflow is not None and getattr(mlflow, "start_run", None) is original:
            setattr(mlflow, "start_run", start_run)  # noqa: B010 - a module typed as such
        self._wrapped = (fluent, original, start_run)

    def _begin(self) -> bool:
        """Start the tracked run; False (and one line why) when it could not start."""
        self._starting = True
        try:
            self._start({_TAG: STARTED_BY})
        except Exception as exc:  # noqa: BLE001 - the user's MLflow call goes on without nbtrack
            why = " ".join(str(exc).split())
            print(f"nbtrack: autotrack could not start a run ({why}); MLflow goes on without it")
            return False
        finally:
            self._starting = False
        return True
