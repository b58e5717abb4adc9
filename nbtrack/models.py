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
            raise SnapshotError(f"{source} is not an nbtrack snapshot (no schema_version)")
        version = raw["schema_version"]
        if version != SCHEMA_VERSION:
            raise SnapshotError(
                f"{source} has schema version {version!r}, this nbtrack reads version "
                f"{SCHEMA_VERSION}; upgrade nbtrack (pip install -U nbtrack) to read it"
            )
        bodies, run = raw.get("sections") or {}, raw.get("run") or {}
        if not isinstance(bodies, dict) or not all(isinstance(b, dict) for b in bodies.values()):
            raise SnapshotError(f"{source} has malformed sections; the run's snapshot is damaged")
        if not isinstance(run, dict):
            raise SnapshotError(f"{source} has a malformed run entry; the run's snapshot is damaged")
        try:
            sections = {str(name): Section.from_dict({"name": name, **body}) for name, body in bodies.items()}
        except (TypeError, ValueError) as exc:
            raise SnapshotError(
                f"{source} has a malformed section ({exc}); the run's snapshot is damaged"
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
            raise SnapshotError(f"{source} is not valid JSON ({exc}); the run's snapshot is damaged") from exc
        return cls.from_dict(raw, source=source)
