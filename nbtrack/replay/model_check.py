"""Did the replay re-create the model? ``nbtrack replay models:/NAME@ALIAS`` compares the model the
replay logged with the registered one, file by file (sha256).

The registered version's files (its MLflow 3 logged model's, or the run's artifact folder) against
the replay run's counterpart: its logged model of the same name, or the same artifact folder.
``MLmodel`` is left out (it names the run, the model's uuid and its creation time, so it always
differs). The finding never changes the verdict: identical files are extra evidence; differing files
(pickles are often not byte-identical: a dict's order, a timestamp, a library's version) leave the
verdict resting on the metrics and outputs, and the message says so, so that neither a REPRODUCED
nor a DIVERGED is claimed on the model file's account.

Example:
    >>> check_model(result, store, ref)  # doctest: +SKIP
    >>> result.model["compared"], result.model["identical"]  # doctest: +SKIP
    ('files', True)
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from nbtrack.errors import NbtrackError
from nbtrack.replay.verdict import REPRODUCED

if TYPE_CHECKING:
    from nbtrack.replay.result import ReplayResult
    from nbtrack.store import MlflowStore
    from nbtrack.store.models import ModelRef


def _hashes(store: MlflowStore, ref: ModelRef) -> dict[str, str]:
    from nbtrack.store.models import METADATA_FILES, model_hashes

    return {p: h for p, h in model_hashes(store, ref).items() if PurePosixPath(p).name not in METADATA_FILES}


def _relative(ref: ModelRef, hashes: dict[str, str]) -> dict[str, str]:
    """Paths relative to the model's folder (a run's artifact folder is named in each path)."""
    prefix = f"{ref.artifact_path}/" if ref.model_id is None and ref.artifact_path else ""
    return {p[len(prefix) :] if prefix and p.startswith(prefix) else p: h for p, h in hashes.items()}


def compare_model(store: MlflowStore, ref: ModelRef, replay_run_id: str) -> dict[str, Any]:
    """The registered model's files against the replay run's model: ``{"target", "replayed",
    "identical", "files": [{"path", "original", "replayed", "same"}]}`` (``replayed`` None when the
    replay logged no counterpart)."""
    from nbtrack.store.models import replayed_model

    original = _relative(ref, _hashes(store, ref))
    twin = replayed_model(store, ref, replay_run_id)
    if twin is None:
        return {"target": ref.uri, "replayed": None, "identical": None, "files": []}
    replayed = _relative(twin, _hashes(store, twin))
    rows = [
        {
            "path": path,
            "original": original.get(path),
            "replayed": replayed.get(path),
            "same": original.get(path) is not None and original.get(path) == replayed.get(path),
        }
        for path in sorted(set(original) | set(replayed))
    ]
    identical = bool(rows) and all(r["same"] for r in rows)
    return {"target": ref.uri, "replayed": twin.uri, "identical": identical, "files": rows}


def _note(found: dict[str, Any], verdict: str, ref: ModelRef) -> str:
    rows = found["files"]
    what = ref.model_name or ref.artifact_path or "model"
    if found["replayed"] is None:
        return (
            f"Model: the replay logged no model {what!r}, so the model file was not compared; the verdict "
            "rests on the metrics and outputs."
        )
    if found["identical"]:
        return (
            f"Model: the re-created model's {len(rows)} file(s) are byte-identical to {ref.uri} (sha256; "
            "MLmodel metadata not compared)."
        )
    differ = [r["path"] for r in rows if not r["same"]]
    names = ", ".join(differ[:4]) + (f" and {len(differ) - 4} more" if len(differ) > 4 else "")
    line = f"Model: {len(differ)} of {len(rows)} model file(s) differ from {ref.uri} ({names})"
    if verdict == REPRODUCED:
        return (
            f"{line}; pickled models are often not byte-identical, so this REPRODUCED rests on the "
            "metrics and outputs, not on the model file."
        )
    return f"{line}; the verdict rests on the metrics and outputs."


def check_model(result: ReplayResult, store: MlflowStore | None, ref: ModelRef) -> None:
    """Compare the replay's model with ``ref``; the finding goes into ``result.model`` and one
    sentence at the end of ``result.message``. The verdict is left as it is."""
    if store is None or result.replay_run_id is None:
        return
    try:
        found = compare_model(store, ref, result.replay_run_id)
    except NbtrackError as exc:  # the store failed: say so, the verdict stands on its own evidence
        found = {"target": ref.uri, "replayed": None, "identical": None, "files": [], "error": str(exc)}
        note = f"Model: not compared with {ref.uri} ({exc})."
    else:
        note = _note(found, result.verdict, ref)
    found["compared"] = "files" if found["identical"] else "metrics"
    found["note"] = note
    result.model = found
    message = result.message.rstrip()
    result.message = f"{message}{'' if not message or message.endswith('.') else '.'} {note}".strip()
