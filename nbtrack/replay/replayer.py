"""Replay: re-execute a tracked run on its recorded code, parameters and data, and give a verdict.

The verb behind ``nbtrack replay``, ``nbtrack.replay(...)``, the server extension and the panel:

1. read the run and its ``snapshot.json`` from the store;
2. build an isolated workspace (:mod:`nbtrack.replay.workspace`): the recorded commit plus the recorded
   uncommitted diff in a temporary clone, every DVC output linked from the cache at its recorded hash;
3. pick what to execute (``--mode``): the saved notebook when the run went top to bottom, else the
   kernel's execution history (that is what produced the results);
4. pick the kernel (``--env``): the current interpreter's, or a fresh virtual environment with the
   recorded pins (:mod:`nbtrack.replay.venv`);
5. execute through papermill; the kernel's own ``%track`` magics log the replay as a new MLflow run
   tagged ``nbtrack.replay_of`` (told so through ``NBTRACK_REPLAY``);
6. compare metrics, params and produced DVC outputs (:mod:`nbtrack.replay.verdict`); the result carries
   environment drift, data versions and the cell-level code diff for the reports.

(The module is not called ``replay``: ``nbtrack.replay`` is the public function.)
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nbtrack.errors import CannotReplay, NbtrackError, RunNotFoundError, SnapshotError, UsageError
from nbtrack.models import Section, Snapshot
from nbtrack.replay.verdict import CANNOT_REPLAY, DIVERGED, EXIT_CODES, FAILED, REPRODUCED
from nbtrack.signing import sign_notebook_bytes

MODES = ("auto", "notebook", "history")
ENVS = ("current", "recreate")
# A line that starts a tracked run: `%track start ...` or a `%%track` cell.
_TRACK_START = re.compile(r"^\s*(%track\s+start\b|%%track\b)", re.MULTILINE)
_TRACK_STOP = re.compile(r"^\s*%track\s+stop\b", re.MULTILINE)

Progress = Callable[[int, int], None]


@dataclass
class ReplayResult:
    """What a replay found; ``to_dict()`` is the JSON the CLI, the reports and the server share."""

    run_id: str
    verdict: str = CANNOT_REPLAY
    message: str = ""
    run_name: str | None = None
    experiment: str | None = None
    notebook: str | None = None
    replay_run_id: str | None = None
    mode: str | None = None
    mode_reason: str | None = None
    env: str = "current"
    kernel: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"recorded": {}, "overrides": {}})
    risks: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    failure: dict[str, Any] | None = None
    environment: dict[str, Any] = field(
        default_factory=lambda: {"available": False, "reason": "not compared"}
    )
    data: list[dict[str, Any]] = field(default_factory=list)
    code_diff: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0
    started: str = ""
    workspace: str | None = None
    view: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value typed as papermill's own ``-p`` types it.

    Example:
        >>> [parse_value(v) for v in ("3", "0.5", "True", "None", "abc")]
        [3, 0.5, True, None, 'abc']
    """
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


# --- what to execute -----------------------------------------------------------------------------
def choose_mode(snap: Snapshot, requested: str) -> tuple[str, str]:
    """``notebook`` or ``history``, and why (said to the user and kept in the result)."""
    if requested not in MODES:
        raise UsageError(f"--mode {requested!r}: use one of {', '.join(MODES)}")
    nb = snap.section("notebook")
    data = nb.data if nb.status == "ok" else {}
    stored = bool(data.get("stored"))
    if requested == "notebook":
        if not stored:
            raise CannotReplay(
                "the run's saved notebook was not recorded "
                f"({data.get('stored_reason') or data.get('reason') or nb.reason}); "
                "replay with --mode history"
            )
        return "notebook", "requested with --mode notebook"
    if requested == "history":
        return "history", "requested with --mode history"
    if not stored:
        why = data.get("stored_reason") or data.get("reason") or nb.reason or "not recorded"
        return "history", f"the saved notebook was not recorded ({why})"
    if data.get("out_of_order"):
        reasons = "; ".join((data.get("out_of_order_reasons") or [])[:3])
        return "history", f"the run was executed out of order ({reasons}): its execution history produced it"
    if data.get("edited_after_execution"):
        cells = ", ".join(str(c) for c in data["edited_after_execution"])
        return "history", f"code cells {cells} were edited after they ran: the history holds what ran"
    return "notebook", "the run was executed top to bottom, so the saved notebook reproduces it"


