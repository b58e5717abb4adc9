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
   the original's, environment drift and the cell-level code diff; the verdict is
   :func:`nbtrack.replay.verdict.decide`'s;
5. record (:mod:`~nbtrack.replay.record`): the verdict, the result and the reports on the replay run.

(The module is not called ``replay``: ``nbtrack.replay`` is the public function.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack.errors import CannotReplay, NbtrackError, RunNotFoundError, SnapshotError, UsageError
from nbtrack.replay.plan import ReplayOptions, make_plan
from nbtrack.replay.result import ENVS, MODES, Progress, ReplayResult, parse_value
from nbtrack.replay.verdict import CANNOT_REPLAY

if TYPE_CHECKING:
    from nbtrack.replay.plan import ReplayPlan
    from nbtrack.replay.workspace import Workspace

# The names callers have always imported from here.
__all__ = ["ENVS", "MODES", "Progress", "ReplayResult", "parse_value", "replay"]


def replay(
    run_id: str,
    *,
    parameters: dict[str, Any] | None = None,
    mode: str = "auto",
    env: str = "current",
    tolerance: float | None = None,
    metric_tolerances: dict[str, float] | None = None,
    keep_workspace: bool = False,
    tracking_uri: str | None = None,
    project: Path | None = None,
    kernel_name: str | None = None,
    workspace_dir: Path | None = None,
    progress_bar: bool = False,
    on_progress: Progress | None = None,
    say: Callable[[str], None] | None = None,
) -> ReplayResult:
    """Re-execute a tracked run and say whether it reproduced.

    Never raises for a run that cannot be replayed: the result's verdict is then ``CANNOT_REPLAY``
    (exit code 3) with the reason in ``message``. Usage errors (a bad ``mode``) raise
    :class:`~nbtrack.errors.UsageError`.

    Example:
        >>> result = replay("3f2a9c41e0b84d0f", parameters={"seed": 1})  # doctest: +SKIP
        >>> result.verdict, result.exit_code  # doctest: +SKIP
        ('REPRODUCED', 0)
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
    )
    if say is not None:
        options.say = say
    options.check()
    result = ReplayResult(run_id=run_id, env=env, started=_now_iso())
    t0 = time.perf_counter()
    try:
        _run_stages(result, options)
    except (CannotReplay, RunNotFoundError, SnapshotError) as exc:
        result.verdict, result.message = CANNOT_REPLAY, str(exc)
    except UsageError:
        raise
    except NbtrackError as exc:  # the store failed, a notebook could not be read, ...
        result.verdict, result.message = CANNOT_REPLAY, str(exc)
    result.duration_s = round(time.perf_counter() - t0, 3)
    return result


def _run_stages(result: ReplayResult, options: ReplayOptions) -> None:
    """plan -> workspace -> execute -> judge -> record, each stage's facts put into ``result``."""
    from nbtrack.replay.execute import execute, pick_kernel
    from nbtrack.replay.judge import judge
    from nbtrack.replay.record import record
    from nbtrack.replay.workspace import build_workspace

    plan = make_plan(result, options)
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
        if judgement.replay is not None:
            output = execution.output if execution.output.exists() else None
            record(judgement.replay.store, judgement.replay.run.run_id, result, output, plan.config)
    finally:
        if not options.keep_workspace:
            ws.cleanup()


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
