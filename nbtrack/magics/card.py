"""The run card that ``%track stop``, ``%%track`` and ``%track show`` display.

With the JupyterLab panel connected (so the widget manager is there) it is an ipywidgets card: the
run's name, id, status, duration, metrics and flags, a **Compare with previous run** button that
renders the differing params and metrics below it, and an **Open in MLflow** link when the store
is an MLflow server. Elsewhere (papermill, nbconvert, a terminal) it is the HTML/text
:class:`~nbtrack.capture.render.RunCard`; the widget carries that HTML too, as the fallback of its display.

Example:
    >>> card = run_card(summary, store, widgets=True)  # doctest: +SKIP
    >>> card.compare()["params"]  # what the button does  # doctest: +SKIP
    [{'name': 'alpha', 'a': '0.1', 'b': '0.5'}]
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any

from nbtrack.capture.render import RunCard, diff_html
from nbtrack.errors import NbtrackError, RunNotFoundError, SnapshotError, UsageError
from nbtrack.runs.listing import previous_run_id
from nbtrack.track.tracker import run_flags

if TYPE_CHECKING:
    from nbtrack.runs.service import Runs, Target

log = logging.getLogger("nbtrack.magics.card")


def compare_button(summary: dict[str, Any]) -> str:
    """The card's "Compare runs" button: the JupyterLab panel listens for clicks on
    ``.nbtrack-open-compare`` and opens its compare view on the run's notebook; in a frontend without
    the panel it is an inert button. The notebook is its absolute path when known (the server accepts
    one under its root), else the path the run recorded.

    Example:
        >>> 'data-nbtrack-run="3f2a"' in compare_button({"run_id": "3f2a", "notebook": "nb.ipynb"})
        True
    """
    run_id = html.escape(str(summary.get("run_id") or ""), quote=True)
    notebook = html.escape(str(summary.get("notebook_path") or summary.get("notebook") or ""), quote=True)
    return (
        f'<button type="button" class="nbtrack-open-compare" data-nbtrack-run="{run_id}" '
        f'data-nbtrack-notebook="{notebook}" title="open the compare view of this notebook\'s runs '
        f'(JupyterLab with the nbtrack panel)" style="margin:4px 0">Compare runs</button>'
    )


class CompareCard(RunCard):
    """The HTML/text card with the "Compare runs" button inside its HTML."""

    def _repr_html_(self) -> str:
        page = RunCard._repr_html_(self)
        button = compare_button(self.summary)
        if page.endswith("</div>"):  # inside the card's box
            return page[: -len("</div>")] + button + "</div>"
        return page + button


def stored_summary(runs: Runs, target: Target, run_id: str) -> tuple[dict[str, Any], Any]:
    """The card's content for a run read back from the store (``%track show RUN_ID``), and the store
    that holds it.

    ``run_id`` is a full id, a unique prefix of one (>= 6 characters, as the card shows it), or the
    id of a run of the local spool (the card showed it before the upload): the runs service resolves it.

    Raises:
        UsageError: no run with that id in this store, or a prefix that matches several runs.

    Example:
        >>> summary, store = stored_summary(runs, runs.locate(cwd=Path.cwd()), "3f2a9c")  # doctest: +SKIP
        >>> summary["run_name"]  # doctest: +SKIP
        'baseline'
    """
    try:
        found = runs.resolve(target, run_id)
    except RunNotFoundError as exc:
        raise UsageError(
            f"no run {run_id!r} in {target.display_uri}; copy the id from a run card or list the "
            "runs with `nbtrack runs`"
        ) from exc
    run, store = found.run, found.store
    unreadable = ""
    try:
        snapshot = store.load_snapshot(run.run_id)
    except SnapshotError as exc:
        snapshot = None  # shown with what MLflow has, and why the snapshot is not there
        unreadable = str(exc)
    duration = (run.end_time - run.start_time) / 1000 if run.end_time and run.start_time else None
    summary = {
        "run_id": run.run_id,
        "run_name": run.name,
        "experiment": (snapshot.run.get("experiment") if snapshot else None) or run.experiment_id,
        "status": run.status,
        "duration_s": duration,
        "metrics": dict(run.metrics),
        "flags": run_flags(snapshot.sections) if snapshot else [unreadable],
        "view": store.run_url(run),
        "notebook": run.tags.get("mlflow.source.name"),
        "notebook_path": snapshot.section("notebook").data.get("path") if snapshot else None,
    }
    return summary, store


class RunCardWidget:
    """The ipywidgets card; ``compare()`` is what its button does.

    Attributes:
        widget: the ``VBox`` displayed; ``button`` and ``output`` are its compare button and the
            ``Output`` the comparison is rendered into.
    """

    def __init__(self, summary: dict[str, Any], store: Any) -> None:
        import ipywidgets as w  # ~0.4 s; only once a frontend with a widget manager is connected

        self.summary = summary
        self.store = store
        self.button = w.Button(
            description="Compare with previous run",
            tooltip="the params and metrics that differ from the previous run of this notebook",
            layout=w.Layout(width="auto"),
        )
        self.button.on_click(lambda _button: self.compare())
        row = [self.button]
        if getattr(store, "is_server", False) and summary.get("view"):
            url = html.escape(str(summary["view"]), quote=True)
            row.append(
                w.HTML(f'<a href="{url}" target="_blank" rel="noopener noreferrer">Open in MLflow</a>')
            )
        self.output = w.Output()
        self.card = w.HTML(CompareCard(summary)._repr_html_())
        self.widget = w.VBox([self.card, w.HBox(row), self.output])

    def upload_finished(self, upload: dict[str, str]) -> None:
        """The background upload ended: show its final state (called from the uploader's thread)."""
        self.summary = {**self.summary, "upload": upload}
        self.card.value = CompareCard(self.summary)._repr_html_()

    def compare(self) -> dict[str, Any] | None:
        """Diff this run with the previous run of its notebook, into ``output``; returns the diff.

        Never raises (it runs as a button callback): a failure is shown in the output instead.
        """
        from IPython.display import HTML

        run_id, notebook = str(self.summary["run_id"]), self.summary.get("notebook")
        diff = None
        try:
            previous = previous_run_id(self.store, run_id, notebook) if notebook else None
            if not notebook:
                page = "<p>This run's notebook is unknown, so it has no previous run to compare with.</p>"
            elif previous is None:
                page = f"<p>No previous run of <code>{html.escape(notebook)}</code> to compare with.</p>"
            else:
                from nbtrack.runs.diff import diff_runs

                diff = diff_runs(self.store, previous, run_id)
                page = diff_html(diff)
        except NbtrackError as exc:
            page = f"<p>nbtrack: cannot compare: {html.escape(str(exc))}</p>"
        except Exception as exc:
            log.warning("nbtrack: comparing run %s failed", run_id, exc_info=True)
            page = f"<p>nbtrack: cannot compare: {html.escape(f'{type(exc).__name__}: {exc}')}</p>"
        self.output.outputs = ()
        # Set as the Output's state (not captured with `with output:`): it reaches the frontend
        # whichever message this callback runs in.
        self.output.append_display_data(HTML(page))  # type: ignore[no-untyped-call]
        return diff

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = dict(self.widget._repr_mimebundle_(**kwargs))
        card = CompareCard(self.summary)
        # Where the widget cannot render (no widget manager, state not saved), the plain card shows.
        data.update({"text/plain": repr(card), "text/html": card._repr_html_()})
        return data


def run_card(summary: dict[str, Any], store: Any, *, widgets: bool) -> Any:
    """The object to display: the widget card when ``widgets`` (a frontend is connected), else the
    HTML/text card (also when ipywidgets cannot be used)."""
    if widgets:
        try:
            return RunCardWidget(summary, store)
        except Exception as exc:
            log.debug("nbtrack: widget card unavailable, showing the HTML card: %s", exc, exc_info=True)
    return CompareCard(summary)
