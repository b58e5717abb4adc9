"""Prometheus metrics of nbtrack, served by jupyter_server's own ``/metrics`` (no new port).

jupyter_server answers ``GET <base_url>metrics`` with prometheus_client's default registry,
authenticated by default (``ServerApp.authenticate_prometheus``: the server's token, as
``Authorization: token ...``, else 403). Loading the extension registers one collector there
(:func:`register`); it reads the stores when Prometheus scrapes, never before (the server's start
stays fast), with a few aggregate SQL queries per store (:mod:`nbtrack.store.counts`: no MLflow
import, a short lock wait). Series:

==============================================  =========  =====================================
``nbtrack_runs``                                gauge      nbtrack runs by ``project``, ``experiment``,
                                                           ``notebook``, ``status`` (replays included)
``nbtrack_replays``                             gauge      replays by ``project``, ``experiment``,
                                                           ``notebook`` (the replayed run's), ``verdict``
``nbtrack_last_reproduced_timestamp_seconds``   gauge      when the latest REPRODUCED replay of a
                                                           notebook's runs ended (unix seconds)
``nbtrack_capture_duration_seconds``            histogram  nbtrack's capture time per run (tag
                                                           ``nbtrack.capture.seconds``), bucketed at scrape
``nbtrack_spool_pending_runs``                  gauge      runs of a local spool waiting for upload,
                                                           by ``server``
``nbtrack_spool_oldest_pending_age_seconds``    gauge      how long the oldest of them has waited
``nbtrack_scrape_errors_total``                 counter    stores a scrape could not read (each logged)
``nbtrack_scrape_duration_seconds``             gauge      how long the last scrape of nbtrack's series took
==============================================  =========  =====================================

The stores read: the embedded store of every project at or below the server root (two levels deep,
hidden folders skipped; the list is refreshed every :data:`DISCOVERY_SECONDS`), or the configured
``tracking_uri`` when it is a ``sqlite:///`` store, and every local spool in ``spool_dir``. The runs of
a tracking server are not counted here (that would be an HTTP search per scrape): its spool is.
``project`` is the project's folder relative to the server root (``.`` for the root itself).

Example:
    >>> collector = register(Path("/home/me/work"), load_config(), logging.getLogger("x"))  # doctest: +SKIP
    >>> [m.name for m in collector.collect()][:2]  # doctest: +SKIP
    ['nbtrack_runs', 'nbtrack_replays']
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from nbtrack.capture.locate import find_project_root
from nbtrack.config import NbtrackConfig
from nbtrack.store.counts import SpoolCounts, StoreCounts, spool_counts, store_counts
from nbtrack.store.sqlite import sqlite_path

#: Seconds between two looks for the projects' stores under the server root.
DISCOVERY_SECONDS = 60.0
#: How deep below the server root a project's store is looked for.
DISCOVERY_DEPTH = 2
#: Folders never walked into when looking for projects.
_SKIP = frozenset({"node_modules", "__pycache__", "site-packages"})
_PROJECT = ["project", "experiment"]
#: Every series this module exports (the Grafana dashboard's test checks its queries against these).
SERIES = {
    "nbtrack_runs": "nbtrack runs in the store, by status (replay runs included)",
    "nbtrack_replays": "replays recorded, by verdict and the replayed run's notebook",
    "nbtrack_last_reproduced_timestamp_seconds": "end time of the latest REPRODUCED replay of a notebook",
    "nbtrack_capture_duration_seconds": "seconds nbtrack's capture took per run (start + end snapshot)",
    "nbtrack_spool_pending_runs": "runs in the local spool waiting for upload to the tracking server",
    "nbtrack_spool_oldest_pending_age_seconds": "seconds since the oldest run waiting in the spool ended",
    "nbtrack_scrape_errors_total": "stores a scrape of nbtrack's metrics could not read",
    "nbtrack_scrape_duration_seconds": "seconds the last scrape of nbtrack's metrics took",
}

log = logging.getLogger("nbtrack.server")
_LOCK = threading.Lock()
#: The collector registered in each registry (one per process: the last server loaded wins).
_REGISTERED: dict[int, NbtrackCollector] = {}


@dataclass(frozen=True)
class Source:
    """A database the collector reads: a project's store (``label`` = the project) or a spool (the server)."""

    db: Path
    label: str
    spool: bool = False


