"""Recreating a recorded environment: real virtualenvs, real installs (uv's warm cache), a real kernel."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import nbtrack
from nbtrack.capture.environment import normalize_name, scan_distributions
from nbtrack.errors import CannotReplay, UsageError
from nbtrack.replay.pins import SELF_REASON, installable_pins
from nbtrack.replay.venv import RecreatedEnv, interpreter_environment, recreate_environment

# Pinned older than the copy in the dev venv: the replay kernel must see this one.
MARKER, MARKER_VERSION = "six", "1.16.0"
IMPOSSIBLE = "nonexistent-package-nbtrack-test"


def pkg(name: str, version: str, **extra: Any) -> dict[str, Any]:
    """One package as the environment section records it."""
    return {"name": name, "version": version, "editable": False, "direct_url": None, "vcs": None, **extra}


def closure(root: str) -> set[str]:
    """Normalised names of ``root`` and everything it needs here, from the installed metadata."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = normalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def python_record(version: str | None = None) -> dict[str, Any]:
    return {
        "version": version or platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
    }


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    """A small environment section cut from the real one: ipykernel's closure, nbtrack, an old marker."""
    assert importlib.metadata.version(MARKER) != MARKER_VERSION
    keep = closure("ipykernel") | {"nbtrack"}
    packages = [p for p in scan_distributions() if normalize_name(p["name"]) in keep - {MARKER}]
    return {"python": python_record(), "packages": [*packages, pkg(MARKER, MARKER_VERSION)]}


