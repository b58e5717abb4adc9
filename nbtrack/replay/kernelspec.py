"""The kernel of a recreated environment: the replaying nbtrack copied in, a kernelspec registered
beside the venv (never in the user's Jupyter folders), and the scan of what the venv holds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import nbtrack
from nbtrack.errors import CaptureError

__all__ = ["copy_nbtrack", "interpreter_environment", "register_kernel"]


def copy_nbtrack(site: Path) -> None:
    """Make the replaying nbtrack importable in the venv, with metadata for importlib.metadata."""
    src = Path(nbtrack.__file__).parent
    target = site / "nbtrack"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    info = site / f"nbtrack-{nbtrack.__version__}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: nbtrack\nVersion: {nbtrack.__version__}\n")
    (info / "INSTALLER").write_text("nbtrack-replay\n")
    records = []
    for path in sorted(p for p in [*target.rglob("*"), info / "METADATA", info / "INSTALLER"] if p.is_file()):
        digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
        records.append(f"{path.relative_to(site).as_posix()},sha256={digest},{path.stat().st_size}")
    records.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(records) + "\n")


def register_kernel(kernels: Path, python: Path, version: str, run_id: str | None, venv: Path) -> str:
    """Write a kernelspec for ``python`` under ``kernels``; its (random) kernel name.

    Example:
        >>> register_kernel(dest / "kernels", env_python, "3.11.7", "3f2a9c", dest / "venv")  # doctest: +SKIP
        'nbtrack-replay-3f2a9c1e'
    """
    kernel_name = f"nbtrack-replay-{secrets.token_hex(4)}"
    spec_dir = kernels / kernel_name
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {version} (nbtrack replay{' of run ' + run_id if run_id else ''})",
        "language": "python",
        "metadata": {"nbtrack": {"run_id": run_id, "venv": str(venv)}},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    return kernel_name


_SCAN = """\
import json, sys
sys.path.append({root!r})
from nbtrack.capture.environment import interpreter_facts
if sys.path[-1] == {root!r}:
    sys.path.pop()
print(json.dumps(interpreter_facts()))
"""


def interpreter_environment(python: Path) -> dict[str, Any]:
    """The ``python`` and ``packages`` of another interpreter's environment section, scanned there.

    Runs nbtrack's own scan in a subprocess of ``python``: its own nbtrack when it has one, else
    this one's (appended to its ``sys.path`` for the import and removed before the scan). The
    interpreter needs traitlets, which every venv with ipykernel has.

    Example:
        >>> interpreter_environment(env.python)["python"]["version"]
        '3.11.7'
    """
    root = str(Path(nbtrack.__file__).parent.parent)
    try:
        proc = subprocess.run(
            [str(python), "-c", _SCAN.format(root=root)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CaptureError(f"cannot scan the packages of {python}: {exc}; check that it runs") from exc
    if proc.returncode != 0 or not proc.stdout.strip():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CaptureError(
            f"cannot scan the packages of {python}: {last}; check that it runs and has traitlets"
        )
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data
