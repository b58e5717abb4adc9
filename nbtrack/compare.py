"""Comparisons of two runs' recorded facts: params, metrics, environment, data versions, git and
code cells. Pure functions over values and snapshots, shared by the runs service's diff and the
replay's judge (two services, so the code lives below both).
"""

from __future__ import annotations

import difflib
from typing import Any

from nbtrack.models import Snapshot


def changes(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Keys whose values differ, with both sides (None where a side lacks the key)."""
    return [
        {"name": key, "a": a.get(key), "b": b.get(key)}
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def diff_metrics(a: dict[str, float], b: dict[str, float]) -> list[dict[str, Any]]:
    """Metrics that differ, with the difference where both runs have the metric.

    Example:
        >>> diff_metrics({"acc": 0.5}, {"acc": 0.75})
        [{'name': 'acc', 'a': 0.5, 'b': 0.75, 'difference': 0.25}]
    """
    out = changes(a, b)
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
