"""Where a kernel's runs are written, behind one object: the embedded store, or a server via the spool.

With no tracking server configured, a run goes straight into the project's embedded SQLite store.
With one, the run goes into the server's local spool (:mod:`nbtrack.store.spool`) and is uploaded
in the background once it ends (:mod:`nbtrack.store.sync`): ``%track start`` and ``%track stop``
never wait on the network, whatever the server's state. :class:`Tracking` decides which, starts
and ends the *active* MLflow run (so the user's own ``mlflow.log_*`` calls land in it), points the
kernel's MLflow tracking URI at the spool while a spooled run is active and back at the server
after, asks the server whether it answers, and hands an ended run to the background uploader.

The tracker (:mod:`nbtrack.track`) talks to this object only; it never imports MLflow, the spool,
the uploader or the HTTP probe itself.

Example:
    >>> tracking = Tracking.for_project(Path("."), NbtrackConfig())  # doctest: +SKIP
    >>> run_id = tracking.start_run(tracking.experiment_id("churn"), "baseline", {})  # doctest: +SKIP
    >>> tracking.end_run(run_id, "FINISHED")  # doctest: +SKIP
    >>> tracking.upload(run_id, lambda state, detail: print(state))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbtrack.models import RunRecord
from nbtrack.store.adopt import FluentGuard
from nbtrack.store.http import unreachable  # here, not in the probe's thread (see probe)
from nbtrack.store.mlflow_store import MlflowStore
from nbtrack.store.orphans import end_orphans_quietly, owner_tags
from nbtrack.store.spool import Spool
from nbtrack.tags import PENDING, SYNC_STATE, SYNC_TARGET


class Tracking:
    """Where this kernel's next run is written, and the verbs that write it there.

    ``store`` is the store the run is written into (the embedded one, or the spool's); ``target``
    is the tracking server the run is bound for (None for an embedded store); ``spool`` its spool.

    Example:
        >>> tracking = Tracking(MlflowStore("http://mlflow:5000"), NbtrackConfig())  # doctest: +SKIP
        >>> tracking.spooled, tracking.describe()  # doctest: +SKIP
        (True, 'http://mlflow:5000 (through the local spool)')
    """

    def __init__(self, configured: MlflowStore, config: Any) -> None:
        self.config = config
        self.target: MlflowStore | None = configured if configured.is_server else None
        self.spool: Spool | None = None
        self.store: MlflowStore = configured
        #: Keeps the notebook's own MLflow calls working while a run is active (:mod:`.adopt`).
        self.guard: FluentGuard | None = None
        if self.target is not None:
            self.spool = Spool.for_server(configured.uri, config)
            self.store = self.spool.store

    @classmethod
    def for_project(cls, project_root: Path, config: Any) -> Tracking:
        """Where runs of the project at ``project_root`` go (the configured server, else its
        embedded store, whose folder and ``.gitignore`` are created here: before any capture, so
        that git does not report the store itself as untracked code)."""
        return cls(MlflowStore.for_project(project_root, config), config)

    @staticmethod
    def lookup_store(project_root: Path, config: Any) -> MlflowStore:
        """The store a run id of the project is looked up in (the server itself, not its spool:
        the card's and ``%track show``'s readers find a spool run from there)."""
        return MlflowStore.for_project(project_root, config)

    # --- what it is -------------------------------------------------------------------------------
    @property
    def spooled(self) -> bool:
        """True when runs go to a tracking server through the local spool."""
        return self.target is not None

    @property
    def uri(self) -> str:
        """The configured store's URI: the server's when spooled (credentials included: do not print)."""
        return (self.target or self.store).uri

    @property
    def display_uri(self) -> str:
        return (self.target or self.store).display_uri

    def describe(self) -> str:
        """Where runs go, for a person (``%track status``)."""
        if self.target is not None:
            return f"{self.target.display_uri} (through the local spool)"
        return self.store.display_uri

    def run_view(self, run: RunRecord) -> str:
        """Where a person sees an ended run."""
        if self.target is not None:
            return f"the MLflow UI of {self.target.display_uri}, once uploaded"
        return self.store.run_url(run)

    def outage_notice(self, reason: str) -> str:
        """The line a user reads when the server did not answer at start (``reason`` says why)."""
        assert self.target is not None and self.spool is not None
        return (
            f"tracking server {self.target.display_uri} is unreachable ({reason}); this run is kept in "
            f"the local spool {self.spool.display} and is pending: it is uploaded once the server "
            "answers, or by `nbtrack sync`"
        )

    # --- the server ---------------------------------------------------------------------------------
    def probe(self) -> str | None:
        """Why the server cannot be reached now, else None. Always None for an embedded store.
        Bounded by ``tracking_timeout``.

        Safe on a thread beside the main thread's ``import mlflow``: it imports nothing and starts no
        thread (the earlier pending runs are handed to the uploader by :meth:`upload_pending`, from
        the main thread, once MLflow is imported).
        """
        if self.target is None or self.spool is None:
            return None
        return unreachable(self.target.uri, self.config.tracking_timeout)

    def upload_pending(self) -> None:
        """Upload the spool's earlier pending runs in the background (the server answered). Call from
        the main thread: the uploader's modules are imported here before its thread starts."""
        if self.target is not None and self.spool is not None and self.spool.exists():
            self._uploader().kick()

    def upload(self, run_id: str, on_done: Callable[[str, str], None]) -> None:
        """Upload an ended spool run in the background; ``on_done(state, detail)`` hears how it ended
        (``uploaded`` with the server run id, or ``pending`` with the reason)."""
        if self.target is not None:
            self._uploader().kick(run_id, on_done)

    def _uploader(self) -> Any:
        from nbtrack.store.sync import uploader_for

        assert self.spool is not None and self.target is not None
        return uploader_for(self.spool, self.target, self.config.tracking_timeout)

    # --- the run ------------------------------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        """The id of the named experiment in the store runs are written to (created if needed)."""
        return self.store.experiment_id(name)

    def end_orphans(self, experiment_id: str, *, by: str) -> list[str]:
        """End this host's runs of the experiment whose kernel died, KILLED; never fails."""
        return end_orphans_quietly(self.store, experiment_ids=[experiment_id], by=by)

    def start_run(self, experiment_id: str, name: str | None, tags: dict[str, str]) -> str:
        """Start the active MLflow run with ``tags``, plus the owner tags (orphan detection) and, for a
        spooled run, its upload state (pending); the kernel's MLflow calls then go to it, and the
        notebook's own ``start_run`` / ``set_tracking_uri`` / ``end_run`` follow
        :mod:`nbtrack.store.adopt`'s rules until :meth:`end_run`."""
        run_tags = {**tags, **owner_tags()}
        if self.target is not None:
            run_tags.update({SYNC_STATE: PENDING, SYNC_TARGET: self.target.display_uri})
        run_id = self.store.start_active_run(experiment_id, name, run_tags)
        aliases = (self.target.uri,) if self.target is not None else ()
        guard = FluentGuard(
            run_id,
            self.store.uri,
            experiment_id,
            named=name is not None,
            aliases=aliases,
            client=self.store.client,
        )
        guard.install()
        self.guard = guard
        return run_id

    def mlflow_facts(self) -> dict[str, Any]:
        """What the notebook's own MLflow code did during the active run (adopted ``start_run``
        calls, its own runs and their store), for the snapshot; empty when nothing."""
        return self.guard.facts() if self.guard is not None else {}

    def end_run(self, run_id: str, status: str) -> None:
        """End the active run; the kernel's MLflow calls go to the server again after a spooled one,
        unless the notebook pointed MLflow elsewhere itself (that choice stays)."""
        guard, self.guard = self.guard, None
        user_uri = guard.user_uri if guard is not None else None
        try:
            if guard is not None:
                guard.remove()
            self.store.end_active_run(run_id, status)
        finally:
            if user_uri is None:
                self._point_mlflow_at_target()

    def discard(self, run_id: str) -> None:
        """End a run FAILED and move it to MLflow's trash (a run whose start could not be logged:
        ``mlflow gc`` removes it, ``restore_run`` brings it back)."""
        self.end_run(run_id, "FAILED")
        self.store.delete_run(run_id)

    def make_durable(self, run: RunRecord) -> None:
        """``fsync`` a spooled run's files before the end commit that makes it pending."""
        if self.spool is not None:
            self.spool.make_durable(run)

    def _point_mlflow_at_target(self) -> None:
        if self.target is None:
            return
        import mlflow  # imported already: the run was started through MLflow's fluent API

        mlflow.set_tracking_uri(self.target.uri)
