"""The environment section, against this very virtualenv and against hand-built site folders."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from nbtrack.capture.base import CaptureContext, run_provider
from nbtrack.capture.environment import (
    EnvironmentProvider,
    normalize_name,
    requirements_txt,
    scan_distributions,
)
from nbtrack.config import NbtrackConfig
from nbtrack.redact import REDACTED


def _capture(tmp_path: Path, config: NbtrackConfig | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
    ctx = CaptureContext(project_root=tmp_path, config=config or NbtrackConfig())
    section, files = run_provider(EnvironmentProvider(), ctx)
    assert section.status == "ok", section.reason
    return section.data, files


def _dist(
    site: Path,
    name: str,
    version: str,
    direct_url: dict[str, Any] | None = None,
    folder: str | None = None,
) -> Path:
    """A minimal installed distribution, laid out the way pip leaves one."""
    d = site / (folder or f"{name.replace('-', '_')}-{version}.dist-info")
    d.mkdir(parents=True)
    (d / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test\n\nLong description.\n"
    )
    if direct_url is not None:
        (d / "direct_url.json").write_text(json.dumps(direct_url))
    return d


def test_python_platform_hardware(tmp_path: Path) -> None:
    data, _ = _capture(tmp_path)
    py = data["python"]
    assert py["version"] == platform.python_version()
    assert py["implementation"] == platform.python_implementation()
    assert py["executable"] == sys.executable
    assert py["in_virtualenv"] is (sys.prefix != sys.base_prefix)
    assert py["compiler"] == platform.python_compiler() and py["build"] == ", ".join(platform.python_build())
    assert data["platform"]["system"] == platform.system()
    assert data["platform"]["machine"] == platform.machine()
    assert data["platform"]["platform"].startswith(f"{platform.system()}-{platform.release()}")
    hw = data["hardware"]
    assert hw["cpu_count"] == os.cpu_count()
    assert hw["memory_total_bytes"] > 0
    if shutil.which("nvidia-smi") is None:
        assert hw["gpus"] == []
    json.dumps(data)  # the section must be JSON as it is


def test_packages_match_importlib_and_mark_editable(tmp_path: Path) -> None:
    data, _ = _capture(tmp_path)
    by_name = {normalize_name(p["name"]): p for p in data["packages"]}
    for name in ("pytest", "nbtrack", "traitlets", "hypothesis", "mlflow"):
        assert by_name[name]["version"] == importlib.metadata.version(name), name
    nbtrack = by_name["nbtrack"]
    assert nbtrack["editable"] is True
    assert nbtrack["direct_url"].startswith("file://")
    assert by_name["pytest"]["editable"] is False
    assert by_name["pytest"]["direct_url"] is None
    keys = [normalize_name(p["name"]) for p in data["packages"]]
    assert keys == sorted(keys)


def test_scan_equals_importlib_first_occurrence_set() -> None:
    """Same names as importlib.metadata, and each at the version import would load."""
    scanned = {normalize_name(p["name"]): p["version"] for p in scan_distributions()}
    from_importlib = {normalize_name(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    assert set(scanned) == from_importlib
    for name, version in scanned.items():
        assert importlib.metadata.version(name) == version, name


def test_first_occurrence_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(first, "Foo_Bar", "1.0")
    _dist(second, "foo-bar", "2.0")
    _dist(second, "baz", "3.0")
    paths = [str(first), str(tmp_path / "missing"), str(second)]
    got = {normalize_name(p["name"]): p["version"] for p in scan_distributions(paths)}
    assert got == {"foo-bar": "1.0", "baz": "3.0"}
    # importlib.metadata's own answer for the same path list
    expected: dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=paths):
        expected.setdefault(normalize_name(dist.metadata["Name"]), dist.version)
    assert got == expected
    got_rev = {normalize_name(p["name"]): p["version"] for p in scan_distributions(paths[::-1])}
    assert got_rev["foo-bar"] == "2.0"


def test_egg_info_and_long_headers(tmp_path: Path) -> None:
    site = tmp_path / "site"
    egg_dir = site / "legacy-0.9-py3.11.egg-info"
    egg_dir.mkdir(parents=True)
    (egg_dir / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: legacy\nVersion: 0.9\n")
    (site / "oldfile-1.1.egg-info").write_text("Metadata-Version: 1.0\nName: oldfile\nVersion: 1.1\n")
    # Version after 2 kB of headers: the reader must look past its first chunk.
    classifiers = "".join(f"Classifier: Topic :: Thing {i}\n" for i in range(200))
    d = site / "wordy-5.0.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: wordy\n{classifiers}Version: 5.0\n\nbody\n")
    got = {p["name"]: p["version"] for p in scan_distributions([str(site)])}
    assert got == {"legacy": "0.9", "oldfile": "1.1", "wordy": "5.0"}


def test_new_distribution_is_seen_on_rescan(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _dist(site, "one", "1.0")
    old = 1_000_000_000  # make the folder look old enough to be cached
    os.utime(site, (old, old))
    assert [p["name"] for p in scan_distributions([str(site)])] == ["one"]
    _dist(site, "two", "2.0")  # what `pip install two` does: the folder's mtime moves
    assert [p["name"] for p in scan_distributions([str(site)])] == ["one", "two"]


def test_direct_url_installs_and_requirements(tmp_path: Path) -> None:
    site = tmp_path / "site"
    sha = "a" * 40
    _dist(site, "plain", "1.0")
    _dist(
        site,
        "fromgit",
        "0.3",
        {
            "url": "https://deploy:gh-s3cretPass@git.example.com/team/fromgit.git",
            "vcs_info": {"vcs": "git", "commit_id": sha, "requested_revision": "main"},
        },
    )
    _dist(
        site,
        "wheelurl",
        "2.0",
        {
            "url": "https://files.example.com/wheelurl-2.0-py3-none-any.whl",
            "archive_info": {"hashes": {"sha256": "b" * 64}},
        },
    )
    _dist(site, "localdir", "0.1", {"url": "file:///srv/src/localdir", "dir_info": {}})
    _dist(site, "mylib", "0.2", {"url": "file:///home/me/mylib", "dir_info": {"editable": True}})
    pkgs = scan_distributions([str(site)])
    by_name = {p["name"]: p for p in pkgs}
    assert by_name["fromgit"]["vcs"] == {"vcs": "git", "commit_id": sha, "requested_revision": "main"}
    assert by_name["fromgit"]["direct_url"] == "https://git.example.com/team/fromgit.git"
    assert by_name["mylib"]["editable"] is True
    assert by_name["localdir"]["editable"] is False
    lines = requirements_txt(pkgs).splitlines()
    assert "plain==1.0" in lines
    assert f"fromgit @ git+https://git.example.com/team/fromgit.git@{sha}" in lines
    assert f"wheelurl @ https://files.example.com/wheelurl-2.0-py3-none-any.whl#sha256={'b' * 64}" in lines
    assert "localdir @ file:///srv/src/localdir" in lines
    editable = [line for line in lines if "mylib" in line]
    assert len(editable) == 1
    assert editable[0].startswith("# ") and "/home/me/mylib" in editable[0]
    assert "s3cretPass" not in json.dumps(pkgs) and "s3cretPass" not in "\n".join(lines)


def test_requirements_txt_of_this_venv(tmp_path: Path) -> None:
    _, files = _capture(tmp_path)
    text = files["requirements.txt"].decode()
    lines = text.splitlines()
    assert f"pytest=={importlib.metadata.version('pytest')}" in lines
    nb_lines = [line for line in lines if line.startswith("# nbtrack==")]
    assert len(nb_lines) == 1 and "editable" in nb_lines[0]
    assert not any(line.startswith("nbtrack") for line in lines)  # no pin for an editable install
    pins = [line for line in lines if line and not line.startswith("#")]
    assert all("==" in line or " @ " in line for line in pins)


def test_secret_env_vars_redacted_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "s3cr3t-value-123")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:Db-pa55word-987@db.internal:5432/app")
    monkeypatch.setenv("MYCO_THING", "private-value-456")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))  # the hash key's folder
    data, files = _capture(tmp_path, NbtrackConfig(redact_env_patterns=["MYCO_*"]))
    env = data["env_vars"]
    assert env["MY_SERVICE_TOKEN"] == REDACTED
    assert env["MYCO_THING"] == REDACTED
    assert env["DATABASE_URL"] == "postgresql://db.internal:5432/app"
    assert env["LANG"] == "C.UTF-8"
    everything = json.dumps(data) + b"".join(files.values()).decode()
    for secret in ("s3cr3t-value-123", "Db-pa55word-987", "private-value-456"):
        assert secret not in everything
    # every value, secrets included, is also kept as a keyed hash (comparable, not reversible)
    hashes = data["env_hashes"]["hashes"]
    assert set(hashes) == set(env) and len(hashes["MY_SERVICE_TOKEN"]) == 32
    assert (tmp_path / "jupyter-data" / "nbtrack" / "environment.key").is_file()
