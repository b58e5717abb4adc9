"""Prometheus: nbtrack's series in a real jupyter server's ``/metrics``, ``nbtrack replay --pushgateway``
into a real Pushgateway (Debian's ``prometheus-pushgateway``, started by the test), and the Grafana
dashboard in ``examples/monitoring/``, whose queries may name only series nbtrack exports.

One project per module: one run tracked by a real kernel, replayed once through the CLI (two kernel
executions in all), the replay pushing its verdict.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, free_port, git, make_project, store_client, write_notebook
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPClientError

from nbtrack import tags
from nbtrack.cli import main, pushing
from nbtrack.runner import execute_notebook
from nbtrack.server import metrics

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "examples" / "monitoring" / "grafana-dashboard.json"
PUSHGATEWAY = "/usr/bin/prometheus-pushgateway"
NB = [
    "%load_ext nbtrack",
    "%track start --experiment metrics --name answer",
    "import mlflow\nmlflow.log_metric('answer', 42)",
    "%track stop",
]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Pushgateway process on a free loopback port, in memory only (no persistence file)."""
    if not Path(PUSHGATEWAY).exists():
        pytest.skip("prometheus-pushgateway is not installed (tests/run.sh installs it)")
    port = free_port()
    log = tmp_path_factory.mktemp("pushgateway") / "log.txt"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the pushgateway did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, pushgateway: str) -> dict[str, Any]:
    """``root/proj``: one run tracked by a kernel, replayed (REPRODUCED) with ``--pushgateway``."""
    base = tmp_path_factory.mktemp("metrics")
    project = make_project(base / "root" / "proj", rows=50)
    write_notebook(project / "nb.ipynb", NB)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "notebook")
    execute_notebook(project / "nb.ipynb", base / "executed.ipynb", cwd=project)
    [run] = all_runs(store_client(project))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            ["--project", str(project), "replay", run.info.run_id, "--json", "--pushgateway", pushgateway]
        )
    result = json.loads(out.getvalue())
    assert code == 0, result["message"]
    return {"root": base / "root", "project": project, "run": run, "result": result, "done": time.time()}


@pytest.fixture
def jp_root_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if "tracked" in request.fixturenames:
        root: Path = request.getfixturevalue("tracked")["root"]
        return root
    return tmp_path


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbtrack": True}}}


