"""The notebook's own MLflow calls during a tracked run: adopted, nested, or left alone.

nbtrack's run is MLflow's *active* run between ``%track start`` and ``%track stop`` (so that a bare
``mlflow.log_metric`` lands in it). A notebook written for MLflow calls ``start_run``,
``set_tracking_uri`` or ``end_run`` itself, and MLflow would refuse or misroute those calls
(``Run … is already active``; ``Run with id=… not found`` once the URI points elsewhere). While a
run is tracked, :class:`FluentGuard` wraps those three fluent functions with these rules:

- ``start_run()`` that could mean the tracked run (no ``run_id`` or the tracked run's, not nested,
  no ``parent_run_id``, no other experiment chosen since ``%track start``) **adopts** it: it returns
  the tracked run, whose context manager exit does not end it; its ``tags``/``description`` are set
  on it, and its ``run_name`` too unless ``%track start --name`` named the run.
- ``start_run(nested=True)`` (or ``parent_run_id=`` the tracked run) makes a **child** of the
  tracked run, as MLflow does (its ``mlflow.parentRunId`` tag), in the tracked run's experiment
  unless the notebook chose another.
- any other ``start_run`` (another experiment chosen by argument or ``set_experiment``, another
  ``run_id`` to resume, another store) runs **as if nbtrack were not there**: the tracked run is
  set aside for that call and stays beneath the user's run.
- ``set_tracking_uri(other)``: the user's runs go where they said; the tracked run leaves the fluent
  stack until the URI points back at nbtrack's store (so bare ``log_*`` calls go to a run of the
  user's store, as without nbtrack), and nbtrack keeps writing its run through its own client.
  Setting the tracking server a spooled run is bound for keeps the spool (the run reaches that
  server when uploaded).
- ``end_run()`` while the tracked run is on top does nothing: ``%track stop`` ends it (also MLflow's
  exit handler, which would otherwise end it FINISHED whatever happened).

Every run the user starts during the tracked run is tagged ``nbtrack.tracked_run=<id>`` and listed
in the snapshot (:meth:`FluentGuard.facts`). The wrappers are installed at run start and removed at
run end; a wrapper somebody else captured meanwhile turns into a plain pass-through.

Example:
    >>> guard = FluentGuard("0f3c", "sqlite:///p/.nbtrack/mlflow.db", "1", named=False)  # doctest: +SKIP
    >>> guard.install()  # doctest: +SKIP
    >>> with mlflow.start_run() as run:  # the tracked run  # doctest: +SKIP
    ...     assert run.info.run_id == "0f3c"
    >>> guard.remove()  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from nbtrack import tags
from nbtrack.redact import strip_url_credentials

log = logging.getLogger("nbtrack.store")

#: The tag linking a run the notebook started itself to the tracked run it ran in.
TRACKED_RUN_TAG = tags.TRACKED_RUN
#: (module, attribute) pairs wrapped, by the fluent function they stand for.
_WRAPPED = {
    "start_run": (("mlflow", "start_run"), ("mlflow.tracking.fluent", "start_run")),
    "end_run": (("mlflow", "end_run"), ("mlflow.tracking.fluent", "end_run")),
    "set_tracking_uri": (("mlflow", "set_tracking_uri"), ("mlflow.tracking", "set_tracking_uri")),
}

#: The guards installed now (at most one: MLflow's fluent functions are process-wide).
_INSTALLED: list[FluentGuard] = []


def fluent_stack() -> list[Any]:
    """MLflow's stack of active runs (this thread's), itself: callers may change it."""
    from mlflow.tracking import fluent

    stack: list[Any] = fluent._active_run_stack.get()  # type: ignore[no-untyped-call]
    return stack


def detach(run_id: str) -> bool:
    """Take ``run_id`` off MLflow's active-run stack wherever it is (and stop its system-metrics
    monitor, as ``end_run`` would); whether it was there."""
    from mlflow.tracking import fluent

    stack = fluent_stack()
    kept = [r for r in stack if r.info.run_id != run_id]
    if len(kept) == len(stack):
        return False
    stack[:] = kept
    monitor = fluent.run_id_to_system_metrics_monitor.pop(run_id, None)
    if monitor is not None:
        monitor.finish()
    return True


def _same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class FluentGuard:
    """Keeps the notebook's MLflow code working around one tracked run (see the module docstring).

    Args:
        run_id: the tracked run, already MLflow's active run.
        uri: the store it is written to (the spool's for a run bound for a server).
        experiment_id: its experiment.
        named: whether ``%track start --name`` named it (a user's ``run_name`` then does not).
        aliases: other URIs that mean nbtrack's store (the server a spooled run is bound for).
        client: an ``MlflowClient`` of ``uri``, for adopting (tags, name).
    """

    def __init__(
        self,
        run_id: str,
        uri: str,
        experiment_id: str,
        *,
        named: bool,
        aliases: tuple[str, ...] = (),
        client: Any = None,
    ) -> None:
        self.run_id, self.uri, self.experiment_id = run_id, uri, str(experiment_id)
        self.named, self.aliases, self.client = named, aliases, client
        self.active = False
        #: The URI the notebook set during the run, when it is not nbtrack's store.
        self.user_uri: str | None = None
        self.adopted = 0
        self.end_run_ignored = 0
        self.user_runs: list[dict[str, Any]] = []
        self._entry: Any = None
        self._experiment_at_start: str | None = None
        self._originals: dict[str, Callable[..., Any]] = {}
        self._installed: list[tuple[Any, str, Callable[..., Any], Callable[..., Any]]] = []

    # --- lifecycle ---------------------------------------------------------------------------------
    def install(self) -> None:
        """Wrap ``start_run``, ``end_run`` and ``set_tracking_uri`` (the tracked run must be active)."""
        import importlib

        from mlflow.tracking import fluent
        from mlflow.tracking._tracking_service import utils

        # One guard per process, as MLflow's fluent state is: one a failed start left behind goes.
        for earlier in list(_INSTALLED):
            earlier.remove()
        self._entry = next((r for r in fluent_stack() if r.info.run_id == self.run_id), None)
        self._experiment_at_start = fluent._active_experiment_id
        self._originals = {
            "start_run": fluent.start_run,
            "end_run": fluent.end_run,
            "set_tracking_uri": utils.set_tracking_uri,
        }
        wrappers = {
            "start_run": self._start_run,
            "end_run": self._end_run,
            "set_tracking_uri": self._set_tracking_uri,
        }
        for name, places in _WRAPPED.items():
            wrapper = _passthrough(self, name, wrappers[name])
            for module_name, attr in places:
                module = importlib.import_module(module_name)
                before = getattr(module, attr)
                setattr(module, attr, wrapper)
                self._installed.append((module, attr, before, wrapper))
        self.active = True
        _INSTALLED.append(self)

    def remove(self) -> None:
        """Put MLflow's functions back (where nobody replaced the wrappers since); wrappers kept by
        somebody else pass through from now. The tracked run is left where it is (ending it takes it
        off the stack: :func:`detach`)."""
        self.active = False
        for module, attr, before, wrapper in reversed(self._installed):
            if getattr(module, attr) is wrapper:
                setattr(module, attr, before)
        self._installed.clear()
        if self in _INSTALLED:
            _INSTALLED.remove(self)

    def facts(self) -> dict[str, Any]:
        """What the notebook's own MLflow code did during the run, for the snapshot (empty: nothing)."""
        from mlflow.tracking import fluent

        found: dict[str, Any] = {}
        if self.adopted:
            found["adopted"] = self.adopted
        if self.end_run_ignored:
            found["end_run_ignored"] = self.end_run_ignored
        if self.user_uri is not None:
            found["tracking_uri"] = strip_url_credentials(self.user_uri)
        experiment = fluent._active_experiment_id
        if experiment is not None and experiment != self._experiment_at_start:
            found["experiment_id"] = str(experiment)
        if self.user_runs:
            found["user_runs"] = list(self.user_runs)
        return found

    # --- the wrappers ------------------------------------------------------------------------------
    def _start_run(self, *args: Any, **kwargs: Any) -> Any:
        original = self._originals["start_run"]
        call = inspect.signature(original).bind(*args, **kwargs)
        call.apply_defaults()
        a = call.arguments
        self._follow_uri()
        stack = fluent_stack()
        on_top = bool(stack) and stack[-1] is self._entry
        if on_top and self._adoptable(a):
            return self._adopt(a.get("run_name"), a.get("tags"), a.get("description"))
        child = on_top and bool(a.get("nested") or a.get("parent_run_id") == self.run_id)
        if child:
            a["nested"] = True  # MLflow refuses parent_run_id=<the active run> unless nested
            if a.get("experiment_id") is None and self._adoptable({}):
                a["experiment_id"] = self.experiment_id  # beside its parent, not in MLflow's default
        if not a.get("run_id"):
            a["tags"] = {**(a.get("tags") or {}), TRACKED_RUN_TAG: self.run_id}
        if child:
            run = original(*call.args, **call.kwargs)
        else:
            run = self._aside(lambda: original(*call.args, **call.kwargs))
        relation = "child" if child else "resumed" if a.get("run_id") else "separate"
        self._record(run, relation)
        return run

    def _adoptable(self, a: dict[str, Any]) -> bool:
        from mlflow.tracking import fluent

        if a.get("run_id"):
            return bool(a["run_id"] == self.run_id)
        if a.get("nested") or a.get("parent_run_id"):
            return False
        if a.get("experiment_id") is not None:
            return str(a["experiment_id"]) == self.experiment_id
        chosen = fluent._active_experiment_id
        return chosen in (None, self._experiment_at_start, self.experiment_id)

    def _adopt(self, run_name: str | None, tags: dict[str, Any] | None, description: str | None) -> Any:
        from mlflow.entities import RunTag
        from mlflow.tracking import fluent

        from nbtrack.store.sqlite import retry_locked

        found = {k: str(v) for k, v in (tags or {}).items()}
        if description:
            found["mlflow.note.content"] = description
        client, run_id = self.client, self.run_id
        try:
            if found and client is not None:
                batch = [RunTag(k, v) for k, v in found.items()]
                retry_locked(lambda: client.log_batch(run_id, tags=batch), "tagging the tracked run")
            if run_name and not self.named and client is not None:
                retry_locked(lambda: client.update_run(run_id, name=run_name), "naming the tracked run")
        except Exception as exc:  # noqa: BLE001 - the user's start_run must not fail on our write
            log.warning("nbtrack: the tags of start_run() were not set on run %s: %s", run_id, exc)
        self.adopted += 1
        return _adopted_class(fluent.ActiveRun)(self._entry)

    def _end_run(self, *args: Any, **kwargs: Any) -> Any:
        stack = fluent_stack()
        if stack and stack[-1] is self._entry:
            self.end_run_ignored += 1  # %track stop ends the tracked run
            return None
        return self._originals["end_run"](*args, **kwargs)

    def _set_tracking_uri(self, uri: Any) -> Any:
        original = self._originals["set_tracking_uri"]
        if isinstance(uri, str) and any(_same(uri, u) for u in (self.uri, *self.aliases)):
            original(self.uri)
        else:
            original(uri)
        self._follow_uri()
        return None

    # --- helpers -----------------------------------------------------------------------------------
    def _follow_uri(self) -> None:
        """The tracked run on the fluent stack iff MLflow's URI is nbtrack's store."""
        import mlflow

        current = str(mlflow.get_tracking_uri())
        stack = fluent_stack()
        if _same(current, self.uri):
            self.user_uri = None
            if self._entry is not None and self._entry not in stack:
                stack.insert(0, self._entry)
        else:
            self.user_uri = current
            if self._entry in stack:
                stack.remove(self._entry)

    def _aside(self, call: Callable[[], Any]) -> Any:
        """``call()`` with the tracked run off the fluent stack, then put back beneath what it left."""
        stack = fluent_stack()
        if self._entry not in stack:
            return call()
        index = stack.index(self._entry)
        stack.remove(self._entry)
        try:
            return call()
        finally:
            stack.insert(index, self._entry)

    def _record(self, run: Any, relation: str) -> None:
        import mlflow

        self.user_runs.append(
            {
                "run_id": run.info.run_id,
                "relation": relation,
                "experiment_id": str(run.info.experiment_id),
                "tracking_uri": strip_url_credentials(str(mlflow.get_tracking_uri())),
            }
        )


def _passthrough(guard: FluentGuard, name: str, wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapper`` while the guard is active, MLflow's own function after (a reference someone kept)."""
    original = guard._originals[name]

    def call(*args: Any, **kwargs: Any) -> Any:
        if guard.active:
            return wrapper(*args, **kwargs)
        return original(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = original.__doc__
    call.__wrapped__ = original  # type: ignore[attr-defined]
    return call


_ADOPTED: dict[type, type] = {}


def _adopted_class(base: type) -> type:
    """MLflow's ``ActiveRun`` whose ``with`` exit leaves the run running (``%track stop`` ends it)."""
    if base not in _ADOPTED:

        class AdoptedRun(base):  # type: ignore[valid-type,misc]
            def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> bool:
                return exc_type is None

        _ADOPTED[base] = AdoptedRun
    return _ADOPTED[base]
