"""Runs whose kernel died: found and ended ``KILLED`` instead of staying ``RUNNING`` forever.

A kernel killed in the middle of a tracked run (SIGKILL, OOM killer, a crashed machine) never reaches
``%track stop``: its run keeps MLflow's status ``RUNNING`` and its start snapshot. At ``%track start``
nbtrack records who owns the run, as tags::

    nbtrack.owner.host      the host name of the kernel
    nbtrack.owner.pid       the kernel's process id
    nbtrack.owner.started   the kernel process's start time (epoch seconds; for people, and for
                            runs recorded before the two tags below)
    nbtrack.owner.start_ticks   the kernel's start time in clock ticks since boot (``/proc/<pid>/stat``
                            field 22) and
    nbtrack.owner.boot_id   the boot it belongs to (``/proc/sys/kernel/random/boot_id``): together they
                            tell a reused pid apart from the kernel's, immune to wall-clock jumps

Why ticks and not the epoch start time: a process's epoch start time is derived from the boot time,
which the kernel computes as *wall clock now* minus uptime, so a wall-clock jump (NTP stepping the
clock, a suspended VM resuming) moves every process's start time by the jump, and a live kernel's run
looked dead after a jump of 1 s or more. Ticks since boot never move.

An *orphan* is a ``RUNNING`` nbtrack run owned by a process on this host that no longer exists (or
is a zombie, or whose pid now belongs to a process started at another time). Runs owned by another
host are left alone: from here nobody can tell whether that kernel is alive. Runs from before these
tags existed are left alone too.

:func:`end_orphans` finds them with one server-side MLflow search (``attributes.status = 'RUNNING'``
and the owner-host tag; never a scan of all runs), ends each with ``KILLED`` at its last known
activity (the latest metric it logged, else its start) and tags why (``nbtrack.killed_reason``). It
runs at every ``%track start`` (the start's own experiment), before ``nbtrack runs`` and before the
server extension lists runs (every active experiment).

Example:
    >>> end_orphans(MlflowStore.for_project(Path("."), NbtrackConfig()))  # doctest: +SKIP
    ['3f2a9c41e0b84d0f9b6a2c1d7e5f4a3b']
"""

from __future__ import annotations

import logging
import os
import socket
from functools import cache
from pathlib import Path
from typing import Any

from nbtrack.tags import (
    KILLED_REASON,
    OWNER_BOOT_ID,
    OWNER_HOST,
    OWNER_PID,
    OWNER_START_TICKS,
    OWNER_STARTED,
)

__all__ = [
    "KILLED_REASON",
    "OWNER_BOOT_ID",
    "OWNER_HOST",
    "OWNER_PID",
    "OWNER_STARTED",
    "OWNER_START_TICKS",
    "end_orphans",
    "end_orphans_quietly",
    "hostname",
    "last_activity_ms",
    "owner_gone",
    "owner_tags",
]

log = logging.getLogger("nbtrack.store.orphans")

#: A process's start time as two readings may round it (psutil derives it from clock ticks).
_START_TOLERANCE_S = 1.0


def hostname() -> str:
    return socket.gethostname()


@cache
def owner_tags() -> dict[str, str]:
    """The tags naming this process as the owner of the runs it starts.

    Example:
        >>> sorted(owner_tags())
        ['nbtrack.owner.host', 'nbtrack.owner.pid', 'nbtrack.owner.started']
    """
    import psutil  # imported by mlflow already; kept out of %load_ext

    pid = os.getpid()
    found = {
        OWNER_HOST: hostname(),
        OWNER_PID: str(pid),
        OWNER_STARTED: f"{psutil.Process(pid).create_time():.2f}",
    }
    ticks, boot = start_ticks(pid), boot_id()
    if ticks is not None and boot is not None:
        found.update({OWNER_START_TICKS: ticks, OWNER_BOOT_ID: boot})
    return found


