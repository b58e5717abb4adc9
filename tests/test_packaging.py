"""Packaging as a user meets it: the wheel, a source build without Node, the dependency list, the shape.

Given a copy of the source tree (what a checkout holds: tracked and new files, nothing ignored),
when it is built into a wheel, then the wheel carries the prebuilt JupyterLab panel and the server
extension's config, installs into a fresh virtualenv with no Node on PATH, and Jupyter lists both.
A source build with no Node stops with one line that says what to install. The wheel is built
once with Node (``jlpm install`` from yarn's cache, then the production bundle: ~30 s on an idle
2-core machine, ~2 min under load); the build without Node reuses its panel.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[1]
NO_NODE = (
    "nbtrack: building the JupyterLab panel needs Node.js >= 18 on PATH (apt-get install nodejs npm, "
    "or https://nodejs.org); or install a built wheel: pip install nbtrack-*.whl"
)
PANEL = "share/jupyter/labextensions/nbtrack"
SERVER_CONFIG = "etc/jupyter/jupyter_server_config.d/nbtrack.json"
# Declared though nbtrack imports neither: papermill's engine (runner.py overrides what it calls)
# and JupyterLab, which loads the panel.
NOT_IMPORTED = {"nbclient", "jupyterlab"}


def source_tree(dest: Path) -> Path:
    """``dest`` filled with the repository's files as a checkout has them (no build output)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {REPO}")
    for rel in filter(None, listed.stdout.split(b"\0")):
        src = REPO / os.fsdecode(rel)
        if src.is_file():  # listed but deleted in the working tree: not part of it
            target = dest / os.fsdecode(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)  # keeps mtimes: the build hook compares them
    return dest


def no_node_env(tmp: Path) -> dict[str, str]:
    """The environment with a PATH on which there is no ``node`` (nor anything else)."""
    empty = tmp / "empty-bin"
    empty.mkdir(exist_ok=True)
    return {**os.environ, "PATH": str(empty)}


def build_wheel(src: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Build ``src`` into a wheel in ``out``: ``uv build`` where uv is installed, else pip."""
    uv = shutil.which("uv")
    if uv:
        cmd = [uv, "build", "--wheel", "--python", sys.executable, "-o", str(out), str(src)]
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A source tree and the wheel built from it with Node, as a release is made."""
    if shutil.which("node") is None:
        pytest.skip("no node on PATH: the wheel's panel cannot be built here (tests/run.sh installs it)")
    src = source_tree(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("dist")
    proc = build_wheel(src, out, dict(os.environ))
    assert proc.returncode == 0, output(proc)[-3000:]
    (wheel,) = out.glob("nbtrack-*.whl")
    return src, wheel


def test_the_wheel_carries_the_built_panel_the_server_config_and_the_example(
    built: tuple[Path, Path],
) -> None:
    _, wheel = built
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (data,) = {n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".data")}
        server_config = json.loads(zf.read(f"{data}/data/{SERVER_CONFIG}"))
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    panel = f"{data}/data/{PANEL}"
    assert {f"{panel}/package.json", f"{panel}/install.json", f"{panel}/static/style.js"} <= names
    assert any(n.startswith(f"{panel}/static/remoteEntry.") and n.endswith(".js") for n in names)
    assert server_config == {"ServerApp": {"jpserver_extensions": {"nbtrack": True}}}
    assert {"nbtrack/_examples/quickstart.ipynb", "nbtrack/server/openapi.yaml", "nbtrack/py.typed"} <= names
    assert not [n for n in names if "node_modules" in n or n.startswith("tests/") or n.endswith(".ts")]
    requires = [
        line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    ]
    assert not [r for r in requires if r.startswith("scikit-learn") and "extra ==" not in r]


def test_the_wheel_installs_without_node_and_jupyter_lists_the_panel_and_the_server_extension(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    # Given a fresh virtualenv that sees this environment's packages (as --system-site-packages
    # would) but not its nbtrack, and a PATH without node
    _, wheel = built
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    uv = shutil.which("uv")
    install = (
        [uv, "pip", "install", "--python", str(python), "--no-deps", str(wheel)]
        if uv
        else [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", str(wheel)]
    )
    env = no_node_env(tmp_path)
    # When the wheel is installed
    proc = subprocess.run(install, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, output(proc)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "_test_base_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    jupyter_env = {
        **env,
        "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
    }
    for name in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "PYTHONPATH", "VIRTUAL_ENV"):
        jupyter_env.pop(name, None)

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(python), *args], cwd=tmp_path, env=jupyter_env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, output(done)
        return re.sub(r"\x1b\[[0-9;]*m", "", output(done))  # jupyter colours "enabled" and "OK"

    # Then nbtrack is the wheel's, and Jupyter lists its panel and its server extension as working
    assert run("-c", "import nbtrack; print(nbtrack.__file__)").strip().startswith(purelib)
    labextensions = run("-m", "jupyterlab.labextensions", "list")
    assert str(venv / "share" / "jupyter" / "labextensions") in labextensions
    line = next(x for x in labextensions.splitlines() if x.strip().startswith("nbtrack "))
    assert "enabled" in line and "OK" in line, labextensions
    server = run("-m", "jupyter_server.extension.serverextension", "list")
    assert re.search(r"nbtrack\s+enabled", server), server
    assert re.search(r"nbtrack\s+\S+\s+OK", server), server


def test_a_wheel_built_without_node_packages_the_prebuilt_panel(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    # Given a source tree whose panel is built and newer than its TypeScript (an unpacked sdist)
    src, first = built
    # When it is built again with no node on PATH
    proc = build_wheel(src, tmp_path, no_node_env(tmp_path))
    # Then the build says so and the wheel carries the same panel
    assert proc.returncode == 0, output(proc)[-3000:]
    assert "packaging the prebuilt JupyterLab panel in nbtrack/labextension" in output(proc)
    (again,) = tmp_path.glob("nbtrack-*.whl")

    def panel(wheel: Path) -> set[str]:
        with zipfile.ZipFile(wheel) as zf:
            return {n.split("/data/", 1)[1] for n in zf.namelist() if f"/data/{PANEL}/" in n}

    assert panel(again) == panel(first) and panel(again)


def test_a_source_build_without_node_says_what_to_install_in_one_line(tmp_path: Path) -> None:
    # Given a checkout with no built panel and a PATH without node
    src = source_tree(tmp_path / "source")
    # When it is built (uv where installed, ~15 s; pip prints the same line but first installs
    # JupyterLab into its isolated build environment, ~1-3 min here)
    proc = build_wheel(src, tmp_path / "dist", no_node_env(tmp_path))
    # Then it fails with the one line, not a traceback
    text = output(proc)
    assert proc.returncode != 0
    assert NO_NODE in text, text[-3000:]
    assert "Traceback" not in text


def _imported_distributions() -> dict[str, set[str]]:
    """Each third-party top-level module nbtrack imports -> the distributions that provide it."""
    provided = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for path in (REPO / "nbtrack").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top != "nbtrack" and top not in sys.stdlib_module_names:
                    found[top] = {_normal(d) for d in provided.get(top, [top])}
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_runtime_dependencies_are_what_nbtrack_imports() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_normal(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]) for req in project["dependencies"]}
    imported = _imported_distributions()
    missing = {module: dists for module, dists in imported.items() if not dists & declared}
    assert not missing, f"imported but not in [project] dependencies: {missing}"
    used = set().union(*imported.values())
    assert declared - used <= NOT_IMPORTED, declared - used - NOT_IMPORTED
    assert "scikit-learn" not in declared  # the quickstart's model is plain numpy