def _cell(source: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": tags} if tags else {},
        "outputs": [],
        "source": source,
    }


def history_to_notebook(
    history: dict[str, Any], parameters_source: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The execution history as a notebook papermill can run, and the values papermill injected then.

    papermill's injected-parameters cells are dropped (their values are returned, to be injected
    again after the ``parameters`` cell, where overrides can win); the cell whose code is the
    notebook's ``parameters`` cell is tagged so. A history ending inside a tracked run gets its
    ``%track stop``.
    """
    from nbtrack.capture.notebook import cell_source, code_cells, is_injected_parameters
    from nbtrack.capture.parameters import parse_assignments

    cells: list[dict[str, Any]] = []
    injected: dict[str, Any] = {}
    tagged = False
    for cell in code_cells(history):
        source = cell_source(cell)
        if is_injected_parameters(source):
            injected.update(parse_assignments(source))
            continue
        tags = None
        if not tagged and parameters_source is not None and source == parameters_source:
            tags, tagged = ["parameters"], True
        cells.append(_cell(source, tags))
    code = "\n".join(cell_source(c) for c in cells)
    starts = [m.start() for m in _TRACK_START.finditer(code)]
    stops = [m.start() for m in _TRACK_STOP.finditer(code)]
    if starts and not (stops and stops[-1] > starts[-1]) and not code[starts[-1] :].lstrip().startswith("%%"):
        cells.append(_cell("%track stop"))
    nb = {
        "cells": cells,
        "metadata": {k: v for k, v in (history.get("metadata") or {}).items() if k != "nbtrack"},
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    return nb, injected


def ensure_tracked(nb: dict[str, Any]) -> bool:
    """Make the notebook track itself when its code never starts a run; True when cells were added."""
    from nbtrack.capture.notebook import cell_source, code_cells

    code = "\n".join(cell_source(c) for c in code_cells(nb))
    if _TRACK_START.search(code):
        return False
    nb["cells"] = [_cell("%load_ext nbtrack\n%track start"), *nb["cells"], _cell("%track stop")]
    return True


# --- the result of execution ---------------------------------------------------------------------
def _failure(output: Path, exc: Any) -> dict[str, Any]:
    """Which cell raised, from papermill's output notebook."""
    from nbtrack.capture.notebook import cell_source

    info: dict[str, Any] = {"cell": None, "execution_count": None, "source_head": None}
    info.update(ename=getattr(exc, "ename", type(exc).__name__), evalue=getattr(exc, "evalue", str(exc)))
    try:
        nb = json.loads(output.read_text())
    except (OSError, ValueError):
        return info
    index = getattr(exc, "cell_index", None)
    cells = nb.get("cells", [])
    if index is None or not 0 <= index < len(cells):
        return info
    cell = cells[index]
    source = cell_source(cell)
    info.update(
        cell=index + 1,
        execution_count=cell.get("execution_count"),
        source_head=next((line for line in source.splitlines() if line.strip()), ""),
    )
    return info


def _find_replay_run(store: Any, experiment: str, replay_id: str, index: int | None) -> Any | None:
    """The run the replay's kernel logged: tagged with this replay's id, at the original's position."""
    runs, _ = store.search_runs(experiment=experiment, tags={"nbtrack.replay_id": replay_id}, max_results=50)
    if not runs:
        runs, _ = store.search_runs(tags={"nbtrack.replay_id": replay_id}, max_results=50)
    if not runs:
        return None
    if index is not None:
        for run in runs:
            if run.tags.get("nbtrack.kernel_run_index") == str(index):
                return run
    return runs[0]  # newest first: the run that ended the history


