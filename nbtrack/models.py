"""The snapshot: what nbtrack records about a run, and its JSON schema version.

``snapshot.json`` is the one document replay and diff read. It holds a ``schema_version``; a reader
refuses a version it does not know instead of guessing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from nbtrack.errors import SnapshotError

SCHEMA_VERSION = 1

SectionStatus = Literal["ok", "absent", "error"]

#: Section names, in the order a snapshot lists them.
SECTION_NAMES = ("notebook", "parameters", "environment", "git", "data", "results")


@dataclass
class Section:
    """One part of a snapshot, taken by one capture provider.

    ``status`` is ``ok`` when captured, ``absent`` when it does not apply (no git repository, no DVC,
    notebook path unknown) and ``error`` when the provider failed; ``reason`` then says why, so a
    missing section is never silently empty.
    """

    name: str
    status: SectionStatus = "ok"
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy of a few thousand package/env entries cost ~25 ms.
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "data": self.data,
            "duration_ms": self.duration_ms,
        }

    def notes(self) -> list[str]:
        """What a person should know about this section, one line each: why it is absent or failed,
        and what it left out (a notebook or git diff over its size cap, DVC files it could not read).

        The run card, ``%track start`` and ``nbtrack show`` print these.

        Example:
            >>> diff = {"truncated": True, "reason": "the uncommitted changes are 2000000 bytes, ..."}
            >>> Section("git", data={"diff": diff}).notes()
            ['git.diff not stored: the uncommitted changes are 2000000 bytes, ...']
        """
        notes = [self.reason] if self.status != "ok" and self.reason else []
        data = self.data
        stored_reason = data.get("stored_reason") if self.name == "notebook" else None
        if stored_reason and data.get("stored") is False and stored_reason != self.reason:
            notes.append(f"notebook.ipynb not stored: {data['stored_reason']}")
        live = data.get("live") if self.name == "notebook" else None
        if isinstance(live, dict) and live.get("received") and live.get("stored") is False:
            notes.append(f"notebook.live.ipynb not stored: {live.get('stored_reason')}")
        diff = data.get("diff") if self.name == "git" else None
        if isinstance(diff, dict) and diff.get("truncated"):
            notes.append(f"git.diff not stored: {diff.get('reason')}")
        if self.name == "data":
            notes.extend(str(p) for p in data.get("problems") or [])
        return notes

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Section:
        return cls(
            name=str(raw["name"]),
            status=raw.get("status", "ok"),
            reason=raw.get("reason"),
            data=dict(raw.get("data") or {}),
            duration_ms=float(raw.get("duration_ms") or 0.0),
        )


@dataclass
class Snapshot:
    """Everything recorded about one run."""

    run: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Section] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    nbtrack_version: str = ""

    def section(self, name: str) -> Section:
        """The named section, or an ``absent`` one when it was never taken."""
        return self.sections.get(name) or Section(name, "absent", "not captured")

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(
            self.sections,
            key=lambda n: SECTION_NAMES.index(n) if n in SECTION_NAMES else len(SECTION_NAMES),
        )
        return {
            "schema_version": self.schema_version,
            "nbtrack_version": self.nbtrack_version,
            "run": self.run,
            "sections": {name: self.sections[name].to_dict() for name in ordered},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), default=str)

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "snapshot.json") -> Snapshot:
        if not isinstance(raw, dict) or "schema_version" not in raw:
            raise SnapshotError(
                f"{source} is not an nbtrack snapshot (no schema_version); the snapshot is damaged or "
                "was not written by nbtrack: record the run again"
            )
        version = raw["schema_version"]
        if version != SCHEMA_VERSION:
            newer = isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION
            fix = (
                "it was written by a newer nbtrack: upgrade nbtrack (pip install -U nbtrack) to read it"
                if newer
                else "no nbtrack wrote that version: the snapshot is damaged; record the run again"
            )
            raise SnapshotError(
                f"{source} has schema version {version!r}, this nbtrack reads version {SCHEMA_VERSION}; {fix}"
            )
        bodies, run = raw.get("sections") or {}, raw.get("run") or {}
        if not isinstance(bodies, dict) or not all(isinstance(b, dict) for b in bodies.values()):
            raise SnapshotError(
                f"{source} has malformed sections; the snapshot is damaged: record the run again"
            )
        if not isinstance(run, dict):
            raise SnapshotError(
                f"{source} has a malformed run entry; the snapshot is damaged: record the run again"
            )
        try:
            sections = {str(name): Section.from_dict({"name": name, **body}) for name, body in bodies.items()}
        except (TypeError, ValueError) as exc:
            raise SnapshotError(
                f"{source} has a malformed section ({exc}); the snapshot is damaged: record the run again"
            ) from exc
        return cls(
            run=dict(run),
            sections=sections,
            schema_version=SCHEMA_VERSION,
            nbtrack_version=str(raw.get("nbtrack_version", "")),
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = "snapshot.json") -> Snapshot:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise SnapshotError(
                f"{source} is not valid JSON ({exc}); the snapshot is damaged: record the run again"
            ) from exc
        return cls.from_dict(raw, source=source)


@dataclass(frozen=True)
class RunRecord:
    """One tracked run as nbtrack's services see it: MLflow's run info, tags, params and latest
    metrics, read once at the store's boundary (no MLflow object leaves :mod:`nbtrack.store`).

    Example:
        >>> run = RunRecord("0f3c", "baseline", "1", "FINISHED", 1_700_000_000_000, None, "file:///a")
        >>> run.short_id, run.ended
        ('0f3c', False)
    """

    run_id: str
    name: str | None
    experiment_id: str
    status: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    #: Epoch ms of the latest logged metric, None when none was logged (a run's last activity).
    last_metric_ms: int | None = None

    @property
    def short_id(self) -> str:
        """The id as nbtrack prints it in tables and cards (the first 8 characters)."""
        return self.run_id[:8]

    @property
    def ended(self) -> bool:
        return self.end_time is not None and self.status not in ("RUNNING", "SCHEDULED")
