"""The tracking verbs: start a run, stop it, report its status. Owns the run lifecycle.

A :class:`Tracker` lives on one IPython shell (the magics hold it); the active run is its attribute,
never a module global. At ``start`` it takes the environment, git and data sections and opens the
*active* MLflow run; at ``stop`` it takes the notebook, history and parameters (and the editor's
live content, when the JupyterLab panel sent it), logs everything, signs the notebooks it wrote and
ends the run FINISHED (or FAILED).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack import __version__
from nbtrack.capture.base import CaptureContext, run_provider
from nbtrack.capture.history import ExecutionHistory
from nbtrack.capture.locate import NotebookLocation, find_project_root, locate_notebook
from nbtrack.config import NbtrackConfig
from nbtrack.errors import UsageError
from nbtrack.models import SCHEMA_VERSION, Section, Snapshot
from nbtrack.redact import policy
from nbtrack.store.orphans import end_orphans_quietly, owner_tags
from nbtrack.track.handoff import announce_run, replay_context

if TYPE_CHECKING:
    from nbtrack.capture.notebook import LiveNotebook

#: The notebooks nbtrack writes itself, signed so that Jupyter opens them trusted.
_SIGNED = ("history.ipynb", "notebook.live.ipynb")


@dataclass
class ActiveRun:
    """The run between ``%track start`` and ``%track stop``."""

    run_id: str
    run_name: str | None
    experiment: str
    experiment_id: str
    store: Any
    location: NotebookLocation
    ctx: CaptureContext
    sections: dict[str, Section]
    started: float
    tags: dict[str, str] = field(default_factory=dict)
    #: 1 for the first run started in this kernel, 2 for the next, ... (a replay matches runs by it)
    kernel_run_index: int = 1
    #: Cells the kernel had finished at start: live content that arrived before is not this run's.
    cells_completed_at_start: int = 0
    #: The tracking server the run is bound for, when ``store`` is its local spool.
    target: Any = None
    #: Why the server could not be reached at start (the run waits in the spool), else None.
    unreachable: str | None = None
    #: What the user must be told once (the server is unreachable, the run is pending).
    notice: str | None = None


def _data_status(sections: dict[str, Section]) -> str:
    """The worst workspace status among the DVC outputs: missing, modified, unknown or clean."""
    data = sections.get("data")
    if data is None or data.status != "ok":
        return "absent" if data is None else data.status
    summary = data.data.get("summary") or {}
    return next((s for s in ("missing", "modified", "unknown") if summary.get(s)), "clean")


def _output_states(section: Section | None) -> dict[str, str | None]:
    """Each DVC output's workspace content: its hash, or None when missing or unknown."""
    if section is None or section.status != "ok":
        return {}
    states: dict[str, str | None] = {}
    for out in section.data.get("outputs", []):
        status = out.get("status")
        states[out["path"]] = (
            out["hash"] if status == "clean" else out.get("workspace_hash") if status == "modified" else None
        )
    return states


def produced_outputs(before: Section | None, after: Section | None) -> list[dict[str, Any]]:
    """DVC outputs whose workspace content changed during the run: what the run produced.

    Example:
        >>> a = Section("data", data={"outputs": [{"path": "m.pkl", "hash": "1", "status": "missing"}]})
        >>> b = Section("data", data={"outputs": [{"path": "m.pkl", "hash": "1", "status": "modified",
        ...                                        "workspace_hash": "2", "hash_name": "md5"}]})
        >>> produced_outputs(a, b)
        [{'path': 'm.pkl', 'hash_name': 'md5', 'before': None, 'after': '2'}]
    """
    start, end = _output_states(before), _output_states(after)
    names = {o["path"]: o.get("hash_name") for o in (after.data.get("outputs", []) if after else [])}
    return [
        {"path": path, "hash_name": names.get(path), "before": start.get(path), "after": end[path]}
        for path in sorted(end)
        if end[path] is not None and end[path] != start.get(path)
    ]


