"""Changing a run after the fact: rename, note, user tags, archive, restore, purge.

Everything goes through MLflow's client for the store, with MLflow's own conventions, so MLflow's UI
and clients see the same thing nbtrack does:

::

    rename    MlflowClient.update_run(name=...)   (the run name and its ``mlflow.runName`` tag)
    note      the tag ``mlflow.note.content``       (MLflow's UI shows it as the run's description)
    tags      MlflowClient.log_batch / delete_tag  (user tags only: ``mlflow.*``/``nbtrack.*`` refused)
    archive   MlflowClient.delete_run               (MLflow's soft delete: hidden, restorable)
    restore   MlflowClient.restore_run
    purge     an archived run of the embedded store: its artifact folder, then its rows, as
              ``mlflow gc`` does (``_hard_delete_run``); a tracking server's runs are purged there

A run whose upload has not finished (:data:`nbtrack.tags.UPLOAD_PENDING`) refuses every write.

Example:
    >>> set_note(store, "3f2a9c41e0b84d0f9b6a2c1d7e5f4a3b", "learning rate too high")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nbtrack import tags as T
from nbtrack.errors import StoreError, UsageError
from nbtrack.models import RunRecord
from nbtrack.store.mlflow_store import MlflowStore
from nbtrack.store.read_sqlite import Unsupported
from nbtrack.store.reading import local_artifacts, to_record, translate_errors

#: Tag prefixes that belong to MLflow or nbtrack, never set or removed as user tags.
RESERVED_PREFIXES = ("mlflow.", "nbtrack.")
#: MLflow's limits for a tag key and value (longer ones fail inside MLflow with a long message).
MAX_KEY, MAX_VALUE, MAX_NOTE = 250, 8000, 8000
ACTIVE, DELETED = "active", "deleted"


class ActionRefused(StoreError):
    """The store refuses an action on a run: a purge of a run not archived or on a tracking server, a
    write to an archived run or to one whose upload has not finished."""


@contextlib.contextmanager
def _guard(store: MlflowStore, what: str) -> Iterator[None]:
    """MLflow errors as one-line :class:`StoreError`s; a tracking server's calls bounded in time."""
    from nbtrack.store.http import bounded
    from nbtrack.store.sqlite import check_store

    db = store.reader.db if store.reader is not None else None
    if db is not None:
        check_store(db, write=True)
    bound = bounded(store.timeout) if store.is_server else contextlib.nullcontext()
    with translate_errors(what, db), bound:
        yield


def check_tag_key(key: str) -> str:
    """``key`` when it may be set as a user tag, else a one-line :class:`UsageError`.

    Example:
        >>> check_tag_key("team")
        'team'
        >>> check_tag_key("mlflow.runName")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        nbtrack.errors.UsageError: tag 'mlflow.runName' is reserved ...
    """
    if not isinstance(key, str) or not key.strip():
        raise UsageError(f"tag key {key!r}: give a non-empty name")
    if key.startswith(RESERVED_PREFIXES):
        raise UsageError(
            f"tag {key!r} is reserved (mlflow.* and nbtrack.* belong to MLflow and nbtrack); "
            "pick a name without those prefixes, or use rename / note"
        )
    if len(key) > MAX_KEY:
        raise UsageError(f"tag key {key[:30]!r}… is longer than MLflow's {MAX_KEY} characters")
    return key


def lifecycle(store: MlflowStore, run_id: str) -> tuple[RunRecord, str]:
    """The run and its MLflow lifecycle stage (``active`` or ``deleted``, i.e. archived).

    An embedded store answers from its SQLite file (MLflow's ``get_run`` costs ~0.1 s a run here,
    which a bulk action over a compare view's selection pays per run).
    """
    if store.reader is not None:
        try:
            with store.reader.session() as con:
                sql = "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?"
                row = con.execute(sql, (run_id,)).fetchone()
            if row is not None:
                return store.get_run(run_id), str(row[0])
        except Unsupported:
            pass  # MLflow answers
    with _guard(store, f"run {run_id}"):
        run = store.client.get_run(run_id)
        return to_record(run), str(run.info.lifecycle_stage)


def check_writable(run: RunRecord, stage: str, action: str) -> None:
    """Refuse ``action`` on an archived run or on a run whose upload has not finished.

    Example:
        >>> check_writable(RunRecord("3f2a9c41", "a", "1", "FINISHED", 1, 2), "active", "rename")
    """
    host = run.tags.get(T.UPLOAD_PENDING)
    if host or run.tags.get(T.SYNC_STATE) == T.PENDING:
        where = f" (the rest is in the local spool of {host})" if host else ""
        raise ActionRefused(
            f"run {run.run_id} has not finished uploading{where}; run `nbtrack sync` first, then {action} it"
        )
    if stage == DELETED and action not in ("restore", "purge"):
        raise ActionRefused(
            f"run {run.run_id} is archived; restore it first (`nbtrack restore {run.run_id[:8]}`), "
            f"then {action} it"
        )


def check_purgeable(store: MlflowStore, run: RunRecord, stage: str) -> None:
    """Refuse to purge a run that is not archived, or any run of a tracking server."""
    if store.is_server:
        raise ActionRefused(
            f"run {run.run_id} is on tracking server {store.display_uri}; nbtrack purges only its "
            "embedded store: archive it, then purge it on the server with `mlflow gc --run-ids "
            f"{run.run_id}`"
        )
    if stage != DELETED:
        raise ActionRefused(
            f"run {run.run_id} is not archived; archive it first (`nbtrack archive {run.run_id[:8]}`), "
            "then purge it"
        )
    _check_artifacts_inside(store, run)


