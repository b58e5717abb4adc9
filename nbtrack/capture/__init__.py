"""Capture providers: each takes one section of a snapshot.

A provider is any object with a ``name`` and ``capture(ctx) -> CaptureResult``. It raises
:class:`SectionUnavailable` when its section does not apply (no git repository, no DVC project),
and :class:`SectionIncomplete` with what it did take when part of it is missing (the notebook's
path unknown or its file not a notebook: the execution history is still kept); :func:`run_provider`
turns these into an ``absent`` or ``error`` section with the reason, and any other exception into an
``error`` section, so one failing provider never fails the run.
"""

from nbtrack.capture.base import (
    CaptureContext,
    CaptureResult,
    Provider,
    SectionIncomplete,
    SectionUnavailable,
    run_provider,
)

__all__ = [
    "CaptureContext",
    "CaptureResult",
    "Provider",
    "SectionIncomplete",
    "SectionUnavailable",
    "run_provider",
]
