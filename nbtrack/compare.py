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


#: Environment variables whose value changes what a notebook computes or shows, compared whether or not
#: its code names them: the hash seed, the import path, thread counts of the BLAS/OpenMP libraries
#: (summation order), the GPUs and their determinism switches, time zone, locale, matplotlib's backend.
RESULT_VARIABLES = (
    "PYTHONHASHSEED",
    "PYTHONPATH",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC",
    "TZ",
    "LANG",
    "LC_ALL",
    "LC_NUMERIC",
    "LC_TIME",
    "MPLBACKEND",
)
#: The Python facts that make two interpreters compute differently (``executable`` and ``prefix`` do not).
_PYTHON_BUILD = ("implementation", "version", "build", "compiler")
_REDACTED = "[REDACTED]"  # nbtrack.redact's mark (foundation imports no adapter; redact is foundation)


def _python_label(py: dict[str, Any], full: bool) -> str:
    label = f"{py.get('implementation') or 'Python'} {py.get('version')}"
    return f"{label} ({py.get('build')}; {py.get('compiler')})" if full else label


def diff_python(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    """The interpreter's implementation, version and build (build string, compiler), where they differ.

    A fact only one side recorded (an older snapshot) is not compared.

    Example:
        >>> diff_python({"implementation": "CPython", "version": "3.11.2"}, {"implementation": "CPython",
        ...             "version": "3.12.1"})
        {'a': 'CPython 3.11.2', 'b': 'CPython 3.12.1', 'fields': ['version']}
    """
    fields = [k for k in _PYTHON_BUILD if a.get(k) is not None and b.get(k) is not None and a[k] != b[k]]
    if not fields:
        return None
    full = any(k in ("build", "compiler") for k in fields)
    return {"a": _python_label(a, full), "b": _python_label(b, full), "fields": fields}


def _variable_row(name: str, ea: dict[str, Any], eb: dict[str, Any], same_key: bool) -> dict[str, Any] | None:
    """One variable's drift row (None: no drift), or ``{"name", "not_compared": why}``."""
    va, vb = (ea.get("env_vars") or {}).get(name), (eb.get("env_vars") or {}).get(name)
    secret = any(v is not None and _REDACTED in v for v in (va, vb))
    if va is None or vb is None:
        differs, by = (va is None) != (vb is None), "presence"
    elif same_key:
        ha = (ea.get("env_hashes") or {}).get("hashes") or {}
        hb = (eb.get("env_hashes") or {}).get("hashes") or {}
        differs, by = ha.get(name) != hb.get(name), "keyed hash"
        # Same shown value, other hash: the difference is in a part redaction removed (a URL's password).
        secret = secret or va == vb
    elif secret:
        return {"name": name, "not_compared": "a secret hashed with another key (another user or machine)"}
    else:
        differs, by = va != vb, "value"
    if not differs:
        return None
    # Shown only as recorded (already redacted); a secret never shows, changed or not.
    return {"name": name, "a": va, "b": vb, "secret": secret, "compared_by": by}


def diff_variables(ea: dict[str, Any], eb: dict[str, Any]) -> dict[str, Any]:
    """Drift of the environment variables that matter: those either run's notebook read by name
    (``variables_read``, recorded at ``%track stop``) and :data:`RESULT_VARIABLES`.

    Values are compared by their keyed hashes when both runs hashed with the same key, so a changed
    secret is found without either value being stored; else by the recorded value when not secret.

    Example:
        >>> keyed = {"key_id": "k", "hashes": {"TZ": "1f"}}
        >>> a = {"env_vars": {"TZ": "UTC"}, "env_hashes": keyed}
        >>> b = {"env_vars": {"TZ": "Europe/Paris"}, "env_hashes": {"key_id": "k", "hashes": {"TZ": "9c"}}}
        >>> [(r["name"], r["a"], r["b"], r["why"]) for r in diff_variables(a, b)["changed"]]
        [('TZ', 'UTC', 'Europe/Paris', 'changes results')]
    """
    read = set(ea.get("variables_read") or []) | set(eb.get("variables_read") or [])
    ka, kb = (ea.get("env_hashes") or {}).get("key_id"), (eb.get("env_hashes") or {}).get("key_id")
    same_key = ka is not None and ka == kb
    changed: list[dict[str, Any]] = []
    not_compared: list[dict[str, Any]] = []
    names = sorted(read | set(RESULT_VARIABLES))
    for name in names:
        row = _variable_row(name, ea, eb, same_key)
        if row is None:
            continue
        if "not_compared" in row:
            not_compared.append(row)
            continue
        row["why"] = "read by the notebook" if name in read else "changes results"
        changed.append(row)
    return {"compared": len(names) - len(not_compared), "changed": changed, "not_compared": not_compared}


def diff_environment(a: Snapshot, b: Snapshot) -> dict[str, Any]:
    """Python build, package and environment-variable drift between two environment sections.

    ``python``: :func:`diff_python`; ``added`` / ``removed`` / ``changed``: packages;
    ``variables``: :func:`diff_variables` (absent when either side recorded no variables, as a
    replay that logged no snapshot of its own).

    Example:
        >>> diff_environment(original_snapshot, replay_snapshot)["variables"]["changed"]  # doctest: +SKIP
        [{'name': 'API_TOKEN', 'a': '[REDACTED]', 'b': '[REDACTED]', 'secret': True, ...}]
    """
    ea, eb = a.section("environment"), b.section("environment")
    if ea.status != "ok" or eb.status != "ok":
        return {"available": False, "reason": "an environment section is missing"}
    pa = {p["name"]: p.get("version") for p in ea.data.get("packages", [])}
    pb = {p["name"]: p.get("version") for p in eb.data.get("packages", [])}
    drift: dict[str, Any] = {
        "available": True,
        "python": diff_python(ea.data.get("python") or {}, eb.data.get("python") or {}),
        "added": sorted(({"name": n, "version": pb[n]} for n in set(pb) - set(pa)), key=lambda r: r["name"]),
        "removed": sorted(
            ({"name": n, "version": pa[n]} for n in set(pa) - set(pb)), key=lambda r: r["name"]
        ),
        "changed": [{"name": n, "a": pa[n], "b": pb[n]} for n in sorted(set(pa) & set(pb)) if pa[n] != pb[n]],
    }
    if "env_vars" in ea.data and "env_vars" in eb.data:
        drift["variables"] = diff_variables(ea.data, eb.data)
    return drift


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


def is_injected_parameters(source: str) -> bool:
    """Whether a cell is papermill's injected-parameters cell (it starts with this comment line).

    Example:
        >>> is_injected_parameters("# Parameters")
        True
    """
    return source.startswith("# Parameters\n") or source == "# Parameters"


def diff_cells(a: list[str], b: list[str]) -> list[dict[str, Any]]:
    """Cell-level differences between two lists of code cells.

    papermill's injected-parameters cell is not code the user wrote (its values are parameters, and
    compared as such): it is left out on both sides, and cells are numbered (1-based) as in the
    notebook without it.

    Example:
        >>> diff_cells(["a = 1", "b = a"], ["a = 1", "# Parameters\\na = 2\\n", "b = a * 2"])[0]["op"]
        'changed'
    """
    a = [s for s in a if not is_injected_parameters(s)]
    b = [s for s in b if not is_injected_parameters(s)]
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
