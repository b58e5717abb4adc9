"""A replay never writes into the user's DVC cache, as root and as a user DVC's read-only cache binds.

Real git + DVC projects, real kernels (papermill), a real SQLite MLflow store; replays through the
CLI. The project's cache objects are hashed before and after every replay: each must still hash to
its own name, and ``dvc checkout --force`` must give back the committed bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import dvc, git, make_project, write_notebook
from dvc_helpers import hermetic_dvc_env, write

from nbtrack.cli import main
from nbtrack.runner import execute_notebook

pytestmark = pytest.mark.kernel

OLD_MODEL = b"old model\n"
OLD_FIGURE = "old figure"
REWRITE = [
    "%load_ext nbtrack",
    ("parameters", "touch_input = False"),
    "%track start --experiment safety --name rewrite",
    "import hashlib\nimport mlflow\nfrom pathlib import Path\n"
    "data = Path('data/churn.csv').read_bytes()\n"
    "# rewrite DVC-tracked outputs in place: a .dvc-tracked model and a pipeline stage's figure\n"
    "with open('model.pkl', 'wb') as f:\n"
    "    f.write(b'model of ' + hashlib.md5(data).hexdigest().encode())\n"
    "Path('fig.txt').write_text(f'figure of {len(data)} bytes')\n"
    "if touch_input:  # a notebook that writes into its input\n"
    "    with open('data/churn.csv', 'ab') as f:\n"
    "        f.write(b'written by the replay\\n')\n"
    "mlflow.log_metric('bytes', len(data))",
    "%track stop",
]
HELPER = [
    "%load_ext nbtrack",
    "%track start --experiment safety --name helper",
    "import sys\nimport mlflow\nsys.path.insert(0, 'libs/helpers')\nfrom helper import VALUE\n"
    "mlflow.log_metric('value', VALUE)",
    "%track stop",
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed project: input ``data/churn.csv``, ``model.pkl`` (``dvc add``-ed) and ``fig.txt``
    (the out of pipeline stage ``figure``), and the notebook ``rewrite.ipynb`` that rewrites both."""
    base = tmp_path_factory.mktemp("cache-safety")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in hermetic_dvc_env(base / "dvc-env").items():
            mp.setenv(name, value)
        root = make_project(base / "proj", rows=300)
        write(root / "model.pkl", OLD_MODEL)
        dvc(root, "add", "-q", "model.pkl")
        write(
            root / "dvc.yaml",
            "stages:\n  figure:\n"
            f"    cmd: python -c \"open('fig.txt', 'w').write('{OLD_FIGURE}')\"\n"
            "    deps:\n    - data/churn.csv\n    outs:\n    - fig.txt\n",
        )
        dvc(root, "repro", "-q")
        write_notebook(root / "rewrite.ipynb", REWRITE)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "model, figure and notebook")
    return root


