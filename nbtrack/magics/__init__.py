"""IPython front-end: the ``%track`` line magic and ``%%track`` cell magic.

Imports nothing heavy: ``%load_ext nbtrack`` only registers the magics and two cell hooks and opens
the ``nbtrack`` comm to the JupyterLab panel (:mod:`nbtrack.magics.frontend`); MLflow, DVC and friends are
imported by the first ``%track start``, nbformat and ipywidgets at the first ``%track stop``.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, NoReturn

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display as _display

from nbtrack.config import load_config
from nbtrack.errors import NbtrackError, UsageError
from nbtrack.magics.frontend import Frontend
from nbtrack.track.tracker import Tracker

USAGE = """\
%track start [--experiment NAME] [--name RUN_NAME] [--tag KEY=VALUE ...] [--notebook PATH]
%track stop
%track status
%track show [RUN_ID]
%track compare [--last N] [--all-columns]
%%track [--experiment NAME] [--name RUN_NAME] [--tag KEY=VALUE ...] [--notebook PATH]"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())  # one line, also when an argument held a newline
        raise IPythonUsageError(f"%track: {message}. Usage: {USAGE.splitlines()[0]}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise IPythonUsageError(message or USAGE)


def _start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", "-e", help="MLflow experiment name (created if needed)")
    parser.add_argument("--name", "-n", help="run name")
    parser.add_argument("--tag", "-t", action="append", default=[], metavar="KEY=VALUE", help="run tag")
    parser.add_argument("--notebook", help="path of this notebook, when nbtrack cannot find it")


def _parser() -> _Parser:
    parser = _Parser(prog="%track", add_help=False)
    sub = parser.add_subparsers(dest="verb", parser_class=_Parser)
    _start_options(sub.add_parser("start", add_help=False))
    sub.add_parser("stop", add_help=False)
    sub.add_parser("status", add_help=False)
    sub.add_parser("show", add_help=False).add_argument("run_id", nargs="?")
    compare = sub.add_parser("compare", add_help=False)
    compare.add_argument("--last", type=int, metavar="N", help="the N newest runs only")
    compare.add_argument("--all-columns", action="store_true", help="every column, not only varying ones")
    return parser


def _cell_parser() -> _Parser:
    parser = _Parser(prog="%%track", add_help=False)
    _start_options(parser)
    return parser


def _tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise IPythonUsageError(f"%track: --tag {pair!r} is not KEY=VALUE; write e.g. --tag team=churn")
        tags[key] = value
    return tags


def _one_line(exc: BaseException) -> str:
    """An nbtrack error as one line, also when it quotes a multi-line foreign message."""
    return " ".join(str(exc).split())


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise IPythonUsageError(f"%track: cannot parse {line!r} ({exc}); check the quotes") from exc


@magics_class
class TrackMagics(Magics):  # type: ignore[misc]
    """The ``%track`` magics; one :class:`Tracker` and one :class:`Frontend` (the panel) per shell."""

    def __init__(self, shell: Any, tracker: Tracker, frontend: Frontend | None = None) -> None:
        super().__init__(shell)
        self.tracker = tracker
        self.frontend = frontend or Frontend(tracker)
        self._exit_handler = False

    @line_magic  # type: ignore[untyped-decorator]
    def track(self, line: str) -> None:
        """Track this notebook's work as an MLflow run: code, environment, git and DVC data.

        Usage::

            %track start [--experiment NAME] [--name RUN_NAME] [--tag KEY=VALUE ...] [--notebook PATH]
            %track stop      # snapshot the notebook, log everything, end the run; shows a run card
            %track status    # the active run and which snapshot sections were captured (or why not)
            %track show [RUN_ID]  # a run's card (default: the last run of this kernel)
            %track compare [--last N] [--all-columns]  # this notebook's runs as a table (varying columns)

        Between start and stop, ``mlflow.log_metric(...)``, ``mlflow.log_param(...)`` and
        ``mlflow.autolog()`` log into the tracked run. ``%%track`` tracks one cell as one run.

        Example::

            %load_ext nbtrack
            %track start --experiment churn --name baseline --tag owner=ana
            import mlflow; mlflow.log_metric("accuracy", 0.91)
            %track stop
        """
        args = _parser().parse_args(_split(line))
        if args.verb is None:
            raise IPythonUsageError(f"%track needs a verb: start, stop, status, show or compare.\n{USAGE}")
        try:
            if args.verb == "start":
                self._start(args)
            elif args.verb == "stop":
                self._show_card(self._stop())
            elif args.verb == "show":
                self._show_run(args.run_id)
            elif args.verb == "compare":
                self._compare(args.last, args.all_columns)
            else:
                _print_status(self.tracker.status())
        except NbtrackError as exc:
            raise IPythonUsageError(f"%track {args.verb}: {_one_line(exc)}") from exc

    @cell_magic("track")  # type: ignore[arg-type,untyped-decorator]
    def track_cell(self, line: str, cell: str) -> None:
        """Run this cell as one tracked run: FINISHED when it succeeds, FAILED (re-raised) when not.

        Example::

            %%track --experiment churn --name quick
            model.fit(X, y)
            mlflow.log_metric("accuracy", model.score(X, y))
        """
        args = _cell_parser().parse_args(_split(line))
        try:
            self._start(args)
        except NbtrackError as exc:
            raise IPythonUsageError(f"%%track: {_one_line(exc)}") from exc
        self.tracker.history.paused = True
        try:
            result = self.shell.run_cell(cell, store_history=False)  # type: ignore[union-attr]
        finally:
            self.tracker.history.paused = False
        failed = not result.success
        try:
            failure = _cell_failure(self.tracker, line, cell, result) if failed else None
            summary = self._stop("FAILED" if failed else "FINISHED", failure=failure)
        except NbtrackError as exc:
            raise IPythonUsageError(f"%%track: {_one_line(exc)}") from exc
        self._show_card(summary)
        if failed:
            result.raise_error()

    def _start(self, args: argparse.Namespace) -> None:
        tags = _tags(args.tag)
        self.start_run(experiment=args.experiment, name=args.name, tags=tags, notebook=args.notebook)

    def start_run(
        self,
        *,
        experiment: str | None = None,
        name: str | None = None,
        tags: dict[str, str] | None = None,
        notebook: str | None = None,
    ) -> None:
        """What ``%track start`` does (also for papermill's engine and autotrack); says what it did."""
        # The previous run ends here rather than inside start(), so that it gets the editor's content.
        previous = self._stop() if self.tracker.active is not None else None
        self.tracker.start(
            experiment=experiment,
            name=name,
            tags=tags,
            notebook=notebook,
            frontend_notebook=self.frontend.notebook_path(),
        )
        if not self._exit_handler:
            # After the start imported MLflow: the run a kernel leaves behind is ended by nbtrack
            # (FAILED when its last cell raised), not by MLflow's exit handler.
            from nbtrack.magics.exit import register

            tracker, frontend = self.tracker, self.frontend
            register(tracker, lambda status, **kw: stop_and_tell(tracker, frontend, status, **kw))
            self._exit_handler = True
        if previous is not None:
            print(f"nbtrack: ended the previous run {previous['run_name']} ({previous['run_id']}) first")
        active = self.tracker.active
        assert active is not None
        self.frontend.send_state(active.run_id)
        missing = [f"{n} ({s.reason})" for n, s in active.sections.items() if s.status != "ok"]
        print(f"nbtrack: tracking run {active.run_id} in experiment {active.experiment!r}")
        if active.notice:
            print(f"nbtrack: {active.notice}")
        if active.location.path is None:
            print(f"nbtrack: {active.location.why_unknown}")
        for item in missing:
            print(f"nbtrack: not captured: {item}")
        for name, section in active.sections.items():
            # Captured but not whole: a git diff over its cap, DVC files that could not be read.
            for note in section.notes() if section.status == "ok" else []:
                print(f"nbtrack: {name}: {note}")

    def _stop(self, status: str = "FINISHED", failure: dict[str, Any] | None = None) -> dict[str, Any]:
        """End the active run with the editor's latest content; tell the panel either way."""
        return stop_and_tell(self.tracker, self.frontend, status, failure=failure)

    def _show_run(self, run_id: str | None) -> None:
        from pathlib import Path

        from nbtrack.magics.card import stored_summary
        from nbtrack.runs.service import Runs

        if run_id is None:
            if self.tracker.last is None:
                raise UsageError("no run has ended in this kernel yet; give its id: %track show RUN_ID")
            self._show_card(self.tracker.last, self.tracker.last_store)
            return
        runs = Runs(self.tracker.config)
        active = self.tracker.active
        # The store this kernel tracks into (a spool's store stands for its server), else the
        # project's, found from the notebook's folder (never created by looking).
        store = active.store if active is not None else self.tracker.last_store
        if store is not None:
            target = runs.target_of(store)
        else:
            target = runs.locate(notebook=self.frontend.notebook_path(), cwd=Path.cwd())
        summary, holder = stored_summary(runs, target, run_id)
        self._show_card(summary, holder)

    def _compare(self, last: int | None, all_columns: bool) -> None:
        from nbtrack.magics.compare import show_compare

        if last is not None and last < 1:
            raise UsageError(f"--last {last}: give a number of runs, 1 or more")
        _display(show_compare(self.tracker, self.frontend, last, all_columns))  # type: ignore[no-untyped-call]

    def _show_card(self, summary: dict[str, Any], store: Any = None) -> None:
        from nbtrack.magics.card import run_card

        card = run_card(summary, store or self.tracker.last_store, widgets=self.frontend.connected)
        _display(card)  # type: ignore[no-untyped-call]
        if (summary.get("upload") or {}).get("state") == "uploading":
            # The background upload ends later: the widget card shows its outcome, the panel reloads.
            frontend, path = self.frontend, summary.get("notebook_path")

            def finished(upload: dict[str, str]) -> None:
                if hasattr(card, "upload_finished"):
                    card.upload_finished(upload)
                frontend.send_run_finished(str(summary["run_id"]), str(summary["status"]), path)

            self.tracker.on_upload(str(summary["run_id"]), finished)


def stop_and_tell(
    tracker: Tracker,
    frontend: Frontend,
    status: str = "FINISHED",
    *,
    failure: dict[str, Any] | None = None,
    ended_by: str | None = None,
) -> dict[str, Any]:
    """``tracker.stop`` with the panel's live content, then ``run_finished`` to the panel (also when
    logging failed and the run ended FAILED)."""
    active = tracker.active
    try:
        summary = tracker.stop(status, live=frontend.live, failure=failure, ended_by=ended_by)
    except Exception:
        if active is not None and tracker.active is None:
            path = str(active.location.path) if active.location.path else None
            frontend.send_run_finished(active.run_id, "FAILED", path)
        raise
    frontend.send_run_finished(summary["run_id"], summary["status"], summary.get("notebook_path"))
    return summary


def _cell_failure(tracker: Tracker, line: str, cell: str, result: Any) -> dict[str, Any] | None:
    """The ``%%track`` cell that raised, as the run's failure (its number in the notebook file)."""
    from nbtrack.capture.history import (
        ExecutedCell,
        describe_failure,
        error_value,
        first_line,
        read_notebook_json,
    )

    error = result.error_in_exec or result.error_before_exec
    active = tracker.active
    if error is None or active is None:
        return None
    source = f"%%track {line}\n{cell}" if line.strip() else f"%%track\n{cell}"
    executed = ExecutedCell(
        result.execution_count, source, status="error", error=type(error).__name__, evalue=error_value(error)
    )
    failure = describe_failure(executed, read_notebook_json(active.location.path))
    failure["source_head"] = first_line(cell) or failure["source_head"]
    return failure


def _print_status(status: dict[str, Any]) -> None:
    if not status["active"]:
        last = status.get("last")
        print("nbtrack: no active run" + (f"; last run {last['run_id']} ({last['status']})" if last else ""))
        return
    print(f"nbtrack: run {status['run_id']} in {status['experiment']!r} ({status['elapsed_s']:.1f} s)")
    print(f"  store: {status['store']}")
    where = status["notebook"] or status["notebook_reason"]
    print(f"  notebook: {where}" + (f" (found by {status['notebook_method']})" if status["notebook"] else ""))
    for name, section in status["sections"].items():
        print(f"  {name}: {section['status']}" + (f" - {section['reason']}" if section["reason"] else ""))


_TRACKER_ATTR = "_nbtrack_tracker"
_FRONTEND_ATTR = "_nbtrack_frontend"
_AUTOTRACK_ATTR = "_nbtrack_autotrack"


def load(ipython: Any) -> None:
    """Register the magics and the execution-history hooks on ``ipython`` and open the comm to the
    panel (idempotent)."""
    if getattr(ipython, _TRACKER_ATTR, None) is not None:
        return
    tracker = Tracker(ipython, load_config(shell=ipython))
    frontend = Frontend(tracker)
    magics = TrackMagics(ipython, tracker, frontend)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", tracker.history.pre_run_cell)
    ipython.events.register("post_run_cell", tracker.history.post_run_cell)
    setattr(ipython, _TRACKER_ATTR, tracker)
    setattr(ipython, _FRONTEND_ATTR, frontend)
    frontend.open()
    if tracker.config.autotrack:
        from nbtrack.magics.autotrack import Autotrack

        auto = Autotrack(lambda tags: magics.start_run(tags=tags), lambda: tracker.active is not None)
        auto.install()
        setattr(ipython, _AUTOTRACK_ATTR, auto)


def track_magics(ipython: Any) -> TrackMagics:
    """The shell's ``%track`` magics (nbtrack loaded first when it was not).

    Example:
        >>> track_magics(get_ipython()).tracker.active  # doctest: +SKIP
    """
    load(ipython)
    magics: TrackMagics = ipython.magics_manager.registry["TrackMagics"]
    return magics


def unload(ipython: Any) -> None:
    """Remove the hooks and close the comm; an active run is stopped first so it is not left RUNNING."""
    tracker: Tracker | None = getattr(ipython, _TRACKER_ATTR, None)
    if tracker is None:
        return
    frontend: Frontend = getattr(ipython, _FRONTEND_ATTR, None) or Frontend(tracker)
    auto = getattr(ipython, _AUTOTRACK_ATTR, None)
    if auto is not None:
        auto.remove()
        setattr(ipython, _AUTOTRACK_ATTR, None)
    try:
        if tracker.active is not None:
            stop_and_tell(tracker, frontend)
    finally:
        frontend.close()
        ipython.events.unregister("pre_run_cell", tracker.history.pre_run_cell)
        ipython.events.unregister("post_run_cell", tracker.history.post_run_cell)
        setattr(ipython, _TRACKER_ATTR, None)
        setattr(ipython, _FRONTEND_ATTR, None)
