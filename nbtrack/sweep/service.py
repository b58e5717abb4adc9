"""Sweeps: one notebook (or recorded run) executed once per point of a parameter grid, each trial an
ordinary tracked run in its own isolated workspace, all nested under one parent MLflow run.

- :func:`run_trial`: one trial (the panel's "Clone with new parameters" is one);
- :func:`sweep`: the grid (cartesian product), ``random`` points of it, or an Optuna search
  (``optimize="max:val_auc"``), ``jobs`` trials at once; the parent run says how it went.

The parent ends FINISHED when every trial FINISHED, else FAILED (the tags say how many of each and
which trials failed); KILLED when the sweep was interrupted. The trials that ran stay ordinary runs.

Example:
    >>> result = sweep("train.ipynb", {"lr": [0.001, 0.01], "depth": [3, 5]}, config=cfg, runs=runs,
    ...                jobs=2)  # doctest: +SKIP
    >>> result.parent_run_id, [run.status for _, run in result.trials]  # doctest: +SKIP
    ('9b1e…', ['FINISHED', 'FINISHED', 'FINISHED', 'FINISHED'])
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack.errors import NbtrackError, UsageError
from nbtrack.sweep.parameters import Choice, Range, Space, check_names, describe, grid_points
from nbtrack.sweep.source import TrialSource, resolve_source

if TYPE_CHECKING:
    from nbtrack.config import NbtrackConfig
    from nbtrack.runner import CellCallback
    from nbtrack.runs.service import Runs
    from nbtrack.store import MlflowStore
    from nbtrack.sweep.pool import TrialPool
    from nbtrack.track.headless import HeadlessRun

__all__ = ["SweepResult", "run_trial", "sweep"]

#: Called as each trial ends: its run and its parameters.
OnTrial = Callable[["HeadlessRun", dict[str, Any]], None]


@dataclass
class SweepResult:
    """A sweep's parent run and its trials (parameters, run), in the order they ended."""

    parent_run_id: str
    trials: list[tuple[dict[str, Any], HeadlessRun]] = field(default_factory=list)
    status: str = "FINISHED"
    #: With ``optimize``: the metric, the best trial's run id, value and parameters.
    metric: str | None = None
    best_run_id: str | None = None
    best_value: float | None = None
    best_parameters: dict[str, Any] | None = None
    #: The optimised metric of each trial's run, by run id (None: the run lacks it).
    values: dict[str, float | None] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return sum(run.status == "FINISHED" for _, run in self.trials)


def run_trial(
    source: str,
    parameters: dict[str, Any],
    *,
    config: NbtrackConfig,
    runs: Runs,
    parent_run_id: str | None = None,
    name: str | None = None,
    on_cell: CellCallback | None = None,
    experiment: str | None = None,
    project: Path | None = None,
    allow_uncommitted: bool = False,
) -> HeadlessRun:
    """Run ``source`` (a notebook path or a run id) once with ``parameters``, in its own workspace.

    A notebook runs as the working tree has it (HEAD plus uncommitted changes, the current DVC data
    version); a run id as recorded (its commit, diff, data version), its recorded parameters
    overridden by ``parameters`` and the new run tagged ``nbtrack.clone_of``.

    Raises:
        UsageError: a parameter the notebook's ``parameters`` cell does not have.
        NotebookError, RunNotFoundError, CannotReplay: no such notebook or run, or its code or data
            cannot be rebuilt.

    Example:
        >>> run_trial("3f2a9c41", {"alpha": 0.1}, config=cfg, runs=runs).status  # doctest: +SKIP
        'FINISHED'
    """
    from nbtrack.sweep.trial import execute_trial, trial_tags

    prepared = resolve_source(
        source, config=config, runs=runs, project=project, allow_uncommitted=allow_uncommitted
    )
    check_names(
        {name: Choice((value,)) for name, value in parameters.items()}, prepared.known, prepared.label
    )
    return execute_trial(
        prepared,
        parameters,
        config=config,
        experiment=_experiment(experiment, prepared, config),
        name=name,
        tags=trial_tags(prepared, parent_run_id, None),
        on_cell=on_cell,
    )


