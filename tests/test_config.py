"""One configuration, read the same way by every front-end.

Real config files in a Jupyter config folder and an IPython profile under ``tmp_path``; real
processes: the ``nbtrack`` command, a kernel that ``%load_ext nbtrack``, a ``jupyter server`` whose
panel API starts a replay job. Precedence, highest first: an explicit argument (a CLI flag, a magic
option, the command line of the server or the kernel) > Jupyter config files > the IPython profile
> environment variables > defaults.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, download_all, git, make_project, store_client, write_notebook
from server_helpers import jupyter_server
from traitlets.config import Application, Config, Configurable

from nbtrack.config import CONFIG_ENV, NbtrackConfig, load_config, to_env

# Variables that would decide a value these tests set through files.
_FOREIGN = (
    "JUPYTER_CONFIG_PATH",
    CONFIG_ENV,
    "NBTRACK_STORE_DIR",
    "NBTRACK_REDACT_VALUES",
    "NBTRACK_MLFLOW_UI_URL",
)


@dataclass
class Places:
    """A Jupyter config folder (``JUPYTER_CONFIG_DIR``) and the default IPython profile, both empty."""

    jupyter: Path
    profile: Path

    def env(self) -> dict[str, str]:
        """The environment of a process that reads exactly these places."""
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
        env.update(JUPYTER_CONFIG_DIR=str(self.jupyter), IPYTHONDIR=str(self.profile.parent))
        return env


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def settings(**values: Any) -> str:
    """A Python config file setting ``c.NbtrackConfig.<name> = value`` for each value."""
    return "".join(f"c.NbtrackConfig.{name} = {value!r}\n" for name, value in values.items())


def new_places(base: Path) -> Places:
    places = Places(base / "jupyter", base / "ipython" / "profile_default")
    places.jupyter.mkdir(parents=True)
    places.profile.mkdir(parents=True)
    return places


@pytest.fixture(autouse=True)
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Places:
    """This process reads only config files the test writes."""
    where = new_places(tmp_path / "config-places")
    for name in _FOREIGN:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(where.jupyter))
    monkeypatch.setenv("IPYTHONDIR", str(where.profile.parent))
    return where


# --- the sources and their order, in this process -----------------------------------------------------
def test_a_jupyter_config_file_is_read(places: Places) -> None:
    # Given a value set in jupyter_config.py only
    write(places.jupyter, "jupyter_config.py", settings(store_dir="from-jupyter"))
    # When the config is loaded (as the CLI does), Then the value is there
    assert load_config().store_dir == "from-jupyter"


def test_config_files_rank_in_one_order(places: Places) -> None:
    # Given the same settings in the IPython profile and in both Jupyter files
    write(
        places.profile,
        "ipython_config.py",
        settings(store_dir="profile", experiment="profile", max_replays=3),
    )
    write(places.profile, "ipython_config.json", json.dumps({"NbtrackConfig": {"history_max_cells": 5}}))
    write(places.profile, "ipython_kernel_config.py", settings(history_max_cells=6))
    write(places.jupyter, "jupyter_config.py", settings(store_dir="jupyter", experiment="jupyter"))
    write(
        places.jupyter, "jupyter_server_config.json", json.dumps({"NbtrackConfig": {"experiment": "server"}})
    )
    config = load_config()
    # Then jupyter_server_config > jupyter_config > the profile (kernel file over ipython_config)
    assert config.experiment == "server"
    assert config.store_dir == "jupyter"
    assert config.max_replays == 3 and config.history_max_cells == 6


def test_json_wins_over_py_and_the_first_folder_over_later_ones(
    places: Places, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given both formats in one folder, and a folder listed before JUPYTER_CONFIG_DIR
    write(places.jupyter, "jupyter_config.py", settings(store_dir="py", experiment="user"))
    write(places.jupyter, "jupyter_config.json", json.dumps({"NbtrackConfig": {"store_dir": "json"}}))
    extra = tmp_path / "extra"
    write(extra, "jupyter_config.py", settings(experiment="extra"))
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(extra))
    config = load_config()
    # Then as every Jupyter application reads them
    assert config.store_dir == "json"
    assert config.experiment == "extra"


def test_the_environment_counts_only_where_no_file_sets_the_value(
    places: Places, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBTRACK_STORE_DIR", "from-env")
    monkeypatch.setenv("NBTRACK_EXPERIMENT", "env-experiment")
    assert load_config().store_dir == "from-env"
    write(places.profile, "ipython_config.py", settings(store_dir="from-profile"))
    assert load_config().store_dir == "from-profile"
    write(places.jupyter, "jupyter_server_config.py", settings(store_dir="from-file"))
    config = load_config()
    assert config.store_dir == "from-file" and config.experiment == "env-experiment"


def test_an_applications_own_config_ranks_over_the_files(places: Places) -> None:
    # Given a file, and a server started with --NbtrackConfig.max_replays=9
    write(places.jupyter, "jupyter_server_config.py", settings(max_replays=4, replay_timeout=60.0))
    app = Application()
    app.parse_command_line(["--NbtrackConfig.max_replays=9"])
    config = load_config(app.config)
    # Then the command line wins; the file still sets what it alone sets
    assert config.max_replays == 9 and config.replay_timeout == 60.0


def test_a_kernels_command_line_ranks_first_and_its_profile_below_the_jupyter_files(places: Places) -> None:
    # Given a kernel application started with a flag, and a shell whose config is its loaded profile
    write(places.jupyter, "jupyter_config.py", settings(store_dir="jupyter", experiment="jupyter"))
    app = Application()
    app.parse_command_line(["--NbtrackConfig.experiment=flag"])
    profile = Config({"NbtrackConfig": {"store_dir": "profile", "history_max_cells": 7}})
    shell = Configurable(parent=Configurable(parent=app), config=profile)
    # When %load_ext nbtrack builds the config from that shell
    config = load_config(shell=shell)
    # Then flag > Jupyter files > profile, and the profile's file on disk is not read twice
    assert (config.experiment, config.store_dir, config.history_max_cells) == ("flag", "jupyter", 7)


def test_a_handed_down_config_is_used_exactly(places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a front-end that handed its config to this process, and files saying otherwise
    write(places.jupyter, "jupyter_config.py", settings(store_dir="from-file", max_replays=5))
    parent = NbtrackConfig(store_dir="handed", redact_value_patterns=["K-[0-9]+"])
    env = to_env(parent, tracking_uri="sqlite:////tmp/x.db")
    monkeypatch.setenv(CONFIG_ENV, env[CONFIG_ENV])
    config = load_config()
    # Then the handed-down values, the changes included, and nothing from the files
    assert config.store_dir == "handed" and config.max_replays == 2
    assert config.redact_value_patterns == ["K-[0-9]+"] and config.tracking_uri == "sqlite:////tmp/x.db"
    with pytest.raises(TypeError, match="no setting stor_dir"):
        to_env(parent, stor_dir="typo")


def test_a_broken_file_is_skipped_with_one_line_naming_it(
    places: Places, caplog: pytest.LogCaptureFixture
) -> None:
    broken = write(places.jupyter, "jupyter_config.py", "c.NbtrackConfig.store_dir = (\n")
    write(places.jupyter, "jupyter_server_config.py", settings(experiment="still-read"))
    with caplog.at_level(logging.WARNING, logger="nbtrack.config"):
        config = load_config()
    assert config.experiment == "still-read" and config.store_dir == ".nbtrack"
    [record] = [r for r in caplog.records if r.name == "nbtrack.config"]
    message = record.getMessage()
    assert str(broken) in message and "SyntaxError" in message and "\n" not in message


def test_a_py_file_that_does_not_name_nbtrack_is_not_executed(places: Places, tmp_path: Path) -> None:
    # Given a server's config file with side effects and nothing for nbtrack, and one that loads
    # another file
    ran = tmp_path / "ran"
    write(places.jupyter, "jupyter_server_config.py", f"open({str(ran)!r}, 'w').close()\n")
    write(places.jupyter, "nbtrack_part.py", settings(store_dir="from-subconfig"))
    write(places.jupyter, "jupyter_config.py", "load_subconfig('nbtrack_part.py')\n")
    config = load_config()
    # Then the CLI and the kernels do not run the server's file; the one that may set a value is run
    assert not ran.exists()
    assert config.store_dir == "from-subconfig"


# --- real processes -----------------------------------------------------------------------------------
def nbtrack_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbtrack.cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def run_cells(client: Any, cells: list[str]) -> list[str]:
    """Execute each cell in a real kernel; what each printed. A cell that raises fails the test."""
    printed = []
    for cell in cells:
        out: list[str] = []

        def hook(msg: dict[str, Any], out: list[str] = out) -> None:
            content = msg["content"]
            if msg["msg_type"] == "stream":
                out.append(content["text"])
            elif msg["msg_type"] == "error":
                out.append(f"ERROR {content['ename']}: {content['evalue']}")

        reply = client.execute_interactive(cell, output_hook=hook, timeout=300)
        text = "".join(out)
        assert reply["content"]["status"] == "ok", f"{cell}: {text}"
        printed.append(text)
    return printed


def store_client_at(db: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{db}")


@dataclass
class KernelRuns:
    root: Path
    places: Places
    printed: list[str]


@pytest.fixture(scope="module")
def kernel_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelRuns]:
    """A real kernel tracks two runs, configured by a Jupyter file, the IPython profile, the
    environment, its command line and a magic option at once."""
    from jupyter_client.manager import start_new_kernel

    base = tmp_path_factory.mktemp("kernel-config")
    root = base / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    where = new_places(base / "places")
    write(where.jupyter, "jupyter_server_config.py", settings(store_dir="file-store", experiment="from-file"))
    write(where.profile, "ipython_config.py", settings(store_dir="profile-store", experiment="from-profile"))
    env = {**where.env(), "NBTRACK_STORE_DIR": "env-store", "NBTRACK_EXPERIMENT": "from-env"}
    for name in ("MLFLOW_TRACKING_URI", "NBTRACK_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    env["NBTRACK_SPOOL_DIR"] = str(base / "spool")
    manager, client = start_new_kernel(
        kernel_name="python3",
        extra_arguments=["--NbtrackConfig.experiment=from-kernel-flag"],
        env=env,
        cwd=str(root),
    )
    try:
        printed = run_cells(
            client,
            [
                "%load_ext nbtrack",
                "%track start --name first",
                "%track status",
                "%track stop",
                "%track start --name second --experiment from-magic",
                "%track status",
                "%track stop",
            ],
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    yield KernelRuns(root, where, printed)


@pytest.mark.kernel
def test_a_kernel_reads_the_jupyter_files_in_the_one_order(kernel_runs: KernelRuns) -> None:
    first, second = kernel_runs.printed[2], kernel_runs.printed[5]
    store = kernel_runs.root / "file-store" / "mlflow.db"
    # Then the store is the Jupyter file's (over the profile and NBTRACK_STORE_DIR)
    assert f"store: sqlite:///{store}" in first, first
    assert not (kernel_runs.root / "profile-store").exists() and not (kernel_runs.root / "env-store").exists()
    # and the experiment the kernel's command line names (over the files), then the magic option's
    assert "in 'from-kernel-flag'" in first, first
    assert "in 'from-magic'" in second, second
    runs = {r.info.run_name: r for r in all_runs(store_client_at(store))}
    assert set(runs) == {"first", "second"}


def listed(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return sorted(row["name"] for row in json.loads(proc.stdout))


@pytest.mark.kernel
def test_the_cli_reads_the_same_files_in_the_same_order(kernel_runs: KernelRuns, tmp_path: Path) -> None:
    root, env = kernel_runs.root, kernel_runs.places.env()
    # Given the kernel's Jupyter file (store_dir=file-store) and NBTRACK_STORE_DIR saying otherwise
    env["NBTRACK_STORE_DIR"] = "env-store"
    # When `nbtrack runs` lists the project's runs, Then it reads the file's store
    assert listed(nbtrack_cli("runs", "--json", cwd=root, env=env)) == ["first", "second"]

    # Given no config file, Then the environment decides
    bare = new_places(tmp_path / "bare")
    by_env = nbtrack_cli("runs", "--json", cwd=root, env={**bare.env(), "NBTRACK_STORE_DIR": "file-store"})
    assert listed(by_env) == ["first", "second"]

    # Given a file naming another store, Then --tracking-uri (an argument) wins over it
    other = new_places(tmp_path / "other")
    write(other.jupyter, "jupyter_config.py", settings(tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}"))
    assert listed(nbtrack_cli("runs", "--json", cwd=root, env=other.env())) == []
    store = f"sqlite:///{root / 'file-store' / 'mlflow.db'}"
    by_argument = nbtrack_cli("runs", "--json", "--tracking-uri", store, cwd=root, env=other.env())
    assert listed(by_argument) == ["first", "second"]


SECRET_CELLS = [
    "%load_ext nbtrack",
    "%track start --experiment config --name secret",
    "print('token ZQX-' + '314159')",  # the source does not hold the secret's shape, the output does
    "%track stop",
]
# Only the server process itself has jupyter_server imported: a replay job that redacts with this
# pattern got it from the server (NBTRACK_CONFIG), not by reading the file again.
SERVER_ONLY_PATTERN = """import sys
if "jupyter_server.serverapp" in sys.modules:
    c.NbtrackConfig.redact_value_patterns = [r"ZQX-[0-9]{6}"]