@pytest.fixture
def project(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in hermetic_dvc_env(tmp_path / "dvc-env").items():
        monkeypatch.setenv(name, value)
    dest = tmp_path / "proj"
    shutil.copytree(template, dest, symlinks=True)
    return dest


def cache_state(root: Path) -> dict[str, tuple[str, int]]:
    """Every DVC cache object: its md5 and mode. Each must hash to its own name."""
    found = {}
    top = root / ".dvc" / "cache" / "files" / "md5"
    for path in sorted(top.rglob("*")):
        if path.is_file():
            digest = hashlib.md5(path.read_bytes()).hexdigest()
            assert path.parent.name + path.name.removesuffix(".dir") == digest, f"damaged: {path}"
            found[str(path.relative_to(top))] = (digest, path.stat().st_mode)
    assert found, f"no cache objects under {top}"
    return found


def assert_dvc_gives_back_the_commit(root: Path) -> None:
    """``dvc checkout --force`` restores the committed bytes, and ``dvc status`` is then clean."""
    dvc(root, "checkout", "-q", "--force")
    assert (root / "model.pkl").read_bytes() == OLD_MODEL
    assert (root / "fig.txt").read_text() == OLD_FIGURE
    assert "up to date" in dvc(root, "status")


def track(root: Path, name: str) -> str:
    """Execute a notebook of the project through papermill; the id of the run it tracked."""
    runs = root / ".nbtrack"
    execute_notebook(root / name, root.parent / "executed.ipynb", cwd=root)
    return last_run_id(runs)


def last_run_id(runs: Path) -> str:
    import sqlite3

    with sqlite3.connect(runs / "mlflow.db") as db:
        row = db.execute("SELECT run_uuid FROM runs ORDER BY start_time DESC LIMIT 1").fetchone()
    return str(row[0])


def replay(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, Any]:
    code = main(["--project", str(root), "replay", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_rewriting_dvc_outputs_in_place_leaves_the_cache_intact(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run that rewrote a dvc-added model and a pipeline stage's figure in place
    run_id = track(project, "rewrite.ipynb")
    before = cache_state(project)
    # When it is replayed (the workspace links the input from the cache, as DVC would)
    code, result = replay(capsys, project, run_id)
    # Then the verdict is the results': the same metric, the same outputs
    assert (code, result["verdict"]) == (0, "REPRODUCED"), result["message"]
    assert {o["path"]: o["ok"] for o in result["outputs"]} == {"fig.txt": True, "model.pkl": True}
    links = {d["path"]: d["link"] for d in result["data"]}
    assert links["data/churn.csv"] == "hardlink"
    assert links["model.pkl"] in ("copy", "reflink") and links["fig.txt"] in ("copy", "reflink")
    assert not [r for r in result["risks"] if "wrote into" in r]
    # and every cache object still holds the bytes it is named after
    assert cache_state(project) == before
    assert_dvc_gives_back_the_commit(project)


def test_a_notebook_writing_into_its_input_is_named_and_the_cache_restored(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run, replayed with a parameter that makes the notebook append to its linked input
    run_id = track(project, "rewrite.ipynb")
    before = cache_state(project)
    committed = (project / "data" / "churn.csv").read_bytes()
    code, result = replay(capsys, project, run_id, "-p", "touch_input", "True")
    # Then the replay names the file it wrote into
    named = [r for r in result["risks"] if "wrote into" in r and "data/churn.csv" in r]
    assert named, result["risks"]
    assert (code, result["verdict"]) == (0, "REPRODUCED"), result["message"]
    # and the cache object it wrote through holds the committed bytes again
    assert cache_state(project) == before
    assert (project / "data" / "churn.csv").read_bytes() == committed
    assert_dvc_gives_back_the_commit(project)


def test_a_notebook_importing_from_a_submodule_replays(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a project with a real git submodule, and a run importing a module from it
    lib = tmp_path / "lib"
    write(lib / "helper.py", "VALUE = 41\n")
    git(lib, "init", "-q", "-b", "main")
    git(lib, "add", "-A")
    git(lib, "commit", "-qm", "helper")
    git(project, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "libs/helpers")
    write_notebook(project / "helper.ipynb", HELPER)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "helper notebook")
    run_id = track(project, "helper.ipynb")
    # When it is replayed: the submodule is checked out at its pinned commit
    code, result = replay(capsys, project, run_id)
    assert (code, result["verdict"]) == (0, "REPRODUCED"), result["message"]
    assert [(m["name"], m["replayed"]) for m in result["metrics"]] == [("value", 41)]
    # When the source has not checked the submodule out, the replay cannot run, and says why
    git(project, "submodule", "deinit", "-q", "-f", "libs/helpers")
    code, result = replay(capsys, project, run_id)
    assert (code, result["verdict"]) == (3, "CANNOT_REPLAY")
    assert "git submodule libs/helpers" in result["message"]
    assert "git submodule update --init" in result["message"]


# --- as a user other than root ---------------------------------------------------------------------
@pytest.fixture
def other_user() -> Iterator[tuple[list[str], Path, int, int]]:
    """The command prefix that runs a command as a user other than root, and a folder that user owns.

    As root (CI): ``nobody``, through ``setpriv``; as any other user: that user, as is. Where the
    interpreter lies below a folder only root may enter (``/root/.pyenv``), ``nobody`` also gets
    CAP_DAC_READ_SEARCH: it may then read and search every folder, but still writes only what its
    permissions allow (the test checks that a read-only cache object stays unwritable).
    """
    base = Path(tempfile.mkdtemp(prefix="nbtrack-nonroot-"))
    try:
        if os.geteuid() != 0:
            yield [], base, os.getuid(), os.getgid()
            return
        try:
            user = pwd.getpwnam("nobody")
        except KeyError:
            pytest.fail("this test runs replays as user `nobody`, which this machine lacks: create it")
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("this test needs `setpriv` (util-linux) to run a replay as `nobody`: install it")
        prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        why = _cannot_run(prefix)
        if why:
            prefix += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
            if _cannot_run(prefix):
                pytest.fail(
                    f"`nobody` cannot run {sys.executable} with nbtrack ({why}); make the virtual "
                    "environment and its base interpreter readable by others"
                )
        yield prefix, base, user.pw_uid, user.pw_gid
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _cannot_run(prefix: list[str]) -> str:
    """Why the interpreter, as the other user, cannot start itself again with nbtrack (as a kernel
    start does) on the same base installation; empty when it can."""
    child = "import sys, nbtrack, dvc, papermill, ipykernel; print(sys.base_prefix)"
    code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    probe = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"exit {probe.returncode}"
    if probe.stdout.strip() != sys.base_prefix:
        return f"it runs on {probe.stdout.strip()}, not {sys.base_prefix}"
    return ""


def test_as_another_user_a_replay_rewriting_outputs_does_not_fail(
    template: Path, other_user: tuple[list[str], Path, int, int]
) -> None:
    # Given the project, its DVC cache (read-only objects) and a home owned by a user other than root
    prefix, base, uid, gid = other_user
    root = base / "proj"
    shutil.copytree(template, root, symlinks=True)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(base / "home"),
        "TMPDIR": str(base / "tmp"),
        "JUPYTER_CONFIG_DIR": str(base / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(base / "jupyter-data"),
        "IPYTHONDIR": str(base / "ipython"),
        "NBTRACK_SPOOL_DIR": str(base / "spool"),
        "LANG": "C.UTF-8",
        **hermetic_dvc_env(base / "dvc-env"),
    }
    for name in ("home", "tmp"):
        (base / name).mkdir()
    for folder, _, names in os.walk(base):
        for name in [folder, *(os.path.join(folder, n) for n in names)]:
            os.lchown(name, uid, gid)
    objects = [p for p in (root / ".dvc" / "cache" / "files").rglob("*") if p.is_file()]
    assert objects and all(p.stat().st_mode & 0o777 == 0o444 for p in objects)  # as DVC leaves them

    def as_user(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, check=False
        )

    track = "from pathlib import Path as P; from nbtrack.runner import execute_notebook as run; "
    # (that user cannot write a cache object: what made a replay that rewrote an output FAIL)
    denied = as_user("-c", f"open({str(objects[0])!r}, 'ab')")
    assert "PermissionError" in denied.stderr, denied.stderr
    tracked = as_user("-c", track + "run(P('rewrite.ipynb'), P('../out.ipynb'), cwd=P('.'))")
    assert tracked.returncode == 0, tracked.stderr[-2000:]
    run_id = last_run_id(root / ".nbtrack")
    before = cache_state(root)
    # When that user replays the run, whose notebook rewrites model.pkl and fig.txt in place
    replayed = as_user("-m", "nbtrack.cli", "--project", str(root), "replay", run_id, "--json")
    # Then it reproduced: no PermissionError from a read-only cache object
    result = json.loads(replayed.stdout)
    assert (replayed.returncode, result["verdict"]) == (0, "REPRODUCED"), (result["message"], replayed.stderr)
    assert "PermissionError" not in replayed.stdout + replayed.stderr
    # and the cache is intact
    assert cache_state(root) == before
    restored = as_user("-m", "dvc", "checkout", "-q", "--force")
    assert restored.returncode == 0, restored.stderr
    assert (root / "model.pkl").read_bytes() == OLD_MODEL
    assert (root / "fig.txt").read_text() == OLD_FIGURE
