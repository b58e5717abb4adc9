"""The replay's judging stage: find the run the replay logged and compare it with the original.

The kernel names its runs itself: each ``%track start`` in it appends a line to the replay's runs
file (``{"run_id", "kernel_run_index", "store_uri"}``, see :mod:`nbtrack.replay.execute`). The
replay takes the run at the original's position in its kernel (``kernel_run_index``), else the
last one: no search of the store, so two replays of one run at the same time never take each
other's run. A run written into the local spool of a tracking server is uploaded now and followed
to its server copy. Its metrics, params and produced DVC outputs are compared with the original's,
and the cell outputs of papermill's output notebook with the original's executed notebook
(:func:`nbtrack.replay.outputs.compare_outputs_of`; not with ``--outputs ignore``). What differs is
listed here; :func:`nbtrack.replay.verdict.decide` gives the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack.errors import CannotReplay, SnapshotError
from nbtrack.handoff import announced_runs
from nbtrack.models import RunRecord, Section, Snapshot
from nbtrack.replay.execute import Execution, Kernel
from nbtrack.replay.plan import ReplayOptions, ReplayPlan, code_sources
from nbtrack.replay.result import ReplayResult
from nbtrack.replay.verdict import compare_metrics, compare_outputs, compare_params, count_evidence, decide
from nbtrack.replay.workspace import Workspace

if TYPE_CHECKING:
    from nbtrack.config import NbtrackConfig
    from nbtrack.store import MlflowStore

__all__ = ["Judgement", "ReplayRun", "announced_runs", "find_replay_run", "judge", "normalize_paths"]


@dataclass
class ReplayRun:
    """The run a replay's kernel logged, and the store that holds it (the server's, or the spool's
    when the upload could not be made)."""

    store: MlflowStore
    run: RunRecord
    snapshot: Snapshot | None


@dataclass
class Judgement:
    """What the replay's run shows next to the original's, and the verdict on it."""

    verdict: str
    message: str
    replay: ReplayRun | None
    environment: dict[str, Any]
    code_diff: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    risks: list[str] = field(default_factory=list)
    #: The cell-output comparison's rows (``OutputComparison.cells``, ``.figures``, ``.skipped``).
    cell_outputs: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    skipped_outputs: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, int] = field(default_factory=dict)
    outputs_mode: str = "check"
    expected_errors: list[dict[str, Any]] = field(default_factory=list)

    def apply_to(self, result: ReplayResult) -> None:
        """Put the judgement into the replay's result."""
        if self.replay is not None:
            result.replay_run_id = self.replay.run.run_id
            result.view = self.replay.store.run_url(self.replay.run)
        result.risks.extend(self.risks)
        # Every other field of the judgement is the result's field of the same name.
        for spec in fields(self):
            if spec.name not in ("replay", "risks"):
                setattr(result, spec.name, getattr(self, spec.name))


def judge(
    plan: ReplayPlan, ws: Workspace, kernel: Kernel, execution: Execution, options: ReplayOptions
) -> Judgement:
    """Compare the replay with the original run and decide the verdict.

    Example:
        >>> judge(plan, ws, kernel, execution, options).verdict  # doctest: +SKIP
        'REPRODUCED'
    """
    from nbtrack.compare import diff_environment

    replay = find_replay_run(
        plan.store, plan.config, execution.runs_file, plan.snapshot.run.get("kernel_run_index")
    )
    environment_snap = (replay.snapshot if replay else None) or _environment_now(kernel.python)
    found = Judgement("", "", replay, diff_environment(plan.snapshot, environment_snap))
    found.code_diff = _code_diff(plan, execution)
    # Writes into linked DVC cache objects, already undone (or a CannotReplay when they cannot be).
    found.risks.extend(ws.cache_risks())
    found.outputs_mode = options.outputs
    # The cells that raised as they did in the original.
    found.expected_errors = list(execution.expected_errors)
    # Cells tagged to raise that raised another exception, or did not raise.
    found.risks.extend(execution.notes)
    if execution.failure is None and replay is not None:
        _compare(found, plan, replay, options)
        _compare_cells(found, plan, ws, execution, options)
    found.evidence = count_evidence(found.metrics, found.params, found.outputs, found.cell_outputs)
    found.verdict, found.message = decide(
        execution.failure,
        replay is not None,
        found.metrics,
        found.params,
        found.outputs,
        cells=found.cell_outputs,
        outputs_mode=options.outputs,
        expected_errors=found.expected_errors,
    )
    return found


