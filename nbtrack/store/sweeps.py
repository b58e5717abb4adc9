"""A sweep's parent MLflow run: started before its trials, ended with what they did.

The parent is a plain MLflow run (no ``nbtrack/`` artifacts, no schema tag: ``nbtrack runs``
lists its trials, not it); each trial's run carries ``mlflow.parentRunId`` = its id, which MLflow's
UI shows as nesting. Written through the store's client, never the fluent API (whose active run is
process-wide: a sweep's process may track a run of its own).

Example:
    >>> parent = start_parent(store, "churn", "sweep train", {"nbtrack.sweep": "{...}"})  # doctest: +SKIP
    >>> end_parent(store, parent, "FINISHED", {"nbtrack.sweep.finished": "4"})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from nbtrack.store.http import bounded
from nbtrack.store.mlflow_store import MlflowStore
from nbtrack.store.reading import translate_errors
from nbtrack.store.sqlite import check_store, retry_locked

__all__ = ["end_parent", "start_parent"]

#: MLflow's statuses a parent may end with.
_ENDED = ("FINISHED", "FAILED", "KILLED")


@contextlib.contextmanager
def _writing(store: MlflowStore, what: str) -> Iterator[None]:
    """MLflow's errors as nbtrack's, an embedded store checked first, a server's calls bounded."""
    db = store.reader.db if store.reader is not None else None
    if db is not None:
        check_store(db, write=True)
    bound = bounded(store.timeout) if store.is_server else contextlib.nullcontext()
    with translate_errors(what, db), bound:
        yield


def start_parent(store: MlflowStore, experiment: str, name: str, tags: dict[str, str]) -> str:
    """Start a sweep's parent run (RUNNING) in ``experiment``; its id.

    Raises:
        StoreError: the store cannot be written.

    Example:
        >>> start_parent(store, "churn", "sweep train", {"nbtrack.sweep": "{}"})  # doctest: +SKIP
        '9b1e0c3f...'
    """
    experiment_id = store.experiment_id(experiment)
    with _writing(store, f"starting the sweep's parent run in experiment {experiment!r}"):
        run = retry_locked(
            lambda: store.client.create_run(experiment_id, tags=tags, run_name=name), "starting a run"
        )
        return str(run.info.run_id)


def end_parent(
    store: MlflowStore,
    run_id: str,
    status: str,
    tags: dict[str, str],
    metrics: dict[str, float] | None = None,
) -> None:
    """Tag the parent with the sweep's outcome (and log ``metrics``: the best value), then end it.

    Example:
        >>> end_parent(store, parent, "FAILED", {"nbtrack.sweep.failed": "1"})  # doctest: +SKIP
    """
    if status not in _ENDED:
        raise ValueError(f"a parent run ends {', '.join(_ENDED)}, not {status!r}")
    store.set_tags(run_id, tags)
    if metrics:
        store.log_metrics(run_id, metrics)
    with _writing(store, f"ending the sweep's parent run {run_id}"):
        retry_locked(lambda: store.client.set_terminated(run_id, status=status), f"ending run {run_id}")