@pytest.fixture(scope="module")
def recreated(
    recorded: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[RecreatedEnv, list[str]]:
    said: list[str] = []
    env = recreate_environment(
        recorded, tmp_path_factory.mktemp("replay"), say=said.append, run_id="0123abcd"
    )
    return env, said


def run_in_kernel(env: RecreatedEnv, cells: list[str]) -> list[str]:
    """Start the registered kernel for real, run ``cells``, return each cell's printed text."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    specs = KernelSpecManager(kernel_dirs=[str(env.kernel_dir)])
    km = KernelManager(kernel_name=env.kernel_name, kernel_spec_manager=specs)
    # Started outside the repository: its own nbtrack folder would shadow the venv's copy.
    km.start_kernel(cwd=str(env.path.parent))
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        printed = []
        for code in cells:
            out: list[str] = []

            def hook(msg: dict[str, Any], out: list[str] = out) -> None:
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])

            reply = kc.execute_interactive(code, timeout=60, output_hook=hook)
            assert reply["content"]["status"] == "ok", (code, reply["content"])
            printed.append("".join(out).strip())
        kc.stop_channels()
        return printed
    finally:
        km.shutdown_kernel(now=True)


def test_installable_pins_keep_what_an_index_can_bring_back() -> None:
    commit = "3f2a" * 10
    packages = [
        pkg("Typing_Extensions", "4.12.2"),
        pkg("zope.interface", "6.4"),
        pkg("mylib", "0.3.0", editable=True, direct_url="file:///home/ana/src/mylib"),
        pkg("localpkg", "1.0", direct_url="file:///home/ana/src/localpkg"),
        pkg("wheelpkg", "2.0", direct_url="file:///tmp/dist/wheelpkg-2.0-py3-none-any.whl"),
        pkg(
            "vcspkg",
            "0.1.dev3",
            direct_url="https://github.com/org/vcspkg.git",
            vcs={"vcs": "git", "commit_id": commit, "requested_revision": "main"},
        ),
        pkg(
            "gitlocal",
            "0.2",
            direct_url="file:///home/ana/repos/gitlocal",
            vcs={"vcs": "git", "commit_id": commit, "requested_revision": None},
        ),
        pkg(
            "remote",
            "1.2",
            direct_url="https://files.example.org/remote-1.2.tar.gz",
            archive_hash="sha256=cd34",
        ),
        pkg("nbtrack", "0.1.0", editable=True, direct_url="file:///work/main"),
        pkg("typing-extensions", "4.0.0"),  # a later copy on sys.path: the first one won
    ]
    lines, skipped = installable_pins(packages)
    assert lines == [
        "typing-extensions==4.12.2",
        "zope-interface==6.4",
        f"vcspkg @ git+https://github.com/org/vcspkg.git@{commit}",
        "remote @ https://files.example.org/remote-1.2.tar.gz#sha256=cd34",
    ]
    assert skipped == [
        {"name": "mylib", "version": "0.3.0", "reason": "editable install of /home/ana/src/mylib"},
        {"name": "localpkg", "version": "1.0", "reason": "local directory /home/ana/src/localpkg"},
        {
            "name": "wheelpkg",
            "version": "2.0",
            "reason": "local file /tmp/dist/wheelpkg-2.0-py3-none-any.whl",
        },
        {
            "name": "gitlocal",
            "version": "0.2",
            "reason": "checkout of the local repository /home/ana/repos/gitlocal",
        },
        {"name": "nbtrack", "version": "0.1.0", "reason": SELF_REASON},
    ]


def test_recreated_venv_holds_the_recorded_pins_and_a_kernelspec(
    recorded: dict[str, Any], recreated: tuple[RecreatedEnv, list[str]]
) -> None:
    env, said = recreated
    assert env.installer == "uv"
    assert env.installed == len(recorded["packages"]) - 1
    assert env.skipped == [{"name": "nbtrack", "version": nbtrack.__version__, "reason": SELF_REASON}]
    assert env.python_version == platform.python_version()
    assert env.notes == []
    assert env.python.is_file() and env.python.is_relative_to(env.path)
    assert (
        env.kernel_name.startswith("nbtrack-replay-") and len(env.kernel_name) == len("nbtrack-replay-") + 8
    )
    spec = json.loads((env.kernel_dir / env.kernel_name / "kernel.json").read_text())
    assert spec["argv"] == [str(env.python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    assert "0123abcd" in spec["display_name"]
    assert spec["language"] == "python"
    assert env.kernel_dir.parent == env.path.parent
    # one progress line per step, with counts and seconds
    assert len(said) == 4
    assert f"installed {env.installed} recorded pins with uv" in said[1]
    assert all(line.rstrip().endswith(" s") for line in said)


def test_interpreter_environment_reports_the_venv_pins(
    recorded: dict[str, Any], recreated: tuple[RecreatedEnv, list[str]]
) -> None:
    env, _ = recreated
    scanned = interpreter_environment(env.python)
    assert scanned["python"]["version"] == platform.python_version()
    assert Path(scanned["python"]["executable"]) == env.python
    versions = {normalize_name(p["name"]): p["version"] for p in scanned["packages"]}
    assert versions[MARKER] == MARKER_VERSION
    assert versions["nbtrack"] == nbtrack.__version__
    for p in recorded["packages"]:
        assert versions[normalize_name(p["name"])] == p["version"], p["name"]
    # Nothing but the pins and the copied nbtrack.
    assert set(versions) == {normalize_name(p["name"]) for p in recorded["packages"]}


@pytest.mark.kernel
def test_the_registered_kernel_imports_the_pinned_marker_and_loads_nbtrack(
    recreated: tuple[RecreatedEnv, list[str]],
) -> None:
    env, _ = recreated
    printed = run_in_kernel(
        env,
        [
            f"import {MARKER}; print({MARKER}.__version__)",
            "import sys; print(sys.prefix)",
            "%load_ext nbtrack",
            "import importlib.metadata as md, nbtrack; print(md.version('nbtrack'), nbtrack.__file__)",
        ],
    )
    assert printed[0] == MARKER_VERSION
    assert Path(printed[1]) == env.path
    version, where = printed[3].split()
    assert version == nbtrack.__version__
    assert Path(where).is_relative_to(env.path)


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_an_impossible_pin_fails_naming_it_and_leaves_dest_as_it_was(tmp_path: Path, installer: str) -> None:
    # Given a folder the caller already uses, and a record with a pin no index has
    (tmp_path / "caller.txt").write_text("mine")
    environment = {
        "python": python_record(),
        "packages": [pkg(MARKER, MARKER_VERSION), pkg(IMPOSSIBLE, "1.0")],
    }
    # When the environment is recreated there
    with pytest.raises(
        CannotReplay, match=rf"could not install `{IMPOSSIBLE}==1\.0` \(.*{IMPOSSIBLE}"
    ) as err:
        recreate_environment(environment, tmp_path, say=lambda _: None, installer=installer)  # type: ignore[arg-type]
    # Then the error says how to get on, and only the caller's file is left
    assert "--env current" in str(err.value) and "\n" not in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == ["caller.txt"]


def test_a_missing_version_of_a_pin_is_reported_as_such(tmp_path: Path) -> None:
    environment = {"python": python_record(), "packages": [pkg(MARKER, "9.9")]}
    with pytest.raises(
        CannotReplay, match=rf"`{MARKER}==9\.9` \(no version 9\.9 of {MARKER} on the package index"
    ):
        recreate_environment(environment, tmp_path / "new", say=lambda _: None)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2.7.18", r"Python 2\.7\.18, older than the 3\.10 a replay kernel needs"),
        ("3.99.1", r"no Python 3\.99 interpreter is on this machine .*; install Python 3\.99"),
    ],
)
@pytest.mark.parametrize("installer", ["auto", "pip"])
def test_an_unavailable_python_cannot_be_replayed(
    tmp_path: Path, version: str, expected: str, installer: str
) -> None:
    environment = {"python": python_record(version), "packages": [pkg(MARKER, MARKER_VERSION)]}
    with pytest.raises(CannotReplay, match=expected) as err:
        recreate_environment(environment, tmp_path, say=lambda _: None, installer=installer)  # type: ignore[arg-type]
    assert "replay with --env current" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_another_patch_release_and_a_missing_ipykernel_are_noted(tmp_path: Path) -> None:
    # Given a record from a patch release of this Python that is not here, without ipykernel
    major, minor = sys.version_info[:2]
    environment = {"python": python_record(f"{major}.{minor}.99"), "packages": [pkg(MARKER, MARKER_VERSION)]}
    said: list[str] = []
    # When it is recreated
    env = recreate_environment(environment, tmp_path, say=said.append)
    # Then the same X.Y is used, ipykernel comes unpinned, and both are noted for the drift report
    assert env.python_version.startswith(f"{major}.{minor}.") and env.python_version != f"{major}.{minor}.99"
    assert any(f"instead of the recorded {major}.{minor}.99" in note for note in env.notes)
    assert any("ipykernel" in note for note in env.notes)
    assert any(f"(recorded {major}.{minor}.99)" in line for line in said)
    versions = {
        normalize_name(p["name"]): p["version"] for p in interpreter_environment(env.python)["packages"]
    }
    assert versions[MARKER] == MARKER_VERSION and "ipykernel" in versions


def test_an_existing_venv_in_dest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "venv").mkdir()
    with pytest.raises(
        UsageError, match="venv already exists; recreate the environment into an empty folder"
    ):
        recreate_environment({"python": python_record(), "packages": []}, tmp_path, say=lambda _: None)
    assert [p.name for p in tmp_path.iterdir()] == ["venv"]
