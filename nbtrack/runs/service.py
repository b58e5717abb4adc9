"""The runs service: how every front-end (CLI, server extension, ``%track show``) reads runs.

One :class:`Runs` per front-end process holds the configuration and one store per tracking URI. It
finds the store a project (or notebook) uses — the configured tracking URI, else the project's
embedded store — without ever creating one by looking; it lists runs (with the local spool's
pending ones), resolves ids (full, spool, or a unique prefix: :mod:`nbtrack.runs.ids`), shows,
compares and uploads them. It returns nbtrack's own records (:class:`~nbtrack.models.RunRecord`,
:class:`~nbtrack.models.Snapshot`, the rows of :mod:`nbtrack.runs.rows`), never MLflow objects.

Example:
    >>> runs = Runs(load_config())  # doctest: +SKIP
    >>> target = runs.locate(notebook=Path("analysis/train.ipynb"))  # doctest: +SKIP
    >>> runs.show(target, "3f2a9c")[0].run.name  # doctest: +SKIP
    'baseline'
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbtrack.capture.locate import find_project_root
from nbtrack.config import NbtrackConfig
from nbtrack.errors import ConfigError, RunNotFoundError, StoreError
from nbtrack.models import RunRecord, Snapshot
from nbtrack.redact import strip_url_credentials
from nbtrack.runs.ids import Found, resolve
from nbtrack.runs.listing import RunPage, list_page
from nbtrack.store import MlflowStore, embedded_uri
from nbtrack.store.spool import Spool


class PendingUploadError(StoreError):
    """A verb needs the run on the tracking server, and it is still in the local spool."""


@dataclass(frozen=True)
class Target:
    """The store a project or notebook resolves to, and the notebook it names.

    Attributes:
        project: the project root (None when the target was made from a store alone).
        uri: the tracking URI.
        store: the store, None while the project's embedded store does not exist.
        notebook_path: the notebook's absolute path, when one was named.
        notebook: the notebook relative to ``project``: what the tag ``mlflow.source.name`` holds.
        database: the embedded store's database file (None for a configured tracking URI).
    """

    project: Path | None
    uri: str
    store: MlflowStore | None
    notebook_path: Path | None = None
    notebook: str | None = None
    database: Path | None = None

    @property
    def display_uri(self) -> str:
        return strip_url_credentials(self.uri)

    def require_store(self, run_id: str) -> MlflowStore:
        """The store, or a :class:`RunNotFoundError` when it does not exist yet."""
        if self.store is None:
            raise RunNotFoundError(
                f"run {run_id}: no runs tracked yet in {self.display_uri}; "
                "run `%track start` in a notebook of this project"
            )
        return self.store


class Runs:
    """Reading runs, for every front-end; thread-safe (the server calls it from a thread pool).

    Example:
        >>> runs = Runs(NbtrackConfig())
        >>> runs.locate(project=Path("/tmp/nowhere")).store is None
        True
    """

    def __init__(self, config: NbtrackConfig) -> None:
        self.config = config
        self._stores: dict[str, MlflowStore] = {}
        self._spools: dict[str, Spool] = {}
        self._lock = threading.Lock()

    # --- where ---------------------------------------------------------------------------------
    def locate(
        self, *, project: Path | None = None, notebook: Path | None = None, cwd: Path | None = None
    ) -> Target:
        """The store of ``project`` (default: the project holding ``notebook``, else ``cwd``).

        Example:
            >>> Runs(NbtrackConfig()).locate(notebook=Path("/tmp/p/nb.ipynb")).notebook
            'nb.ipynb'
        """
        path = notebook.resolve() if notebook is not None else None
        start = path.parent if path is not None else (cwd or Path.cwd())
        root = (project or find_project_root(start)).resolve()
        relative = None
        if path is not None:
            try:
                relative = path.relative_to(root).as_posix()
            except ValueError:  # a notebook outside the project given
                relative = str(path)
        if self.config.tracking_uri:
            uri = self.config.tracking_uri
            return Target(root, uri, self.store(uri), path, relative)
        uri, folder = embedded_uri(root, self.config.store_dir, create=False)
        database = folder / "mlflow.db"
        store = self.store(uri, folder / "artifacts") if database.is_file() else None
        return Target(root, uri, store, path, relative, database)

    def target_of(self, store: MlflowStore, project: Path | None = None) -> Target:
        """The target of a store at hand (a kernel's tracking store); a spool's store means its server."""
        spool = store.spool
        if spool is not None:
            with self._lock:
                self._spools.setdefault(spool.server_uri, spool)
            return Target(project, spool.server_uri, self.store(spool.server_uri))
        with self._lock:
            self._stores.setdefault(store.uri, store)
        return Target(project, store.uri, store)

    def store(self, uri: str, artifact_root: Path | None = None) -> MlflowStore:
        """The one store of ``uri`` (made on first use; its MLflow client opens on its first call).

        Raises:
            ConfigError: the URI's scheme is unknown.
        """
        with self._lock:
            found = self._stores.get(uri)
            if found is None:
                found = self._stores[uri] = MlflowStore(
                    uri, artifact_root=artifact_root, timeout=self.config.tracking_timeout
                )
            return found

    def spool_of(self, target: Target) -> Spool | None:
        """The local spool of a tracking server target (it may not exist yet); None for others."""
        if target.store is None or not target.store.is_server:
            return None
        with self._lock:
            spool = self._spools.get(target.uri)
            if spool is None:
                spool = self._spools[target.uri] = Spool.for_server(target.uri, self.config)
            return spool

    def _existing_spool(self, target: Target) -> Spool | None:
        spool = self.spool_of(target)
        return spool if spool is not None and spool.exists() else None

    # --- reading -------------------------------------------------------------------------------
    def list_runs(
        self,
        target: Target,
        *,
        experiment: str | None = None,
        max_results: int = 50,
        page_token: str | None = None,
        by: str = "nbtrack",
    ) -> RunPage:
        """One page of the target's runs (of its notebook, when it names one); see
        :func:`nbtrack.runs.listing.list_page`. An embedded store that does not exist lists nothing."""
        if target.store is None:
            return RunPage()
        return list_page(
            target.store,
            self.spool_of(target),
            notebook=target.notebook,
            experiment=experiment,
            max_results=max_results,
            page_token=page_token,
            by=by,
        )

    def search(
        self,
        target: Target,
        *,
        experiment: str | None = None,
        tags: dict[str, str] | None = None,
        max_results: int = 100,
    ) -> list[RunRecord]:
        """The target's nbtrack runs (of its notebook, when it names one), newest first: one query."""
        if target.store is None:
            return []
        runs, _ = target.store.search_runs(
            notebook=target.notebook, experiment=experiment, tags=tags, max_results=max_results
        )
        return list(runs)

    def resolve(self, target: Target, run_id: str) -> Found:
        """The run a full id, a spool id or a unique prefix (>= 6 characters) names.

        Raises:
            UsageError: the id is too short, or a prefix that matches several runs (named).
            RunNotFoundError: no such run (also when the target's store does not exist yet).
        """
        store = target.require_store(run_id)
        return resolve(store, self._existing_spool(target), run_id)

    def show(self, target: Target, run_id: str) -> tuple[Found, Snapshot]:
        """The run and its snapshot.

        Raises:
            SnapshotError: the run has no readable snapshot.
        """
        found = self.resolve(target, run_id)
        return found, found.store.load_snapshot(found.run_id)

    def on_server(self, target: Target, run: str | Found, verb: str) -> Found:
        """The run (an id, or resolved already), which must be on the target's store, not pending in
        the local spool, to ``verb`` it.

        Raises:
            PendingUploadError: the run is still in the local spool.
        """
        found = run if isinstance(run, Found) else self.resolve(target, run)
        if found.pending:
            raise PendingUploadError(
                f"run {found.run_id} is still in the local spool, not on {target.display_uri}; upload "
                f"it with `nbtrack sync`, then {verb} it"
            )
        return found

    def diff(self, target: Target, run_a: str | Found, run_b: str | Found) -> dict[str, Any]:
        """The structured diff of two runs (:func:`nbtrack.runs.diff.diff_runs`) of one store; each
        given by an id (resolved here) or resolved already.

        Raises:
            PendingUploadError: one run is still in the local spool, the other on the server.
        """
        from nbtrack.runs.diff import diff_runs

        a = run_a if isinstance(run_a, Found) else self.resolve(target, run_a)
        b = run_b if isinstance(run_b, Found) else self.resolve(target, run_b)
        if a.store.uri != b.store.uri:
            pending = (a if a.pending else b).run_id
            raise PendingUploadError(
                f"run {pending} is still in the local spool, the other on {target.display_uri}; "
                "upload it with `nbtrack sync`, then compare"
            )
        return diff_runs(a.store, a.run_id, b.run_id)

    # --- uploading -----------------------------------------------------------------------------
    def sync(self, target: Target, say: Callable[[str], None] = lambda _line: None) -> Any:
        """Upload the runs waiting in the local spool (``nbtrack sync``); the ``SyncReport``.

        Raises:
            ConfigError: the target is no tracking server.
            StoreError: runs are waiting and the server is unreachable.
        """
        from nbtrack.store.http import unreachable
        from nbtrack.store.orphans import end_orphans_quietly
        from nbtrack.store.sync import sync

        spool = self.spool_of(target)
        if spool is None or target.store is None:
            raise ConfigError(
                f"{target.display_uri} is not a tracking server, so nothing waits to be uploaded; set "
                "MLFLOW_TRACKING_URI (or --tracking-uri) to the server's http(s) URL"
            )
        if spool.exists():
            end_orphans_quietly(spool.store, by="`nbtrack sync`")  # a dead kernel's run: KILLED, uploaded
        waiting = spool.pending()
        if waiting:
            reason = unreachable(target.uri, self.config.tracking_timeout)
            if reason is not None:
                raise StoreError(
                    f"tracking server {target.display_uri} is unreachable ({reason}); {len(waiting)} "
                    f"run(s) stay pending in {spool.display}; run `nbtrack sync` again once it answers"
                )
        return sync(spool, target.store, say=say)