def test_check_shape_lists_each_kind_of_offender(tmp_path: Path) -> None:
    # Given a small package that breaks every rule once
    pkg = tmp_path / "nbtrack"
    for folder in ("magics", "cli", "track", "runs", "capture", "store"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text('"""A layer."""\n')
    (pkg / "__init__.py").write_text('"""Top."""\n')
    (pkg / "models.py").write_text("from __future__ import annotations\n\nfrom nbtrack.store import x\n")
    (pkg / "magics" / "big.py").write_text("from __future__ import annotations\n" + "x = 1\n" * 401)
    body = "".join(f"    a{i} = {i}\n" for i in range(60))
    (pkg / "runs" / "long.py").write_text(f"from __future__ import annotations\n\n\ndef f() -> None:\n{body}")
    (pkg / "capture" / "priv.py").write_text(
        "from __future__ import annotations\n\nfrom nbtrack.store.sqlite import _helper\n"
    )
    (pkg / "track" / "ml.py").write_text(
        "from __future__ import annotations\n\nimport mlflow\nfrom nbtrack.runs import rows\n"
        "from nbtrack.cli import main\n"
    )
    (pkg / "magics" / "cross.py").write_text(
        "from ..cli import main\n\n\ndef f(x: int) -> int:\n    return x\n"
    )
    (pkg / "store" / "lazy.py").write_text(
        "from __future__ import annotations\n\n\ndef f() -> None:\n    import mlflow\n"
    )
    (pkg / "stray.py").write_text('"""Belongs nowhere."""\n')
    # When the check runs on it
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "check_shape.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    # Then it lists each offender on its own line and fails
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1
    expected = [
        "nbtrack/capture/priv.py:3: imports private _helper from nbtrack.store.sqlite",
        "nbtrack/magics/big.py:1: module is 402 lines (limit 400)",
        "nbtrack/magics/cross.py:1: nbtrack.magics.cross imports nbtrack.cli: front-ends never import",
        "nbtrack/magics/cross.py:1: no `from __future__ import annotations`",
        "nbtrack/models.py:3: nbtrack.models imports nbtrack.store: foundation imports only foundation",
        "nbtrack/runs/long.py:4: function f is 61 lines (limit 60)",
        "nbtrack/stray.py:1: nbtrack.stray belongs to no layer",
        "nbtrack/track/ml.py:3: imports mlflow outside nbtrack/store/",
        "nbtrack/track/ml.py:3: imports mlflow at module level",
        "nbtrack/track/ml.py:4: nbtrack.track.ml imports nbtrack.runs: a service imports no service",
        "nbtrack/track/ml.py:5: nbtrack.track.ml imports nbtrack.cli: a service imports no front-end",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in lines), (start, proc.stdout)
    assert (
        len(lines) == len(expected) + 1 and lines[-1] == f"tests/check_shape.py: {len(expected)} offender(s)"
    )
    # and a lazy mlflow import inside the store is fine (no line for store/lazy.py)
    assert not [line for line in lines if "lazy.py" in line]