def project_stores(root: Path, store_dir: str, depth: int = DISCOVERY_DEPTH) -> list[Path]:
    """Project folders at or below ``root`` (``depth`` levels) holding an embedded store, sorted.

    Example:
        >>> project_stores(Path("/tmp/nowhere"), ".nbtrack")
        []
    """
    found: list[Path] = []

    def visit(folder: Path, level: int) -> None:
        if (folder / store_dir / "mlflow.db").is_file():
            found.append(folder)
        if level >= depth:
            return
        try:
            entries = list(os.scandir(folder))
        except OSError:  # unreadable: not ours to count
            return
        for entry in entries:
            if (
                not entry.name.startswith(".")
                and entry.name not in _SKIP
                and entry.is_dir(follow_symlinks=False)
            ):
                visit(Path(entry.path), level + 1)

    visit(root, 0)
    return sorted(found)


def _label(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)


def spool_sources(spool_dir: Path) -> list[Source]:
    """Every local spool under ``spool_dir``, labelled with its server (as its ``server.json`` names it)."""
    out = []
    try:
        folders = sorted(p for p in spool_dir.iterdir() if (p / "mlflow.db").is_file())
    except OSError:  # no spool yet
        return []
    for folder in folders:
        try:
            server = str(json.loads((folder / "server.json").read_text())["server"])
        except (OSError, ValueError, KeyError, TypeError):
            server = folder.name
        out.append(Source(folder / "mlflow.db", server, spool=True))
    return out


class NbtrackCollector:
    """Reads nbtrack's series from the stores at each scrape; never raises into jupyter_server.

    Example:
        >>> collector = NbtrackCollector(Path("/tmp/nowhere"), NbtrackConfig())
        >>> sorted(m.name for m in collector.describe())[0]
        'nbtrack_capture_duration_seconds'
    """

    def __init__(self, root: str | os.PathLike[str], config: NbtrackConfig, logger: Any = None) -> None:
        self.root = Path(os.path.realpath(root))
        self.config = config
        self.log = logger or log
        self.errors = 0
        self.last_duration = 0.0
        self._sources: list[Source] = []
        self._found_at = -DISCOVERY_SECONDS
        self._reported: dict[Path, str] = {}
        self._lock = threading.Lock()

    # --- what to read --------------------------------------------------------------------------
    def sources(self) -> list[Source]:
        """The databases to read (project stores refreshed every :data:`DISCOVERY_SECONDS`)."""
        now = time.monotonic()
        if now - self._found_at >= DISCOVERY_SECONDS:
            self._sources, self._found_at = self._discover(), now
        return self._sources

    def _discover(self) -> list[Source]:
        config = self.config
        found: list[Source] = []
        uri = str(config.tracking_uri or "")
        if uri:
            db = sqlite_path(uri)
            if db is not None:
                found.append(Source(db.absolute(), _label(db.absolute().parent.parent, self.root)))
        elif Path(config.store_dir).is_absolute():  # one store for every project
            found.append(Source(Path(config.store_dir) / "mlflow.db", "."))
        else:
            projects = project_stores(self.root, config.store_dir)
            enclosing = find_project_root(self.root)  # the root may lie inside a project
            if enclosing != self.root and (enclosing / config.store_dir / "mlflow.db").is_file():
                projects.insert(0, enclosing)
            found += [Source(p / config.store_dir / "mlflow.db", _label(p, self.root)) for p in projects]
        return found + spool_sources(Path(config.spool_dir).expanduser())

    # --- prometheus_client's collector protocol ------------------------------------------------
    def describe(self) -> list[Metric]:
        """The families, without samples: registering the collector reads no store."""
        return list(_families().values())

    def collect(self) -> Iterator[Metric]:
        """The series, read now; a store that cannot be read is counted and logged, never raised."""
        with self._lock:  # two scrapes at once (two Prometheus servers) count errors once each
            started = time.perf_counter()
            families = _families()
            try:
                for source in self.sources():
                    self._read(source, families)
            except Exception as exc:  # noqa: BLE001 - a scrape must answer, whatever broke
                self._failed(self.root, exc)
            families["nbtrack_scrape_errors_total"].add_metric([], self.errors)
            self.last_duration = time.perf_counter() - started
            families["nbtrack_scrape_duration_seconds"].add_metric([], self.last_duration)
        yield from families.values()

    def _read(self, source: Source, families: dict[str, Any]) -> None:
        try:
            if source.spool:
                _add_spool(families, source.label, spool_counts(source.db))
            else:
                _add_store(families, source.label, store_counts(source.db))
        except Exception as exc:  # noqa: BLE001 - one broken store must not hide the others
            if not source.db.exists():  # gone since it was found: look again at the next scrape
                self._found_at = -DISCOVERY_SECONDS
                return
            self._failed(source.db, exc)
        else:
            self._reported.pop(source.db, None)

    def _failed(self, where: Path, exc: Exception) -> None:
        self.errors += 1
        message = f"{type(exc).__name__}: {exc}"
        # One warning per new problem (Prometheus scrapes every few seconds), debug for repeats.
        level = logging.DEBUG if self._reported.get(where) == message else logging.WARNING
        self._reported[where] = message
        self.log.log(level, "nbtrack: metrics could not read %s: %s", where, message)


