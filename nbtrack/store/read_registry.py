"""Reading an embedded store's model registry and logged models straight from SQLite, without MLflow.

``nbtrack provenance models:/NAME@ALIAS`` needs three rows: the alias's version, the version's run
and source, and (MLflow 3) the logged model behind a ``models:/m-...`` source; with MLflow's client
that is 1.5-5 s of ``import mlflow`` before the first query. For a ``sqlite:///`` store these reads
use :class:`~nbtrack.store.read_sqlite.SqliteReader`'s read-only session (same schema revisions, same
lock wait), issuing what MLflow's ``SqlAlchemyStore`` and ``SqlAlchemyStore`` (registry) issue for
``get_model_version_by_alias``, ``get_model_version``, ``search_model_versions`` (``latest``),
``get_logged_model`` and ``get_experiment``, in MLflow's default workspace. Anything not found, or
not answerable here, returns None or raises :class:`~nbtrack.store.read_sqlite.Unsupported`: the
caller then asks MLflow, which words the error (and lists what exists).

Example:
    >>> version = registered(reader, "churn", alias="champion")  # doctest: +SKIP
    >>> version.version, version.run_id  # doctest: +SKIP
    ('3', '0f3c41e0b84d0f9b6a2c1d7e5f4a3b21')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nbtrack.store.read_sqlite import SqliteReader

__all__ = ["VersionRow", "experiment_name", "logged_model", "registered"]

#: MLflow's default workspace (the one every row is in while workspaces are off).
_WORKSPACE = "default"
#: The stage MLflow gives a deleted model version it still keeps (hidden from every read).
_DELETED = "Deleted_Internal"


@dataclass(frozen=True)
class VersionRow:
    """A registered model version: what ``ModelVersion`` gives nbtrack's provenance."""

    version: str
    run_id: str | None
    source: str


def registered(
    reader: SqliteReader, name: str, *, version: str | None = None, alias: str | None = None
) -> VersionRow | None:
    """The version ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` (``latest``: the highest)
    names; None when there is none (MLflow then says what exists).

    Example:
        >>> registered(reader, "churn", version="latest")  # doctest: +SKIP
        VersionRow(version='3', run_id='0f3c41e0...', source='models:/m-5a1e...')
    """
    if alias is not None and alias.lower() == "latest":  # MLflow's reserved alias: the highest version
        alias, version = None, "latest"
    with reader.session() as con:
        if alias is not None:
            row = con.execute(
                "SELECT version FROM registered_model_aliases WHERE workspace = ? AND name = ? AND alias = ?",
                (_WORKSPACE, name, alias),
            ).fetchone()
            if row is None:
                return None
            version = str(row[0])
        elif version == "latest":
            row = con.execute(
                "SELECT max(version) FROM model_versions WHERE workspace = ? AND name = ? "
                "AND current_stage != ?",
                (_WORKSPACE, name, _DELETED),
            ).fetchone()
            if row is None or row[0] is None:
                return None
            version = str(row[0])
        if version is None or not str(version).isdecimal():
            return None  # (MLflow's error for a malformed version)
        found = con.execute(
            "SELECT version, run_id, source FROM model_versions WHERE workspace = ? AND name = ? "
            "AND version = ? AND current_stage != ?",
            (_WORKSPACE, name, int(version), _DELETED),
        ).fetchone()
    if found is None:
        return None
    return VersionRow(str(found[0]), found[1] or None, str(found[2] or ""))


def logged_model(reader: SqliteReader, model_id: str) -> dict[str, Any] | None:
    """A logged model as :func:`nbtrack.store.models.logged_model_info` gives it; None when missing."""
    with reader.session() as con:
        row = con.execute(
            "SELECT model_id, name, source_run_id, artifact_location, experiment_id, creation_timestamp_ms "
            "FROM logged_models WHERE model_id = ? AND lifecycle_stage != 'deleted'",
            (model_id,),
        ).fetchone()
    if row is None:
        return None
    model, name, run_id, root, experiment_id, created = row
    return {
        "model_id": model,
        "name": name,
        "source_run_id": run_id,
        "root": root,
        "experiment_id": str(experiment_id),
        "created": created,
    }


def experiment_name(reader: SqliteReader, experiment_id: str) -> str | None:
    """The experiment's name (any stage, as ``get_experiment``); None when there is none."""
    if not experiment_id.isdecimal():
        return None
    with reader.session() as con:
        row = con.execute(
            "SELECT name FROM experiments WHERE experiment_id = ?", (int(experiment_id),)
        ).fetchone()
    return None if row is None else str(row[0])
