"""Compare two runs: parameters, metrics, environment, data versions and code cells.

The same structured diff serves ``nbtrack diff``, the replay report and the panel. It is computed
from each run's MLflow params/metrics and its ``snapshot.json`` (plus the recorded notebook for the
cell-level code diff); nothing here talks to MLflow but through the store.
"""

from __future__ import annotations

from typing import Any

from nbtrack.capture.notebook import cell_source, code_cells, parse_artifact
from nbtrack.compare import changes, diff_cells, diff_data, diff_environment, diff_git, diff_metrics


def _sources(notebook: dict[str, Any] | None) -> list[str]:
    return [cell_source(c) for c in code_cells(notebook)] if notebook else []


def recorded_notebook(store: Any, run_id: str, name: str) -> dict[str, Any] | None:
    """A run's notebook artifact ``nbtrack/<name>``, parsed; None when the run has none.

    Raises:
        SnapshotError: the artifact is there but is not a notebook (damaged).
    """
    text = store.read_artifact(run_id, name)
    return None if text is None else parse_artifact(text, run_id, name)


def diff_runs(store: Any, run_a: str, run_b: str) -> dict[str, Any]:
    """The structured diff of two runs of one store.

    Example:
        >>> diff_runs(store, "3f2a...", "9c41...")["params"]  # doctest: +SKIP
        [{'name': 'alpha', 'a': '0.1', 'b': '0.5'}]
    """
    runs = [store.get_run(run_a), store.get_run(run_b)]
    snaps = [store.load_snapshot(run_a), store.load_snapshot(run_b)]
    notebooks = []
    missing = []
    for run_id, snap in zip((run_a, run_b), snaps, strict=True):
        name = "notebook.ipynb" if snap.section("notebook").data.get("stored") else "history.ipynb"
        notebook = recorded_notebook(store, run_id, name)
        if notebook is None:
            missing.append(f"run {run_id} has no nbtrack/{name} artifact (deleted?)")
        notebooks.append(notebook)
    return {
        "a": {"run_id": run_a, "name": runs[0].name, "status": runs[0].status},
        "b": {"run_id": run_b, "name": runs[1].name, "status": runs[1].status},
        "params": changes(dict(runs[0].params), dict(runs[1].params)),
        "metrics": diff_metrics(dict(runs[0].metrics), dict(runs[1].metrics)),
        "environment": diff_environment(*snaps),
        "data": diff_data(*snaps),
        "git": diff_git(*snaps),
        "cells": [] if missing else diff_cells(*(_sources(nb) for nb in notebooks)),
        # Why the code cells were not compared, when they were not.
        "cells_reason": "; ".join(missing) + "; code cells not compared" if missing else None,
    }


def format_diff(d: dict[str, Any]) -> str:
    """A person-readable rendering of :func:`diff_runs`' result."""
    lines = [f"a: {d['a']['run_id']} ({d['a']['name']}, {d['a']['status']})"]
    lines.append(f"b: {d['b']['run_id']} ({d['b']['name']}, {d['b']['status']})")

    def section(title: str, rows: list[str]) -> None:
        lines.append(f"\n{title}: " + ("no differences" if not rows else ""))
        lines.extend(f"  {r}" for r in rows)

    section("params", [f"{r['name']}: {r['a']} -> {r['b']}" for r in d["params"]])
    section(
        "metrics",
        [
            f"{r['name']}: {r['a']} -> {r['b']}"
            + (f"  ({r['difference']:+.6g})" if r.get("difference") is not None else "")
            for r in d["metrics"]
        ],
    )
    env = d["environment"]
    env_rows = [] if env.get("available") else [env.get("reason", "")]
    if env.get("python"):
        env_rows.append(f"python: {env['python']['a']} -> {env['python']['b']}")
    for r in (env.get("variables") or {}).get("changed") or []:
        # As recorded (already redacted): a changed secret shows [REDACTED] on both sides.
        env_rows.append(f"${r['name']}: {r.get('a') or 'unset'} -> {r.get('b') or 'unset'}")
    env_rows += [f"{r['name']}: {r['a']} -> {r['b']}" for r in env.get("changed", [])]
    env_rows += [f"+ {r['name']}=={r['version']}" for r in env.get("added", [])]
    env_rows += [f"- {r['name']}=={r['version']}" for r in env.get("removed", [])]
    section("environment", env_rows)

    def side(x: dict[str, Any] | None) -> str:
        return "absent" if x is None else f"{x['hash']} ({x['status']})"

    section("data", [f"{r['path']}: {side(r['a'])} -> {side(r['b'])}" for r in d["data"]])
    git = d["git"]
    section(
        "git",
        [] if git is None else [f"{k}: {v['a']} -> {v['b']}" for k, v in git.items() if v["a"] != v["b"]],
    )
    cell_rows = []
    for r in d["cells"]:
        if r["op"] == "changed":
            cell_rows.append(f"cell {r['a_cell']} changed:")
            cell_rows.extend("    " + line for line in r["diff"].splitlines()[2:])
        elif r["op"] == "added":
            cell_rows.append(
                f"cell {r['b_cell']} added: {r['source'].splitlines()[0] if r['source'] else ''}"
            )
        else:
            cell_rows.append(
                f"cell {r['a_cell']} removed: {r['source'].splitlines()[0] if r['source'] else ''}"
            )
    section("code cells", [d["cells_reason"]] if d.get("cells_reason") else cell_rows)
    return "\n".join(lines)
