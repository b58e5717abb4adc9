"""Listing runs: a store's runs plus the local spool's pending ones, orphans ended first.

What ``nbtrack runs`` and ``GET /nbtrack/runs`` both show: one page of runs, newest first, filtered
by notebook and experiment in the store's own query (never a scan). On the first page, the runs of
the tracking server's local spool that are not uploaded yet come first, and runs whose kernel died
on this host are ended ``KILLED`` before they are listed (:mod:`nbtrack.store.orphans`). When the
tracking server cannot be reached, the pending runs are still listed, with a warning saying why they
are alone. A server copy whose upload stopped halfway is listed once, as its pending spool run; on
another machine it is listed flagged ``pending_upload`` (see its row's ``upload_note``). A ``RUNNING``
run owned by another host is marked ``running_on`` that host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbtrack.errors import StoreError, UsageError
from nbtrack.models import RunRecord
from nbtrack.runs.rows import run_row
from nbtrack.store.orphans import OWNER_HOST, end_orphans_quietly, hostname
from nbtrack.store.spool import PENDING, SPOOL_RUN_ID, SYNC_STATE

#: Pending runs listed at most (a spool holds the runs of one machine's outage: a handful).
MAX_PENDING = 1000


@dataclass
class RunPage:
    """One page of a listing.

    Attributes:
        runs: the runs, pending spool runs first, then the store's, newest first.
        rows: their rows (:func:`nbtrack.runs.rows.run_row`, plus ``running_on``).
        next_page_token: the store's token for the next page, None on the last.
        warning: why only the pending runs are listed (the tracking server is unreachable).
    """

    runs: list[RunRecord] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    next_page_token: str | None = None
    warning: str | None = None


def rows_of(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """The rows of ``runs``, with ``running_on`` set for runs whose kernel is on another host.

    Such a run is ``RUNNING`` as far as anyone here can tell: its kernel is there.
    """
    here = hostname()
    rows = []
    for run in runs:
        row = run_row(run)
        owner = run.tags.get(OWNER_HOST)
        if row["status"] == "RUNNING" and owner and owner != here:
            row["running_on"] = owner
        rows.append(row)
    return rows


def pending_runs(spool: Any, notebook: str | None, experiment: str | None, by: str) -> list[RunRecord]:
    """The spool's runs not uploaded yet (orphans ended ``KILLED`` first), filtered like the listing."""
    if spool is None or not spool.exists():
        return []
    end_orphans_quietly(spool.store, by=by)
    runs, _ = spool.store.search_runs(
        notebook=notebook, experiment=experiment, tags={SYNC_STATE: PENDING}, max_results=MAX_PENDING
    )
    return list(runs)


def _invalid_parameter(exc: StoreError) -> bool:
    """Whether MLflow refused a request parameter (a malformed page token) rather than failed."""
    return getattr(exc.__cause__, "error_code", None) == "INVALID_PARAMETER_VALUE"


def list_page(
    store: Any,
    spool: Any,
    *,
    notebook: str | None = None,
    experiment: str | None = None,
    max_results: int = 50,
    page_token: str | None = None,
    by: str = "nbtrack",
) -> RunPage:
    """One page of runs of ``store`` (and, on the first page, the pending runs of ``spool``).

    ``by`` names the front-end in the reason tag of the orphans it ends.

    Raises:
        UsageError: ``page_token`` is not a page of this listing.
        StoreError: the store failed and no run is pending in the spool.
    """
    first = not page_token
    pending = pending_runs(spool, notebook, experiment, by) if first else []
    try:
        if first:  # runs whose kernel died on this host are ended KILLED before they are listed
            end_orphans_quietly(store, by=by)
        runs, token = store.search_runs(
            notebook=notebook, experiment=experiment, max_results=max_results, page_token=page_token
        )
    except StoreError as exc:
        if page_token and _invalid_parameter(exc):
            raise UsageError(
                f"page_token {page_token[:40]!r} is not a page of this listing; list again without it"
            ) from exc
        if not pending:
            raise
        # The tracking server is down: the runs waiting for it in the local spool are still listed.
        return RunPage(pending, rows_of(pending), None, str(exc))
    if isinstance(token, bytes):  # MLflow's SQL store hands out its base64 token as bytes
        token = token.decode("ascii")
    # A half-uploaded server copy is listed once: as its spool run, which has all of it.
    spooled = {r.run_id for r in pending}
    every = pending + [r for r in runs if r.tags.get(SPOOL_RUN_ID) not in spooled]
    return RunPage(every, rows_of(every), token or None)


def previous_run_id(store: Any, run_id: str, notebook: str) -> str | None:
    """The run of ``notebook`` that started right before ``run_id``, if any (the card's compare)."""
    for page in (2, 1000):  # the card is usually the newest run: two runs answer
        runs, _ = store.search_runs(notebook=notebook, max_results=page)
        ids = [r.run_id for r in runs]
        if run_id in ids:
            after = ids.index(run_id) + 1
            return ids[after] if after < len(ids) else None
        if len(ids) < page:
            return None
    return None
