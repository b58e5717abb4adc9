"""Models in an MLflow store: registered versions, MLflow 3 logged models, and the files of both.

What ``nbtrack provenance`` and ``nbtrack replay models:/...`` need of MLflow's model registry and
logged models, as nbtrack's own records (:class:`ModelRef`, :class:`Blob`), never MLflow objects:

- a registered version (``models:/NAME/VERSION``, ``models:/NAME@ALIAS``) and the run behind it (its
  ``run_id``; with MLflow 3, also the source run of the logged model its ``models:/m-...`` source
  names);
- the files of a model (a logged model's artifact folder, or a folder of a run's artifacts) with
  their sizes, hashed on demand: an embedded store's are read in place, a server's downloaded one
  at a time (a caller filters by size first);
- the runs whose recorded DVC outputs (MLflow dataset inputs, context ``output``) have a digest.

Example:
    >>> ref = registered_version(store, "churn", alias="champion")  # doctest: +SKIP
    >>> ref.run_id, ref.model_id  # doctest: +SKIP
    ('3f2a9c41e0b84d0f9b6a2c1d7e5f4a3b', 'm-0c1d...')
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbtrack.errors import NbtrackError, NoProvenanceError, RunNotFoundError
from nbtrack.models import RunRecord
from nbtrack.store import read_registry
from nbtrack.store.local_artifacts import file_hashes, local_folder
from nbtrack.store.mlflow_store import MlflowStore, to_record
from nbtrack.store.read_sqlite import Unsupported
from nbtrack.store.reading import UPLOADING_PREFIX, translate_errors
from nbtrack.tags import DATASET_CONTEXT, DATASET_OUTPUT

#: Files of an MLflow model that describe it rather than hold it: ``MLmodel`` names the run, the
#: model's uuid and creation time, so it differs between two runs that made the same model.
METADATA_FILES = frozenset({"MLmodel"})
#: MLflow's error codes for a registered model, version or alias that does not exist.
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")
log = logging.getLogger("nbtrack.store")


@dataclass(frozen=True)
class ModelRef:
    """The model a target names, and the run that made it.

    Attributes:
        uri: the target as given (``models:/churn@champion``, ``runs:/ID/model``).
        run_id: the run that produced it (a logged model's source run), None when unknown.
        name, version: the registered model and version, for ``models:/`` targets.
        model_id: the MLflow 3 logged model (``m-...``) holding the files, if any.
        model_name: the logged model's name (``log_model(name=...)``), how a replay's model is found.
        artifact_path: a folder of the run's artifacts holding the files (no logged model).
    """

    uri: str
    run_id: str | None
    name: str | None = None
    version: str | None = None
    model_id: str | None = None
    model_name: str | None = None
    artifact_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class Blob:
    """One file the store holds: an artifact of a run (``owner="run"``) or of a logged model.

    Attributes:
        owner, owner_id: ``run`` and its id, or ``model`` and the logged model's id.
        path: the file, relative to the owner's artifact root.
        size: bytes, None when the store did not say.
        root: the owner's artifact root URI.
        run_id: the run that produced the file (a logged model's source run).
    """

    owner: str
    owner_id: str
    path: str
    size: int | None
    root: str
    run_id: str | None


@contextlib.contextmanager
def _calls(store: MlflowStore, what: str) -> Iterator[None]:
    """MLflow errors as nbtrack's, and a server's calls bounded by the store's timeout."""
    from nbtrack.store.http import bounded

    db = store.reader.db if store.reader is not None else None
    bound = bounded(store.timeout) if store.is_server else contextlib.nullcontext()
    with translate_errors(what, db), bound:
        yield


def registered_version(
    store: MlflowStore, name: str, *, version: str | None = None, alias: str | None = None
) -> ModelRef:
    """The registered model version ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` names.

    Raises:
        NoProvenanceError: no such registered model, version or alias (the message lists what exists).
    """
    uri = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    fast = _fast(store, read_registry.registered, name, version=version, alias=alias)
    if fast is not None:  # (read from the embedded store's tables; else MLflow, which words a miss)
        return _version_ref(store, uri, name, fast.version, fast.run_id, fast.source)
    from mlflow.exceptions import MlflowException

    client = store.client
    with _calls(store, f"reading {uri}"):
        try:
            found = (
                client.get_model_version_by_alias(name, alias)
                if alias
                else client.get_model_version(
                    name, _latest(client, name) if version == "latest" else str(version)
                )
            )
        except MlflowException as exc:
            if getattr(exc, "error_code", "") not in _MISSING:
                raise  # (the store failed: translated, not "no such model")
            raise NoProvenanceError(_unknown_version(store, name, uri)) from None
    return _version_ref(store, uri, name, str(found.version), found.run_id or None, str(found.source or ""))


def _fast(store: MlflowStore, read: Any, *args: Any, **kwargs: Any) -> Any:
    """``read(store.reader, ...)`` on an embedded store (no MLflow import); None: ask MLflow."""
    if store.reader is None:
        return None
    try:
        return read(store.reader, *args, **kwargs)
    except Unsupported as why:
        log.debug("reading the registry through MLflow: %s", why)
        return None


def _version_ref(
    store: MlflowStore, uri: str, name: str, version: str, run_id: str | None, source: str
) -> ModelRef:
    """The model a registered version points at: its run, and its logged model (``models:/m-...``)."""
    model_id = source[len("models:/") :].split("/")[0] if source.startswith("models:/m-") else None
    model_name = None
    logged = logged_model_info(store, model_id) if model_id is not None else None
    if logged is not None:
        run_id = run_id or logged["source_run_id"]
        model_name = logged["name"]
    artifact_path = None
    if model_id is None and source.startswith("runs:/"):
        artifact_path = source[len("runs:/") :].partition("/")[2] or None
    return ModelRef(uri, run_id, name, version, model_id, model_name, artifact_path)


def _latest(client: Any, name: str) -> str:
    """The highest version number of a registered model (what ``models:/NAME/latest`` loads)."""
    versions = client.search_model_versions(f"name = '{name}'")
    return str(max((int(v.version) for v in versions), default=0))


def _unknown_version(store: MlflowStore, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        model = store.client.get_registered_model(name)
    except MlflowException:
        return (
            f"{uri}: no registered model {name!r} in {store.display_uri}; check the name (the MLflow "
            "UI's Models page lists them), or pass --tracking-uri"
        )
    aliases = ", ".join(f"@{a}->{v}" for a, v in sorted(dict(model.aliases or {}).items())) or "none"
    latest = ", ".join(str(v.version) for v in model.latest_versions or []) or "none"
    return (
        f"{uri}: registered model {name!r} has no such version or alias (aliases: {aliases}; "
        f"latest versions: {latest})"
    )


def logged_model_info(store: MlflowStore, model_id: str) -> dict[str, Any] | None:
    """A logged model as a dict (see :func:`logged_models`), None when the store has no such model."""
    fast = _fast(store, read_registry.logged_model, model_id)
    if fast is not None:
        return dict(fast)
    from mlflow.exceptions import MlflowException

    try:
        with _calls(store, f"reading logged model {model_id}"):
            model = store.client.get_logged_model(model_id)
    except MlflowException:
        return None
    except NbtrackError as exc:  # (translated: an unknown id reads as "not found")
        if isinstance(exc, RunNotFoundError):
            return None
        raise
    return _model_dict(model)


def _model_dict(model: Any) -> dict[str, Any]:
    return {
        "model_id": model.model_id,
        "name": model.name,
        "source_run_id": model.source_run_id,
        "root": model.artifact_location,
        "experiment_id": str(model.experiment_id),
        "created": model.creation_timestamp,
    }


def run_model(store: MlflowStore, run_id: str, path: str) -> ModelRef:
    """What ``runs:/RUN_ID/PATH`` names: MLflow 3 resolves it to the run's logged model called
    ``PATH`` when there is one, else it is the folder (or file) ``PATH`` of the run's artifacts."""
    run = store.get_run(run_id)
    uri = f"runs:/{run_id}/{path}"
    name = path.strip("/")
    for model in logged_models(store, [run.experiment_id], source_run_id=run_id):
        if model["name"] == name:
            return ModelRef(uri, run_id, model_id=model["model_id"], model_name=name)
    return ModelRef(uri, run_id, artifact_path=path.strip("/"))


def logged_models(
    store: MlflowStore, experiment_ids: list[str], *, source_run_id: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """The logged models of these experiments (of one source run), newest first, as dicts with
    ``model_id``, ``name``, ``source_run_id``, ``root`` (the artifact location), ``experiment_id``."""
    if not experiment_ids:
        return []
    query = f"source_run_id = '{source_run_id}'" if source_run_id else None
    found: list[dict[str, Any]] = []
    token = None
    with _calls(store, "searching logged models"):
        while len(found) < limit:
            page = store.client.search_logged_models(
                list(experiment_ids), filter_string=query, max_results=100, page_token=token
            )
            found += [_model_dict(m) for m in page]
            token = page.token
            if not token:
                break
    return sorted(found, key=lambda m: -(m["created"] or 0))[:limit]


def model_blobs(store: MlflowStore, ref: ModelRef) -> list[Blob]:
    """The files of the model a reference names (its logged model's, else the run's folder)."""
    if ref.model_id is not None:
        model = logged_model_info(store, ref.model_id)
        if model is None:
            return []
        return blobs(store, "model", ref.model_id, model["root"], run_id=ref.run_id)
    if ref.run_id is None or ref.artifact_path is None:
        return []
    run = store.get_run(ref.run_id)
    return blobs(store, "run", ref.run_id, run.artifact_uri, run_id=ref.run_id, under=ref.artifact_path)


def replayed_model(store: MlflowStore, ref: ModelRef, run_id: str) -> ModelRef | None:
    """The replay run ``run_id``'s counterpart of ``ref``: its logged model of the same name, or the
    same artifact folder; None when the replay made none."""
    if ref.model_name is not None:
        run = store.get_run(run_id)
        for model in logged_models(store, [run.experiment_id], source_run_id=run_id):
            if model["name"] == ref.model_name:
                return ModelRef(f"models:/{model['model_id']}", run_id, model_id=model["model_id"])
        return None
    if ref.artifact_path is None:
        return None
    found = ModelRef(f"runs:/{run_id}/{ref.artifact_path}", run_id, artifact_path=ref.artifact_path)
    return found if model_blobs(store, found) else None


def blobs(
    store: MlflowStore, owner: str, owner_id: str, root: str, *, run_id: str | None, under: str | None = None
) -> list[Blob]:
    """Every file below ``root`` (or its folder ``under``), with sizes: listed in place for local
    artifacts, through the server's listing otherwise."""
    local = local_folder(root)
    if local is not None:
        return _local_blobs(local, owner, owner_id, root, run_id, under)
    client = store.client

    def listing(folder: str | None) -> list[Any]:
        if owner == "run":
            return list(client.list_artifacts(owner_id, folder))
        return list(client.list_logged_model_artifacts(owner_id, folder))

    found: list[Blob] = []
    folders: list[str | None] = [under]
    with _calls(store, f"listing the artifacts of {owner} {owner_id}"):
        while folders and len(found) < 5000:
            for info in listing(folders.pop()):
                if info.is_dir:
                    folders.append(info.path)
                else:
                    found.append(Blob(owner, owner_id, info.path, info.file_size, root, run_id))
    if under and not found:  # a single file given as the folder
        found = [b for b in blobs(store, owner, owner_id, root, run_id=run_id) if b.path == under]
    return found


def _local_blobs(
    local: Path, owner: str, owner_id: str, root: str, run_id: str | None, under: str | None
) -> list[Blob]:
    start = local / under if under else local
    if start.is_file():
        return [Blob(owner, owner_id, str(under), start.stat().st_size, root, run_id)]
    found = []
    for folder, _dirs, files in os.walk(start):
        for name in files:
            if name.startswith(UPLOADING_PREFIX):
                continue
            path = Path(folder) / name
            found.append(
                Blob(owner, owner_id, path.relative_to(local).as_posix(), path.stat().st_size, root, run_id)
            )
    return sorted(found, key=lambda b: b.path)


def blob_sha256(store: MlflowStore, blob: Blob) -> str | None:
    """The sha256 of a stored file (a server's downloaded to a temporary folder); None if unreadable."""
    local = local_folder(blob.root)
    if local is not None:
        try:
            return file_hashes(local / blob.path)[0]
        except OSError:
            return None
    from mlflow.artifacts import download_artifacts

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory(prefix="nbtrack-") as tmp:
        try:
            with _calls(store, f"downloading {blob.path} of {blob.owner} {blob.owner_id}"):
                if blob.owner == "run":
                    got = store.client.download_artifacts(blob.owner_id, blob.path, tmp)
                else:
                    got = download_artifacts(
                        artifact_uri=f"{blob.root.rstrip('/')}/{blob.path}",
                        dst_path=tmp,
                        tracking_uri=store.uri,
                    )
            return file_hashes(Path(got))[0]
        except Exception:  # noqa: BLE001 - an artifact that cannot be read matches nothing
            return None


def model_hashes(store: MlflowStore, ref: ModelRef) -> dict[str, str]:
    """``{path: sha256}`` of a model's files."""
    found = {}
    for blob in model_blobs(store, ref):
        digest = blob_sha256(store, blob)
        if digest is not None:
            found[blob.path] = digest
    return found


def runs_producing(store: MlflowStore, md5: str, experiment_ids: list[str]) -> list[tuple[RunRecord, str]]:
    """Runs whose recorded DVC outputs (dataset inputs of context ``output``) have digest ``md5``,
    newest first, each with the output's path: one search of the store."""
    if not experiment_ids:
        return []
    query = f"datasets.digest = '{md5}'"
    with _calls(store, "searching runs by DVC output hash"):
        found = store.client.search_runs(
            list(experiment_ids),
            filter_string=query,
            max_results=200,
            order_by=["attributes.start_time DESC"],
        )
        pairs = []
        for run in found:
            for item in run.inputs.dataset_inputs if run.inputs else []:
                context = {t.key: t.value for t in item.tags}.get(DATASET_CONTEXT)
                if item.dataset.digest == md5 and context == DATASET_OUTPUT:
                    pairs.append((to_record(run), str(item.dataset.name)))
                    break
        return pairs


def experiment_name(store: MlflowStore, experiment_id: str) -> str | None:
    """The experiment's name, None when it cannot be read."""
    fast = _fast(store, read_registry.experiment_name, experiment_id)
    if fast is not None:
        return str(fast)
    try:
        with _calls(store, f"reading experiment {experiment_id}"):
            return str(store.client.get_experiment(experiment_id).name)
    except Exception:  # noqa: BLE001 - a name is a nicety
        return None
