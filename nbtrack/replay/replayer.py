"""Replay: re-execute a tracked run on its recorded code, parameters and data, and give a verdict.

The verb behind ``nbtrack replay``, ``nbtrack.replay(...)``, the server extension and the panel,
as five named stages, each in its module:

1. plan (:mod:`~nbtrack.replay.plan`): read the run and its ``snapshot.json`` from the store, pick
   what to execute (``--mode``: the saved notebook when the run went top to bottom, else the
   kernel's execution history, which is what produced the results) and its parameters;
2. workspace (:mod:`~nbtrack.replay.workspace`): the recorded commit plus the recorded uncommitted
   diff in a temporary clone, every DVC output linked from the cache at its recorded hash;
3. execute (:mod:`~nbtrack.replay.execute`): the kernel (``--env``: the current interpreter's, or
   a fresh virtualenv with the recorded pins, :mod:`~nbtrack.replay.venv`) runs the notebook through
   papermill; its own ``%track`` magics log the replay as a new MLflow run tagged
   ``nbtrack.replay_of`` and announce it in the replay's runs file;
4. judge (:mod:`~nbtrack.replay.judge`): that run's metrics, params and produced DVC outputs against
   the original's, the cell outputs of papermill's output notebook against the original's executed
   notebook, environment drift and the cell-level code diff; the verdict is
   :func:`nbtrack.replay.verdict.decide`'s;
5. record (:mod:`~nbtrack.replay.record`): the verdict, the result and the reports on the replay run.

``repeat=N`` (``--repeat N``) runs the five stages N times, each in its own workspace and kernel, and
compares the replays with one another: a metric, cell output or figure
that varies between them is ``nondeterministic``, and a verdict that passed only by chance (the
varying result happened to match the original) is DIVERGED. The result is the first replay's; every
replay run is recorded with the final verdict.

(The module is not called ``replay``: ``nbtrack.replay`` is the public function.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack.errors import CannotReplay, NbtrackError, RunNotFoundError, SnapshotError, UsageError
from nbtrack.replay.plan import ReplayOptions, make_plan
from nbtrack.replay.result import ENVS, MODES, OUTPUT_MODES, Progress, ReplayResult, parse_value
from nbtrack.replay.verdict import (
    CANNOT_REPLAY,
    DIVERGED,
    FAILED,
    REPRODUCED,
    UNVERIFIED,
    decide,
    vary_metrics,
)

if TYPE_CHECKING:
    from nbtrack.config import NbtrackConfig
    from nbtrack.replay.plan import ReplayPlan
    from nbtrack.replay.workspace import Workspace
    from nbtrack.store import MlflowStore
    from nbtrack.store.models import ModelRef

# The names callers have always imported from here.
__all__ = ["ENVS", "MODES", "OUTPUT_MODES", "Progress", "ReplayResult", "parse_value", "replay"]


def replay(
    run_id: str,
    *,
    parameters: dict[str, Any] | None = None,
    mode: str = "auto",
    env: str = "current",
    tolerance: float | None = None,
    metric_tolerances: dict[str, float] | None = None,
    outputs: str = "check",
    repeat: int = 1,
    keep_workspace: bool = False,
    tracking_uri: str | None = None,
    project: Path | None = None,
    kernel_name: str | None = None,
    workspace_dir: Path | None = None,
    progress_bar: bool = False,
    on_progress: Progress | None = None,
    say: Callable[[str], None] | None = None,
    allow_uncommitted: bool = False,
    require_committed: bool = False,
    model: ModelRef | None = None,
) -> ReplayResult:
    """Re-execute a tracked run and say whether it reproduced.

    Never raises for a run that cannot be replayed: the result's verdict is then ``CANNOT_REPLAY``
    (exit code 3) with the reason in ``message``. Usage errors (a bad ``mode``, ``outputs`` or
    ``repeat``) raise :class:`~nbtrack.errors.UsageError`.

    Args:
        outputs: ``check`` (differing cell outputs make DIVERGED), ``report`` (listed) or ``ignore``.
        repeat: replay the run this many times and report what varies between the replays.
        allow_uncommitted, require_committed: see :func:`nbtrack.replay.provenance.check_provenance`.
        model: the run's model (``replay models:/N@A``), compared with the replay's (``model_check``).

    Example:
        >>> replay("3f2a9c41e0b84d0f", parameters={"seed": 1}, repeat=2).nondeterministic  # doctest: +SKIP
        []
    """
    options = ReplayOptions(
        parameters=parameters or {},
        mode=mode,
        env=env,
        tolerance=tolerance,
        metric_tolerances=metric_tolerances or {},
        keep_workspace=keep_workspace,
        tracking_uri=tracking_uri,
        project=project,
        kernel_name=kernel_name,
        workspace_dir=workspace_dir,
        progress_bar=progress_bar,
        on_progress=on_progress,
        outputs=outputs,
        repeat=repeat,
        allow_uncommitted=allow_uncommitted,
        require_committed=require_committed,
    )
    if say is not None:
        options.say = say
    options.check()
    return _replay_all(run_id, options, model)


def _replay_all(run_id: str, options: ReplayOptions, model: ModelRef | None = None) -> ReplayResult:
    """``options.repeat`` replays (fewer when the first does not run), judged together, recorded."""
    t0 = time.perf_counter()
    done = [_replay_once(run_id, options)]
    while done[0].judged and len(done) < options.repeat:
        options.say(f"nbtrack replay: replay {len(done) + 1} of {options.repeat}")
        done.append(_replay_once(run_id, options))
    if len(done) > 1:
        _judge_repeats(done, options)
    if model is not None and done[0].judged:  # before the record: the replay run keeps the finding
        from nbtrack.replay.model_check import check_model

        check_model(done[0].result, done[0].store, model)
    for one in done:
        _record(one, done[0].result)
    first = done[0].result
    first.duration_s = round(time.perf_counter() - t0, 3)
    return first


@dataclass
class _Replayed:
    """One replay's result, and what :func:`replay` still needs of it once its workspace is gone:
    the run to record the verdict on, papermill's output notebook, the paths to normalize."""

    result: ReplayResult
    store: MlflowStore | None = None
    config: NbtrackConfig | None = None
    output: bytes | None = None
    executed: dict[str, Any] | None = None
    paths: list[str] = field(default_factory=list)
    #: The user's notebook the run was recorded from: the output notebook opens trusted only if it does.
    trust_from: Path | None = None

    @property
    def judged(self) -> bool:
        """Whether the replay ran and was compared (a verdict other than FAILED / CANNOT_REPLAY)."""
        return self.result.verdict in (REPRODUCED, DIVERGED, UNVERIFIED)


