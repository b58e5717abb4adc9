"""``%track compare``: the compare view's runs table, in the notebook.

The same table as the JupyterLab compare view (:mod:`nbtrack.runs.table`): this notebook's runs,
newest first, with the columns that vary (``--all-columns``: every column). With a widget manager
(the panel connected) it is an ipywidgets table with a sort picker; elsewhere plain HTML/text.

Example::

    %track compare --last 10
"""

from __future__ import annotations

import html
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from nbtrack.runs.table import TableQuery, build_table
from nbtrack.store.compare_sql import Scope, read_scope


def read_notebook_runs(tracker: Any, notebook: Path | None, last: int | None) -> tuple[str | None, Scope]:
    """The notebook's name in the store (None: the project's runs) and its newest ``last`` runs."""
    from nbtrack.runs.service import Runs

    runs = Runs(tracker.config)
    path = notebook or _session_notebook()
    located = runs.locate(notebook=path, cwd=Path.cwd()) if path else runs.locate(cwd=Path.cwd())
    active = tracker.active
    # The store this kernel tracks into (a spool's store stands for its server), else the project's.
    store = active.store if active is not None else tracker.last_store
    if store is not None and store.spool is not None:
        store = runs.target_of(store).store
    store = store or located.store
    if store is None:
        return located.notebook, Scope([], {})
    scope = read_scope(store, notebook=located.notebook)
    if last is not None:
        scope.runs = scope.runs[:last]
    return located.notebook, scope


def _session_notebook() -> Path | None:
    """The notebook a Jupyter server started this kernel for (``JPY_SESSION_NAME``), if any."""
    name = os.environ.get("JPY_SESSION_NAME")
    return Path(name) if name and name.endswith(".ipynb") and Path(name).is_file() else None


def _shown(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "bool":
        return "✓" if value else "✗"
    if kind == "time":
        return datetime.fromtimestamp(value / 1000).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_html(page: dict[str, Any]) -> str:
    """The table page as an HTML table (numbers right-aligned in tabular figures, never wrapped).

    Example:
        >>> "<table" in table_html({"columns": [], "rows": [], "total": 0})
        True
    """
    columns = page["columns"]
    head = "".join(
        f"<th title='{html.escape(c['key'], quote=True)}'>{html.escape(c['label'])}</th>" for c in columns
    )
    body = []
    for r in page["rows"]:
        cells = []
        for c in columns:
            align = "right" if c["kind"] == "number" else "left"
            text = html.escape(_shown(r["values"].get(c["key"]), c["kind"]))
            cells.append(f"<td style='text-align:{align}'>{text}</td>")
        body.append(f"<tr title='{html.escape(r['run_id'], quote=True)}'>{''.join(cells)}</tr>")
    style = "font-variant-numeric:tabular-nums;white-space:nowrap;border-collapse:collapse"
    note = f"<p>{page['total']} run(s); {len(columns)} column(s)</p>"
    return f"<table class='nbtrack-compare' style='{style}'><tr>{head}</tr>{''.join(body)}</table>{note}"


def table_text(page: dict[str, Any]) -> str:
    """The table page as plain text (a terminal, papermill's text output)."""
    columns = page["columns"]
    rows = [[c["label"] for c in columns]]
    rows += [[_shown(r["values"].get(c["key"]), c["kind"]) for c in columns] for r in page["rows"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in rows)


class CompareTable:
    """What ``%track compare`` displays: the table, sortable through a dropdown when widgets work."""

    def __init__(self, scope: Scope, all_columns: bool) -> None:
        self.scope = scope
        self.columns = "all" if all_columns else "varying"
        self.page = self.build(None, "desc")

    def build(self, sort: str | None, order: str) -> dict[str, Any]:
        query = TableQuery(sort=sort, order=order, limit=1000, columns=self.columns)
        return build_table(self.scope, query)

    def widget(self) -> Any:
        """An ipywidgets box: sort column, order, and the table (re-sorted in the kernel)."""
        import ipywidgets as w  # ~0.4 s; only with a widget manager connected

        options = [("(newest first)", "")] + [(c["label"], c["key"]) for c in self.page["columns"]]
        sort = w.Dropdown(options=options, value="", description="Sort by")
        order = w.ToggleButtons(options=[("desc", "desc"), ("asc", "asc")], value="desc")
        out = w.HTML(table_html(self.page))

        def resort(_change: Any) -> None:
            out.value = table_html(self.build(sort.value or None, order.value))

        sort.observe(resort, names="value")
        order.observe(resort, names="value")
        return w.VBox([w.HBox([sort, order]), out])

    def _repr_html_(self) -> str:
        return table_html(self.page)

    def __repr__(self) -> str:
        return table_text(self.page)


def show_compare(tracker: Any, frontend: Any, last: int | None, all_columns: bool) -> Any:
    """The object ``%track compare`` displays (a widget with the panel connected, else the table)."""
    _name, scope = read_notebook_runs(tracker, frontend.notebook_path(), last)
    table = CompareTable(scope, all_columns)
    if frontend.connected:
        try:
            return table.widget()
        except Exception:  # noqa: BLE001 - no ipywidgets: the HTML table is shown instead
            return table
    return table
