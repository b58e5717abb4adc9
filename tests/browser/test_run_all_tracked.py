""" "Run All and Track" and "Clone with new parameters" (issue 15), in a real JupyterLab driven by
headless chromium.

Given a committed notebook with a ``parameters`` cell and no ``%track`` line, when the user presses
the notebook toolbar's "Run All and Track" with the keyboard, then the live kernel runs every cell as
one tracked run: FINISHED in the panel with the notebook's metric, the editor's final content (with
Run All's outputs) recorded as ``notebook.live.ipynb``, and none of the silent executions that start
and end the run in the run's history. When the user opens the run and "Clone with new parameters",
a value that is no number is refused under its field (the form's contrast is checked in the light and
dark themes), and a good one starts a clone job: a second run, with that value, tagged as the clone.
One Lab start; two kernels (the notebook's, the clone's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, download_all, git, make_project, store_client, write_notebook

from .conftest import Browser, Clock, Lab, shot
from .test_sidebar import CONTRAST_JS, _theme

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.timeout(600)]

NOTEBOOK = "train.ipynb"
CELLS = [
    ("parameters", "alpha = 2  # how hard to try"),
    "import mlflow\nscore = alpha * 21\nmlflow.log_metric('score', score)\nprint(score)",
]
ROW = ".nbtrack-run-row[data-run-id]"
CURRENT = "window.jupyterapp.shell.currentWidget"
BUTTON = ".nbtrack-run-all-tracked button"
FIELD = ".nbtrack-clone-input[name='alpha']"


def _project(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "proj", use_dvc=False)
    write_notebook(root / NOTEBOOK, CELLS)
    (root / ".gitignore").write_text(".nbtrack/\n.ipynb_checkpoints/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    return root


def _open(page: Any, lab: Lab) -> None:
    """The notebook, its kernel idle, and the panel (empty: no run yet)."""
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
    page.wait_for_function(
        f"() => {{ const w = {CURRENT}; return w && w.context && w.context.path === '{NOTEBOOK}'"
        " && w.sessionContext.session && w.sessionContext.session.kernel"
        " && w.sessionContext.session.kernel.status === 'idle'; }",
        timeout=120_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('nbtrack:show-runs')")
    page.wait_for_selector(".nbtrack-list-area .nbtrack-empty", timeout=60_000)


def _contrast(page: Any, what: str) -> int:
    result = page.evaluate(CONTRAST_JS, [".nbtrack-clone", 4.5])
    assert result["checked"] >= 4, result
    assert not result["bad"], f"{what}: text below 4.5:1: {json.dumps(result['bad'], indent=1)}"
    return int(result["checked"])


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _cells(nb: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """Each cell's type, source and printed text (what Run All made)."""
    return [
        (c["cell_type"], _text(c["source"]), [_text(o.get("text", "")) for o in c.get("outputs", [])])
        for c in nb["cells"]
    ]


def test_run_all_and_track_then_clone_with_a_new_value(
    tmp_path: Path, lab_factory: Any, browser: Browser
) -> None:
    out = tmp_path / "screenshots"
    out.mkdir()
    root = _project(tmp_path)
    lab: Lab = lab_factory(root)
    page = browser.page
    step = Clock()
    try:
        _open(page, lab)
        step("notebook, kernel and panel")
        # The command is in the palette under its name; the toolbar button is a focusable button
        label = page.evaluate("window.jupyterapp.commands.label('nbtrack:run-all-tracked')")
        assert label == "Run All and Track"
        # When the user presses the toolbar's "Run All and Track" with the keyboard
        page.focus(BUTTON)
        assert page.evaluate("document.activeElement.closest('.nbtrack-run-all-tracked') !== null")
        page.keyboard.press("Enter")
        # Then one run appears in the panel, FINISHED, with the notebook's metric
        page.wait_for_selector(f"{ROW} .nbtrack-status-FINISHED", timeout=180_000)
        step("run all and track: the run is listed")
        rows = page.query_selector_all(ROW)
        assert len(rows) == 1
        assert page.inner_text(f"{ROW} .nbtrack-metric[data-name='score'] .nbtrack-num") == "42"
        editor = json.loads(page.evaluate(f"JSON.stringify({CURRENT}.context.model.toJSON())"))
        first = rows[0].get_attribute("data-run-id")
        shot(page, out, "run-all-tracked")

        # The run recorded the editor's content as Run All left it, and no silent execution
        client = store_client(root)
        [run] = all_runs(client)
        assert run.info.run_id == first and run.info.status == "FINISHED"
        assert run.data.metrics["score"] == 42 and run.data.params["alpha"] == "2"
        files = download_all(client, first, tmp_path / "first")
        live = json.loads(files["nbtrack/notebook.live.ipynb"])
        assert _cells(live) == _cells(editor) and _cells(live)[1][2] == ["42\n"], _cells(live)
        history = json.loads(files["nbtrack/history.ipynb"])
        ran = [_text(c["source"]) for c in history["cells"]]
        assert ran == [_text(c[1] if isinstance(c, tuple) else c) for c in CELLS], ran

        # When the user opens the run and "Clone with new parameters"
        page.click(ROW)
        page.wait_for_selector(".nbtrack-clone-button:not([disabled])", timeout=60_000)
        page.focus(".nbtrack-clone-button")
        page.keyboard.press("Enter")
        page.wait_for_selector(FIELD)
        assert page.evaluate("document.activeElement.name") == "alpha"
        assert page.input_value(FIELD) == "2"
        # ... and submits a value that is no number, the server's one line is under the field
        page.fill(FIELD, "lots")
        page.keyboard.press("Enter")
        error = page.wait_for_selector(".nbtrack-clone-field-error", timeout=60_000)
        assert "alpha" in error.inner_text() and "not a whole number" in error.inner_text()
        assert page.get_attribute(FIELD, "aria-invalid") == "true"
        step("a bad value is refused under its field")
        # Then the form reads at 4.5:1 or more in both themes
        shot(page, out, "clone-form-light")
        checked = _contrast(page, "clone form, light theme")
        _theme(page, dark=True)
        shot(page, out, "clone-form-dark")
        checked += _contrast(page, "clone form, dark theme")
        print(f"contrast: {checked} text elements of the clone form checked, all >= 4.5:1")

        # When the user gives a good value, a clone job runs, then the new run is listed
        page.fill(FIELD, "3")
        page.keyboard.press("Enter")
        ended = page.wait_for_selector(
            ".nbtrack-clone-result, .nbtrack-clone-job .nbtrack-error", timeout=300_000
        )
        step("the clone job ended")
        assert "FINISHED" in ended.inner_text(), ended.inner_text()
        page.click(".nbtrack-clone-open")
        page.wait_for_function(
            f"document.querySelector('.nbtrack-details').dataset.runId !== '{first}'", timeout=60_000
        )
        shot(page, out, "clone-done")
    except Exception:
        page.screenshot(path=str(out / "failure.png"))
        print("\n".join(["--- browser console ---", *browser.console[-60:]]))
        print("--- jupyter lab log ---\n" + lab.log_tail())
        raise

    # Then the store holds the clone: the new value, the source's metric recomputed, its source named
    clone = next(r for r in all_runs(client) if r.info.run_id != first)
    assert clone.info.status == "FINISHED" and clone.data.params["alpha"] == "3"
    assert clone.data.metrics["score"] == 63 and clone.data.tags["nbtrack.clone_of"] == first
