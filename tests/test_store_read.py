"""The fast read path: an embedded store read straight from its SQLite tables answers exactly what
MLflow's client answers, and ``nbtrack runs`` / ``nbtrack show`` never import MLflow for it.

The store is real: experiments and runs written through :class:`MlflowStore` and MLflow's client
in ``tmp_path`` (a deleted run, a deleted experiment, metric histories, NaN and infinite metrics, a
tag value with quotes, runs that start at the same millisecond, nested artifacts). Every read is
made twice, through a store whose reads take the fast path and through one whose ``reader`` is
None (MLflow's client), and the answers compared field by field, in order.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from operator import methodcaller
from pathlib import Path
from typing import Any

import pytest

from nbtrack.errors import ConfigError, NbtrackError, RunNotFoundError
from nbtrack.models import RunRecord, Snapshot
from nbtrack.store import MlflowStore, embedded_uri, read_sqlite
from nbtrack.store.read_sqlite import Filter, SqliteReader, Unsupported
from nbtrack.store.spool import PENDING, SYNC_STATE, UPLOADED, Spool

SCHEMA = {"nbtrack.schema_version": "1"}
QUOTED = 'it\'s a "quoted" value; with a ` backtick'
SNAPSHOT = Snapshot(run={"name": "with-artifacts"}).to_json()


@dataclasses.dataclass
class Store:
    """The store the tests read, and what was written into it."""

    root: Path
    uri: str
    ids: dict[str, str]  # run name -> id
    experiments: dict[str, str]  # experiment name -> id

    def fast(self) -> MlflowStore:
        return MlflowStore(self.uri, artifact_root=self.root / ".nbtrack" / "artifacts")

    def slow(self) -> MlflowStore:
        store = self.fast()
        store.reader = None  # every read through MLflow's client
        return store


def _run(client: Any, exp: str, name: str, start: int, tags: dict[str, str], status: str = "FINISHED") -> str:
    run = client.create_run(exp, start_time=start, tags=tags, run_name=name)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status, end_time=start + 30_000)
    return str(run.info.run_id)


def _write(root: Path, server: str | None = None, prefix: str = "") -> Store:
    """Runs of three experiments, written the way nbtrack and a user's MLflow calls write them
    (into the embedded store of ``root``, or the tracking ``server``; experiment names prefixed)."""
    from mlflow.entities import Metric, Param

    uri, folder = (server, root) if server else embedded_uri(root)
    writer = MlflowStore(uri, artifact_root=None if server else folder / "artifacts")
    client = writer.client
    exps = {name: writer.experiment_id(prefix + name) for name in ("churn", "retired", "other")}
    t0 = int(time.time() * 1000) - 3_600_000
    ids: dict[str, str] = {}
    for i in range(7):  # churn: nbtrack runs over two notebooks, newest last
        tags = {**SCHEMA, "mlflow.source.name": f"nb{i % 2}.ipynb", "team": "a" if i < 4 else "b"}
        ids[f"run-{i}"] = _run(client, exps["churn"], f"run-{i}", t0 + i * 60_000, tags)
    for name in ("tie-a", "tie-b", "tie-c"):  # the same start: MLflow orders them by run id
        ids[name] = _run(
            client, exps["churn"], name, t0 + 600_000, {**SCHEMA, "mlflow.source.name": "nb0.ipynb"}
        )
    ids["running"] = _run(client, exps["churn"], "running", t0 + 700_000, dict(SCHEMA), status="RUNNING")
    ids["failed"] = _run(client, exps["churn"], "failed", t0 + 710_000, dict(SCHEMA), status="FAILED")
    ids["quoted"] = _run(client, exps["churn"], "quoted", t0 + 720_000, {**SCHEMA, "note": QUOTED, "ü": "ö"})
    ids["not-nbtrack"] = _run(
        client, exps["churn"], "not-nbtrack", t0 + 730_000, {"mlflow.source.name": "nb0.ipynb"}
    )
    ids["deleted"] = _run(client, exps["churn"], "deleted", t0 + 740_000, dict(SCHEMA))
    client.delete_run(ids["deleted"])
    ids["in-retired"] = _run(client, exps["retired"], "in-retired", t0 + 750_000, dict(SCHEMA))
    client.delete_experiment(exps["retired"])  # its runs are deleted with it
    ids["other"] = _run(
        client, exps["other"], "other", t0 + 760_000, {**SCHEMA, "mlflow.source.name": "nb1.ipynb"}
    )
    # metric histories: the latest value is the highest step, then the newest timestamp
    history = [Metric("loss", 1.0 / (s + 1), t0 + 1000 * s, s) for s in range(5)]
    history += [
        Metric("loss", 9.0, t0 + 1, 2),
        Metric("acc", 0.5, t0 + 5000, 0),
        Metric("acc", 0.7, t0 + 4000, 0),
    ]
    params = [Param("lr", "0.1"), Param("depth", "4"), Param("quote", QUOTED)]
    client.log_batch(ids["run-6"], metrics=history, params=params)
    odd = [Metric("nan", float("nan"), t0 + 9000, 0), Metric("inf", float("inf"), t0 + 9000, 0)]
    client.log_batch(ids["quoted"], metrics=[*odd, Metric("neg", -float("inf"), t0 + 8000, 3)])
    files = {"snapshot.json": SNAPSHOT.encode(), "git.diff": b"\x00\xffbinary", "sub/deep.txt": b"deep"}
    writer.log_files(ids["run-5"], files)
    return Store(root, uri, ids, exps)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return _write(tmp_path_factory.mktemp("read") / "project")


def plain(value: Any) -> Any:
    """Records as comparable data: every field, dicts as ordered items, NaN as a string."""
    if isinstance(value, RunRecord):
        fields = dataclasses.asdict(value)
        for name in ("tags", "params", "metrics"):
            fields[name] = [
                (k, "nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in fields[name].items()
            ]
        return fields
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def outcome(call: Callable[[], Any]) -> Any:
    """What a read returns, or the error it raises (class and message)."""
    try:
        return ("ok", plain(call()))
    except NbtrackError as exc:
        return ("error", type(exc).__name__, str(exc))


def same(store: Store, read: Callable[[MlflowStore], Any]) -> Any:
    """The read's outcome on both paths, asserted equal; the fast one must not have opened MLflow."""
    fast, slow = store.fast(), store.slow()
    got, expected = outcome(lambda: read(fast)), outcome(lambda: read(slow))
    assert got == expected
    assert fast._client is None, "the fast path asked MLflow"
    return got


