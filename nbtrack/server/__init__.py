"""The jupyter_server extension behind the JupyterLab panel: a REST API under ``<base_url>nbtrack/``.

Enabled by ``etc/jupyter/jupyter_server_config.d/nbtrack.json`` (installed with the package) or
``jupyter server extension enable nbtrack``. Loading it registers the handlers and the service; it
imports neither mlflow, dvc nor papermill (the first request that needs MLflow does, in a worker
thread). Configure it like every nbtrack front-end (:mod:`nbtrack.config`: the kernels and the CLI
read the same files), e.g. in ``jupyter_server_config.py``::

    c.NbtrackConfig.tracking_uri = "http://mlflow.example.com"
    c.NbtrackConfig.max_replays = 2
    c.NbtrackConfig.replay_timeout = 1800

The configuration is built once, when the extension loads; every replay job gets it whole.
"""

from __future__ import annotations

import atexit
import weakref
from typing import Any

_SERVICES: weakref.WeakSet[Any] = weakref.WeakSet()
_SERVICES_AT_EXIT: list[bool] = []


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Also loadable as ``nbtrack.server`` itself (``jupyter server extension enable nbtrack.server``)."""
    return [{"module": "nbtrack.server"}]


def _stop_replays_at_exit() -> None:
    # jupyter_server has no stop hook for a module extension; the process exit is ours.
    for service in list(_SERVICES):
        service.close()


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the API's handlers under the server's base URL, and the service they share."""
    from nbtrack.config import load_config
    from nbtrack.server.handlers import route_table
    from nbtrack.server.service import NbtrackService

    # The server's own config (its command line, the config it was made with) over the shared files.
    config = load_config(serverapp.config)
    from nbtrack.store.http import bound_process

    # A dead tracking server fails a panel request in seconds (MLflow alone retries ~4 minutes).
    bound_process(config.tracking_timeout)
    service = NbtrackService(
        serverapp.root_dir,
        config,
        notary=getattr(serverapp.contents_manager, "notary", None),
        log=serverapp.log,
    )
    web_app = serverapp.web_app
    web_app.settings["nbtrack"] = service
    base_url = web_app.settings.get("base_url", "/")
    web_app.add_handlers(".*$", route_table(base_url))
    if not _SERVICES_AT_EXIT:
        atexit.register(_stop_replays_at_exit)
        _SERVICES_AT_EXIT.append(True)
    _SERVICES.add(service)
    serverapp.log.info("nbtrack: API at %snbtrack/ (replays: %d at once)", base_url, config.max_replays)
