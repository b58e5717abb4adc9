"""Which store and which notebook a request means, with every path checked against the server root.

The paths a request names are checked here; the store is the runs service's
(:meth:`nbtrack.runs.service.Runs.locate`): the configured tracking URI when one is set, else the
embedded store of the project (git/DVC root) holding the notebook, else of the project holding the
server root — the same store the notebook's kernel tracks into. Looking never creates a store: when
the project's embedded database does not exist yet, the target has no store and reads answer
"no runs".
"""

from __future__ import annotations

import os
from pathlib import Path

from nbtrack.errors import UsageError
from nbtrack.runs.service import Runs, Target
from nbtrack.server.errors import OutsideRootError

__all__ = ["StoreResolver", "Target"]


class StoreResolver:
    """Resolves ``notebook`` query parameters to paths under the server root, and to targets."""

    def __init__(self, root_dir: str | os.PathLike[str], runs: Runs) -> None:
        self.root = Path(os.path.realpath(root_dir))
        self.runs = runs

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
        if notebook is None:
            return self.runs.locate(cwd=self.root)
        return self.runs.locate(notebook=self.notebook_path(notebook))
