"""The run between ``%track start`` and ``%track stop``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nbtrack.capture.base import CaptureContext
from nbtrack.capture.locate import NotebookLocation
from nbtrack.models import Section

if TYPE_CHECKING:
    from nbtrack.store.mlflow_store import MlflowStore
    from nbtrack.store.tracking import Tracking


@dataclass
class ActiveRun:
    """The run between ``%track start`` and ``%track stop``: where it is written, what was captured.

    Example:
        >>> active = tracker.active  # doctest: +SKIP
        >>> active.run_id, active.experiment, sorted(active.sections)  # doctest: +SKIP
        ('0f3c…', 'churn', ['data', 'environment', 'git'])
    """

    run_id: str
    run_name: str | None
    experiment: str
    experiment_id: str
    tracking: Tracking
    location: NotebookLocation
    ctx: CaptureContext
    sections: dict[str, Section]
    started: float
    tags: dict[str, str] = field(default_factory=dict)
    #: 1 for the first run started in this kernel, 2 for the next, ... (a replay matches runs by it)
    kernel_run_index: int = 1
    #: Cells the kernel had finished at start: live content that arrived before is not this run's.
    cells_completed_at_start: int = 0
    #: Why the server could not be reached at start (the run waits in the spool), else None.
    unreachable: str | None = None
    #: What the user must be told once (the server is unreachable, the run is pending).
    notice: str | None = None

    @property
    def store(self) -> MlflowStore:
        """The store the run is written into: the embedded one, or the tracking server's spool."""
        return self.tracking.store

    @property
    def target(self) -> MlflowStore | None:
        """The tracking server the run is bound for (through the spool), else None."""
        return self.tracking.target