@dataclass
class SweepState:
    """What every trial of one sweep shares."""

    source: TrialSource
    store: MlflowStore
    experiment: str
    name: str
    parent_run_id: str = ""
    on_trial: OnTrial | None = None
    result: SweepResult = field(default_factory=lambda: SweepResult(""))

    def submit(self, pool: TrialPool, index: int, parameters: dict[str, Any]) -> Future[HeadlessRun]:
        from nbtrack.sweep.trial import trial_tags

        tags = trial_tags(self.source, self.parent_run_id, index)
        try:
            return pool.submit(
                self.source, parameters, experiment=self.experiment, name=f"{self.name} #{index}", tags=tags
            )
        except RuntimeError as exc:  # the pool broke (a worker was killed): this trial fails, told
            failed: Future[HeadlessRun] = Future()
            failed.set_exception(exc)
            return failed

    def done(self, future: Future[HeadlessRun], parameters: dict[str, Any]) -> HeadlessRun:
        """The trial's run (a FAILED one without a run when the trial could not run), kept and told."""
        from nbtrack.sweep.trial import failed_run

        try:
            run = future.result()
        except NbtrackError as exc:  # the workspace could not be built: the next trial may still run
            run = failed_run(str(exc))
        except Exception as exc:  # noqa: BLE001 - a worker that died (BrokenProcessPool) or a bug
            run = failed_run(f"the trial's worker failed: {type(exc).__name__}: {exc}")
        self.result.trials.append((parameters, run))
        return run

    def tell(self, run: HeadlessRun, parameters: dict[str, Any]) -> None:
        if self.on_trial is not None:
            self.on_trial(run, parameters)


def sweep(
    source: str,
    grid: dict[str, Any],
    *,
    config: NbtrackConfig,
    runs: Runs,
    random: int | None = None,
    seed: int | None = None,
    jobs: int = 1,
    optimize: str | None = None,
    trials: int | None = None,
    experiment: str | None = None,
    name: str | None = None,
    on_trial: OnTrial | None = None,
    project: Path | None = None,
    metric_values: dict[str, float | None] | None = None,
    allow_uncommitted: bool = False,
) -> SweepResult:
    """Run ``source`` once per point of ``grid``, ``jobs`` at a time, under one parent run.

    Args:
        grid: name -> a list of values (or a :class:`~nbtrack.sweep.parameters.Range` /
            :class:`~nbtrack.sweep.parameters.Choice`, as :func:`~nbtrack.sweep.parameters.parse_space`
            makes them from ``-p``).
        random: sample this many points instead of the whole grid (``seed`` makes it repeatable).
        optimize: ``"max:METRIC"`` or ``"min:METRIC"``: an Optuna search of ``trials`` trials over
            the grid (lists categorical, ranges numeric), each trial's METRIC read from its run.
        on_trial: called as each trial ends, in this process.
        project: the project (default: the notebook's, or the current folder's for a run id).
        allow_uncommitted: a run of a shared store runs even when its code is not the repository's.
        metric_values: a dict the search fills with each trial's METRIC by run id before
            ``on_trial`` is called for it (the result's ``values``).

    Raises:
        UsageError: bad input (an unknown parameter, an empty list, ``random``/``trials``/``jobs``
            below 1, a malformed ``optimize``); raised before anything is recorded.

    Example:
        >>> sweep("train.ipynb", {"lr": [0.001, 0.01]}, config=cfg, runs=runs).finished  # doctest: +SKIP
        2
    """
    space = _space(grid)
    goal = _checked(space, jobs=jobs, random=random, optimize=optimize, trials=trials)
    points = None if goal else grid_points(space, random=random, seed=seed)
    prepared = resolve_source(
        source, config=config, runs=runs, project=project, allow_uncommitted=allow_uncommitted
    )
    check_names(space, prepared.known, prepared.label)
    base = name or f"sweep {Path(prepared.relpath).stem}"
    state = SweepState(prepared, _store(prepared, config), _experiment(experiment, prepared, config), base)
    state.on_trial = on_trial
    for risk in prepared.risks:
        print(f"nbtrack sweep: risk: {risk}", file=sys.stderr)
    state.parent_run_id = _start(state, space, goal, points, random, seed)
    state.result = SweepResult(state.parent_run_id)
    if metric_values is not None:
        state.result.values = metric_values
    _run_and_end(state, space, points, goal, jobs=jobs, trials=trials, seed=seed, config=config)
    return state.result


def _run_and_end(
    state: SweepState,
    space: Space,
    points: list[dict[str, Any]] | None,
    goal: tuple[str, str] | None,
    *,
    jobs: int,
    trials: int | None,
    seed: int | None,
    config: NbtrackConfig,
) -> None:
    """The trials, then the parent's end: KILLED when interrupted, else FINISHED only if all finished."""
    from nbtrack.sweep.pool import TrialPool

    status = "KILLED"
    try:
        # No more workers than trials: each worker process costs its imports (~2-5 s).
        with TrialPool(max(1, min(jobs, len(points) if points is not None else trials or 1)), config) as pool:
            if goal is None:
                _grid(state, pool, points or [], jobs)
            else:
                from nbtrack.sweep.optimize import search

                search(state, pool, space, goal, trials=trials or 1, jobs=jobs, seed=seed)
        status = "FINISHED" if state.result.finished == len(state.result.trials) else "FAILED"
    finally:
        state.result.status = status
        _end(state, status)