def _replay_once(run_id: str, options: ReplayOptions) -> _Replayed:
    """One replay through the five stages but the record; CANNOT_REPLAY instead of raising."""
    result = ReplayResult(run_id=run_id, env=options.env, started=_now_iso(), outputs_mode=options.outputs)
    done = _Replayed(result)
    t0 = time.perf_counter()
    try:
        _run_stages(done, options)
    except (CannotReplay, RunNotFoundError, SnapshotError) as exc:
        result.verdict, result.message = CANNOT_REPLAY, str(exc)
    except UsageError:
        raise
    except NbtrackError as exc:  # the store failed, a notebook could not be read, ...
        result.verdict, result.message = CANNOT_REPLAY, str(exc)
    result.duration_s = round(time.perf_counter() - t0, 3)
    return done


def _run_stages(done: _Replayed, options: ReplayOptions) -> None:
    """plan -> workspace -> execute -> judge, each stage's facts put into ``done.result``; what the
    record stage needs is kept in ``done`` (the workspace is removed before it runs)."""
    from nbtrack.replay.execute import execute, pick_kernel
    from nbtrack.replay.judge import judge, normalize_paths
    from nbtrack.replay.workspace import build_workspace

    result = done.result
    plan = make_plan(result, options)
    _check_provenance(result, plan, options)
    ws = build_workspace(
        plan.snapshot,
        source=plan.source,
        git_diff=plan.git_diff,
        base_dir=options.workspace_dir,
        keep=options.keep_workspace,
        say=options.say,
        progress=options.progress_bar,
    )
    result.workspace = str(ws.base) if options.keep_workspace else None
    try:
        _take_workspace(result, plan, ws, options)
        kernel = pick_kernel(plan, ws, options)
        result.risks.extend(kernel.risks)
        result.kernel = kernel.name
        execution = execute(plan, ws, kernel, options)
        result.failure = execution.failure
        judgement = judge(plan, ws, kernel, execution, options)
        judgement.apply_to(result)
        done.executed, done.paths = execution.executed, normalize_paths(plan, ws)
        if judgement.replay is not None:
            done.store, done.config = judgement.replay.store, plan.config
            done.trust_from = plan.source / result.notebook if result.notebook else None
            done.output = execution.output.read_bytes() if execution.output.exists() else None
    finally:
        if not options.keep_workspace:
            ws.cleanup()


def _check_provenance(result: ReplayResult, plan: ReplayPlan, options: ReplayOptions) -> None:
    """Before any clone or kernel: a run from a shared store runs committed code, or has consent."""
    from nbtrack.replay.provenance import UncommittedCodeError, check_provenance

    try:
        found = check_provenance(
            plan, batch=options.require_committed, allow_uncommitted=options.allow_uncommitted
        )
    except UncommittedCodeError as exc:
        result.provenance = exc.provenance.to_dict()
        raise
    result.provenance = found.to_dict()
    if found.differs:
        result.risks.append(
            "ran code the repository does not hold at the run's commit (--allow-uncommitted): "
            + "; ".join(found.differs[:4])
        )