def _compare(found: Judgement, plan: ReplayPlan, replay: ReplayRun, options: ReplayOptions) -> None:
    """Metrics (with tolerances), params (``-p`` overrides expected to differ), produced DVC outputs."""
    original = plan.original
    found.metrics = compare_metrics(
        dict(original.metrics),
        dict(replay.run.metrics),
        tolerance=options.tolerance,
        per_metric=options.metric_tolerances,
    )
    found.params = compare_params(dict(original.params), dict(replay.run.params), set(options.parameters))
    produced_a = plan.snapshot.section("data").data.get("produced") or []
    produced_b = (replay.snapshot.section("data").data.get("produced") if replay.snapshot else None) or []
    found.outputs = compare_outputs(produced_a, produced_b)


def _compare_cells(
    found: Judgement, plan: ReplayPlan, ws: Workspace, execution: Execution, options: ReplayOptions
) -> None:
    """Each code cell's outputs in the original's executed notebook against the replay's."""
    if options.outputs == "ignore" or execution.executed is None or plan.recorded_notebook is None:
        return
    from nbtrack.replay.outputs import compare_outputs_of

    compared = compare_outputs_of(
        plan.recorded_notebook,
        execution.executed,
        tolerance=options.tolerance,
        normalize_paths=normalize_paths(plan, ws),
    )
    found.cell_outputs, found.figures, found.skipped_outputs = (
        compared.cells,
        compared.figures,
        compared.skipped,
    )


def normalize_paths(plan: ReplayPlan, ws: Workspace) -> list[str]:
    """The folders a printed path may name that differ between the original and the replay:
    the workspace (project and base) and the original's project root, longest first.

    Example:
        >>> normalize_paths(plan, ws)  # doctest: +SKIP
        ['/tmp/nbtrack-replay-x1/project', '/home/me/churn', '/tmp/nbtrack-replay-x1']
    """
    found: set[str] = set()
    for place in (ws.project, ws.base, plan.snapshot.run.get("project_root"), plan.source):
        if place:
            found.update({str(place), str(Path(place).resolve())})
    return sorted(found, key=len, reverse=True)


def _code_diff(plan: ReplayPlan, execution: Execution) -> list[dict[str, Any]]:
    """The recorded code cells against those the replay executed; papermill's injected-parameters
    cell (in the replay's, and in an original run through papermill) is no code change."""
    if execution.executed is None:
        return []
    from nbtrack.compare import diff_cells

    return diff_cells(plan.recorded_cells, code_sources(execution.executed))


def find_replay_run(
    store: MlflowStore, config: NbtrackConfig, runs_file: Path, kernel_run_index: Any
) -> ReplayRun | None:
    """The run the replay's kernel announced at the original's position in its kernel, else its last.

    None when the kernel announced no run. A run in the local spool of a tracking server is uploaded
    now (the kernel's background upload may not have finished when it exited) and read from the
    server; from the spool when the upload failed.

    Raises:
        CannotReplay: the kernel logged into a store that is neither ``store`` nor its spool.

    Example:
        >>> find_replay_run(store, config, ws.base / "runs.jsonl", 1).run.run_id  # doctest: +SKIP
        '9c41d2e3f4a5b6c7d8e9f0a1b2c3d4e5'
    """
    from nbtrack.store.http import bounded
    from nbtrack.store.spool import resolve_run

    runs = announced_runs(runs_file)
    same = [
        r
        for r in runs
        if kernel_run_index is not None and str(r.get("kernel_run_index")) == str(kernel_run_index)
    ]
    entry = same[0] if same else (runs[-1] if runs else None)
    if entry is None:
        return None
    run_id = entry["run_id"]
    with bounded(config.tracking_timeout):
        if entry.get("store_uri") != store.uri:
            _upload(store, config, run_id, str(entry.get("store_uri")))
        where, found_id, _note = resolve_run(store, run_id, config)
        run = where.get_run(found_id)
    try:
        snapshot: Snapshot | None = where.load_snapshot(run.run_id)
    except SnapshotError:
        snapshot = None
    return ReplayRun(where, run, snapshot)


def _upload(store: MlflowStore, config: NbtrackConfig, run_id: str, logged_to: str) -> None:
    """Upload the replay's run from the tracking server's local spool."""
    from nbtrack.redact import strip_url_credentials
    from nbtrack.store.spool import Spool
    from nbtrack.store.sync import sync

    spool = Spool.of_store(store, config)
    if spool is None or spool.uri != logged_to:
        raise CannotReplay(
            f"the replay's kernel logged run {run_id} to {strip_url_credentials(logged_to)}, not to "
            f"{store.display_uri}; check the tracking URI in the kernel's nbtrack configuration"
        )
    sync(spool, store, run_ids=[run_id])


def _environment_now(kernel_python: Path | None) -> Snapshot:
    """The environment the replay ran in, when the replay logged no snapshot of its own."""
    if kernel_python is not None:
        from nbtrack.replay.kernelspec import interpreter_environment

        data = interpreter_environment(kernel_python)
    else:
        from nbtrack.capture.environment import interpreter_facts

        data = interpreter_facts()
    return Snapshot(sections={"environment": Section("environment", "ok", None, data)})