def _check_artifacts_inside(store: MlflowStore, run: RunRecord) -> None:
    """A purge deletes only under the store's own artifact folder: a run row naming another folder
    (an edited database, a store copied from elsewhere) is refused, never followed."""
    if store.artifact_root is None:
        return
    try:
        folder = local_artifacts(run.artifact_uri).resolve()
    except Unsupported:  # not a local folder: the artifact repository the user configured deletes it
        return
    root = Path(store.artifact_root).resolve()
    if not folder.is_relative_to(root):
        raise ActionRefused(
            f"run {run.run_id} keeps its artifacts in {folder}, outside this store's artifact folder "
            f"{root}; nbtrack deletes only under that folder, so the run stays archived"
        )


def rename(store: MlflowStore, run_id: str, name: str) -> None:
    """Give a run a new name (MLflow's run name and its ``mlflow.runName`` tag)."""
    name = name.strip()
    if not name:
        raise UsageError(f"run {run_id}: give a non-empty name")
    with _guard(store, f"renaming run {run_id}"):
        store.client.update_run(run_id, name=name[:MAX_VALUE])


def set_note(store: MlflowStore, run_id: str, note: str) -> None:
    """Set a run's Markdown note (``mlflow.note.content``); an empty note removes it."""
    if len(note) > MAX_NOTE:
        raise UsageError(f"run {run_id}: the note has {len(note)} characters; MLflow keeps {MAX_NOTE}")
    with _guard(store, f"writing the note of run {run_id}"):
        if note.strip():
            store.client.set_tag(run_id, T.NOTE, note)
        else:
            _delete_tags(store, run_id, [T.NOTE])


def set_user_tags(store: MlflowStore, run_id: str, values: Mapping[str, str], remove: Sequence[str]) -> None:
    """Set and remove user tags of a run (keys checked by :func:`check_tag_key`)."""
    from mlflow.entities import RunTag

    for key in [*values, *remove]:
        check_tag_key(key)
    with _guard(store, f"tagging run {run_id}"):
        if values:
            batch = [RunTag(k, str(v)[:MAX_VALUE]) for k, v in values.items()]
            store.client.log_batch(run_id, tags=batch)
        _delete_tags(store, run_id, [k for k in remove if k not in values])


def _delete_tags(store: MlflowStore, run_id: str, keys: Sequence[str]) -> None:
    # MLflow's delete_tag raises for a tag the run lacks: removing an absent tag is no error here.
    present = store.client.get_run(run_id).data.tags if keys else {}
    for key in keys:
        if key in present:
            store.client.delete_tag(run_id, key)


def archive(store: MlflowStore, run_id: str) -> None:
    """MLflow's soft delete: the run leaves every listing and can be restored."""
    with _guard(store, f"archiving run {run_id}"):
        store.client.delete_run(run_id)


def restore(store: MlflowStore, run_id: str) -> None:
    """Bring an archived run back."""
    with _guard(store, f"restoring run {run_id}"):
        store.client.restore_run(run_id)


def purge(store: MlflowStore, run_id: str) -> None:
    """Remove an archived run of the embedded store for good: its artifacts, then its rows.

    The order and the calls are ``mlflow gc``'s: the artifact repository's ``delete_artifacts``, then
    the SQL store's ``_hard_delete_run`` (params, metrics, tags, inputs, then the run). The run's own
    folder (``<experiment>/<run id>/``) goes too when nothing else is left in it.
    """
    run, stage = lifecycle(store, run_id)
    check_purgeable(store, run, stage)
    with _guard(store, f"purging run {run_id}"):
        _delete_artifacts(run.artifact_uri)
        backend = _backend(store)
        backend._hard_delete_run(run_id)


def _backend(store: MlflowStore) -> Any:
    """The SQL store behind the client (what ``mlflow gc`` calls ``_hard_delete_run`` on)."""
    backend = store.client._tracking_client.store
    if not hasattr(backend, "_hard_delete_run"):
        raise ActionRefused(
            f"store {store.display_uri} cannot delete runs for good; use `mlflow gc` against its backend"
        )
    return backend


def _delete_artifacts(uri: str) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    get_artifact_repository(uri).delete_artifacts()  # type: ignore[no-untyped-call]
    with contextlib.suppress(Unsupported, OSError):  # Unsupported: no local folder, nothing to tidy
        folder = local_artifacts(uri)
        run_folder = folder.parent
        if folder.name == "artifacts" and run_folder.is_dir() and not any(run_folder.iterdir()):
            run_folder.rmdir()


def archived_with_prefix(store: MlflowStore, prefix: str, *, max_results: int = 6) -> list[RunRecord]:
    """Archived runs whose id starts with ``prefix`` (restore and purge name them by prefix too).

    Example:
        >>> [r.run_id[:8] for r in archived_with_prefix(store, "3f2a9c")]  # doctest: +SKIP
        ['3f2a9c41']
    """
    from mlflow.entities import ViewType

    if not prefix.isalnum() or not prefix.isascii():
        raise UsageError(f"run id prefix {prefix!r}: give letters and digits only")
    with _guard(store, "searching archived runs"):
        experiments = store.client.search_experiments(view_type=ViewType.ALL)
        ids = [e.experiment_id for e in experiments]
        if not ids:
            return []
        found = store.client.search_runs(
            ids,
            filter_string=f"attributes.run_id LIKE '{prefix}%'",
            run_view_type=ViewType.DELETED_ONLY,
            max_results=max_results,
        )
        return [to_record(r) for r in found]
