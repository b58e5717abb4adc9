"""Which store and which notebook a request means, with every path checked against the server root.

The store is the configured tracking URI when one is set, else the embedded store of the project
(git/DVC root) holding the notebook, else of the project holding the server root: the same store the
notebook's kernel tracks into. Looking never creates a store: when the project's embedded database
does not exist yet, the target has no store and reads answer "no runs".
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from nbtrack.capture.locate import find_project_root
from nbtrack.config import NbtrackConfig
from nbtrack.errors import RunNotFoundError, UsageError
from nbtrack.redact import strip_url_credentials
from nbtrack.server.errors import OutsideRootError
from nbtrack.store import MlflowStore, embedded_uri


@dataclass(frozen=True)
class Target:
    """The store a request resolves to, and the notebook it names."""

    project: Path
    uri: str
    store: MlflowStore | None
    notebook_path: Path | None = None
    notebook: str | None = None  # relative to ``project``: what the tag ``mlflow.source.name`` holds

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


class StoreResolver:
    """Resolves ``notebook`` query parameters to paths and stores, one cached store per URI."""

    def __init__(self, root_dir: str | os.PathLike[str], config: NbtrackConfig) -> None:
        self.root = Path(os.path.realpath(root_dir))
        self.config = config
        self._stores: dict[str, MlflowStore] = {}
        self._lock = threading.Lock()

    def contains(self, path: Path) -> bool:
        """Whether the real ``path`` lies at or under the server root (symlinks resolved)."""
        real = Path(os.path.realpath(path))
        return real == self.root or self.root in real.parents

    def notebook_path(self, notebook: str) -> Path:
        """The real path of a notebook named relative to the server root (or absolute, inside it).

        Raises:
            UsageError: an empty path or one with a NUL byte.
            OutsideRootError: the path, once ``..`` and symlinks are resolved, leaves the root.
        """
        if not notebook.strip() or "\0" in notebook:
            raise UsageError(f"notebook={notebook!r}: give a notebook path relative to the server root")
        raw = Path(notebook)
        full = Path(os.path.realpath(raw if raw.is_absolute() else self.root / raw))
        if self.root not in full.parents:  # strictly under: the root itself is no notebook
            raise OutsideRootError(
                f"notebook {notebook!r} is outside the Jupyter server's root; "
                "give a path under the root the server was started in"
            )
        return full

    def target(self, notebook: str | None) -> Target:
        """The store and notebook filter for a request's ``notebook`` parameter (None: the root)."""
        path = self.notebook_path(notebook) if notebook is not None else None
        project = find_project_root(path.parent if path is not None else self.root)
        relative = None
        if path is not None:
            try:
                relative = path.relative_to(project).as_posix()
            except ValueError:  # pragma: no cover - the project is found upwards from the notebook
                relative = str(path)
        if self.config.tracking_uri:
            uri = self.config.tracking_uri
            store: MlflowStore | None = self._cached(uri, None)
        else:
            uri, folder = embedded_uri(project, self.config.store_dir, create=False)
            store = self._cached(uri, folder / "artifacts") if (folder / "mlflow.db").is_file() else None
        return Target(project=project, uri=uri, store=store, notebook_path=path, notebook=relative)

    def _cached(self, uri: str, artifact_root: Path | None) -> MlflowStore:
        with self._lock:
            store = self._stores.get(uri)
            if store is None:
                store = self._stores[uri] = MlflowStore(uri, artifact_root=artifact_root)
            return store