def _families() -> dict[str, Any]:
    """Fresh, empty metric families (one set per scrape)."""
    doc = SERIES
    return {
        "nbtrack_runs": GaugeMetricFamily(
            "nbtrack_runs", doc["nbtrack_runs"], labels=[*_PROJECT, "notebook", "status"]
        ),
        "nbtrack_replays": GaugeMetricFamily(
            "nbtrack_replays", doc["nbtrack_replays"], labels=[*_PROJECT, "notebook", "verdict"]
        ),
        "nbtrack_last_reproduced_timestamp_seconds": GaugeMetricFamily(
            "nbtrack_last_reproduced_timestamp_seconds",
            doc["nbtrack_last_reproduced_timestamp_seconds"],
            labels=[*_PROJECT, "notebook"],
        ),
        "nbtrack_capture_duration_seconds": HistogramMetricFamily(
            "nbtrack_capture_duration_seconds", doc["nbtrack_capture_duration_seconds"], labels=_PROJECT
        ),
        "nbtrack_spool_pending_runs": GaugeMetricFamily(
            "nbtrack_spool_pending_runs", doc["nbtrack_spool_pending_runs"], labels=["server"]
        ),
        "nbtrack_spool_oldest_pending_age_seconds": GaugeMetricFamily(
            "nbtrack_spool_oldest_pending_age_seconds",
            doc["nbtrack_spool_oldest_pending_age_seconds"],
            labels=["server"],
        ),
        "nbtrack_scrape_errors_total": CounterMetricFamily(
            "nbtrack_scrape_errors", doc["nbtrack_scrape_errors_total"]
        ),
        "nbtrack_scrape_duration_seconds": GaugeMetricFamily(
            "nbtrack_scrape_duration_seconds", doc["nbtrack_scrape_duration_seconds"]
        ),
    }


def _add_store(families: dict[str, Any], project: str, counts: StoreCounts) -> None:
    for (experiment, notebook, status), n in sorted(counts.runs.items()):
        families["nbtrack_runs"].add_metric([project, experiment, notebook, status], n)
    for (experiment, notebook, verdict), n in sorted(counts.replays.items()):
        families["nbtrack_replays"].add_metric([project, experiment, notebook, verdict], n)
    for (experiment, notebook), when in sorted(counts.last_reproduced.items()):
        families["nbtrack_last_reproduced_timestamp_seconds"].add_metric(
            [project, experiment, notebook], when
        )
    for experiment, histogram in sorted(counts.capture.items()):
        families["nbtrack_capture_duration_seconds"].add_metric(
            [project, experiment], histogram.buckets, histogram.total
        )


def _add_spool(families: dict[str, Any], server: str, counts: SpoolCounts) -> None:
    families["nbtrack_spool_pending_runs"].add_metric([server], counts.pending)
    age = 0.0 if counts.oldest is None else max(0.0, time.time() - counts.oldest)
    families["nbtrack_spool_oldest_pending_age_seconds"].add_metric([server], age)


def register(
    root: str | os.PathLike[str], config: NbtrackConfig, logger: Any = None, registry: Any = None
) -> NbtrackCollector | None:
    """Register the collector in ``registry`` (default: prometheus_client's, which jupyter_server
    serves at ``/metrics``), replacing one an earlier extension load in this process registered.

    Returns None (and logs why) when the registry refuses it: the server starts all the same.

    Example:
        >>> from prometheus_client import CollectorRegistry
        >>> register(Path("/tmp/nowhere"), NbtrackConfig(), registry=CollectorRegistry()) is not None
        True
    """
    from prometheus_client import REGISTRY

    target = REGISTRY if registry is None else registry
    collector = NbtrackCollector(root, config, logger)
    with _LOCK:
        previous = _REGISTERED.pop(id(target), None)
        if previous is not None:
            with contextlib.suppress(KeyError):  # someone unregistered it already
                target.unregister(previous)
        try:
            target.register(collector)
        except ValueError as exc:  # another collector exports one of our names
            (logger or log).warning("nbtrack: no Prometheus metrics: %s", exc)
            return None
        _REGISTERED[id(target)] = collector
    return collector
