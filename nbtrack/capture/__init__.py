"""Capture providers: each takes one section of a snapshot.

A provider is any object with a ``name`` and ``capture(ctx) -> CaptureResult``. It raises
:class:`SectionUnavailable` when its section does not apply (no git repository, no DVC project,
notebook path unknown); :func:`run_provider` turns that into an ``absent`` section with the reason,
and any other exception into an ``error`` section, so one failing provider never fails the run.
"""

from nbtrack.capture.base import CaptureContext, CaptureResult, Provider, SectionUnavailable, run_provider

__all__ = ["CaptureContext", "CaptureResult", "Provider", "SectionUnavailable", "run_provider"]