"""


@pytest.mark.kernel
def test_a_replay_job_uses_the_servers_whole_config(tmp_path: Path) -> None:
    from nbtrack.runner import execute_notebook

    # Given a run whose notebook printed a secret of a custom shape
    project = make_project(tmp_path / "root" / "proj", use_dvc=False, rows=50)
    write_notebook(project / "secret.ipynb", SECRET_CELLS)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "notebook")
    execute_notebook(project / "secret.ipynb", tmp_path / "executed.ipynb", cwd=project)
    [original] = all_runs(store_client(project))
    # and a jupyter server whose jupyter_server_config.py sets that shape as a secret
    write(tmp_path / "config", "jupyter_server_config.py", SERVER_ONLY_PATTERN)
    with jupyter_server(tmp_path / "root", tmp_path) as server:
        # When the panel replays the run
        query = urllib.parse.urlencode({"notebook": "proj/secret.ipynb"})
        job = server.call("POST", f"/nbtrack/runs/{original.info.run_id}/replay?{query}")
        deadline = time.monotonic() + 600
        while job["state"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = server.call("GET", f"/nbtrack/jobs/{job['job_id']}")
    assert job["state"] == "done", job["error"]
    assert job["verdict"] == "REPRODUCED", job["report"]
    # Then the artifacts the replay wrote carry [REDACTED], never the secret
    files = download_all(store_client(project), job["result"]["replay_run_id"], tmp_path / "artifacts")
    output = files["nbtrack/replay/output.ipynb"].decode()
    assert "ZQX-314159" not in output and "[REDACTED]" in output
    assert "ZQX-314159" not in files["nbtrack/replay/verdict.json"].decode()
    # and the job's status shows no configuration
    # (the cell's source, which builds the secret from two halves, is shown as the compared cell)
    shown = json.dumps(job)
    assert "ZQX-314159" not in shown and "ZQX-[0-9]" not in shown and "NbtrackConfig" not in shown