def _now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts or time.time(), tz=timezone.utc).isoformat(timespec="milliseconds")


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
        self.last_store: Any = None
        #: Redacted sections (JSON) by their JSON before redaction: see :meth:`_redacted`.
        self._redaction_memo: dict[str, str] = {}
        #: Upload state of runs ended in this kernel (tracking server only): run id -> state.
        self.uploads: dict[str, dict[str, str]] = {}
        self._upload_listeners: dict[str, list[Any]] = {}
        #: Whether the user was told the server is unreachable (told once per outage).
        self._told_unreachable = False
        self._upload_lock = threading.Lock()

    # --- helpers ---------------------------------------------------------------------------------
    def _user_ns(self) -> dict[str, Any]:
        return dict(getattr(self.shell, "user_ns", None) or {})

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
        from nbtrack.store import MlflowStore

        return MlflowStore.for_project(
            find_project_root(notebook.parent if notebook else Path.cwd()), self.config
        )

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
        from nbtrack.capture.data import DataProvider, dataset_inputs
        from nbtrack.capture.environment import EnvironmentProvider
        from nbtrack.capture.git import GitProvider
        from nbtrack.store import MlflowStore

        previous = self.stop() if self.active is not None else None
        cwd = Path.cwd()
        location = locate_notebook(
            notebook,
            self._user_ns(),
            cwd=cwd,
            server_timeout=self.config.server_timeout,
            frontend=frontend_notebook,
        )
        if notebook and location.path is None:
            raise UsageError(f"--notebook {notebook}: no such file; give the path of the .ipynb")
        root = find_project_root(location.path.parent if location.path else cwd)
        ctx = CaptureContext(root, location.path, cwd, self.config, self._provider_state)
        # Before capture: the embedded store's folder (and its .gitignore) must exist so that git
        # does not report the store itself as untracked code.
        store = MlflowStore.for_project(root, self.config)
        target = None
        if store.is_server:
            # The run goes into the local spool first; it is uploaded when it ends (never waiting on
            # the network, whatever the server's state).
            from nbtrack.store.spool import Spool

            target, store = store, Spool.for_server(store.uri, self.config).store
        exp_name = experiment or self.config.experiment or root.name or "nbtrack"
        sections: dict[str, Section] = {}
        files: dict[str, bytes] = {}
        # The data check is mostly stat() calls, which release the GIL: it runs beside the other
        # providers and MLflow's start_run instead of before them (~60 ms on 10k files).
        with ThreadPoolExecutor(2, thread_name_prefix="nbtrack-start") as pool:
            data_capture = pool.submit(run_provider, DataProvider(), ctx)
            probe = pool.submit(self._probe, target, store.spool) if target is not None else None
            for provider in (EnvironmentProvider(), GitProvider()):
                section, produced = run_provider(provider, ctx)
                sections[section.name] = section
                files.update(produced)
            run_tags = self._start_tags(location, root, sections)
            run_tags["nbtrack.kernel_run_index"] = str(self.runs_started + 1)
            replay = replay_context()
            if replay.get("replay_of"):
                run_tags["nbtrack.replay_of"] = str(replay["replay_of"])
                run_tags["nbtrack.replay_id"] = str(replay.get("replay_id", ""))
            run_tags.update(tags or {})
            run_tags = policy(self.config).tree(run_tags)  # --tag values are the user's free text
            key = (store.uri, exp_name)
            exp_id = self._experiments.get(key) or store.experiment_id(exp_name)
            self._experiments[key] = exp_id
            # Name this process as the run's owner (once it is gone, the run is an orphan), and end
            # this host's orphans of the experiment KILLED (one search, at the kernel's first start, never
            # failing it).
            run_tags.update(owner_tags())
            if target is not None:
                from nbtrack.store.spool import PENDING, SYNC_STATE, TARGET

                run_tags.update({SYNC_STATE: PENDING, TARGET: target.display_uri})
            if self.runs_started == 0:  # once per kernel: a new kernel is what follows a killed one
                end_orphans_quietly(store, experiment_ids=[exp_id], by="%track start")
            started = time.time()
            try:
                run_id = store.start_active_run(exp_id, name, run_tags)
            except Exception:
                self._experiments.pop(key, None)  # e.g. the experiment was deleted meanwhile
                raise
            announce_run(run_id, self.runs_started + 1, store.uri)  # in a replay: the replayer's answer
            sections["data"], _ = data_capture.result()
            unreachable = probe.result() if probe is not None else None
        self.runs_started += 1
        active = ActiveRun(
            run_id,
            name,
            exp_name,
            exp_id,
            store,
            location,
            ctx,
            sections,
            started,
            run_tags,
            self.runs_started,
            self.cells_completed(),
            target,
            unreachable,
        )
        if target is not None:
            active.notice = self._outage_notice(active)
        self.active = active
        try:
            snapshot = self._snapshot(active, phase="start")
            files["snapshot.json"] = snapshot.to_json().encode()
            store.log_files(run_id, files)
            if sections["data"].status == "ok":
                store.log_datasets(run_id, dataset_inputs(sections["data"].data))
        except Exception:
            # No half-written run: a run whose start snapshot could not be logged is ended and
            # deleted (MLflow keeps it in its trash: `mlflow gc` removes it, `restore_run` brings
            # it back).
            self.active = None
            store.end_active_run(run_id, "FAILED")
            store.delete_run(run_id)
            if target is not None:
                import mlflow

                mlflow.set_tracking_uri(target.uri)
            raise
        return active, previous

    def stop(self, status: str = "FINISHED", live: LiveNotebook | None = None) -> dict[str, Any]:
        """Take the end snapshot, log it, end the run; returns the run card's summary.

        ``live`` is the latest editor content the panel sent; it is recorded when it arrived during
        this run and is of this run's notebook (the snapshot says why not otherwise).
        """
        from nbtrack.capture.data import DataProvider
        from nbtrack.capture.notebook import NotebookProvider, live_for_run
        from nbtrack.capture.parameters import ParametersProvider, param_string

        active = self.active
        if active is None:
            raise UsageError("no tracked run is active; start one with `%track start`")
        self.active = None
        store = active.store
        try:
            executed = self._executed()
            live, live_reason = live_for_run(live, active.cells_completed_at_start, active.location.path)
            saved = NotebookProvider(active.location, executed, self.history.summary(), live, live_reason)
            start_data = active.sections.get("data")
            # What the run wrote into DVC-tracked outputs: the data check again (state-cache
            # answers, mostly stat calls), beside the notebook capture.
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
                # The end tags need only the start's data section: logged while the check runs.
                params = {k: param_string(v) for k, v in parameters.data.get("values", {}).items()}
                store.log_params_and_tags(active.run_id, params, self._end_tags(active), run.params)
                after = end_data.result()[0] if end_data is not None else None
            if start_data is not None and after is not None:
                start_data.data["produced"] = produced_outputs(start_data, after)
            snapshot = self._snapshot(active, phase="end", status=status)
            files["snapshot.json"] = snapshot.to_json().encode()
            store.log_files(active.run_id, files)
            if active.target is not None:
                store.spool.make_durable(run)  # before the end commit that makes the run pending
        except Exception:
            store.end_active_run(active.run_id, "FAILED")
            self._hand_over(active)
            raise
        store.end_active_run(active.run_id, status)
        from nbtrack.signing import sign_later

        try:
            # After logging (the logged bytes are untouched), in a detached process (nbformat's import).
            sign_later([files[name] for name in _SIGNED if name in files])
            summary = self._summary(active, status, run)
        finally:
            # Last, whatever happened: from here on the upload thread competes for the GIL.
            upload = self._hand_over(active)
        if upload is not None:
            summary["upload"] = upload
        self.last, self.last_store = summary, store
        return summary

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
            "store": active.target.display_uri + " (through the local spool)"
            if active.target is not None
            else active.store.display_uri,
            "notebook": str(active.location.path) if active.location.path else None,
            "notebook_method": active.location.method,
            "notebook_reason": None if active.location.path else active.location.why_unknown,
            "project_root": str(active.ctx.project_root),
            "elapsed_s": round(time.time() - active.started, 3),
            "sections": {n: {"status": s.status, "reason": s.reason} for n, s in active.sections.items()},
            "history": self.history.summary(),
        }

    # --- the spool and the upload (tracking server only) -----------------------------------------
    def _probe(self, target: Any, spool: Any) -> str | None:
        """Why the server cannot be reached now (None: it answers; then earlier pending runs of
        the spool are uploaded in the background)."""
        from nbtrack.store.http import unreachable

        reason = unreachable(target.uri, self.config.tracking_timeout)
        if reason is None and spool.exists():
            self._uploader(spool, target).kick()
        return reason

    def _uploader(self, spool: Any, target: Any) -> Any:
        from nbtrack.store.sync import uploader_for

        return uploader_for(spool, target, self.config.tracking_timeout)

    def _outage_notice(self, active: ActiveRun) -> str | None:
        """The one line the user reads when the server is down (once per outage), else None."""
        if active.unreachable is None:
            self._told_unreachable = False
            return None
        if self._told_unreachable:
            return None
        self._told_unreachable = True
        return (
            f"tracking server {active.target.display_uri} is unreachable ({active.unreachable}); "
            f"this run is kept in the local spool {active.store.spool.display} and is pending: it "
            "is uploaded once the server answers, or by `nbtrack sync`"
        )

    def _hand_over(self, active: ActiveRun) -> dict[str, str] | None:
        """After a spooled run ended: the user's MLflow calls go to the server again, and the
        upload starts in the background. Returns the run's upload state."""
        if active.target is None:
            return None
        import mlflow

        mlflow.set_tracking_uri(active.target.uri)
        state = {
            "state": "pending" if active.unreachable else "uploading",
            "server": active.target.display_uri,
            "detail": active.unreachable or "",
        }
        self.uploads[active.run_id] = state
        run_id = active.run_id

        def done(new_state: str, detail: str) -> None:
            final = {**state, "state": new_state, "detail": detail, "final": "true"}
            with self._upload_lock:
                self.uploads[run_id] = final
                listeners = self._upload_listeners.pop(run_id, [])
            for listener in listeners:
                listener(final)

        self._uploader(active.store.spool, active.target).kick(run_id, done)
        return dict(state)

    def on_upload(self, run_id: str, listener: Any) -> None:
        """Call ``listener(state)`` once the background upload of ``run_id`` is over."""
        with self._upload_lock:
            current = self.uploads.get(run_id)
            if current is None:
                return
            if not current.get("final"):
                self._upload_listeners.setdefault(run_id, []).append(listener)
                return
        listener(current)

    # --- snapshot and tags -----------------------------------------------------------------------
    def _snapshot(self, active: ActiveRun, *, phase: str, status: str | None = None) -> Snapshot:
        """The snapshot to log, every string in it through the redaction policy (provider data,
        problems and reasons quoting foreign errors, parameters the user logged, the URI)."""
        redactor = policy(self.config)
        run = {
            "run_id": active.run_id,
            "run_name": active.run_name,
            "experiment": active.experiment,
            "experiment_id": active.experiment_id,
            "tracking_uri": redactor.url((active.target or active.store).uri),
            "project_root": str(active.ctx.project_root),
            "cwd": str(active.ctx.cwd),
            "started": _now_iso(active.started),
            "phase": phase,
            "kernel_run_index": active.kernel_run_index,
        }
        if active.target is not None:
            run["spool"] = str(active.store.spool.folder)
        replay = replay_context()
        if replay.get("replay_of"):
            run["replay_of"] = replay["replay_of"]
        if phase == "end":
            run.update(ended=_now_iso(), status=status)
        sections = {name: self._redacted(redactor, section) for name, section in active.sections.items()}
        # Through JSON first: its default=str turns paths and other objects into strings to scan.
        clean_run = redactor.tree(json.loads(json.dumps(run, default=str)))
        return Snapshot(run=clean_run, sections=sections, nbtrack_version=__version__)

    def _redacted(self, redactor: Any, section: Section) -> Section:
        """``section`` with every string through the redaction policy, remembered by content.

        The environment and git sections come out the same at a run's start and end and from one
        run to the next; walking their few thousand strings again cost ~30 ms a snapshot.
        """
        text = json.dumps(section.to_dict(), sort_keys=True, default=str)
        clean = self._redaction_memo.get(text)
        if clean is None:
            clean = json.dumps(redactor.tree(json.loads(text)))
            if len(self._redaction_memo) >= 16:
                self._redaction_memo.pop(next(iter(self._redaction_memo)))
            self._redaction_memo[text] = clean
        return Section.from_dict(json.loads(clean))

    def _start_tags(self, loc: NotebookLocation, root: Path, sections: dict[str, Section]) -> dict[str, str]:
        tags = {
            "mlflow.source.type": "NOTEBOOK",
            "nbtrack.schema_version": str(SCHEMA_VERSION),
            "nbtrack.version": __version__,
            "nbtrack.project": root.name,
        }
        if loc.path is not None:
            try:
                rel = loc.path.relative_to(root).as_posix()
            except ValueError:
                rel = str(loc.path)
            tags.update({"mlflow.source.name": rel, "nbtrack.notebook.method": str(loc.method)})
        else:
            # Explicitly empty: MLflow would fill in sys.argv[0] (`ipykernel_launcher.py`).
            tags.update({"mlflow.source.name": "", "nbtrack.notebook.method": "unknown"})
        if loc.papermill:
            tags["nbtrack.papermill"] = "true"
            tags["nbtrack.papermill.input_path"] = str(loc.papermill.get("input_path"))
        git = sections.get("git")
        if git is not None and git.status == "ok":
            d = git.data
            for key, value in (
                ("mlflow.source.git.commit", d.get("commit")),
                ("mlflow.source.git.branch", d.get("branch")),
                ("mlflow.source.git.repoURL", d.get("remote_url")),
            ):
                if value:
                    tags[key] = str(value)
            tags["nbtrack.git.dirty"] = str(bool(d.get("dirty"))).lower()
        return tags

    def _end_tags(self, active: ActiveRun) -> dict[str, str]:
        tags: dict[str, str] = {"nbtrack.data.status": _data_status(active.sections)}
        nb = active.sections.get("notebook")
        if nb is not None and nb.status == "ok" and nb.data.get("out_of_order") is not None:
            tags["nbtrack.out_of_order"] = str(nb.data["out_of_order"]).lower()
            tags["nbtrack.edited_after_execution"] = str(bool(nb.data.get("edited_after_execution"))).lower()
        live = nb.data.get("live") if nb is not None and nb.status == "ok" else None
        if isinstance(live, dict) and live.get("received"):
            tags["nbtrack.notebook.unsaved"] = str(bool(live.get("unsaved_edits"))).lower()
        for name, section in active.sections.items():
            tags[f"nbtrack.section.{name}"] = section.status
        return tags

    def _summary(self, active: ActiveRun, status: str, run: Any) -> dict[str, Any]:
        return {
            "run_id": active.run_id,
            "run_name": run.name,
            "experiment": active.experiment,
            "status": status,
            "duration_s": time.time() - active.started,
            "metrics": dict(run.metrics),
            "flags": run_flags(active.sections),
            "view": (
                f"the MLflow UI of {active.target.display_uri}, once uploaded"
                if active.target is not None
                else active.store.run_url(run)
            ),
            "notebook": active.tags.get("mlflow.source.name"),
            "notebook_path": str(active.location.path) if active.location.path else None,
        }


def run_flags(sections: dict[str, Section]) -> list[str]:
    """The run card's warnings: out-of-order execution, unsaved edits, missing sections, dirty data."""
    flags = []
    nb = sections.get("notebook")
    if nb is not None and nb.data.get("out_of_order"):
        flags.append("executed out of order: " + "; ".join(nb.data.get("out_of_order_reasons", [])[:3]))
    live = nb.data.get("live") if nb is not None else None
    if isinstance(live, dict) and live.get("unsaved_edits"):
        flags.append("notebook had unsaved edits in the editor: " + "; ".join(live.get("differences", [])))
    for name, section in sections.items():
        if name != "parameters":  # why a section is missing, and what it left out (caps, DVC files)
            flags.extend(f"{name}: {note}" for note in section.notes())
    data_status = _data_status(sections)
    if data_status in ("modified", "missing"):
        flags.append(f"data {data_status} (not committed to DVC)")
    return flags
