"""The nbtrack panel in a real JupyterLab, driven like a person would in headless chromium.

Given a git + DVC project with a notebook that tracks a run whose metric depends on a parameter,
when the user runs it, edits the parameter and runs it again, then the panel lists both runs by
itself, shows their diff, replays one to REPRODUCED, and opens a recorded notebook read-only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import git, make_project, write_notebook

from .conftest import Browser, Clock, Lab, shot

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.timeout(420)]

NOTEBOOK = "train.ipynb"
CELLS: list[Any] = [
    "%load_ext nbtrack",
    ("parameters", "alpha = 1"),
    "%track start --experiment panel --name panel-test",
    'import mlflow\n\nrows = sum(1 for _ in open("data/churn.csv")) - 1\n'
    'score = alpha * 2.5 + rows / 1000\nmlflow.log_metric("score", score)\nmlflow.log_metric("rows", rows)',
    "%track stop",
]
# Selectors the panel promises (labextension/src/panel.ts).
ROW = ".nbtrack-run-row[data-run-id]"
PANEL_TAB = '.jp-SideBar.jp-mod-right .lm-TabBar-tab[data-id="nbtrack-panel"]'


def _user_files(root: Path) -> set[str]:
    skip = {".git", ".dvc", ".nbtrack", ".ipynb_checkpoints"}
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not skip & set(p.relative_to(root).parts)
    }


def _run_all(page: Any, expected_rows: int) -> None:
    """Run → Run All Cells, then wait until the panel lists ``expected_rows`` runs by itself."""
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(f"document.querySelectorAll('{ROW}').length >= {expected_rows}", timeout=150_000)


def test_panel_lists_diffs_replays_and_opens_runs(tmp_path: Path, lab_factory: Any, browser: Browser) -> None:
    clock = Clock()
    out = tmp_path / "screenshots"
    out.mkdir()
    print(f"\nbrowser test output: {tmp_path}")

    # Given a committed git + DVC project with the notebook
    root = make_project(tmp_path / "proj")
    write_notebook(root / NOTEBOOK, CELLS)
    (root / ".gitignore").write_text(".nbtrack/\n.ipynb_checkpoints/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    clock("project built")
    lab: Lab = lab_factory(root)
    clock("jupyter lab up")
    page = browser.page

    try:
        # When the user opens the notebook and the nbtrack panel
        page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
        page.wait_for_function(
            "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            f" return w && w.context && w.context.path === '{NOTEBOOK}'"
            " && w.sessionContext.session && w.sessionContext.session.kernel"
            " && w.sessionContext.session.kernel.status === 'idle'; }",
            timeout=90_000,
        )
        clock("notebook open, kernel idle")
        page.click(PANEL_TAB)
        page.wait_for_selector(".nbtrack-empty", timeout=30_000)
        assert "No tracked runs yet" in page.inner_text("#nbtrack-panel")

        # ... runs it (one tracked run appears by itself: the kernel's run_finished)
        _run_all(page, 1)
        clock("first run listed")

        # ... changes the parameter in the editor, saves, and runs it again
        editor = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".cm-content")
        editor.click()
        page.keyboard.press("Control+a")
        page.keyboard.type("alpha = 3")
        source = page.evaluate(
            "window.jupyterapp.shell.currentWidget.content.widgets[1].model.sharedModel.getSource()"
        )
        assert source == "alpha = 3"
        page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
        _run_all(page, 2)
        clock("second run listed")

        # Then both runs are listed, newest first
        ids = page.eval_on_selector_all(ROW, "rows => rows.map(r => r.dataset.runId)")
        assert len(ids) == 2, ids
        second, first = ids
        shot(page, out, "1-runs")
        rows = lab.api(f"nbtrack/runs?notebook={NOTEBOOK}")["runs"]
        by_id = {r["run_id"]: r for r in rows}
        assert by_id[first]["params"].get("alpha") == "1", by_id[first]
        assert by_id[second]["params"].get("alpha") == "3", by_id[second]

        # When both are selected, the diff shows the parameter and the metric that differ
        for run_id in (first, second):
            page.click(f'{ROW}[data-run-id="{run_id}"] .nbtrack-run-select')
        param = page.wait_for_selector('.nbtrack-diff .nbtrack-diff-param[data-name="alpha"]', timeout=60_000)
        assert re.search(r"alpha\s+1\s+3", param.inner_text()), param.inner_text()
        metric = page.wait_for_selector('.nbtrack-diff .nbtrack-diff-metric[data-name="score"]')
        assert "+5" in metric.inner_text(), metric.inner_text()  # 3 * 2.5 - 1 * 2.5
        assert page.query_selector('.nbtrack-diff-metric[data-name="rows"]') is None  # same data
        shot(page, out, "2-diff")
        clock("diff shown")

        # When one run is selected and replayed, progress shows, then the verdict
        # (the diff and the details open in place of the list: back to it first)
        page.click(".nbtrack-back")
        page.click(f'{ROW}[data-run-id="{first}"] .nbtrack-run-name')
        page.wait_for_selector(f'.nbtrack-details[data-run-id="{first}"] .nbtrack-replay-button')
        page.evaluate(
            """() => { window.__nbtrackProgress = [];
            new MutationObserver(() => {
              const p = document.querySelector('.nbtrack-replay-progress');
              if (p) { window.__nbtrackProgress.push(p.textContent); }
            }).observe(document.querySelector('#nbtrack-panel'),
                       {subtree: true, childList: true, characterData: true}); }"""
        )
        page.click(".nbtrack-replay-button")
        verdict = page.wait_for_selector(".nbtrack-verdict", timeout=180_000)
        progress: list[str] = page.evaluate("window.__nbtrackProgress")
        print(f"replay progress seen: {sorted(set(progress))}")
        assert progress, "the replay showed no progress before its verdict"
        clock("replay verdict")
        shot(page, out, "3-verdict")
        assert verdict.inner_text().strip() == "REPRODUCED", page.inner_text(".nbtrack-details")

        # The second run carries the editor's live content (sent over the comm before its cells ran)
        detail = lab.api(f"nbtrack/runs/{second}?notebook={NOTEBOOK}")
        assert any(a.endswith("notebook.live.ipynb") for a in detail.get("artifacts", [])), detail

        # When the user opens the second run's recorded notebook, it opens read-only in a new tab
        # and no file is written into the project
        before = _user_files(root)
        page.click(".nbtrack-back")
        page.click(f'{ROW}[data-run-id="{second}"] .nbtrack-run-name')
        page.click(f'.nbtrack-details[data-run-id="{second}"] .nbtrack-open-notebook')
        page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " return w && w.context && w.context.path.startsWith('nbtrack-runs:')"
            " && w.context.isReady; }",
            timeout=60_000,
        )
        opened = page.evaluate(
            """() => { const w = window.jupyterapp.shell.currentWidget;
            return {path: w.context.path, writable: w.context.contentsModel.writable,
                    title: w.title.label,
                    sources: w.content.widgets.map(c => c.model.sharedModel.getSource())}; }"""
        )
        assert opened["path"].startswith(f"nbtrack-runs:{second}/"), opened
        assert opened["writable"] is False
        assert "alpha = 3" in opened["sources"], opened["sources"]
        clock("recorded notebook open")
        shot(page, out, "4-recorded-notebook")
        assert _user_files(root) == before
    except Exception:
        shot(page, out, "failure")
        print("\n".join(["--- browser console ---", *browser.console[-60:]]))
        print("--- jupyter lab log ---\n" + lab.log_tail())
        raise
    finally:
        clock("done")
