"""``nbtrack replay ... --pushgateway URL``: a replay batch's verdicts pushed to a Prometheus Pushgateway.

CI replays are short-lived jobs Prometheus cannot scrape; they push instead. After the reports are
written, each experiment's results go to ``URL/metrics/job/nbtrack_replay/experiment/<name>`` in one
``PUT`` (prometheus_client's ``push_to_gateway`` on a fresh registry): the group then holds the latest
batch only, so a run that left the batch leaves the dashboard too. Series, per replayed run
(labels ``run_id``, ``run_name``, ``notebook``):

- ``nbtrack_replay_verdict{verdict=...}``: 1 for the verdict the run got;
- ``nbtrack_replay_duration_seconds``: how long its replay took;
- ``nbtrack_replay_timestamp_seconds``: when its replay started (unix seconds);

and ``nbtrack_replay_batch_runs{verdict=...}``: how many runs of the batch got each verdict.

A Pushgateway that cannot be reached (or refuses the push) is one line on stderr; the replay's exit
code stays the verdict's (what CI gates on is whether the runs reproduced, not the monitoring).
Credentials in the URL (``https://user:pw@host``) are sent as HTTP basic auth, never printed.

Example:
    $ nbtrack replay --experiment churn --pushgateway http://pushgateway:9091
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from nbtrack.redact import strip_url_credentials

#: The Pushgateway job every replay batch pushes as.
JOB = "nbtrack_replay"
#: Seconds a push may take before it counts as failed.
PUSH_TIMEOUT = 10.0
#: Every series a push sends (the Grafana dashboard's test checks its queries against these).
SERIES = (
    "nbtrack_replay_verdict",
    "nbtrack_replay_duration_seconds",
    "nbtrack_replay_timestamp_seconds",
    "nbtrack_replay_batch_runs",
)
_RUN_LABELS = ["run_id", "run_name", "notebook"]


def add_push_option(rp: argparse.ArgumentParser) -> None:
    """``--pushgateway URL`` on ``nbtrack replay``."""
    rp.add_argument(
        "--pushgateway",
        metavar="URL",
        help=f"push the verdicts to this Prometheus Pushgateway (job {JOB}, grouped by experiment)",
    )


def push_if_asked(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    """Push ``results`` (replay results as ``ReplayResult.to_dict()``) when ``--pushgateway`` was given.

    Never raises for the gateway: each push is one line on stderr (pushed, or why not).

    Example:
        >>> push_if_asked(argparse.Namespace(pushgateway=None), [])  # nothing asked, nothing pushed
    """
    url = getattr(args, "pushgateway", None)
    if not url or not results:
        return
    default = getattr(args, "experiment", None) or "unknown"
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        groups[str(result.get("experiment") or default)].append(result)
    for experiment, batch in groups.items():
        try:
            push(url, experiment, batch)
            print(
                f"nbtrack replay: pushed {len(batch)} verdict(s) of {experiment!r} to the Pushgateway "
                f"{strip_url_credentials(url)} (job {JOB})",
                file=sys.stderr,
            )
        except Exception as exc:  # noqa: BLE001 - monitoring never changes a replay's outcome
            reason = str(getattr(exc, "reason", None) or exc).replace(url, strip_url_credentials(url))
            print(
                f"nbtrack replay: could not push the verdicts of {experiment!r} to the Pushgateway "
                f"{strip_url_credentials(url)} ({reason.splitlines()[0] if reason else type(exc).__name__}); "
                "the replay's result and exit code stand",
                file=sys.stderr,
            )


def push(url: str, experiment: str, results: list[dict[str, Any]]) -> None:
    """One experiment's results to the Pushgateway at ``url`` (raises what the push raised).

    Example:
        >>> results = [{"run_id": "3f2a", "verdict": "REPRODUCED"}]
        >>> push("http://localhost:9091", "churn", results)  # doctest: +SKIP
    """
    from prometheus_client import CollectorRegistry, push_to_gateway
    from prometheus_client.exposition import basic_auth_handler, default_handler

    registry = CollectorRegistry()
    registry.register(_BatchCollector(results))
    parts = urlsplit(url if "://" in url else f"http://{url}")
    handler: Any = default_handler
    if parts.username is not None:
        user, password = unquote(parts.username), unquote(parts.password or "")

        def handler(url: str, method: str, timeout: float | None, headers: Any, data: bytes) -> Any:
            return basic_auth_handler(url, method, timeout, headers, data, user, password)

        host = parts.netloc.rsplit("@", 1)[1]
        url = urlunsplit(parts._replace(netloc=host))
    push_to_gateway(
        url,
        job=JOB,
        registry=registry,
        grouping_key={"experiment": experiment},
        timeout=PUSH_TIMEOUT,
        handler=handler,
    )


def _timestamp(started: Any) -> float | None:
    """Unix seconds of a result's ``started`` (ISO 8601, as the replayer writes it); None if unknown."""
    try:
        return datetime.fromisoformat(str(started)).timestamp() if started else None
    except ValueError:
        return None


class _BatchCollector:
    """The batch's series, built once from the results (a registry of one push)."""

    def __init__(self, results: list[dict[str, Any]]) -> None:
        self.results = results

    def collect(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        verdict = GaugeMetricFamily(
            SERIES[0], "1 for the verdict a replayed run got", labels=[*_RUN_LABELS, "verdict"]
        )
        duration = GaugeMetricFamily(SERIES[1], "seconds the run's replay took", labels=_RUN_LABELS)
        started = GaugeMetricFamily(
            SERIES[2], "when the run's replay started (unix seconds)", labels=_RUN_LABELS
        )
        batch = GaugeMetricFamily(SERIES[3], "runs of the batch by verdict", labels=["verdict"])
        latest = {str(r.get("run_id") or ""): r for r in self.results}  # one series per run
        for result in latest.values():
            labels = [str(result.get(key) or "") for key in ("run_id", "run_name", "notebook")]
            verdict.add_metric([*labels, str(result.get("verdict") or "UNKNOWN")], 1)
            duration.add_metric(labels, float(result.get("duration_s") or 0.0))
            when = _timestamp(result.get("started"))
            if when is not None:
                started.add_metric(labels, when)
        for name, count in sorted(Counter(str(r.get("verdict") or "UNKNOWN") for r in self.results).items()):
            batch.add_metric([name], count)
        return [verdict, duration, started, batch]