def samples(text: str) -> Samples:
    """Every sample of an exposition text: (name, labels) -> value."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def spool_with_a_pending_run(spool_dir: Path, project: Path) -> Path:
    """A spool (as ``nbtrack.store.spool`` lays one out) holding one run tagged pending, through MLflow."""
    from mlflow.tracking import MlflowClient

    folder = spool_dir / "mlflow.example.com-5000-0123456789ab"
    folder.mkdir(parents=True)
    shutil.copy(project / ".nbtrack" / "mlflow.db", folder / "mlflow.db")
    (folder / "server.json").write_text(json.dumps({"server": "http://mlflow.example.com:5000"}))
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    [run] = [r for r in all_runs(client) if tags.REPLAY_OF not in r.data.tags]
    client.set_tag(run.info.run_id, tags.SYNC_STATE, tags.PENDING)
    return folder


async def test_metrics_count_runs_replays_and_spooled_runs(
    jp_fetch: Any, tracked: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a tracked run and its replay in the project store under the server root, a spool with
    # a run waiting for upload, and a second project whose store is damaged
    spool_with_a_pending_run(tmp_path / "spool", tracked["project"])  # NBTRACK_SPOOL_DIR (conftest)
    broken = tracked["root"] / "broken" / ".nbtrack"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "mlflow.db").write_bytes(b"not a database" * 100)
    # When Prometheus scrapes /metrics with the server's token
    with caplog.at_level(logging.WARNING):
        response = await jp_fetch("metrics")
    assert response.code == 200
    found = samples(response.body.decode())
    # Then the run and its replay are counted FINISHED, and the replay by its verdict
    where = {"project": "proj", "experiment": "metrics", "notebook": "nb.ipynb"}
    assert value(found, "nbtrack_runs", **where, status="FINISHED") == 2
    assert value(found, "nbtrack_replays", **where, verdict="REPRODUCED") == 1
    # the last REPRODUCED time lies within the replay
    last = value(found, "nbtrack_last_reproduced_timestamp_seconds", **where)
    assert last is not None and tracked["run"].info.end_time / 1000 <= last <= tracked["done"]
    # both runs recorded their capture time, and it is in the histogram
    capture = {"project": "proj", "experiment": "metrics"}
    assert value(found, "nbtrack_capture_duration_seconds_count", **capture) == 2
    assert value(found, "nbtrack_capture_duration_seconds_bucket", **capture, le="+Inf") == 2
    assert (value(found, "nbtrack_capture_duration_seconds_sum", **capture) or 0) > 0
    # the spooled run waits, since the original run ended
    server = {"server": "http://mlflow.example.com:5000"}
    assert value(found, "nbtrack_spool_pending_runs", **server) == 1
    assert (value(found, "nbtrack_spool_oldest_pending_age_seconds", **server) or 0) > 0
    # And the damaged store is one scrape error and one log line, not a failed scrape
    assert value(found, "nbtrack_scrape_errors_total") == 1
    [line] = [r.getMessage() for r in caplog.records if "metrics could not read" in r.getMessage()]
    assert str(broken / "mlflow.db") in line
    # the next scrape counts it again, without logging it again
    caplog.clear()
    again = samples((await jp_fetch("metrics")).body.decode())
    assert value(again, "nbtrack_scrape_errors_total") == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "metrics" in r.getMessage()]
    took = value(again, "nbtrack_scrape_duration_seconds")
    assert took is not None
    print(f"scrape of nbtrack's series: {took * 1000:.1f} ms")
    shutil.rmtree(broken.parent)


async def test_metrics_need_the_token_and_survive_a_second_server(jp_fetch: Any, jp_serverapp: Any) -> None:
    # Given a second server in this process (the extension loaded again), whose root has no runs
    # When /metrics is asked without the token
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("metrics", headers={"Authorization": ""})
    # Then jupyter_server refuses it (ServerApp.authenticate_prometheus, on by default)
    assert info.value.code == 403
    # And with it (as Prometheus sends it: a bearer token), nbtrack's series come from this server's
    # root (the collector was replaced)
    bearer = {"Authorization": f"Bearer {jp_serverapp.identity_provider.token}"}
    text = (await jp_fetch("metrics", headers=bearer)).body.decode()
    assert "# HELP nbtrack_runs " in text
    found = samples(text)
    assert not [key for key in found if key[0] == "nbtrack_runs"]
    assert value(found, "nbtrack_scrape_errors_total") == 0


def test_register_twice_in_one_registry_replaces_the_collector(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from nbtrack.config import NbtrackConfig

    registry = CollectorRegistry(auto_describe=True)
    first = metrics.register(tmp_path, NbtrackConfig(), registry=registry)
    second = metrics.register(tmp_path, NbtrackConfig(), registry=registry)
    assert first is not None and second is not None and first is not second
    assert generate_latest(registry).decode().count("# TYPE nbtrack_runs gauge") == 1


def test_replay_pushes_its_verdict_to_the_pushgateway(
    tracked: dict[str, Any], pushgateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the module's replay, run with --pushgateway; and a batch of another experiment pushed
    run_id = tracked["run"].info.run_id
    common = {"notebook": "x.ipynb", "experiment": "batch"}
    batch = [
        {**common, "run_id": "a" * 32, "run_name": "one", "verdict": "REPRODUCED", "duration_s": 3.5,
         "started": "2026-01-02T03:04:05.000+00:00"},
        {**common, "run_id": "b" * 32, "run_name": "two", "verdict": "DIVERGED", "duration_s": 4.0,
         "started": "2026-01-02T03:04:06.000+00:00"},
    ]  # fmt: skip
    pushing.push_if_asked(argparse.Namespace(pushgateway=pushgateway, experiment="batch"), batch)
    assert "pushed 2 verdict(s) of 'batch'" in capsys.readouterr().err
    # When Prometheus scrapes the gateway
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=30) as response:
        found = samples(response.read().decode())
    # Then the replay's verdict is there, under job nbtrack_replay, grouped by its experiment
    group = {"job": "nbtrack_replay", "experiment": "metrics", "instance": ""}
    labels = {**group, "run_id": run_id, "run_name": "answer", "notebook": "nb.ipynb"}
    assert value(found, "nbtrack_replay_verdict", **labels, verdict="REPRODUCED") == 1
    assert (value(found, "nbtrack_replay_duration_seconds", **labels) or 0) > 0
    when = value(found, "nbtrack_replay_timestamp_seconds", **labels)
    assert when is not None and tracked["run"].info.end_time / 1000 <= when <= tracked["done"]
    assert value(found, "nbtrack_replay_batch_runs", **group, verdict="REPRODUCED") == 1
    # and the other batch in its own group, with its counts
    other = {"job": "nbtrack_replay", "experiment": "batch", "instance": ""}
    assert value(found, "nbtrack_replay_batch_runs", **other, verdict="DIVERGED") == 1
    two = {**other, "run_id": "b" * 32, "run_name": "two", "notebook": "x.ipynb"}
    assert value(found, "nbtrack_replay_duration_seconds", **two) == 4.0
    assert value(found, "nbtrack_replay_timestamp_seconds", **two) == 1767323046.0


def test_a_dead_pushgateway_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a gateway URL nothing listens on, with credentials in it
    url = f"http://ci:s3cret@127.0.0.1:{free_port()}"
    result = {"run_id": "c" * 32, "verdict": "REPRODUCED", "experiment": "churn"}
    # When a replay's verdicts are pushed there
    pushing.push_if_asked(argparse.Namespace(pushgateway=url, experiment=None), [result])
    # Then one line on stderr says so, without the password or a traceback
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "could not push the verdicts of 'churn'" in err and "exit code stand" in err
    assert "s3cret" not in err and "Traceback" not in err


def test_the_dashboard_queries_only_exported_series() -> None:
    # Given the Grafana dashboard shipped in examples/monitoring
    board = json.loads(DASHBOARD.read_text())
    panels = [p for p in board["panels"] if p.get("type") != "row"]
    exported = set(metrics.SERIES) | set(pushing.SERIES)
    histograms = {"nbtrack_capture_duration_seconds"}
    used: set[str] = set()
    for panel in panels:
        exprs = [t["expr"] for t in panel.get("targets", [])]
        assert exprs, f"panel {panel['title']!r} queries nothing"
        for expr in exprs:
            for name in re.findall(r"\bnbtrack_[a-z_]+", expr):
                series = re.sub(r"_(bucket|sum|count)$", "", name)
                series = series if series in histograms else name
                # Then every name it queries is one nbtrack exports
                assert series in exported, (
                    f"panel {panel['title']!r} queries {name}, which nbtrack never exports"
                )
                used.add(series)
    # And every series has a panel, and the dashboard filters by notebook and experiment
    assert used == exported
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"notebook", "experiment"} <= variables
    assert board["title"] and board["schemaVersion"] >= 30
