"""Lineage: from what is deployed back to the run that made it (``nbtrack provenance``).

A target is one of::

    models:/NAME/VERSION   a registered model version (VERSION may be ``latest``) -> its run (MLflow 3:
    models:/NAME@ALIAS     also the source run of the logged model its ``models:/m-...`` source
                           names); an alias -> its version
    models:/m-...          an MLflow 3 logged model -> its source run
    runs:/RUN_ID/PATH      a run (id or unique prefix), and the model or artifacts at PATH
    path/to/model.pkl      a file: its sha256 matched against the artifacts of the store's runs and of
                           their logged models (only files of the same size are read or downloaded),
                           its md5 (DVC's hash) against the DVC outputs nbtrack recorded as produced

:func:`resolve_target` finds the run(s), newest first; :func:`provenance` gathers what was recorded
about one (notebook, commit and diff, data hashes, environment, who ran it, its replays and their
verdicts) through the runs service and the run's snapshot. Nothing found is a
:class:`~nbtrack.errors.NoProvenanceError` (exit 19) saying what was searched.

Example:
    >>> lineage = resolve_target(runs, target, "models:/churn@champion")  # doctest: +SKIP
    >>> facts = provenance(runs, target, lineage.matches[0])  # doctest: +SKIP
    >>> facts["name"], facts["notebook"]  # doctest: +SKIP
    ('baseline', 'train.ipynb')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtrack.errors import NoProvenanceError, UsageError
from nbtrack.models import RunRecord
from nbtrack.runs.rows import format_time
from nbtrack.runs.service import Runs, Target
from nbtrack.store import MlflowStore
from nbtrack.store.local_artifacts import file_hashes
from nbtrack.store.models import (
    ModelRef,
    blob_sha256,
    blobs,
    experiment_name,
    logged_model_info,
    logged_models,
    registered_version,
    run_model,
    runs_producing,
)
from nbtrack.tags import GIT_BRANCH, GIT_COMMIT, GIT_DIRTY, REPLAY_OF, REPLAY_VERDICT, SOURCE_NAME

#: Runs whose artifacts a file is matched against, newest first (one listing each on a server).
SCAN_RUNS = 500
#: Packages a provenance names beside Python, when the run had them installed.
KEY_PACKAGES = (
    "mlflow",
    "numpy",
    "pandas",
    "polars",
    "scipy",
    "scikit-learn",
    "xgboost",
    "lightgbm",
    "catboost",
    "torch",
    "tensorflow",
    "keras",
    "jax",
    "transformers",
    "statsmodels",
)
_USAGE = "give models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH or the path of a file"


@dataclass(frozen=True)
class Match:
    """A run the target leads to, how it was found (``via``), and the store holding it."""

    run: RunRecord
    via: str
    store: MlflowStore


@dataclass(frozen=True)
class Lineage:
    """What a target resolved to.

    Attributes:
        spec: the target as given.
        kind: ``model`` (``models:/``), ``run`` (``runs:/``) or ``file``.
        matches: the runs, newest first (several for a file several runs produced).
        model: the model the target names (what ``nbtrack replay models:/...`` compares), if any.
        hashes: a file's ``sha256`` and ``md5``.
        searched: what a file was matched against, in words.
    """

    spec: str
    kind: str
    matches: list[Match]
    model: ModelRef | None = None
    hashes: dict[str, str] = field(default_factory=dict)
    searched: str = ""


def is_model_target(text: str) -> bool:
    """Whether ``text`` is a ``models:/`` or ``runs:/`` URI rather than a run id or a file.

    Example:
        >>> is_model_target("models:/churn@champion"), is_model_target("3f2a9c41")
        (True, False)
    """
    return text.startswith(("models:/", "runs:/"))


def parse_model_uri(spec: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` as (name, version, alias).

    Example:
        >>> parse_model_uri("models:/churn@champion"), parse_model_uri("models:/churn/3")
        (('churn', None, 'champion'), ('churn', '3', None))
    """
    rest = spec[len("models:/") :].strip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if name and alias and "/" not in alias:
            return name, None, alias
    else:
        name, _, version = rest.partition("/")
        if name and (version.isdigit() or version == "latest" or (not version and name.startswith("m-"))):
            return name, version or None, None
    raise UsageError(f"{spec}: not a model URI; {_USAGE}")


