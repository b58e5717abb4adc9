"""Environment drift: variables the notebook read (secrets compared by keyed hash) and the Python build.

A real kernel tracks a notebook through papermill; a real replay runs it again with other values.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, git, make_project, store_client, write_notebook

from nbtrack.capture.environment import env_hashes, variables_read
from nbtrack.cli import main
from nbtrack.compare import diff_cells, diff_environment, diff_python
from nbtrack.models import Section, Snapshot
from nbtrack.runner import execute_notebook

TOKEN_THEN, TOKEN_NOW = "tok-0ne-9f8e7d6c5b4a", "tok-tw0-1a2b3c4d5e6f"
READS = [
    "%load_ext nbtrack",
    "%track start --experiment drift",
    "import os\nsource = os.environ['NBT_SOURCE']\nhas_token = bool(os.getenv('MY_SERVICE_TOKEN'))\n"
    "kept = os.environ.get('KEEP_TOKEN')\nprint(source, has_token, kept)",
    "%track stop",
]


@pytest.fixture(autouse=True)
def _own_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The environment-hash key goes to this test's Jupyter data folder (the kernels inherit it)."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    return tmp_path / "jupyter-data" / "nbtrack" / "environment.key"


@pytest.mark.kernel
def test_replay_reports_variables_the_notebook_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], _own_key: Path
) -> None:
    # Given a run whose notebook read three variables, one of them a secret
    root = make_project(tmp_path / "proj", use_dvc=False)
    write_notebook(root / "reads.ipynb", READS)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    then = {
        "NBT_SOURCE": "a",
        "MY_SERVICE_TOKEN": TOKEN_THEN,
        "KEEP_TOKEN": "same",
        "UNREAD": "1",
        "TZ": "UTC",
    }
    execute_notebook(root / "reads.ipynb", tmp_path / "out.ipynb", cwd=root, env=then)
    (run,) = all_runs(store_client(root))
    # When it is replayed where the source, the secret, the time zone and an unread variable changed
    for name, value in {**then, "NBT_SOURCE": "b", "MY_SERVICE_TOKEN": TOKEN_NOW, "UNREAD": "2"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TZ", "Europe/Paris")
    main(["--project", str(root), "replay", run.info.run_id, "--json"])
    out = capsys.readouterr().out
    variables = json.loads(out)["environment"]["variables"]
    # Then the drift names what the notebook read and what changes results, never a secret's value
    rows = {r["name"]: r for r in variables["changed"]}
    assert set(rows) == {"NBT_SOURCE", "MY_SERVICE_TOKEN", "TZ"}
    assert (rows["NBT_SOURCE"]["a"], rows["NBT_SOURCE"]["b"]) == ("a", "b")
    assert rows["NBT_SOURCE"]["why"] == "read by the notebook" and rows["TZ"]["why"] == "changes results"
    token = rows["MY_SERVICE_TOKEN"]
    assert token["secret"] is True and token["compared_by"] == "keyed hash"
    assert token["a"] == token["b"] == "[REDACTED]"
    assert TOKEN_THEN not in out and TOKEN_NOW not in out
    # And the key that made the hashes is the user's own, outside the store
    assert stat.S_IMODE(_own_key.stat().st_mode) == 0o600
    assert not list(root.rglob("environment.key"))


def _environment(env: dict[str, str], key: Path, **extra: Any) -> Snapshot:
    data = {"env_vars": env, "env_hashes": env_hashes(env, key), "packages": [], **extra}
    return Snapshot(sections={"environment": Section("environment", "ok", None, data)})


def test_secrets_hashed_with_another_key_are_not_compared(tmp_path: Path) -> None:
    # Given two runs recorded by different users (different keys), each with a secret
    a = _environment(
        {"API_TOKEN": "[REDACTED]", "TZ": "UTC"}, tmp_path / "a.key", variables_read=["API_TOKEN"]
    )
    b = _environment({"API_TOKEN": "[REDACTED]", "TZ": "UTC"}, tmp_path / "b.key")
    # When they are compared
    variables = diff_environment(a, b)["variables"]
    # Then the secret is said not comparable rather than "no drift", and the rest still compares
    assert variables["changed"] == []
    assert [r["name"] for r in variables["not_compared"]] == ["API_TOKEN"]


def test_hashes_are_keyed() -> None:
    # A value's hash depends on the key: a short secret cannot be looked up in a table of hashes
    env = {"PIN": "1234"}
    one = env_hashes(env, Path(os.environ["JUPYTER_DATA_DIR"]) / "one.key")
    two = env_hashes(env, Path(os.environ["JUPYTER_DATA_DIR"]) / "two.key")
    assert one["hashes"]["PIN"] != two["hashes"]["PIN"] and one["key_id"] != two["key_id"]
    assert one == env_hashes(env, Path(os.environ["JUPYTER_DATA_DIR"]) / "one.key")


def test_python_build_drift() -> None:
    same = {
        "implementation": "CPython",
        "version": "3.11.7",
        "build": "main, Jan 1 2024",
        "compiler": "GCC 12",
    }
    other = {**same, "compiler": "Clang 16"}
    drift = diff_python(same, other)
    assert drift is not None and drift["fields"] == ["compiler"]
    assert "GCC 12" in drift["a"] and "Clang 16" in drift["b"]
    assert diff_python(same, {"implementation": "CPython", "version": "3.11.7"}) is None  # older snapshot


def test_variables_read_by_code() -> None:
    code = [
        "seed = int(os.environ['SEED'])\nos.environ['OUT'] = 'x'",
        "if 'DEBUG' not in os.environ: pass\nlevel = getenv(\"LEVEL\", 'info')",
        "%env TZ\n%env MPLBACKEND=agg",
    ]
    assert variables_read(code) == ["DEBUG", "LEVEL", "SEED", "TZ"]


def test_injected_parameters_cell_is_not_a_code_change() -> None:
    recorded = ["import pandas as pd", "# Parameters\nalpha = 0.1\n", "fit(alpha)"]
    replayed = ["import pandas as pd", "# Parameters\nalpha = 0.5\n", "fit(alpha)"]
    assert diff_cells(recorded, replayed) == []
    assert diff_cells(["a = 1", "b = 2"], ["a = 1", "# Parameters\nx = 1\n", "b = 3"])[0]["b_cell"] == 2