def _environment_now(kernel_python: Path | None) -> Snapshot:
    """The environment the replay ran in, when the replay logged no snapshot of its own."""
    if kernel_python is not None:
        from nbtrack.replay.venv import interpreter_environment

        data = interpreter_environment(kernel_python)
    else:
        from nbtrack.capture.environment import interpreter_facts

        data = interpreter_facts()
    return Snapshot(sections={"environment": Section("environment", "ok", None, data)})


def _now_iso() -> str:
    return datetime.now(tz=timezone.utc).isoformat(timespec="milliseconds")


# --- the verb ------------------------------------------------------------------------------------
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
    if env not in ENVS:
        raise UsageError(f"--env {env!r}: use one of {', '.join(ENVS)}")
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: use one of {', '.join(MODES)}")
    say = say or (lambda line: print(line, file=sys.stderr))
    result = ReplayResult(run_id=run_id, env=env, started=_now_iso())
    options = _Options(
        parameters=parameters or {},
        mode=mode,
        tolerance=tolerance,
        metric_tolerances=metric_tolerances or {},
        keep_workspace=keep_workspace,
        tracking_uri=tracking_uri,
        project=project,
        kernel_name=kernel_name,
        workspace_dir=workspace_dir,
        progress_bar=progress_bar,
        on_progress=on_progress,
        say=say,
    )
    t0 = time.perf_counter()
    try:
        _replay(result, options)
    except (CannotReplay, RunNotFoundError, SnapshotError) as exc:
        result.verdict, result.message = CANNOT_REPLAY, str(exc)
    except UsageError:
        raise
    except NbtrackError as exc:  # the store failed, a notebook could not be read, ...
        result.verdict, result.message = CANNOT_REPLAY, str(exc)
    result.duration_s = round(time.perf_counter() - t0, 3)
    return result


@dataclass
class _Options:
    """:func:`replay`'s keyword arguments, as one value."""

    parameters: dict[str, Any]
    mode: str
    tolerance: float | None
    metric_tolerances: dict[str, float]
    keep_workspace: bool
    tracking_uri: str | None
    project: Path | None
    kernel_name: str | None
    workspace_dir: Path | None
    progress_bar: bool
    on_progress: Progress | None
    say: Callable[[str], None]


