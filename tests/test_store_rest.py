"""The REST read path: a tracking server's runs read over MLflow's REST API answer exactly what
MLflow's client answers, and listing a server's runs never imports MLflow.

The server is real (the session's ``mlflow server``); the runs are written into it through
:class:`MlflowStore` and MLflow's client, as in ``test_store_read`` (deleted runs and experiments,
metric histories, NaN and infinite metrics, quoted tag values, runs starting at the same
millisecond). Every read is made through a store that reads over REST and through one whose
``rest`` reader is None (MLflow's client), and the answers compared field by field, in order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_store_read import QUOTED, Store, _write, outcome

from nbtrack.errors import RunNotFoundError
from nbtrack.store import MlflowStore

pytestmark = pytest.mark.server


PREFIX = f"rest-{uuid.uuid4().hex[:8]}-"  # the server is shared by this worker's tests


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> tuple[Store, str]:
    return _write(tmp_path_factory.mktemp("rest"), server=mlflow_server, prefix=PREFIX), mlflow_server


def same(written: tuple[Store, str], read: Callable[[MlflowStore], Any]) -> Any:
    """The read's outcome over REST and through MLflow, asserted equal; REST must not open MLflow."""
    _, server = written
    rest, mlflow = MlflowStore(server), MlflowStore(server)
    mlflow.rest = None
    got, expected = outcome(lambda: read(rest)), outcome(lambda: read(mlflow))
    assert got == expected
    assert rest._client is None, "the REST path asked MLflow"
    return got


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"notebook": "nb0.ipynb"},
        {"experiment": "churn", "max_results": 3},
        {"experiment": "retired"},  # deleted: found by name, its runs deleted with it
        {"experiment": "no-such-experiment"},
        {"status": "RUNNING"},
        {"tags": {"team": "b"}},
    ],
    ids=lambda q: ",".join(f"{k}={v}" for k, v in q.items()) or "all",
)
def test_search_over_rest_returns_what_mlflow_returns(
    written: tuple[Store, str], query: dict[str, Any]
) -> None:
    store, _ = written
    search = {"max_results": 100, **query}
    if "experiment" in search:
        search["experiment"] = next(
            (name for name in store.experiments if name.endswith(f"-{search['experiment']}")),
            search["experiment"],
        )
    same(written, lambda s: s.search_runs(**search))


def test_runs_found_pages_and_ids_over_rest(written: tuple[Store, str]) -> None:
    store, server = written
    churn = store.experiments["churn"]
    got = same(written, lambda s: s.search_runs(experiment_ids=[churn], max_results=50))
    by_name = {r["name"]: r for r in got[1][0]}
    ties = sorted(["tie-a", "tie-b", "tie-c"], key=store.ids.__getitem__)  # same start: by run id
    expected = ["quoted", "failed", "running", *ties, *[f"run-{i}" for i in range(6, -1, -1)]]
    assert [r["name"] for r in got[1][0]] == expected
    assert dict(by_name["run-6"]["metrics"]) == {"loss": 0.2, "acc": 0.5}
    assert dict(by_name["quoted"]["metrics"])["nan"] == "nan"
    assert dict(by_name["quoted"]["tags"])["note"] == QUOTED
    # A run by id (deleted ones too), an unknown id and a malformed one: MLflow's answers and errors
    for run_id in (store.ids["run-6"], store.ids["deleted"], "0" * 32, "not/an id"):
        same(written, lambda s, run_id=run_id: s.get_run(run_id))
    assert outcome(lambda: MlflowStore(server).get_run("0" * 32))[1] == RunNotFoundError.__name__

    # Pages: a token one path made, the other continues
    def pages(first: MlflowStore, second: MlflowStore) -> list[Any]:
        out, token, turn = [], None, 0
        while True:
            runs, token = (first, second)[turn % 2].search_runs(
                experiment_ids=[churn], max_results=4, page_token=token
            )
            out.append([r.run_id for r in runs])
            turn += 1
            if token is None:
                return out

    rest, mlflow = MlflowStore(server), MlflowStore(server)
    mlflow.rest = None
    assert pages(rest, mlflow) == pages(mlflow, mlflow)


def test_listing_a_servers_runs_imports_no_mlflow(written: tuple[Store, str], tmp_path: Path) -> None:
    # Given the tracking server, named the way a user names it
    _, server = written
    churn = PREFIX + "churn"
    probe = (
        "import json, sys\n"
        "from nbtrack.store import MlflowStore\n"
        f"runs, _ = MlflowStore({server!r}).search_runs(experiment={churn!r}, max_results=5)\n"
        f"run = MlflowStore({server!r}).get_run(runs[0].run_id)\n"
        "print(json.dumps({'names': [r.name for r in runs], 'got': run.name,"
        " 'mlflow': 'mlflow' in sys.modules}))\n"
    )
    # When a process lists its runs and reads one
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    # Then it got them without importing MLflow (1.5-5 s here)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert (
        answer["names"] == ["quoted", "failed", "running", *answer["names"][3:]] and answer["got"] == "quoted"
    )
    assert answer["mlflow"] is False


def test_a_dead_server_still_gives_mlflows_one_line(tmp_path: Path) -> None:
    # Given a tracking server that is not there (nothing listens on the port)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = f"http://127.0.0.1:{port}"
    # When its runs are listed over REST and through MLflow
    rest, mlflow = MlflowStore(dead, timeout=2), MlflowStore(dead, timeout=2)
    mlflow.rest = None
    # Then both fail the same way, in one line (the REST path leaves the words to MLflow's)
    got, expected = (
        outcome(lambda: rest.search_runs(max_results=5)),
        outcome(lambda: mlflow.search_runs(max_results=5)),
    )
    assert got == expected and got[0] == "error" and len(got[2].splitlines()) == 1
