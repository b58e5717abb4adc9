"""Real git + DVC repositories for the data-capture tests and benchmark (no mocks).

Plain functions, so the benchmark script can use them without pytest. Every ``dvc`` command runs
as a subprocess of this interpreter (``python -m dvc``) with analytics off; ``hermetic_dvc_env``
keeps DVC's state database and global/system config inside a given folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

GIT_ID = ("-c", "user.name=t", "-c", "user.email=t@t")
# A remote whose URL carries credentials, plus one with a secret that lives in config.local.
REMOTE_USER = "alice"
REMOTE_PASSWORD = "s3cr3t-in-url"
LOCAL_SECRET = "hunter2-in-config-local"
REMOTE_URL = f"https://{REMOTE_USER}:{REMOTE_PASSWORD}@dvc.example.invalid/store"


def hermetic_dvc_env(base: Path) -> dict[str, str]:
    """Variables that keep DVC off the machine's shared state and config (under ``base``)."""
    base.mkdir(parents=True, exist_ok=True)
    for name in ("site-cache", "global-config", "system-config"):
        (base / name).mkdir(exist_ok=True)
    return {
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(base / "site-cache"),
        "DVC_GLOBAL_CONFIG_DIR": str(base / "global-config"),
        "DVC_SYSTEM_CONFIG_DIR": str(base / "system-config"),
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def run(cmd: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """Run a command; raise with its output when it fails."""
    full_env = {**os.environ, "DVC_NO_ANALYTICS": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def git(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """``git args`` in ``repo`` with a test identity; its output without surrounding white space."""
    return run(["git", *GIT_ID, *args], repo, env).strip()


def dvc(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    return run([sys.executable, "-m", "dvc", *args], repo, env)


def write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def make_git_dvc_repo(path: Path, env: Mapping[str, str] | None = None) -> Path:
    """A committed git + DVC project at ``path``.

    It holds ``data/train.csv`` (a file output), ``data/images/`` (a folder output of 3 files),
    ``out/prep.txt`` (the output of pipeline stage ``prep``, recorded in ``dvc.lock``), a default
    remote ``storage`` whose URL carries ``user:password`` and a remote ``backup`` whose secret key
    sits in ``.dvc/config.local``.
    """
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main", env=env)
    dvc(path, "init", "-q", env=env)
    write(path / "data" / "train.csv", "id,label\n1,0\n2,1\n3,1\n")
    for i in range(3):
        write(path / "data" / "images" / f"img{i}.txt", f"image {i}\n" * (i + 1))
    dvc(path, "add", "-q", "data/train.csv", "data/images", env=env)
    write(
        path / "dvc.yaml",
        "stages:\n"
        "  prep:\n"
        "    cmd: python -c \"import pathlib; p = pathlib.Path('out'); p.mkdir(exist_ok=True); "
        "(p / 'prep.txt').write_text(open('data/train.csv').read().upper())\"\n"
        "    deps:\n    - data/train.csv\n"
        "    outs:\n    - out/prep.txt\n",
    )
    dvc(path, "repro", "-q", env=env)
    dvc(path, "remote", "add", "-d", "storage", REMOTE_URL, env=env)
    # What `dvc remote add backup ...` and `dvc remote modify --local backup ...` write (~2 s each).
    with (path / ".dvc" / "config").open("a") as config:
        config.write("['remote \"backup\"']\n    url = s3://bucket/dvc-backup\n")
    write(path / ".dvc" / "config.local", f"['remote \"backup\"']\n    secret_access_key = {LOCAL_SECRET}\n")
    git(path, "add", "-A", env=env)
    git(path, "commit", "-q", "-m", "data", env=env)
    return path


def make_big_repo(
    path: Path, *, nfiles: int = 10_000, big_bytes: int = 1 << 30, env: Mapping[str, str] | None = None
) -> Path:
    """A git + DVC project with one folder output of ``nfiles`` small files and one large file."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main", env=env)
    dvc(path, "init", "-q", env=env)
    folder = path / "data" / "many"
    folder.mkdir(parents=True)
    for i in range(nfiles):
        (folder / f"{i:05d}.txt").write_bytes(f"row {i}\n".encode() * 3)
    chunk = os.urandom(1 << 20)
    with (path / "data" / "big.bin").open("wb") as big:
        for i in range(big_bytes // len(chunk)):
            # Varies every MiB so the file does not compress or deduplicate into something trivial.
            big.write(i.to_bytes(8, "little") + chunk[8:])
    dvc(path, "add", "-q", "data/many", "data/big.bin", env=env)
    git(path, "add", "-A", env=env)
    git(path, "commit", "-q", "-m", "data", env=env)
    return path
