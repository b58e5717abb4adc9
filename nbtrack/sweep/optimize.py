"""``--optimize max:METRIC --trials N``: an Optuna search (ask/tell) over the sweep's space.

Optuna proposes each trial's parameters (``study.ask`` with fixed distributions: a list is
categorical, ``LOW:HIGH[:log]`` a float or int range); the trial runs as any sweep trial, and its
run's METRIC (as the notebook logged it) is told back. A trial that failed, or whose run lacks the
metric, is told as failed (Optuna then samples elsewhere). ``jobs`` trials are in flight at once: a
new one is asked for as each ends. The best trial is the sweep result's (and the parent run's tags).
"""

from __future__ import annotations

import math
import sys
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING, Any

from nbtrack.sweep.parameters import Choice, Space

if TYPE_CHECKING:
    from nbtrack.sweep.pool import TrialPool
    from nbtrack.sweep.service import SweepState
    from nbtrack.track.headless import HeadlessRun

__all__ = ["distributions", "search"]


def distributions(space: Space) -> dict[str, Any]:
    """The space as Optuna's distributions.

    Example:
        >>> from nbtrack.sweep.parameters import Range
        >>> sorted(distributions({"a": Choice((1, 2)), "lr": Range(1e-4, 0.1, log=True)}))
        ['a', 'lr']
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    found: dict[str, Any] = {}
    for name, axis in space.items():
        if isinstance(axis, Choice):
            found[name] = CategoricalDistribution(list(axis.values))
        elif axis.integer:
            found[name] = IntDistribution(int(axis.low), int(axis.high), log=axis.log)
        else:
            found[name] = FloatDistribution(axis.low, axis.high, log=axis.log)
    return found


def search(
    state: SweepState,
    pool: TrialPool,
    space: Space,
    goal: tuple[str, str],
    *,
    trials: int,
    jobs: int,
    seed: int | None,
) -> None:
    """Ask, run, tell ``trials`` times (``jobs`` in flight); the best trial into ``state.result``."""
    import optuna  # ~1 s to import: only for a search

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its own per-trial lines: ours say it
    direction, metric = goal
    study = optuna.create_study(
        direction="maximize" if direction == "max" else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    dists = distributions(space)
    state.result.metric = metric
    pending: dict[Future[HeadlessRun], Any] = {}
    asked = 0
    while asked < trials or pending:
        while asked < trials and len(pending) < jobs:
            trial = study.ask(dists)
            asked += 1
            pending[state.submit(pool, asked, dict(trial.params))] = trial
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            trial = pending.pop(future)
            parameters = dict(trial.params)
            run = state.done(future, parameters)
            value = _metric(state, run, metric)
            state.result.values[run.run_id or f"trial {trial.number}"] = value
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, value)
                _keep_best(state, run, parameters, value, direction)
            state.tell(run, parameters)


def _keep_best(
    state: SweepState, run: HeadlessRun, parameters: dict[str, Any], value: float, direction: str
) -> None:
    best = state.result.best_value
    if best is None or (value > best if direction == "max" else value < best):
        state.result.best_run_id, state.result.best_value = run.run_id, value
        state.result.best_parameters = parameters


def _metric(state: SweepState, run: HeadlessRun, metric: str) -> float | None:
    """The trial run's ``metric``; None when it failed, lacks it, or the value is no number."""
    if run.status != "FINISHED" or run.run_id is None:
        return None
    from nbtrack.errors import StoreError

    try:
        value = state.store.get_run(run.run_id).metrics.get(metric)
    except StoreError as exc:  # e.g. still in the local spool of a tracking server
        print(f"nbtrack sweep: cannot read {metric} of run {run.run_id}: {exc}", file=sys.stderr)
        return None
    if value is None or not math.isfinite(value):
        return None
    return float(value)
