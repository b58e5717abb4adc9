"""The jupyter_server extension behind the JupyterLab panel: a REST API under ``<base_url>nbtrack/``.

Enabled by ``etc/jupyter/jupyter_server_config.d/nbtrack.json`` (installed with the package) or
``jupyter server extension enable nbtrack``. Loading it registers the handlers and the service and
returns; a background thread then imports what the panel's first requests need (:data:`WARM_ALWAYS`,
and MLflow's client when the store is a tracking server: ``import mlflow`` alone takes 1.5-3.5 s here,
while the embedded store's reads need no MLflow), so the first list after Lab starts does not pay for
it. Requests that arrive meanwhile wait for the warm-up before they run (never two threads importing
MLflow at once) and log one line when warm. Configure it like every nbtrack front-end
(:mod:`nbtrack.config`: the kernels and the CLI read the same files), e.g. in
``jupyter_server_config.py``::

    c.NbtrackConfig.tracking_uri = "http://mlflow.example.com"
    c.NbtrackConfig.max_replays = 2
    c.NbtrackConfig.replay_timeout = 1800

The configuration is built once, when the extension loads; every replay job gets it whole.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import importlib
import threading
import time
import weakref
from typing import Any

_SERVICES: weakref.WeakSet[Any] = weakref.WeakSet()
_SERVICES_AT_EXIT: list[bool] = []

#: Imported in the background at start: what the first ``runs``/``info``/``runs/{id}`` requests
#: import on any store (found by diffing ``sys.modules`` around them).
WARM_ALWAYS = ("nbtrack.server.summary",)
#: ... and on a tracking-server store: MLflow's client, and what its first HTTP call imports
#: (request-header providers; IPython, which MLflow's Databricks check asks for; netrc, by requests).
WARM_MLFLOW = ("mlflow", "mlflow.tracking", "mlflow.tracking.request_header.registry", "IPython", "netrc")


def warm_modules(tracking_uri: str) -> tuple[str, ...]:
    """The modules to warm for a store: MLflow's only when the store is not the embedded SQLite one.

    Example:
        >>> warm_modules("")
        ('nbtrack.server.summary',)
        >>> "mlflow" in warm_modules("http://mlflow.example.com")
        True
    """
    server = bool(tracking_uri) and not tracking_uri.startswith("sqlite:")
    return WARM_ALWAYS + (WARM_MLFLOW if server else ())


def start_warming(modules: tuple[str, ...], log: Any) -> concurrent.futures.Future[float]:
    """Import ``modules`` in a daemon thread; the future gets the seconds it took (never an error).

    Example:
        >>> start_warming(("json",), logging.getLogger("x")).result() >= 0  # doctest: +SKIP
        True
    """
    done: concurrent.futures.Future[float] = concurrent.futures.Future()

    def warm() -> None:
        started = time.perf_counter()
        try:
            for name in modules:
                try:
                    importlib.import_module(name)
                except Exception as exc:  # noqa: BLE001 - the request that needs it says what is wrong
                    log.warning("nbtrack: warming %s failed: %s", name, exc)
            log.info("nbtrack: warm in %.2f s (%s)", time.perf_counter() - started, ", ".join(modules))
        finally:  # requests wait for this: it must end, whatever happened
            done.set_result(time.perf_counter() - started)

    threading.Thread(target=warm, name="nbtrack-warm", daemon=True).start()
    return done


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
    # Before the warm-up: MLflow must see these limits from its first import on.
    bound_process(config.tracking_timeout)
    warm = start_warming(warm_modules(str(config.tracking_uri or "")), serverapp.log)
    service = NbtrackService(
        serverapp.root_dir,
        config,
        notary=getattr(serverapp.contents_manager, "notary", None),
        log=serverapp.log,
    )
    service.warm = warm
    from nbtrack.store.reading import BEFORE_MLFLOW

    BEFORE_MLFLOW[:] = [warm.result]  # a request that falls back on MLflow waits for the warm-up
    web_app = serverapp.web_app
    web_app.settings["nbtrack"] = service
    base_url = web_app.settings.get("base_url", "/")
    web_app.add_handlers(".*$", route_table(base_url))
    if not _SERVICES_AT_EXIT:
        atexit.register(_stop_replays_at_exit)
        _SERVICES_AT_EXIT.append(True)
    _SERVICES.add(service)
    from nbtrack.server.metrics import register

    # Prometheus: nbtrack's series in jupyter_server's own /metrics; read at scrape time, not now.
    register(serverapp.root_dir, config, serverapp.log)
    serverapp.log.info("nbtrack: API at %snbtrack/ (replays: %d at once)", base_url, config.max_replays)
