"""The tracking verbs: start a run, stop it, report its status. Owns the run lifecycle.

A :class:`Tracker` lives on one IPython shell (the magics hold it); the active run is its attribute,
never a module global. At ``start`` it takes the environment, git and data sections and opens the
*active* MLflow run; at ``stop`` it takes the notebook, history and parameters (and the editor's
live content, when the JupyterLab panel sent it), logs everything, signs the notebooks it wrote and
ends the run FINISHED (or FAILED). Where the run is written (the project's embedded store, or a
tracking server through the local spool) is :class:`~nbtrack.store.tracking.Tracking`'s business.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack.capture.base import CaptureContext, run_provider
from nbtrack.capture.history import ExecutionHistory, describe_failure, failure_line, read_notebook_json
from nbtrack.capture.locate import NotebookLocation, find_project_root, locate_notebook
from nbtrack.config import NbtrackConfig
from nbtrack.errors import UsageError
from nbtrack.handoff import announce_run
from nbtrack.models import RunRecord, Section
from nbtrack.redact import policy
from nbtrack.tags import DATASET_OUTPUT, FAILURE, KERNEL_RUN_INDEX, SOURCE_NAME
from nbtrack.track.active import ActiveRun
from nbtrack.track.flags import produced_outputs, run_flags
from nbtrack.track.snapshot import SnapshotWriter, end_tags, replay_tags, start_tags
from nbtrack.track.uploads import Listener, Uploads, UploadState

if TYPE_CHECKING:
    from nbtrack.capture.notebook import LiveNotebook
    from nbtrack.store.mlflow_store import MlflowStore
    from nbtrack.store.tracking import Tracking

__all__ = ["ActiveRun", "Tracker", "produced_outputs", "run_flags"]

#: The notebooks nbtrack writes itself, signed so that Jupyter opens them trusted.
_SIGNED = ("history.ipynb", "notebook.live.ipynb")


class Tracker:
    """Tracks runs for one kernel.

    Example:
        >>> tracker = Tracker(config=NbtrackConfig())
        >>> tracker.start(experiment="churn", notebook="train.ipynb")  # doctest: +SKIP
        >>> tracker.stop()  # doctest: +SKIP
    """

    def __init__(self, shell: Any = None, config: NbtrackConfig | None = None) -> None:
        self.shell = shell
        self.config = config or NbtrackConfig()
        self.history = ExecutionHistory(self.config.history_max_cells)
        self.active: ActiveRun | None = None
        self.last: dict[str, Any] | None = None
        # Provider caches kept across runs (an opened DVC repo, ...).
        self._provider_state: dict[str, Any] = {}
        self._experiments: dict[tuple[str, str], str] = {}
        self.runs_started = 0
        #: The store of the last run that ended (``%track show`` without a run id, the card).
        self.last_store: MlflowStore | None = None
        self._snapshots = SnapshotWriter(self.config)
        self._uploads = Uploads()

    # --- helpers ---------------------------------------------------------------------------------
    @property
    def uploads(self) -> dict[str, UploadState]:
        """Upload state of runs ended in this kernel (tracking server only): run id -> state."""
        return self._uploads.states

    def cells_completed(self) -> int:
        """Cells the kernel has finished since nbtrack was loaded (a monotonic count)."""
        summary = self.history.summary()
        return int(summary["recorded"]) + int(summary["dropped"])

    def store_here(self, notebook: Path | None = None) -> Any:
        """The store a run id is looked up in: the active run's, else the last run's, else the
        project's (found from ``notebook``'s folder, else the current directory)."""
        if self.active is not None:
            return self.active.store
        if self.last_store is not None:
            return self.last_store
        from nbtrack.store.tracking import Tracking  # the store layer, kept out of %load_ext

        return Tracking.lookup_store(
            find_project_root(notebook.parent if notebook else Path.cwd()), self.config
        )

    def on_upload(self, run_id: str, listener: Listener) -> None:
        """Call ``listener(state)`` once the background upload of ``run_id`` is over."""
        self._uploads.on_upload(run_id, listener)

    def _executed(self) -> list[Any]:
        raw = None
        if self.shell is not None and getattr(self.shell, "history_manager", None) is not None:
            raw = self.shell.history_manager.input_hist_raw
        return self.history.cells(raw)

    # --- verbs -----------------------------------------------------------------------------------
    def start(
        self,
        *,
        experiment: str | None = None,
        name: str | None = None,
        tags: dict[str, str] | None = None,
        notebook: str | None = None,
        frontend_notebook: Path | None = None,
    ) -> tuple[ActiveRun, dict[str, Any] | None]:
        """Start a run; ends the active one first. Returns the new run and the ended run's summary.

        ``frontend_notebook`` is the path the JupyterLab panel reported, tried right after
        ``notebook`` (``--notebook``).
        """
        from nbtrack.store.tracking import Tracking  # the store layer, kept out of %load_ext

        previous = self.stop() if self.active is not None else None
        location, ctx = self._locate(notebook, frontend_notebook)
        # Before capture: the embedded store's folder (and its .gitignore) must exist so that git
        # does not report the store itself as untracked code.
        tracking = Tracking.for_project(ctx.project_root, self.config)
        exp_name = experiment or self.config.experiment or ctx.project_root.name or "nbtrack"
        active, files = self._open(tracking, location, ctx, exp_name, name, tags or {})
        active.notice = self._uploads.outage_notice(tracking, active.unreachable)
        self.active = active
        self._log_start(active, files)
        return active, previous

    def stop(
        self,
        status: str = "FINISHED",
        live: LiveNotebook | None = None,
        *,
        failure: dict[str, Any] | None = None,
        ended_by: str | None = None,
    ) -> dict[str, Any]:
        """Take the end snapshot, log it, end the run; returns the run card's summary.

        ``live`` is the latest editor content the panel sent; it is recorded when it arrived during
        this run and is of this run's notebook (the snapshot says why not otherwise). ``failure``
        (:meth:`failure`) names the cell that failed the run: it goes into the snapshot's ``run``
        entry and the ``nbtrack.failure`` tag; ``ended_by`` says who ended a run that no
        ``%track stop`` ended (``kernel exit``).
        """
        active = self.active
        if active is None:
            raise UsageError("no tracked run is active; start one with `%track start`")
        self.active = None
        tracking = active.tracking
        try:
            run, files = self._capture_end(active, live)
            snapshot = self._snapshots.snapshot(active, phase="end", status=status)
            if failure is not None or ended_by is not None:
                self._record_end(active, snapshot, failure, ended_by)
            files["snapshot.json"] = snapshot.to_json().encode()
            active.store.log_files(active.run_id, files)
            tracking.make_durable(run)  # before the end commit that makes a spooled run pending
        except Exception:
            tracking.end_run(active.run_id, "FAILED")
            self._uploads.hand_over(tracking, active.run_id, active.unreachable)
            raise
        tracking.end_run(active.run_id, status)
        from nbtrack.signing import sign_later

        try:
            # After logging (the logged bytes are untouched), in a detached process (nbformat's import).
            # Signed only when the notebook itself is trusted: recording never makes code trusted.
            sign_later([files[name] for name in _SIGNED if name in files], active.location.path)
            summary = self._summary(active, status, run)
        finally:
            # Last, whatever happened: from here on the upload thread competes for the GIL.
            upload = self._uploads.hand_over(tracking, active.run_id, active.unreachable)
        if upload is not None:
            summary["upload"] = upload
        self.last, self.last_store = summary, active.store
        return summary

    def failure(self) -> dict[str, Any] | None:
        """The cell that failed the active run, else None: the last cell the kernel finished raised,
        and it ran after ``%track start`` (see :func:`~nbtrack.capture.history.describe_failure`).

        Example:
            >>> tracker.failure()  # doctest: +SKIP
            {'cell': 3, 'execution_count': 4, 'source_head': "x = d['a']", 'ename': 'KeyError', ...}
        """
        active = self.active
        cell = None if active is None else self.history.last_failure(active.cells_completed_at_start)
        if active is None or cell is None:
            return None
        return describe_failure(cell, read_notebook_json(active.location.path))

    def status(self) -> dict[str, Any]:
        """The active run and what was captured so far (sections present or absent, and why)."""
        active = self.active
        if active is None:
            return {"active": False, "last": self.last, "history": self.history.summary()}
        return {
            "active": True,
            "run_id": active.run_id,
            "run_name": active.run_name,
            "experiment": active.experiment,
            "store": active.tracking.describe(),
            "notebook": str(active.location.path) if active.location.path else None,
            "notebook_method": active.location.method,
            "notebook_reason": None if active.location.path else active.location.why_unknown,
            "project_root": str(active.ctx.project_root),
            "elapsed_s": round(time.time() - active.started, 3),
            "sections": {n: {"status": s.status, "reason": s.reason} for n, s in active.sections.items()},
            "history": self.history.summary(),
        }

    # --- start -------------------------------------------------------------------------------------
    def _locate(
        self, notebook: str | None, frontend_notebook: Path | None
    ) -> tuple[NotebookLocation, CaptureContext]:
        """The notebook, and what the providers look at (its project, the kernel's cwd)."""
        cwd = Path.cwd()
        user_ns = dict(getattr(self.shell, "user_ns", None) or {})
        location = locate_notebook(
            notebook, user_ns, cwd=cwd, server_timeout=self.config.server_timeout, frontend=frontend_notebook
        )
        if notebook and location.path is None:
            raise UsageError(f"--notebook {notebook}: no such file; give the path of the .ipynb")
        root = find_project_root(location.path.parent if location.path else cwd)
        return location, CaptureContext(root, location.path, cwd, self.config, self._provider_state)

    def _open(
        self,
        tracking: Tracking,
        location: NotebookLocation,
        ctx: CaptureContext,
        experiment: str,
        name: str | None,
        user_tags: dict[str, str],
    ) -> tuple[ActiveRun, dict[str, bytes]]:
        """Capture the start sections and start the MLflow run; returns the run and the files to log."""
        from nbtrack.capture.data import DataProvider
        from nbtrack.capture.environment import EnvironmentProvider
        from nbtrack.capture.git import GitProvider

        index = self.runs_started + 1
        sections: dict[str, Section] = {}
        files: dict[str, bytes] = {}
        # The data check is mostly stat() calls, which release the GIL: it runs beside the other
        # providers and MLflow's start_run instead of before them (~60 ms on 10k files); so does
        # the tracking server's reachability probe.
        with ThreadPoolExecutor(2, thread_name_prefix="nbtrack-start") as pool:
            data_capture = pool.submit(run_provider, DataProvider(), ctx)
            probe = pool.submit(tracking.probe) if tracking.spooled else None
            for provider in (EnvironmentProvider(), GitProvider()):
                section, produced = run_provider(provider, ctx)
                sections[section.name] = section
                files.update(produced)
            run_tags = start_tags(location, ctx.project_root, sections)
            run_tags[KERNEL_RUN_INDEX] = str(index)
            run_tags.update(replay_tags())
            run_tags.update(user_tags)
            run_tags = policy(self.config).tree(run_tags)  # --tag values are the user's free text
            exp_id, run_id, started = self._start_run(tracking, experiment, name, run_tags)
            announce_run(run_id, index, tracking.store.uri)  # in a replay: the replayer's answer
            sections["data"], _ = data_capture.result()
            unreachable = probe.result() if probe is not None else None
        self.runs_started = index
        active = ActiveRun(run_id, name, experiment, exp_id, tracking, location, ctx, sections, started)
        active.tags, active.kernel_run_index = run_tags, index
        active.cells_completed_at_start, active.unreachable = self.cells_completed(), unreachable
        return active, files

    def _start_run(
        self, tracking: Tracking, experiment: str, name: str | None, run_tags: dict[str, str]
    ) -> tuple[str, str, float]:
        """Start the MLflow run; returns the experiment id, the run id and the start time."""
        key = (tracking.store.uri, experiment)
        exp_id = self._experiments.get(key) or tracking.experiment_id(experiment)
        self._experiments[key] = exp_id
        if self.runs_started == 0:
            # Once per kernel (a new kernel is what follows a killed one): end this host's runs of
            # the experiment whose kernel died, KILLED (one search, never failing the start).
            tracking.end_orphans(exp_id, by="%track start")
        started = time.time()
        try:
            return exp_id, tracking.start_run(exp_id, name, run_tags), started
        except Exception:
            self._experiments.pop(key, None)  # e.g. the experiment was deleted meanwhile
            raise

    def _log_start(self, active: ActiveRun, files: dict[str, bytes]) -> None:
        """Log the start snapshot, the start files and the DVC data as the run's dataset inputs."""
        from nbtrack.capture.data import dataset_inputs

        try:
            snapshot = self._snapshots.snapshot(active, phase="start")
            files["snapshot.json"] = snapshot.to_json().encode()
            active.store.log_files(active.run_id, files)
            data = active.sections["data"]
            if data.status == "ok":
                active.store.log_datasets(active.run_id, dataset_inputs(data.data))
        except Exception:
            # No half-written run: a run whose start snapshot could not be logged is ended and
            # deleted (MLflow keeps it in its trash: `mlflow gc` removes it, `restore_run` brings
            # it back).
            self.active = None
            active.tracking.discard(active.run_id)
            raise

    # --- stop --------------------------------------------------------------------------------------
    def _capture_end(
        self, active: ActiveRun, live: LiveNotebook | None
    ) -> tuple[RunRecord, dict[str, bytes]]:
        """Capture the end sections and log params and end tags; returns the run and the files to log."""
        from nbtrack.capture.data import DataProvider
        from nbtrack.capture.environment import note_variables_read
        from nbtrack.capture.notebook import NotebookProvider, live_for_run
        from nbtrack.capture.parameters import ParametersProvider, param_string
        from nbtrack.capture.results import shown_results

        executed = self._executed()
        live, live_reason = live_for_run(live, active.cells_completed_at_start, active.location.path)
        saved = NotebookProvider(active.location, executed, self.history.summary(), live, live_reason)
        start_data = active.sections.get("data")
        store = active.store
        # What the run wrote into DVC-tracked outputs: the data check again (state-cache answers,
        # mostly stat calls), beside the notebook capture.
        with ThreadPoolExecutor(1, thread_name_prefix="nbtrack-data") as pool:
            end_data = (
                pool.submit(run_provider, DataProvider(), active.ctx)
                if start_data is not None and start_data.status == "ok"
                else None
            )
            notebook, files = run_provider(saved, active.ctx)
            parameters, _ = run_provider(
                ParametersProvider(active.location, executed, saved.parsed), active.ctx
            )
            run = store.get_run(active.run_id)
            active.sections.update(notebook=notebook, parameters=parameters)
            results = {"metrics": dict(run.metrics), "params": dict(run.params)}
            active.sections["results"] = Section("results", "ok", None, results)
            # What the notebook showed (`nbtrack:result` cells, scrapbook scraps): metrics and
            # nbtrack/results/ files, never over a metric the user logged; and the environment
            # variables its code read, whose drift a replay reports (nbtrack.capture.results).
            shown = shown_results(live.notebook if live else saved.parsed, executed, run.metrics)
            store.log_metrics(active.run_id, shown.metrics)
            run.metrics.update(shown.metrics)
            results.update(metrics=dict(run.metrics), shown=shown.summary)
            files.update(shown.files)
            note_variables_read(active.sections.get("environment"), saved.parsed, executed)
            # The end tags need only the start's data section: logged while the check runs.
            params = {k: param_string(v) for k, v in parameters.data.get("values", {}).items()}
            store.log_params_and_tags(active.run_id, params, end_tags(active.sections), run.params)
            after = end_data.result()[0] if end_data is not None else None
        if start_data is not None and after is not None:
            self._log_produced(active, start_data, after)
        return run, files

    def _record_end(
        self, active: ActiveRun, snapshot: Any, failure: dict[str, Any] | None, ended_by: str | None
    ) -> None:
        """How the run ended, beyond its status: in the snapshot's ``run`` entry, and the failing
        cell as the ``nbtrack.failure`` tag (what a listing shows). Redacted: a message can quote
        a secret."""
        if ended_by is not None:
            snapshot.run["ended_by"] = ended_by
        if failure is not None:
            clean = policy(self.config).tree(dict(failure))
            snapshot.run["failure"] = clean
            active.store.set_tags(active.run_id, {FAILURE: failure_line(clean)})

    def _log_produced(self, active: ActiveRun, before: Section, after: Section) -> None:
        """Record what the run wrote into DVC outputs: in the snapshot, and as ``output`` datasets."""
        from nbtrack.capture.data import dataset_inputs

        produced = produced_outputs(before, after)
        before.data["produced"] = produced
        if produced and after.status == "ok":
            paths = {p["path"] for p in produced}
            outputs = dataset_inputs(after.data, context=DATASET_OUTPUT, paths=paths)
            active.store.log_datasets(active.run_id, outputs)

    def _summary(self, active: ActiveRun, status: str, run: RunRecord) -> dict[str, Any]:
        return {
            "run_id": active.run_id,
            "run_name": run.name,
            "experiment": active.experiment,
            "status": status,
            "duration_s": time.time() - active.started,
            "metrics": dict(run.metrics),
            "flags": run_flags(active.sections),
            "view": active.tracking.run_view(run),
            "notebook": active.tags.get(SOURCE_NAME),
            "notebook_path": str(active.location.path) if active.location.path else None,
        }