# --- search ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    [
        {},
        {"notebook": "nb0.ipynb"},
        {"notebook": "nb1.ipynb", "experiment": "other"},
        {"experiment": "churn", "max_results": 3},
        {"experiment": "retired"},  # a deleted experiment: found by name, its runs deleted with it
        {"experiment": "no-such-experiment"},
        {"status": "RUNNING"},
        {"status": "FAILED", "tags": {"team": "nobody"}},
        {"tags": {"team": "b"}},
        {"tags": {"team": "ö"}},
        {"experiment_ids": []},
    ],
    ids=lambda q: ",".join(f"{k}={v}" for k, v in q.items()) or "all",
)
def test_search_returns_what_mlflow_returns(store: Store, query: dict[str, Any]) -> None:
    search = {"max_results": 100, **query}
    got = same(store, lambda s: s.search_runs(**search))
    names = [r["name"] for r in got[1][0]]
    assert not {"deleted", "in-retired", "not-nbtrack"} & set(names)  # hidden, as in MLflow


def test_search_by_experiment_ids_and_the_runs_it_finds(store: Store) -> None:
    churn = store.experiments["churn"]
    got = same(store, lambda s: s.search_runs(experiment_ids=[churn], max_results=50))
    names = [r["name"] for r in got[1][0]]
    ties = sorted(["tie-a", "tie-b", "tie-c"], key=store.ids.__getitem__)  # same start: by run id
    assert names == ["quoted", "failed", "running", *ties, *[f"run-{i}" for i in range(6, -1, -1)]]
    by_name = {r["name"]: r for r in got[1][0]}
    assert dict(by_name["run-6"]["metrics"]) == {"loss": 0.2, "acc": 0.5}
    assert by_name["run-6"]["last_metric_ms"] is not None and by_name["run-0"]["last_metric_ms"] is None
    assert dict(by_name["quoted"]["tags"])["note"] == QUOTED
    assert dict(by_name["quoted"]["metrics"])["nan"] == "nan"
    assert dict(by_name["run-6"]["params"])["quote"] == QUOTED


def test_pages_are_the_same_and_tokens_work_on_either_path(store: Store) -> None:
    def pages(reader: MlflowStore, other: MlflowStore) -> list[Any]:
        out, token, turn = [], None, 0
        while True:  # alternate the paths: a token one made, the other continues
            runs, token = (reader, other)[turn % 2].search_runs(max_results=4, page_token=token)
            out.append(([r.run_id for r in runs], token))
            turn += 1
            if token is None:
                return out

    fast, slow = store.fast(), store.slow()
    mixed = pages(fast, slow)
    assert mixed == pages(slow, slow)
    assert all(isinstance(token, str) for _, token in mixed[:-1]) and len(mixed) == 4
    assert sum(len(ids) for ids, _ in mixed) == 14