def _grid(state: SweepState, pool: TrialPool, points: list[dict[str, Any]], jobs: int) -> None:
    """Every point, ``jobs`` in flight; each told as it ends."""
    pending: dict[Future[HeadlessRun], dict[str, Any]] = {}
    queue = list(enumerate(points, start=1))
    while queue or pending:
        while queue and len(pending) < jobs:
            index, parameters = queue.pop(0)
            pending[state.submit(pool, index, parameters)] = parameters
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            parameters = pending.pop(future)
            state.tell(state.done(future, parameters), parameters)


def _space(grid: dict[str, Any]) -> Space:
    space: Space = {}
    for name, values in grid.items():
        if isinstance(values, (Choice, Range)):
            space[name] = values
        elif isinstance(values, (list, tuple)):
            if not values:
                raise UsageError(f"-p {name}: an empty list; give at least one value")
            space[name] = Choice(tuple(values))
        else:
            space[name] = Choice((values,))
    if not space:
        raise UsageError("give at least one parameter to sweep: -p NAME V1,V2 (e.g. -p lr 0.001,0.01)")
    return space


def _checked(
    space: Space, *, jobs: int, random: int | None, optimize: str | None, trials: int | None
) -> tuple[str, str] | None:
    """Refuse bad numbers and combinations; the optimisation goal ``(direction, metric)``, if any."""
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: give at least 1")
    if random is not None and random < 1:
        raise UsageError(f"--random {random}: give at least 1 trial")
    if trials is not None and trials < 1:
        raise UsageError(f"--trials {trials}: give at least 1 trial")
    if optimize is None:
        if trials is not None:
            raise UsageError("--trials counts an --optimize search's trials; add --optimize max:METRIC")
        return None
    if random is not None:
        raise UsageError("--random and --optimize are two ways to pick trials: give one")
    direction, sep, metric = optimize.partition(":")
    if not sep or direction not in ("max", "min") or not metric.strip():
        raise UsageError(f"--optimize {optimize!r}: write max:METRIC or min:METRIC, e.g. max:val_auc")
    if trials is None:
        raise UsageError("--optimize needs --trials N: how many trials the search runs")
    return direction, metric.strip()


def _experiment(given: str | None, source: TrialSource, config: NbtrackConfig) -> str:
    """The experiment of the trials (and the parent: MLflow nests runs of one experiment only)."""
    return given or source.experiment or config.experiment or source.project.name or "nbtrack"


def _store(source: TrialSource, config: NbtrackConfig) -> MlflowStore:
    """The store the trials' runs go to (the project's embedded one is created if need be)."""
    from nbtrack.store import MlflowStore

    return MlflowStore.for_project(source.project, config)


def _start(
    state: SweepState,
    space: Space,
    goal: tuple[str, str] | None,
    points: list[dict[str, Any]] | None,
    random: int | None,
    seed: int | None,
) -> str:
    """The parent run, tagged with what the sweep is (its JSON in ``nbtrack.sweep``) and its source."""
    from nbtrack import tags
    from nbtrack.store.sweeps import start_parent

    mode = "optimize" if goal else ("random" if random else "grid")
    described: dict[str, Any] = {"mode": mode, "space": describe(space), "source": state.source.label}
    if points is not None:
        described["trials"] = len(points)
    if random is not None or seed is not None:
        described.update(random=random, seed=seed)
    if goal is not None:
        described["optimize"] = f"{goal[0]}:{goal[1]}"
    parent_tags = {
        tags.SWEEP: json.dumps(described, default=str),
        "nbtrack.sweep.source": state.source.run_id or state.source.relpath,
        tags.SOURCE_NAME: state.source.relpath,
        tags.SOURCE_TYPE: "NOTEBOOK",
    }
    commit = state.source.snapshot.section("git").data.get("commit")
    if commit:
        parent_tags[tags.GIT_COMMIT] = str(commit)
    return start_parent(state.store, state.experiment, state.name, parent_tags)


def _end(state: SweepState, status: str) -> None:
    """The parent's outcome tags (counts, failed trials, the best trial), then its end."""
    from nbtrack.store.sweeps import end_parent

    result = state.result
    failed = [run.run_id or "(none)" for _, run in result.trials if run.status != "FINISHED"]
    outcome = {
        "nbtrack.sweep.trials": str(len(result.trials)),
        "nbtrack.sweep.finished": str(result.finished),
        "nbtrack.sweep.failed": str(len(failed)),
    }
    if failed:
        outcome["nbtrack.sweep.failed_runs"] = ",".join(failed)[:4000]
    metrics = {}
    if result.best_run_id is not None and result.metric is not None and result.best_value is not None:
        outcome.update(
            {
                "nbtrack.sweep.best_run_id": result.best_run_id,
                "nbtrack.sweep.best_value": repr(result.best_value),
                "nbtrack.sweep.best_params": json.dumps(result.best_parameters, default=str),
            }
        )
        metrics[result.metric] = result.best_value
    end_parent(state.store, state.parent_run_id, status, outcome, metrics)