def _replay(result: ReplayResult, o: _Options) -> None:
    from nbtrack.capture.locate import find_project_root
    from nbtrack.capture.notebook import cell_source, code_cells, parse_artifact
    from nbtrack.config import load_config
    from nbtrack.replay.verdict import compare_metrics, compare_outputs, compare_params, summarize
    from nbtrack.replay.workspace import build_workspace
    from nbtrack.runner import ExecutionFailed, execute_notebook
    from nbtrack.runs.diff import diff_cells, diff_environment
    from nbtrack.store import MlflowStore

    config = load_config()
    if o.tracking_uri:
        config.tracking_uri = o.tracking_uri
    source = (o.project or find_project_root(Path.cwd())).resolve()
    store = MlflowStore.for_project(source, config)
    run_id = result.run_id
    try:
        original = store.get_run(run_id)
    except RunNotFoundError as exc:
        raise CannotReplay(
            f"run {run_id} is not in {store.display_uri}; list runs with `nbtrack runs` "
            "(or pass --tracking-uri / --project for another store)"
        ) from exc
    snap = store.load_snapshot(run_id)
    tags = original.tags
    result.run_name = original.name
    result.experiment = snap.run.get("experiment") or original.experiment_id
    nb_section = snap.section("notebook")
    # Also when the file could not be read at the run's end: the history then runs in its place.
    relpath = nb_section.data.get("relpath")
    result.notebook = relpath or tags.get("mlflow.source.name")
    if original.status == "RUNNING":
        result.risks.append(f"run {run_id} is still RUNNING: its results may be incomplete")
    chosen, why = choose_mode(snap, o.mode)
    result.mode, result.mode_reason = chosen, why
    where = result.notebook or "an unknown notebook"
    o.say(f"nbtrack replay: run {run_id} ({result.run_name or 'unnamed'}) of {where}")
    o.say(f"nbtrack replay: mode {chosen}: {why}")

    params_section = snap.section("parameters")
    recorded_values = params_section.data.get("values", {}) if params_section.status == "ok" else {}
    injected = dict(params_section.data.get("injected", {})) if params_section.status == "ok" else {}
    result.parameters = {"recorded": recorded_values, "overrides": dict(o.parameters)}

    # The notebook to execute, before any workspace is made: a missing artifact fails fast.
    if chosen == "notebook":
        text = store.read_artifact(run_id, "notebook.ipynb")
        if text is None:
            raise CannotReplay(
                f"run {run_id} has no nbtrack/notebook.ipynb artifact (deleted?); replay with --mode history"
            )
        notebook = parse_artifact(text, run_id, "notebook.ipynb")
        as_recorded: str | None = text  # written back byte for byte: git sees the committed file
    else:
        text = store.read_artifact(run_id, "history.ipynb")
        if text is None:
            raise CannotReplay(
                f"run {run_id} has no nbtrack/history.ipynb artifact (deleted?); it cannot be replayed: "
                "record the run again"
            )
        param_cell = params_section.data.get("cell_index") if params_section.status == "ok" else None
        saved_text = store.read_artifact(run_id, "notebook.ipynb") if param_cell is not None else None
        param_source = None
        if saved_text is not None and param_cell is not None:
            cells = parse_artifact(saved_text, run_id, "notebook.ipynb")["cells"]
            if 0 <= param_cell < len(cells):
                param_source = cell_source(cells[param_cell])
        history = parse_artifact(text, run_id, "history.ipynb")
        notebook, injected = history_to_notebook(history, param_source)
        as_recorded = None
    recorded_cells = [cell_source(c) for c in code_cells(notebook)]
    if ensure_tracked(notebook):
        as_recorded = None
        result.risks.append(
            "the recorded code never starts a tracked run; the replay wraps it in %track start/stop"
        )

    git_diff = store.read_artifact_bytes(run_id, "git.diff")
    recorded_diff = snap.section("git").data.get("diff") or {}
    if git_diff is None and recorded_diff.get("stored"):
        raise CannotReplay(
            f"run {run_id} has no nbtrack/git.diff artifact (deleted?), though its snapshot recorded "
            f"{recorded_diff.get('bytes')} bytes of uncommitted changes in it; without them the replay "
            "would run other code: record the run again"
        )
    workspace = build_workspace(
        snap,
        source=source,
        git_diff=git_diff,
        base_dir=o.workspace_dir,
        keep=o.keep_workspace,
        say=o.say,
        progress=o.progress_bar,
    )
    result.workspace = str(workspace.base) if o.keep_workspace else None
    try:
        result.risks.extend(workspace.risks)
        redacted = (nb_section.data.get("redacted") or {}).get("notebook.ipynb")
        if redacted:
            # The stored copy lost its secrets; the checkout has the original when it is the same file.
            sha = nb_section.data.get("sha256")
            unredacted = _original_notebook(workspace.project / relpath, sha) if relpath else None
            if unredacted is not None and as_recorded is not None:
                as_recorded, notebook = unredacted, json.loads(unredacted)
                recorded_cells = [cell_source(c) for c in code_cells(notebook)]
            else:
                cells = sorted({f["cell"] + 1 for f in redacted if f.get("cell") is not None})
                result.risks.append(
                    f"secrets were redacted from the recorded notebook (cells {cells}) and the checkout "
                    "lacks the original; the replay runs [REDACTED] in their place: read secrets from "
                    "environment variables instead of writing them into cells"
                )
        recorded_outputs = snap.section("data").data.get("outputs", [])
        status_at_record = {out["path"]: out.get("status") for out in recorded_outputs}
        result.data = [
            {
                "path": d.path,
                "hash_name": d.hash_name,
                "hash": d.hash,
                "status_at_record": status_at_record.get(d.path),
                "link": d.link,
                "fetched": d.fetched,
            }
            for d in workspace.data
        ]
        for line in result.risks:
            o.say(f"nbtrack replay: risk: {line}")

        # Where the notebook goes and runs: its recorded place in the o.project, its recorded cwd.
        name = Path(relpath).name if relpath else "notebook.ipynb"
        target = workspace.project / (relpath or name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(as_recorded if as_recorded is not None else json.dumps(notebook, indent=1))
        cwd = target.parent
        recorded_cwd, recorded_root = snap.run.get("cwd"), snap.run.get("project_root")
        if recorded_cwd and recorded_root:
            try:
                candidate = workspace.project / Path(recorded_cwd).relative_to(recorded_root)
                cwd = candidate if candidate.is_dir() else cwd
            except ValueError:
                pass

        kernel_dirs: list[Path] = []
        kernel_python: Path | None = None
        if result.env == "recreate":
            from nbtrack.replay.venv import recreate_environment

            env_section = snap.section("environment")
            if env_section.status != "ok":
                raise CannotReplay(
                    f"run {run_id} recorded no environment ({env_section.reason}); replay with --env current"
                )
            venv = recreate_environment(env_section.data, workspace.base / "env", say=o.say, run_id=run_id)
            result.risks.extend(venv.notes)
            kernel_dirs, kernel_python, kernel = [venv.kernel_dir], venv.python, venv.kernel_name
            for skipped in venv.skipped:
                if skipped["name"] != "nbtrack":
                    pin = f"{skipped['name']}=={skipped['version']}"
                    result.risks.append(f"{pin} could not be reinstalled: {skipped['reason']}")
        else:
            kernel = o.kernel_name or _recorded_kernel(notebook)
        result.kernel = kernel

        replay_id = uuid.uuid4().hex
        kernel_env = {
            "NBTRACK_TRACKING_URI": store.uri,
            "NBTRACK_EXPERIMENT": str(snap.run.get("experiment") or ""),
            "NBTRACK_REPLAY": json.dumps({"replay_of": run_id, "replay_id": replay_id}),
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        }
        out_dir = workspace.base / "out"
        out_dir.mkdir(parents=True, exist_ok=True)
        output = out_dir / name
        o.say(f"nbtrack replay: executing {relpath or name} with papermill (kernel {kernel})")
        executed: dict[str, Any] | None = None
        try:
            executed = execute_notebook(
                target,
                output,
                parameters={**injected, **o.parameters},
                cwd=cwd,
                kernel_name=kernel,
                env=kernel_env,
                progress_bar=o.progress_bar,
                kernel_dirs=kernel_dirs,
                on_cell=o.on_progress,
            )
        except ExecutionFailed as exc:
            result.failure = _failure(output, exc)
        if executed is None and output.exists():
            executed = json.loads(output.read_text())
        if executed is not None:
            result.code_diff = diff_cells(recorded_cells, [cell_source(c) for c in code_cells(executed)])

        index = snap.run.get("kernel_run_index")
        from nbtrack.store.sync import flush

        # With a tracking server, the replay kernel's run went to the local spool: upload it now
        # if the kernel's background upload did not finish before it exited.
        flush(store, config, {"nbtrack.replay_id": replay_id})
        replay_run = _find_replay_run(store, result.experiment or "", replay_id, index)
        replay_snap: Snapshot | None = None
        if replay_run is not None:
            result.replay_run_id = replay_run.run_id
            result.view = store.run_url(replay_run)
            try:
                replay_snap = store.load_snapshot(replay_run.run_id)
            except SnapshotError:
                replay_snap = None
        environment_snap = replay_snap or _environment_now(kernel_python)
        result.environment = diff_environment(snap, environment_snap)

        damaged = workspace.modified_inputs()
        if damaged:
            result.risks.append(
                "the replay wrote into linked input(s) "
                + ", ".join(damaged)
                + ": their DVC cache entries changed too; check them with `dvc status -c`"
            )

        if result.failure is not None:
            f = result.failure
            where = f"cell {f['cell']}" if f.get("cell") else "a cell"
            result.verdict = FAILED
            result.message = f"{where} raised {f['ename']}: {f['evalue']}"
            if f.get("source_head"):
                result.message += f" (in `{f['source_head'][:80]}`)"
        elif replay_run is None:
            result.verdict = FAILED
            result.message = (
                "the notebook executed but logged no tracked run to compare; check that "
                "`%track start` runs in it (see the output notebook with --keep-workspace)"
            )
        else:
            overridden = set(o.parameters)
            result.metrics = compare_metrics(
                dict(original.metrics),
                dict(replay_run.metrics),
                tolerance=o.tolerance,
                per_metric=o.metric_tolerances,
            )
            result.params = compare_params(dict(original.params), dict(replay_run.params), overridden)
            produced_a = snap.section("data").data.get("produced") or []
            produced_b = (replay_snap.section("data").data.get("produced") if replay_snap else None) or []
            result.outputs = compare_outputs(produced_a, produced_b)
            differs = summarize(result.metrics, result.params, result.outputs)
            if differs:
                result.verdict, result.message = DIVERGED, differs
            else:
                compared = len(result.metrics)
                result.verdict = REPRODUCED
                result.message = (
                    f"{compared} metric(s), {len(result.params)} param(s) and "
                    f"{len(result.outputs)} produced output(s) match the original"
                )
        if replay_run is not None:
            _log_replay(store, result, output if output.exists() else None)
    finally:
        if not o.keep_workspace:
            workspace.cleanup()


def _original_notebook(path: Path, sha256: str | None) -> str | None:
    """The notebook at ``path`` when it is byte for byte the one recorded (``sha256``), else None."""
    import hashlib

    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return raw.decode("utf-8") if sha256 and hashlib.sha256(raw).hexdigest() == sha256 else None


def _recorded_kernel(notebook: dict[str, Any]) -> str:
    """The notebook's kernelspec when this machine has it, else ``python3``."""
    name = str(((notebook.get("metadata") or {}).get("kernelspec") or {}).get("name") or "python3")
    if name == "python3":
        return name
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return "python3"
    return name


def _log_replay(store: Any, result: ReplayResult, output: Path | None) -> None:
    """The verdict on the replay run: a tag for lists, the result and the report as artifacts."""
    from nbtrack.config import load_config
    from nbtrack.redact import policy
    from nbtrack.replay.reports import html_report

    assert result.replay_run_id is not None
    # Like everything nbtrack logs, through the redaction policy: the replay may have run the
    # original notebook, secrets included, from the checkout.
    redactor = policy(load_config())
    data = redactor.tree(json.loads(json.dumps(result.to_dict(), default=str)))
    files = {
        "replay/verdict.json": json.dumps(data, indent=1, default=str).encode(),
        "replay/report.html": html_report([data]).encode(),
    }
    if output is not None:
        raw = output.read_bytes()
        safe, found = redactor.notebook(json.loads(raw))
        safe_text = json.dumps(safe, indent=1, ensure_ascii=False) + "\n"
        files["replay/output.ipynb"] = safe_text.encode() if found else raw
        sign_notebook_bytes(files["replay/output.ipynb"])  # opens trusted: outputs render as recorded
    store.set_tags(result.replay_run_id, {"nbtrack.replay.verdict": result.verdict})
    store.log_files(result.replay_run_id, files)