def resolve_target(runs: Runs, target: Target, spec: str) -> Lineage:
    """The run(s) that produced what ``spec`` names, newest first.

    Raises:
        NoProvenanceError: no such model version or alias, or no run holds or produced the file.
        UsageError: ``spec`` is no model URI and no existing file.
    """
    if target.store is None:
        raise NoProvenanceError(
            f"{spec}: no nbtrack store in {target.project} to search; pass --project DIR or "
            "--tracking-uri URI"
        )
    if spec.startswith("models:/"):
        return _from_model(runs, target, spec)
    if spec.startswith("runs:/"):
        return _from_run_uri(runs, target, spec)
    return _from_file(runs, target, target.store, Path(spec))


def _from_model(runs: Runs, target: Target, spec: str) -> Lineage:
    store = target.require_store(spec)
    name, version, alias = parse_model_uri(spec)
    if version is None and alias is None:  # models:/m-...: a logged model
        ref = _logged(store, spec, name)
        via = f"logged model {name}"
    else:
        ref = registered_version(store, name, version=version, alias=alias)
        via = f"registered model {name} version {ref.version}" + (f" (alias @{alias})" if alias else "")
    if ref.run_id is None:
        raise NoProvenanceError(
            f"{spec}: {via} names no run that produced it (a model registered from outside a run); "
            "nothing nbtrack recorded leads back from it"
        )
    found = runs.resolve(target, ref.run_id)
    return Lineage(spec, "model", [Match(found.run, via, found.store)], model=ref)


def _logged(store: MlflowStore, spec: str, model_id: str) -> ModelRef:
    info = logged_model_info(store, model_id)
    if info is None:
        raise NoProvenanceError(
            f"{spec}: no logged model {model_id} in {store.display_uri}; check the id, or pass --tracking-uri"
        )
    return ModelRef(spec, info["source_run_id"], model_id=model_id, model_name=info["name"])


def _from_run_uri(runs: Runs, target: Target, spec: str) -> Lineage:
    run_id, _, path = spec[len("runs:/") :].partition("/")
    if not run_id:
        raise UsageError(f"{spec}: no run id; {_USAGE}")
    found = runs.resolve(target, run_id)
    ref = run_model(found.store, found.run_id, path) if path.strip("/") else None
    via = f"run {found.run_id}" + (f", {path}" if path else "")
    return Lineage(spec, "run", [Match(found.run, via, found.store)], model=ref)