@pytest.mark.parametrize(
    "query",
    [
        {"max_results": 0},
        {"max_results": 50_001},
        {"page_token": "not-a-token"},
        {"tags": {"note": "it's"}},  # an apostrophe: MLflow reads it in double quotes
        {"tags": {"note": 'it\'s "quoted"'}},  # both quotes: MLflow's parser has no escape
        {"experiment_ids": ["x"]},
        {"tags": {"ü": "ö"}},  # a key MLflow's filter parser must read
    ],
    ids=["max0", "max-too-big", "bad-token", "apostrophe", "both-quotes", "bad-experiment-id", "unicode-key"],
)
def test_what_the_fast_path_leaves_to_mlflow_fails_the_same(store: Store, query: dict[str, Any]) -> None:
    fast, slow = store.fast(), store.slow()
    search = {"max_results": 10, **query}
    assert outcome(lambda: fast.search_runs(**search)) == outcome(lambda: slow.search_runs(**search))
    works = query in ({"tags": {"ü": "ö"}}, {"tags": {"note": "it's"}})
    assert outcome(lambda: slow.search_runs(**search))[0] == ("ok" if works else "error")


def test_a_notebook_named_with_an_apostrophe_is_listed(tmp_path: Path) -> None:
    # Given a run of a notebook named "it's.ipynb" beside another notebook's
    uri, folder = embedded_uri(tmp_path / "project")
    writer = MlflowStore(uri, artifact_root=folder / "artifacts")
    exp = writer.experiment_id("quotes")
    mine = _run(writer.client, exp, "mine", 1_000, {**SCHEMA, "mlflow.source.name": "it's.ipynb"})
    _run(writer.client, exp, "other", 2_000, {**SCHEMA, "mlflow.source.name": "its.ipynb"})
    # When its runs are listed, on either read path
    stores = Store(tmp_path / "project", uri, {}, {})
    for store in (stores.fast(), stores.slow()):
        runs, _ = store.search_runs(notebook="it's.ipynb", max_results=10)
        # Then it is there, alone
        assert [r.run_id for r in runs] == [mine]


def test_id_prefix(store: Store) -> None:
    run_id = store.ids["run-3"]
    for prefix in (run_id[:6], run_id[:6].upper(), store.ids["deleted"][:8], "0000000"):
        same(store, methodcaller("runs_with_id_prefix", prefix, max_results=6))
    assert [r.run_id for r in store.fast().runs_with_id_prefix(run_id[:10])] == [run_id]


# --- one run --------------------------------------------------------------------------------------
def test_get_run_finds_every_run_even_a_deleted_one(store: Store) -> None:
    for name, run_id in store.ids.items():
        got = same(store, methodcaller("get_run", run_id))
        assert got[0] == "ok" and got[1]["name"] == name


@pytest.mark.parametrize("run_id", ["0123456789abcdef0123456789abcdef", "abc", "not an id!", "-x", "ab\ncd"])
def test_unknown_or_malformed_id_is_mlflows_error(store: Store, run_id: str) -> None:
    got = same(store, lambda s: s.get_run(run_id))
    assert got[:2] == ("error", RunNotFoundError.__name__)
    assert got[2].startswith(f"run {run_id}: ") and got[2].endswith("; list runs with `nbtrack runs`")
    assert same(store, lambda s: s.read_artifact_bytes(run_id, "snapshot.json")) == ("ok", None)


def test_artifacts_are_read_from_their_folder(store: Store) -> None:
    with_files, without = store.ids["run-5"], store.ids["run-4"]
    for run_id in (with_files, without):
        for name in ("snapshot.json", "git.diff", "sub/deep.txt", "missing.txt"):
            same(store, methodcaller("read_artifact_bytes", run_id, name))
        for limit in (500, 2):
            same(store, methodcaller("list_artifacts", run_id, limit))
    assert store.fast().read_artifact_bytes(with_files, "git.diff") == b"\x00\xffbinary"
    assert store.fast().list_artifacts(with_files) == [
        "nbtrack/git.diff",
        "nbtrack/snapshot.json",
        "nbtrack/sub/deep.txt",
    ]
    same(store, lambda s: s.list_artifacts("0123456789abcdef0123456789abcdef"))
    same(store, lambda s: s.load_snapshot(with_files).to_json())
    same(store, lambda s: s.load_snapshot(without).to_json())  # nbtrack's run without artifacts