def boot_id() -> str | None:
    """This boot's id (Linux), else None.

    Example:
        >>> len(boot_id() or "0" * 36)
        36
    """
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of process ``pid`` from ``/proc/<pid>/stat``;
    None when there is no such process (or no ``/proc``).

    Example:
        >>> proc_stat(os.getpid())[0]  # doctest: +SKIP
        'R'
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; fields follow the last ")"
    fields = text[text.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def start_ticks(pid: int) -> str | None:
    """Process ``pid``'s start time in clock ticks since boot (field 22 of ``/proc/<pid>/stat``)."""
    found = proc_stat(pid)
    return found[1] if found is not None else None


def owner_gone(tags: dict[str, str]) -> str | None:
    """Why the run's owner process is gone ("process 123 no longer exists"), or None when it may
    still be running (alive, on another host, or the tags do not say)."""
    import psutil

    host, pid, started = tags.get(OWNER_HOST), tags.get(OWNER_PID), tags.get(OWNER_STARTED)
    if host != hostname() or not pid or not pid.isdigit():
        return None
    ticks, boot = tags.get(OWNER_START_TICKS), tags.get(OWNER_BOOT_ID)
    if ticks and boot and boot_id() is not None:
        return _gone_by_ticks(int(pid), host, ticks, boot)
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return f"kernel process {pid} on {host} has exited (a zombie not yet reaped)"
        if started and abs(proc.create_time() - float(started)) > _START_TOLERANCE_S:
            return f"kernel process {pid} on {host} has exited (its pid now belongs to another process)"
    except psutil.NoSuchProcess:
        return f"kernel process {pid} on {host} no longer exists"
    except (psutil.Error, ValueError):  # access denied, odd tag: assume alive, touch nothing
        return None
    return None


def _gone_by_ticks(pid: int, host: str, ticks: str, boot: str) -> str | None:
    """:func:`owner_gone` from the boot id and the start ticks: no wall-clock arithmetic at all."""
    if boot != boot_id():
        return f"kernel process {pid} on {host} is gone (the machine has restarted since)"
    found = proc_stat(pid)
    if found is None:
        return f"kernel process {pid} on {host} no longer exists"
    state, now_ticks = found
    if state in ("Z", "X"):
        return f"kernel process {pid} on {host} has exited (a zombie not yet reaped)"
    if now_ticks != ticks:
        return f"kernel process {pid} on {host} has exited (its pid now belongs to another process)"
    return None


def last_activity_ms(run: Any) -> int:
    """The run's last known activity: its latest logged metric, else its start (epoch ms)."""
    return max(int(run.start_time or 0), int(run.last_metric_ms or 0))


def end_orphans(store: Any, *, experiment_ids: list[str] | None = None, by: str = "nbtrack") -> list[str]:
    """End this host's orphaned runs ``KILLED``; returns their ids.

    ``experiment_ids`` limits the search (``%track start`` passes its own experiment: one query);
    None searches every active experiment. ``by`` names who noticed, for the reason tag.
    """
    runs, _ = store.search_runs(
        experiment_ids=experiment_ids,
        status="RUNNING",
        tags={OWNER_HOST: hostname()},
        max_results=200,
    )
    ended = []
    for run in runs:
        tags = dict(run.tags)
        reason = owner_gone(tags)
        if reason is None:
            continue
        store.mark_killed(run.run_id, last_activity_ms(run), f"{reason}; ended KILLED by {by}")
        ended.append(run.run_id)
    if ended:
        log.info("ended %d orphaned run(s) KILLED: %s", len(ended), ", ".join(ended))
    return ended


def end_orphans_quietly(store: Any, **kwargs: Any) -> list[str]:
    """:func:`end_orphans`, but never failing its caller (a start, a listing): errors are logged,
    except a damaged store, or one locked past the lock timeout, which the caller could not use
    either (raised at once instead of after a second wait)."""
    from nbtrack.errors import StoreDamagedError, StoreLockedError

    try:
        return end_orphans(store, **kwargs)
    except (StoreDamagedError, StoreLockedError):
        raise  # the caller's own next call would fail the same way, after the same wait
    except Exception as exc:  # noqa: BLE001 - housekeeping must not fail a run or a listing
        log.debug("looking for orphaned runs failed: %s", exc)
        return []
