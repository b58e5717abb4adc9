"""``nbtrack demo``: a fresh git + DVC project with the quickstart notebook, executed and tracked."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack.errors import NbtrackError, UsageError

if TYPE_CHECKING:
    from nbtrack.runs.service import Runs

EXAMPLE = "quickstart.ipynb"


def example_notebook() -> Path:
    """The quickstart notebook: shipped inside the wheel, or in the source tree's ``examples/``."""
    for candidate in (
        Path(__file__).resolve().parents[1] / "_examples" / EXAMPLE,
        Path(__file__).resolve().parents[2] / "examples" / EXAMPLE,
    ):
        if candidate.is_file():
            return candidate
    raise NbtrackError(f"the example {EXAMPLE} is missing from this installation; reinstall nbtrack")


def make_churn_csv(path: Path, rows: int = 2000, seed: int = 42) -> Path:
    """Write a synthetic customer-churn table (deterministic for a seed)."""
    import numpy as np  # pandas/numpy: only for making demo data
    import pandas as pd

    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    charges = rng.normal(70, 20, rows).round(2)
    calls = rng.poisson(1.5, rows)
    contract = rng.choice([1, 12, 24], rows, p=[0.5, 0.3, 0.2])
    logit = 1.0 - 0.06 * tenure + 0.05 * (charges - 70) + 0.9 * calls - 0.08 * contract
    churn = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {"tenure": tenure, "monthly_charges": charges, "support_calls": calls, "contract_months": contract}
    )
    frame["churn"] = churn
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def _run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise NbtrackError(f"`{' '.join(cmd)}` failed in {cwd}: {detail[-1] if detail else proc.returncode}")


def _git_identity(cwd: Path) -> list[str]:
    """``-c`` options giving the demo commit an author when git has none configured."""
    probe = subprocess.run(
        ["git", "config", "user.email"], cwd=cwd, capture_output=True, text=True, check=False
    )
    if probe.stdout.strip():
        return []
    return ["-c", "user.name=nbtrack demo", "-c", "user.email=demo@nbtrack.invalid"]


def run_demo(target: Path, *, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Create the demo project in ``target``, execute its notebook, and return the tracked run's id.

    Example:
        >>> run_demo(Path("nbtrack-demo"))  # doctest: +SKIP
    """
    from nbtrack.runner import execute_notebook

    target = target.resolve()
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} exists and is not empty; pass a new folder: nbtrack demo DIR")
    target.mkdir(parents=True, exist_ok=True)
    say(f"nbtrack demo: creating a git + DVC project in {target}")
    shutil.copy(example_notebook(), target / EXAMPLE)
    make_churn_csv(target / "data" / "churn.csv")
    _run(["git", "init", "-q"], target)
    _run([sys.executable, "-m", "dvc", "init", "-q"], target)
    _run([sys.executable, "-m", "dvc", "add", "-q", "data/churn.csv"], target)
    _run(["git", "add", "-A"], target)
    _run(["git", *_git_identity(target), "commit", "-q", "-m", "nbtrack demo: notebook and data"], target)
    from nbtrack.store import embedded_uri

    out_dir = embedded_uri(target)[1] / "executions"  # inside the store folder, ignored by git
    out_dir.mkdir(parents=True, exist_ok=True)
    say(f"nbtrack demo: executing {EXAMPLE} with papermill (it tracks itself with %track)")
    execute_notebook(target / EXAMPLE, out_dir / EXAMPLE, cwd=target)
    return {"project": str(target), "notebook": EXAMPLE}


def cmd_demo(args: argparse.Namespace, runs: Runs) -> int:
    """``nbtrack demo``: make the project, track its notebook, show the run, replay it."""
    from nbtrack.cli.reading import locate, show_text
    from nbtrack.replay.replayer import replay
    from nbtrack.replay.reports import format_result
    from nbtrack.runs.rows import run_row

    info = run_demo(args.dir)
    args.project = Path(info["project"])
    target = locate(args, runs, str(args.project / info["notebook"]))
    latest = runs.search(target, max_results=1)
    if not latest:
        raise NbtrackError(f"the demo notebook ran but logged no run in {target.display_uri}")
    found, snap = runs.show(target, latest[0].run_id)
    run = found.run
    print()
    print(show_text(run_row(run), snap, found.store.run_url(run)))
    print()
    print(f"nbtrack demo: replaying run {run.run_id} in an isolated workspace (nbtrack replay {run.run_id})")
    result = replay(run.run_id, tracking_uri=target.uri, project=target.project, progress_bar=True)
    print()
    print(format_result(result.to_dict()))
    print()
    print(f"list the project's runs:  cd {target.project} && nbtrack runs")
    return result.exit_code