def _from_file(runs: Runs, target: Target, store: MlflowStore, path: Path) -> Lineage:
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise UsageError(f"{path}: {what}; {_USAGE}")
    sha, md5 = file_hashes(path)
    size = path.stat().st_size
    candidates = runs.search(target, max_results=SCAN_RUNS)
    by_id = {r.run_id: r for r in candidates}
    experiments = sorted({r.experiment_id for r in candidates})
    found: dict[str, list[str]] = {}
    for run in candidates:
        for blob in blobs(store, "run", run.run_id, run.artifact_uri, run_id=run.run_id):
            if blob.size in (size, None) and blob_sha256(store, blob) == sha:
                found.setdefault(run.run_id, []).append(f"artifact {blob.path}")
    models = logged_models(store, experiments)
    for model in models:
        for blob in blobs(store, "model", model["model_id"], model["root"], run_id=model["source_run_id"]):
            if blob.run_id and blob.size in (size, None) and blob_sha256(store, blob) == sha:
                found.setdefault(blob.run_id, []).append(f"logged model {model['name']} ({blob.path})")
    for run, output in runs_producing(store, md5, experiments):
        by_id.setdefault(run.run_id, run)
        found.setdefault(run.run_id, []).append(f"DVC output {output} (md5 {md5})")
    searched = (
        f"the artifacts of {len(candidates)} run(s), {len(models)} logged model(s) and the DVC outputs "
        f"recorded as produced in {target.display_uri}"
    )
    if not found:
        raise NoProvenanceError(
            f"{path} (sha256 {sha[:12]}, md5 {md5}) matches nothing: searched {searched}; "
            "a file no tracked run logged or wrote as a DVC output has no recorded provenance"
        )
    matched = []
    for run_id, vias in found.items():
        run = by_id.get(run_id) or store.get_run(run_id)
        replayed = f" (a replay of run {run.tags[REPLAY_OF]})" if REPLAY_OF in run.tags else ""
        matched.append(Match(run, "; ".join(vias) + replayed, store))
    # The runs that made it first, newest first; replays that re-created it after them.
    matched.sort(key=lambda m: (REPLAY_OF in m.run.tags, -(m.run.start_time or 0)))
    return Lineage(str(path), "file", matched, hashes={"sha256": sha, "md5": md5}, searched=searched)


def provenance(runs: Runs, target: Target, match: Match) -> dict[str, Any]:
    """What was recorded about a matched run: the run, notebook, commit and diff, data, environment,
    who ran it, and its replays with their verdicts (newest first).

    Example:
        >>> provenance(runs, target, lineage.matches[0])["replays"]  # doctest: +SKIP
        [{'run_id': '77b0...', 'verdict': 'REPRODUCED', 'start': '2026-12-05 01:40:12'}]
    """
    from nbtrack.errors import SnapshotError

    run, store = match.run, match.store
    try:
        snap = store.load_snapshot(run.run_id)
        sections = {name: snap.section(name) for name in ("git", "data", "environment")}
        missing = None
    except SnapshotError as exc:
        sections, missing = {}, str(exc)
    git = sections["git"].data if "git" in sections else {}
    replays = runs.search(target, tags={REPLAY_OF: run.run_id})
    return {
        "run_id": run.run_id,
        "name": run.name,
        "status": run.status,
        "experiment": experiment_name(store, run.experiment_id) or run.experiment_id,
        "start": format_time(run.start_time),
        "matched_by": match.via,
        "notebook": run.tags.get(SOURCE_NAME),
        "commit": run.tags.get(GIT_COMMIT) or git.get("commit"),
        "branch": run.tags.get(GIT_BRANCH) or git.get("branch"),
        "dirty": run.tags.get(GIT_DIRTY) == "true" or bool(git.get("dirty")),
        "diff_bytes": (git.get("diff") or {}).get("bytes"),
        **_data(sections),
        "environment": _environment(sections),
        "user": run.tags.get("mlflow.user"),
        "metrics": dict(run.metrics),
        "replays": [
            {"run_id": r.run_id, "verdict": r.tags.get(REPLAY_VERDICT), "start": format_time(r.start_time)}
            for r in replays
        ],
        "view": store.run_url(run),
        "snapshot_missing": missing,
    }


def _data(sections: dict[str, Any]) -> dict[str, Any]:
    data = sections["data"].data if "data" in sections else {}
    outputs = [
        {k: o.get(k) for k in ("path", "hash_name", "hash", "status")} for o in data.get("outputs") or []
    ]
    return {"data": outputs, "produced": list(data.get("produced") or [])}


def _environment(sections: dict[str, Any]) -> dict[str, Any]:
    env = sections["environment"].data if "environment" in sections else {}
    versions = {str(p.get("name", "")).lower(): p.get("version") for p in env.get("packages") or []}
    pins = {name: versions[name] for name in KEY_PACKAGES if versions.get(name)}
    return {"python": (env.get("python") or {}).get("version"), "pins": pins}
