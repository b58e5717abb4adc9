"""nbtrack: experiment tracking that lives inside Jupyter.

Public surface: :func:`load_ipython_extension` (``%load_ext nbtrack``), :func:`replay` and
``__version__``.
Everything heavy (mlflow, dvc, papermill, nbformat) is imported only where it is used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_ipython_extension", "replay", "unload_ipython_extension"]


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


def __getattr__(name: str) -> Any:
    """``nbtrack.replay``: the callable replay package (see :mod:`nbtrack.replay`), imported lazily."""
    if name == "replay":
        import importlib

        return importlib.import_module("nbtrack.replay")
    raise AttributeError(f"module 'nbtrack' has no attribute {name!r}")
