"""Compare two runs: parameters, metrics, environment, data versions and code cells.

The same structured diff serves ``nbtrack diff``, the replay report and the panel. It is computed
from each run's MLflow params/metrics and its ``snapshot.json`` (plus the recorded notebook for the
cell-level code diff); nothing here talks to MLflow but through the store.
"""

from __future__ import annotations

import difflib
from typing import Any

from nbtrack.capture.notebook import cell_source, code_cells, parse_artifact
from nbtrack.models import Snapshot


def _changes(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Keys whose values differ, with both sides (None where a side lacks the key)."""
    return [
        {"name": key, "a": a.get(key), "b": b.get(key)}
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def diff_metrics(a: dict[str, float], b: dict[str, float]) -> list[dict[str, Any]]:
    out = _changes(a, b)
    for row in out:
        if row["a"] is not None and row["b"] is not None:
            row["difference"] = row["b"] - row["a"]
    return out


def diff_environment(a: Snapshot, b: Snapshot) -> dict[str, Any]:
    """Python version and package drift between two environment sections."""
    ea, eb = a.section("environment"), b.section("environment")
    if ea.status != "ok" or eb.status != "ok":
        return {"available": False, "reason": "an environment section is missing"}
    pa = {p["name"]: p.get("version") for p in ea.data.get("packages", [])}
    pb = {p["name"]: p.get("version") for p in eb.data.get("packages", [])}
    va, vb = ea.data.get("python", {}).get("version"), eb.data.get("python", {}).get("version")
    return {
        "available": True,
        "python": None if va == vb else {"a": va, "b": vb},
        "added": sorted(({"name": n, "version": pb[n]} for n in set(pb) - set(pa)), key=lambda r: r["name"]),
        "removed": sorted(
            ({"name": n, "version": pa[n]} for n in set(pa) - set(pb)), key=lambda r: r["name"]
        ),
        "changed": [{"name": n, "a": pa[n], "b": pb[n]} for n in sorted(set(pa) & set(pb)) if pa[n] != pb[n]],
    }


def diff_data(a: Snapshot, b: Snapshot) -> list[dict[str, Any]]:
    """DVC outputs whose recorded hash or workspace status differs (or that only one run used)."""

    def outputs(s: Snapshot) -> dict[str, dict[str, Any]]:
        section = s.section("data")
        return {o["path"]: o for o in section.data.get("outputs", [])} if section.status == "ok" else {}

    oa, ob = outputs(a), outputs(b)
    rows = []
    for path in sorted(set(oa) | set(ob)):
        x, y = oa.get(path) or {}, ob.get(path) or {}
        if (x.get("hash"), x.get("status")) != (y.get("hash"), y.get("status")):
            rows.append(
                {
                    "path": path,
                    "a": {"hash": x.get("hash"), "status": x.get("status")} if x else None,
                    "b": {"hash": y.get("hash"), "status": y.get("status")} if y else None,
                }
            )
    return rows


def diff_cells(a: list[str], b: list[str]) -> list[dict[str, Any]]:
    """Cell-level differences between two lists of code cells (1-based cell numbers)."""
    rows: list[dict[str, Any]] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        # Inside a replaced block, cells pair up by position (an edited cell stays "changed");
        # what is left over on one side was added or removed.
        paired = min(i2 - i1, j2 - j1)
        for k in range(paired):
            patch = difflib.unified_diff(
                a[i1 + k].splitlines(), b[j1 + k].splitlines(), "a", "b", lineterm=""
            )
            rows.append(
                {"op": "changed", "a_cell": i1 + k + 1, "b_cell": j1 + k + 1, "diff": "\n".join(patch)}
            )
        rows.extend({"op": "removed", "a_cell": i + 1, "source": a[i]} for i in range(i1 + paired, i2))
        rows.extend({"op": "added", "b_cell": j + 1, "source": b[j]} for j in range(j1 + paired, j2))
    return rows


def diff_git(a: Snapshot, b: Snapshot) -> dict[str, Any]:
    """Commit, branch, dirty flag and uncommitted-diff digest, where the two runs differ."""
    ga, gb = a.section("git").data, b.section("git").data
    fields = {key: (ga.get(key), gb.get(key)) for key in ("commit", "branch", "dirty")}
    fields["diff_sha256"] = ((ga.get("diff") or {}).get("sha256"), (gb.get("diff") or {}).get("sha256"))
    return {key: {"a": x, "b": y} for key, (x, y) in fields.items() if x != y}


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
        "params": _changes(dict(runs[0].params), dict(runs[1].params)),
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
