"""Which run an id names: a full id, a spool id, or a unique prefix of either.

::

    3f2a9c41e0b84d0f9b6a2c1d7e5f4a3b   a full MLflow run id: looked up directly
    3f2a9c41                           a prefix of 6 to 31 hex digits (nbtrack prints 8): one store
                                       query per store (``attributes.run_id LIKE '3f2a9c41%'``),
                                       never a scan of all runs
    a spool id (or its prefix)         a run of the tracking server's local spool: the server copy
                                       once uploaded, else the pending spool run itself

A prefix that matches several runs is a one-line :class:`~nbtrack.errors.UsageError` naming the
candidates; fewer than 6 characters that are no full id is one too.

Example:
    >>> found = resolve(store, None, "3f2a9c")  # doctest: +SKIP
    >>> found.run_id  # doctest: +SKIP
    '3f2a9c41e0b84d0f9b6a2c1d7e5f4a3b'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nbtrack.errors import RunNotFoundError, StoreError, UsageError
from nbtrack.models import RunRecord
from nbtrack.store import MlflowStore
from nbtrack.store.spool import SERVER_RUN_ID, SYNC_STATE, UPLOADED, Spool

#: The shortest prefix accepted (the panel, the card and ``nbtrack runs`` show 8 characters).
MIN_PREFIX = 6
#: MLflow run ids are 32 hexadecimal digits (``uuid4().hex``).
FULL_LENGTH = 32
#: Candidates an ambiguous prefix names; each store is asked for one more, to know there are more.
SHOWN = 5
_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True)
class Found:
    """A resolved run: where it is and what MLflow holds about it.

    Attributes:
        store: the store holding the run (the spool's own store for a pending run).
        run: the run, as nbtrack's record.
        pending: the run is still in the local spool, not (completely) on the tracking server.
        note: what the user should know about the lookup ("run X was uploaded as run Y").
    """

    store: MlflowStore
    run: RunRecord
    pending: bool = False
    note: str | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id


def parse(run_id: str) -> tuple[str, bool]:
    """The id to look up, and whether it is a prefix.

    Raises:
        UsageError: fewer than :data:`MIN_PREFIX` characters.

    Example:
        >>> parse("3F2A9C41")
        ('3f2a9c41', True)
    """
    text = (run_id or "").strip()
    if len(text) < MIN_PREFIX:
        raise UsageError(
            f"run id {run_id!r} is too short: give the full id or at least {MIN_PREFIX} of its first "
            "characters, as `nbtrack runs` lists them"
        )
    if _HEX.fullmatch(text):
        text = text.lower()
        return text, len(text) < FULL_LENGTH
    return text, False  # not an id MLflow makes: the store says it knows no such run


def ambiguous(prefix: str, runs: list[RunRecord], more: bool) -> UsageError:
    """The one-line error of a prefix that matches several runs, naming them.

    Each candidate is shown with as many characters as tell them apart (at least 8).

    Example:
        >>> a = RunRecord("3f2a9c41" + "0" * 24, "baseline", "1", "FINISHED", 1, 2)
        >>> b = RunRecord("3f2a9c77" + "0" * 24, "tuned", "1", "FINISHED", 1, 2)
        >>> print(ambiguous("3f2a9c", [a, b], more=False))
        run id prefix 3f2a9c matches 2 runs: 3f2a9c41… (baseline), 3f2a9c77… (tuned); give more characters
    """
    ids = {run.run_id for run in runs}
    width = next((n for n in range(8, FULL_LENGTH) if len({i[:n] for i in ids}) == len(ids)), FULL_LENGTH)
    shown = ", ".join(
        f"{run.run_id[:width]}…" + (f" ({' '.join(run.name.split())})" if run.name else "")
        for run in runs[:SHOWN]
    )
    count = f"more than {SHOWN}" if more or len(runs) > SHOWN else str(len(runs))
    return UsageError(f"run id prefix {prefix} matches {count} runs: {shown}; give more characters")


def from_spool(store: MlflowStore, spool: Spool, run: RunRecord) -> Found:
    """A run of the local spool: its server copy once uploaded, else the pending spool run."""
    server_id = run.tags.get(SERVER_RUN_ID)
    if run.tags.get(SYNC_STATE) == UPLOADED and server_id:
        note = f"run {run.run_id} was uploaded as run {server_id}"
        return Found(store, store.get_run(server_id), note=note)
    return Found(spool.store, run, pending=True)


def resolve(store: MlflowStore, spool: Spool | None, run_id: str) -> Found:
    """The run ``run_id`` names in ``store``, or in ``spool`` (the local spool of a tracking server,
    None for any other store or when it does not exist).

    Raises:
        UsageError: the id is too short, or a prefix that matches several runs.
        RunNotFoundError: no run has that id (or an id with that prefix).
        StoreError: the store failed (a prefix still resolves in the spool while the server is down).
    """
    wanted, is_prefix = parse(run_id)
    if is_prefix:
        return _by_prefix(store, spool, wanted)
    if spool is not None:
        # First: it is local, and answers while the tracking server is down.
        found = spool.find(wanted)
        if found is not None:
            return from_spool(store, spool, found)
    return Found(store, store.get_run(wanted))


def _by_prefix(store: MlflowStore, spool: Spool | None, prefix: str) -> Found:
    limit = SHOWN + 1
    # One store query each (``attributes.run_id LIKE 'prefix%'``), never a scan of all runs.
    in_spool = spool.store.runs_with_id_prefix(prefix, max_results=limit) if spool is not None else []
    more = len(in_spool) == limit
    try:
        on_store = store.runs_with_id_prefix(prefix, max_results=limit)
    except StoreError:
        if not in_spool:
            raise
        on_store = []  # the tracking server is down: the spool's runs are what can be told apart
    more = more or len(on_store) == limit
    candidates = [(run, True) for run in in_spool] + [(run, False) for run in on_store]
    if not candidates:
        raise RunNotFoundError(
            f"no run id starts with {prefix} in {store.display_uri}; list runs with `nbtrack runs`"
        )
    if len(candidates) > 1:
        raise ambiguous(prefix, [run for run, _ in candidates], more)
    run, spooled = candidates[0]
    return from_spool(store, spool, run) if spooled and spool is not None else Found(store, run)
