"""Where a sweep's trials execute: in this process one after another, or ``--jobs N`` worker processes.

Workers are processes, not threads: papermill changes the process's working folder around each
execution (``os.chdir``), which threads would race on. Each worker imports nbtrack once and runs
trials one after another; the configuration travels as ``NBTRACK_CONFIG`` (as a replay hands it to
its kernel), the prepared source as plain data. ``spawn``: a forked child of a process holding
MLflow's SQLite connections and threads is not safe.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from nbtrack.sweep.source import TrialSource

if TYPE_CHECKING:
    from nbtrack.config import NbtrackConfig
    from nbtrack.runner import CellCallback
    from nbtrack.track.headless import HeadlessRun

__all__ = ["TrialPool"]


def _init_worker(environment: dict[str, str]) -> None:
    """A worker's environment: the sweep's configuration, handed down."""
    os.environ.update(environment)


def _trial_in_worker(source: TrialSource, parameters: dict[str, Any], options: dict[str, Any]) -> HeadlessRun:
    from nbtrack.config import load_config
    from nbtrack.sweep.trial import execute_trial

    return execute_trial(source, parameters, config=load_config(), **options)


class TrialPool:
    """Runs trials (``submit``) in ``jobs`` worker processes, or in one thread of this process.

    Example:
        >>> with TrialPool(2, config) as pool:  # doctest: +SKIP
        ...     future = pool.submit(src, {"lr": 0.01}, experiment="churn", name="t1", tags={})
    """

    def __init__(self, jobs: int, config: NbtrackConfig, on_cell: CellCallback | None = None) -> None:
        from nbtrack.config import to_env

        self.config = config
        self.on_cell = on_cell if jobs == 1 else None  # (a callback does not cross processes)
        self.jobs = jobs
        self._executor: Executor
        if jobs == 1:
            # One thread: the only one that executes notebooks, so papermill's chdir races nobody.
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="nbtrack-trial")
        else:
            import multiprocessing

            self._executor = ProcessPoolExecutor(
                jobs,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(to_env(config),),
            )

    def submit(self, source: TrialSource, parameters: dict[str, Any], **options: Any) -> Future[HeadlessRun]:
        """Start one trial (see :func:`nbtrack.sweep.trial.execute_trial` for ``options``)."""
        if self.jobs == 1:
            from nbtrack.sweep.trial import execute_trial

            run: Callable[..., HeadlessRun] = execute_trial
            return self._executor.submit(
                run, source, parameters, config=self.config, on_cell=self.on_cell, **options
            )
        return self._executor.submit(_trial_in_worker, source, parameters, options)

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the running trials (none started after a ``cancel``)."""
        self._executor.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> TrialPool:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        self.close(cancel=kind is not None)
