"""nbtrack: experiment tracking that lives inside Jupyter.

Public surface: :func:`load_ipython_extension` (``%load_ext nbtrack``), :func:`replay`,
:func:`runs_frame` and ``__version__``.
Everything heavy (mlflow, dvc, papermill, nbformat) is imported only where it is used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_ipython_extension", "replay", "runs_frame", "unload_ipython_extension"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The server extension behind the panel (enabled by ``etc/jupyter/jupyter_server_config.d``)."""
    return [{"module": "nbtrack.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt labextension (the panel), built into ``nbtrack/labextension`` at install."""
    return [{"src": "labextension", "dest": "nbtrack"}]


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%track`` magics and the execution-history hooks."""
    from nbtrack.magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the hooks registered by :func:`load_ipython_extension`."""
    from nbtrack.magics import unload

    unload(ipython)


def runs_frame(
    notebook: str | None = None,
    *,
    scope: str = "notebook",
    filter: str | None = None,
    q: str | None = None,
    only: tuple[str, ...] | list[str] = (),
    columns: str = "all",
    archived: bool = False,
) -> Any:
    """The runs of a notebook (or of its project's store) as a pandas DataFrame, one row per run.

    The same table as the JupyterLab compare view and ``%track compare``: indexed by run id, newest
    first, columns named by their keys: ``run.name``, ``run.status``, ``run.start`` (a datetime),
    ``run.duration`` (s), ``run.notebook``, ``params.<name>`` (numbers when every value is one),
    ``metrics.<name>.last`` / ``.min`` / ``.max``, ``tags.<name>`` (user tags), ``data.version``
    (short DVC hash), ``git.commit``, ``git.dirty``, ``nbtrack.dirty_data``, ``nbtrack.uncommitted``,
    ``nbtrack.out_of_order``, ``nbtrack.replay`` (last replay verdict), ``nbtrack.note``.

    Args:
        notebook: the notebook's path (default: this kernel's notebook under Jupyter).
        scope: ``"notebook"`` (its runs) or ``"project"`` (every run of the project's store).
        filter: MLflow search syntax, e.g. ``"metrics.loss < 0.5 and params.lr = '0.01'"``.
        q: a case-insensitive substring of the run's name, id, params or tags.
        only: ``"reproduced"`` (replayed and REPRODUCED), ``"clean_git"`` (committed code).
        columns: ``"all"`` or ``"varying"`` (only the columns whose values differ).
        archived: the archived (MLflow soft-deleted) runs instead.

    Example:
        >>> import nbtrack
        >>> df = nbtrack.runs_frame("train.ipynb", filter="params.lr = '0.01'")  # doctest: +SKIP
        >>> df.sort_values("metrics.loss.min").head(3)[["run.name", "metrics.loss.min"]]  # doctest: +SKIP
    """
    from nbtrack.runs.table import runs_frame as frame

    return frame(notebook, scope=scope, filter=filter, q=q, only=only, columns=columns, archived=archived)


def __getattr__(name: str) -> Any:
    """``nbtrack.replay``: the callable replay package (see :mod:`nbtrack.replay`), imported lazily."""
    if name == "replay":
        import importlib

        return importlib.import_module("nbtrack.replay")
    raise AttributeError(f"module 'nbtrack' has no attribute {name!r}")