def _record(done: _Replayed, final: ReplayResult) -> None:
    """The record stage, once the verdict is final: on every replay run, the final verdict."""
    from nbtrack.replay.record import record

    result = done.result
    if done.store is None or done.config is None or result.replay_run_id is None:
        return
    if result is not final:
        result.verdict, result.message = final.verdict, final.message
        result.nondeterministic = final.nondeterministic
    try:
        record(done.store, result.replay_run_id, result, done.output, done.config, done.trust_from)
    except NbtrackError as exc:  # the store failed: the verdict cannot be trusted to be kept
        result.verdict, result.message = CANNOT_REPLAY, f"the replay's verdict could not be recorded: {exc}"


def _judge_repeats(done: list[_Replayed], options: ReplayOptions) -> None:
    """What varied between the replays themselves goes into the first's result, and its verdict."""
    first = done[0].result
    judged = [d for d in done if d.judged]
    metrics = [
        {r["name"]: r["replayed"] for r in d.result.metrics if r["replayed"] is not None} for d in judged
    ]
    varying = vary_metrics(metrics, tolerance=options.tolerance, per_metric=options.metric_tolerances)
    if options.outputs != "ignore":
        varying += _vary_cells(judged, options)
    first.nondeterministic = varying
    first.repeats = [
        {
            "replay_run_id": d.result.replay_run_id,
            "verdict": d.result.verdict,
            "message": d.result.message,
            "duration_s": d.result.duration_s,
        }
        for d in done[1:]
    ]
    first.verdict, first.message = decide(
        first.failure,
        first.replay_run_id is not None,
        first.metrics,
        first.params,
        first.outputs,
        cells=first.cell_outputs,
        outputs_mode=first.outputs_mode,
        nondeterministic=varying,
        expected_errors=first.expected_errors,
    )
    _flaky(done, first)


def _flaky(done: list[_Replayed], first: ReplayResult) -> None:
    """A later replay that failed (or could not run) is a risk; one that raised makes a pass DIVERGED."""
    for k, d in enumerate(done[1:], start=2):
        if d.judged:
            continue
        line = f"replay {k} of {len(done)} {d.result.verdict}: {d.result.message}"
        first.risks.append(line)
        if d.result.verdict == FAILED and first.verdict in (REPRODUCED, UNVERIFIED):
            first.verdict = DIVERGED
            first.message = f"nondeterministic: {line}; the first replay {first.message}"


def _vary_cells(judged: list[_Replayed], options: ReplayOptions) -> list[dict[str, Any]]:
    """The cells whose outputs (or figures) differ between the first replay and another one, named
    as in the comparison with the original (by cell id, else first source line)."""
    from nbtrack.replay.outputs import compare_outputs_of

    base = judged[0]
    if base.executed is None:
        return []
    named = {
        key: r for r in base.result.cell_outputs for key in (r.get("source_head"), r.get("cell_id")) if key
    }
    rows: dict[str, dict[str, Any]] = {}
    for other in judged[1:]:
        if other.executed is None:
            continue
        compared = compare_outputs_of(
            base.executed,
            other.executed,
            tolerance=options.tolerance,
            normalize_paths=sorted({*base.paths, *other.paths}, key=len, reverse=True),
        )
        figures = {f["cell"] for f in compared.figures if not f.get("ok", True)}
        for row in compared.cells:
            if row.get("ok", True):
                continue
            original = named.get(row.get("cell_id") or "") or named.get(row.get("source_head") or "") or row
            key = str(original.get("cell"))
            entry = rows.setdefault(
                key,
                {
                    "kind": "figure" if row["cell"] in figures else "cell_output",
                    "cell": original.get("cell"),
                    "source_head": row.get("source_head"),
                    "values": [],
                },
            )
            entry["values"].append(row.get("detail") or "differs")
    return list(rows.values())


def _take_workspace(result: ReplayResult, plan: ReplayPlan, ws: Workspace, options: ReplayOptions) -> None:
    """The workspace's risks and data versions into the result; the recorded notebook from the
    checkout when the stored copy was redacted."""
    result.risks.extend(ws.risks)
    risk = plan.use_checkout(ws.project)
    if risk is not None:
        result.risks.append(risk)
    result.data = ws.data_versions(plan.snapshot)
    for line in result.risks:
        options.say(f"nbtrack replay: risk: {line}")


def _now_iso() -> str:
    return datetime.now(tz=timezone.utc).isoformat(timespec="milliseconds")