# --- falling back ----------------------------------------------------------------------------------
def test_an_unverified_schema_revision_is_read_through_mlflow(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = plain(store.slow().search_runs(notebook="nb0.ipynb"))
    monkeypatch.setattr(read_sqlite, "VERIFIED_REVISIONS", frozenset({"0000deadbeef"}))  # a newer MLflow
    fast = store.fast()
    assert fast.reader is not None
    with pytest.raises(Unsupported, match="schema revision"):
        fast.reader.search_runs([], 10)
    assert plain(fast.search_runs(notebook="nb0.ipynb")) == expected
    assert fast._client is not None  # MLflow answered
    assert plain(fast.get_run(store.ids["run-1"])) == plain(store.slow().get_run(store.ids["run-1"]))


def test_what_the_reader_does_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert SqliteReader.for_uri("http://127.0.0.1:5000") is None
    assert MlflowStore("postgresql://u@h/db").reader is None
    missing = SqliteReader.for_uri(f"sqlite:///{tmp_path / 'not-yet.db'}")
    assert missing is not None
    with pytest.raises(Unsupported):
        missing.get_run("0123456789abcdef0123456789abcdef")  # MLflow creates the store
    assert not (tmp_path / "not-yet.db").exists()  # read-only: looking created nothing
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    with pytest.raises(Unsupported, match="workspaces"):
        missing.search_runs([], 10)
    assert not Filter("tag", "k", "=", "a\\b").plain() and not Filter("tag", "a`b", "=", "v").plain()


def test_the_spool_reads_the_same_way(tmp_path: Path) -> None:
    def spool(fast: bool) -> Spool:
        found = Spool(tmp_path / "spool", "http://127.0.0.1:9")
        if not fast:
            found.store.reader = None
        return found

    writer = spool(True).store
    exp = writer.experiment_id("spooled")
    ids = {}
    for i, state in enumerate((PENDING, UPLOADED, PENDING, "other")):
        run = writer.client.create_run(exp, start_time=1_000 + i, tags={SYNC_STATE: state}, run_name=f"s{i}")
        ids[i] = run.info.run_id
    fast, slow = spool(True), spool(False)
    for states in ((PENDING,), (PENDING, UPLOADED), (UPLOADED, "other"), ()):
        assert plain(fast.runs(states=states)) == plain(slow.runs(states=states))
    assert [r.name for r in fast.pending()] == ["s2", "s0"]
    assert plain(fast.find(ids[1])) == plain(slow.find(ids[1]))
    assert (
        fast.find("0123456789abcdef0123456789abcdef") is None is slow.find("0123456789abcdef0123456789abcdef")
    )
    assert fast.store._client is None


def test_quoted_tag_keys_and_values_are_refused_the_same(store: Store) -> None:
    with pytest.raises(ConfigError, match="contains a quote"):
        store.fast().search_runs(tags={"a`b": "v"})


# --- the command ------------------------------------------------------------------------------------
WRAPPER = (
    "import sys\n"
    "from nbtrack.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'sqlalchemy', 'pandas', 'alembic'})\n"
    "print('HEAVY', ','.join(heavy) or '-', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def cli(store: Store, *args: str) -> tuple[int, str, str]:
    """``nbtrack --project ROOT ARGS`` in a fresh interpreter: exit code, stdout, stderr (the heavy
    modules it imported on the last line of stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NBTRACK_TRACKING_URI")}
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, "--project", str(store.root), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=store.root,
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_runs_and_show_do_not_import_mlflow(store: Store) -> None:
    code, out, err = cli(store, "runs", "--json")
    assert code == 0, err
    assert err.splitlines()[-1] == "HEAVY -"
    listed = [row["run_id"] for row in json.loads(out)]
    assert listed == [r.run_id for r in store.slow().search_runs(max_results=50)[0]]

    code, out, err = cli(store, "show", store.ids["run-5"])
    assert code == 0, err
    assert f"run         {store.ids['run-5']} (run-5)" in out
    assert err.splitlines()[-1] == "HEAVY -"


def test_an_unknown_run_fails_fast_with_the_same_line(store: Store) -> None:
    unknown = "0123456789abcdef0123456789abcdef"
    code, out, err = cli(store, "show", unknown)
    message, heavy = err.splitlines()
    assert code == RunNotFoundError.exit_code and out == ""
    assert (
        message == f"nbtrack: run {unknown}: Run with id={unknown} not found; list runs with `nbtrack runs`"
    )
    assert heavy == "HEAVY -"
