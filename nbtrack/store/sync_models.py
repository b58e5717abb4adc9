"""Upload a spooled run's MLflow 3 logged models with the run (``nbtrack sync``, the background
uploader): :func:`copy_logged_models`, called by :mod:`nbtrack.store.sync` once the run's artifacts
are on the server.

A logged model (``mlflow.<flavor>.log_model(...)`` in a tracked run) lives in the spool's store with
its own artifact folder; on the server it is created under the uploaded run (``source_run_id``) with
its name, type, params and tags, plus :data:`SPOOL_MODEL_ID` (the spool model it came from: what
makes a re-sync find it instead of making another), then its artifacts and metrics are copied and it
is finalized with the spool model's status. A server model left ``PENDING`` by an interrupted upload
is completed by the next one. A version of the model registered in the spool is registered on the
server too (the same registered model name, created if needed; its version number is the server's
next one, tagged :data:`SPOOL_MODEL_VERSION`). Aliases are not copied: moving an alias on a shared
server (the one a service may load) is a deliberate act, so ``nbtrack sync`` leaves it to a person.

Every module this imports is preloaded by :func:`nbtrack.store.sync.preload` (:data:`MODEL_MODULES`):
the uploader thread imports nothing.

Example:
    >>> copy_logged_models(spool_client, server_client, run, "9a41...", "3")  # doctest: +SKIP
    1
"""

from __future__ import annotations

from typing import Any

from nbtrack.store.read_sqlite import Unsupported
from nbtrack.store.reading import local_artifacts

#: On a server's logged model: the spool logged model it was uploaded from.
SPOOL_MODEL_ID = "nbtrack.spool_model_id"
#: On a server's model version: ``NAME/VERSION`` of the spool's version it was registered from.
SPOOL_MODEL_VERSION = "nbtrack.spool_model_version"
#: What copying models imports beyond a run's upload (see :func:`nbtrack.store.sync.preload`).
MODEL_MODULES = (
    "mlflow.entities.logged_model_output",
    "mlflow.entities.logged_model_status",
    "mlflow.store.model_registry.rest_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.tracking._model_registry.utils",
    "mlflow.tracking._model_registry.client",
)
#: Tags MLflow keeps itself on a logged model (the versions registered from it): not copied.
_MANAGED_TAGS = ("mlflow.modelVersions",)


def copy_logged_models(local: Any, server: Any, run: Any, server_id: str, exp_id: str) -> int:
    """Create on the server every logged model of the spool run ``run`` (under run ``server_id`` of
    experiment ``exp_id``) that is not there complete yet; the number copied now."""
    models = _search(local, run.info.experiment_id, run.info.run_id)
    if not models:
        return 0
    there = {m.tags.get(SPOOL_MODEL_ID): m for m in _search(server, exp_id, server_id)}
    steps = {o.model_id: o.step for o in (run.outputs.model_outputs if run.outputs else [])}
    copied = 0
    for model in models:
        remote = there.get(model.model_id)
        if remote is None:
            tags = {k: v for k, v in model.tags.items() if k not in _MANAGED_TAGS}
            remote = server.create_logged_model(
                exp_id,
                name=model.name,
                source_run_id=server_id,
                tags={**tags, SPOOL_MODEL_ID: model.model_id},
                params=dict(model.params or {}),
                model_type=model.model_type,
            )
        if remote.status == _pending():  # new, or left halfway by an interrupted upload
            _complete(local, server, model, remote.model_id, server_id, steps.get(model.model_id, 0))
            copied += 1
        _register(local, server, model, remote.model_id, run.info.run_id, server_id)
    return copied


def _pending() -> Any:
    from mlflow.entities.logged_model_status import LoggedModelStatus

    return LoggedModelStatus.PENDING


def _search(client: Any, exp_id: str, run_id: str) -> list[Any]:
    found: list[Any] = []
    token = None
    while True:
        page = client.search_logged_models(
            [exp_id], filter_string=f"source_run_id = '{run_id}'", max_results=100, page_token=token
        )
        found += list(page)
        token = page.token
        if not token:
            return found


def _complete(local: Any, server: Any, model: Any, remote_id: str, server_id: str, step: int) -> None:
    """Artifacts, metrics and the run's output link of one server model, then its final status (a
    re-upload overwrites the same paths; the server keeps one copy of a metric)."""
    from mlflow.entities import Metric
    from mlflow.entities.logged_model_output import LoggedModelOutput

    try:
        folder = local_artifacts(model.artifact_location)
    except Unsupported:
        folder = None
    if folder is not None and folder.is_dir() and any(folder.iterdir()):
        server.log_model_artifacts(remote_id, str(folder))
    metrics = [
        Metric(
            m.key,
            m.value,
            m.timestamp,
            m.step,
            model_id=remote_id,
            dataset_name=m.dataset_name,
            dataset_digest=m.dataset_digest,
        )
        for m in model.metrics or []
    ]
    for start in range(0, len(metrics), 1000):
        server.log_batch(server_id, metrics=metrics[start : start + 1000])
    server.log_outputs(server_id, [LoggedModelOutput(remote_id, step)])
    if model.status != _pending():  # (a model whose logging never finished stays pending there too)
        server.finalize_logged_model(remote_id, model.status)


def _register(local: Any, server: Any, model: Any, remote_id: str, run_id: str, server_id: str) -> None:
    """Register on the server each version the spool registered from ``model`` (once)."""
    source = f"models:/{model.model_id}"
    versions = [v for v in _versions(local, f"run_id = '{run_id}'") if v.source == source]
    if not versions:
        return
    made = {v.tags.get(SPOOL_MODEL_VERSION) for v in _versions(server, f"run_id = '{server_id}'")}
    for version in versions:
        key = f"{version.name}/{version.version}"
        if key in made:
            continue
        _ensure_registered(server, version.name)
        server.create_model_version(
            version.name,
            source=f"models:/{remote_id}",
            run_id=server_id,
            tags={**dict(version.tags or {}), SPOOL_MODEL_VERSION: key},
            description=version.description,
            model_id=remote_id,
        )


def _versions(client: Any, query: str) -> list[Any]:
    return list(client.search_model_versions(query))


def _ensure_registered(server: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        server.get_registered_model(name)
    except MlflowException:
        server.create_registered_model(name)
