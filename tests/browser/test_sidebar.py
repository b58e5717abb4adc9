"""The sidebar as the quick view (issue 14), in a real JupyterLab driven by headless chromium.

Given a project with tracked runs (tracked in-process, which is quicker than a kernel's Run All),
the panel is used with the keyboard alone, its text and pills are checked for WCAG AA contrast in
the light and dark themes, two runs' notebooks are diffed with nbdime in the main area, a recorded
notebook opens and closes quietly, and with the tracking server down the panel lists the pending
runs under one plain line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, make_project, write_notebook

from .conftest import Browser, Lab

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

NOTEBOOK = "train.ipynb"
ROW = ".nbtrack-run-row[data-run-id]"
LONG_NAME = "a-very-long-run-name-that-does-not-fit-in-the-sidebar-at-all-" + "x" * 40

# Every visible text and pill in `root` whose contrast against its effective background is below
# `min`: colours come from getComputedStyle; alpha layers are composited from the page down.
CONTRAST_JS = """
([selector, min]) => {
  const parse = c => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) { return null; }
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a)).concat([1]);
  };
  const lum = c => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const background = el => {
    const chain = [];
    for (let n = el; n && n.nodeType === 1; n = n.parentElement) { chain.push(n); }
    let bg = [255, 255, 255, 1];
    for (const n of chain.reverse()) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c[3] > 0) { bg = over(c, bg); }
    }
    return bg;
  };
  const root = document.querySelector(selector);
  const bad = [];
  let checked = 0;
  for (const el of root.querySelectorAll('*')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length || el.closest('[hidden]') || el.disabled
        || el.closest('button:disabled')) { continue; }
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none') { continue; }
    const bg = background(el);
    const fg0 = parse(style.color);
    if (!fg0) { bad.push({text: el.textContent.slice(0, 40), color: style.color}); continue; }
    const fg = over(fg0, bg);
    const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    checked++;
    if (ratio < min) {
      bad.push({text: el.textContent.trim().slice(0, 40), cls: el.className, ratio: ratio.toFixed(2),
                color: style.color, background: 'rgb(' + bg.slice(0, 3).map(Math.round) + ')'});
    }
  }
  return {checked, bad};
}
"""

FOCUS_JS = """
() => {
  const el = document.activeElement;
  const s = getComputedStyle(el);
  const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
  return {runId: el.dataset ? el.dataset.runId || null : null, cls: el.className,
          visible: outline || (s.boxShadow && s.boxShadow !== 'none')};
}
"""


def _track(shell: Any, notebook: Path, name: str, alpha: float, loss: float) -> None:
    """One tracked run of ``notebook``, in this process's IPython (the kernel path is tested elsewhere)."""
    for cell in (
        f"%track start --notebook {notebook} --experiment sidebar --name {name}",
        f"import mlflow\nmlflow.log_param('alpha', {alpha!r})\n"
        f"mlflow.log_metric('loss', {loss!r})\nmlflow.log_metric('accuracy', 0.5009)\n"
        "mlflow.log_metric('rows', 300)",
        "%track stop",
    ):
        result = shell.run_cell(cell)
        assert result.success, result.error_in_exec or result.error_before_exec


def _notebook_with_output(path: Path, alpha: int) -> Path:
    """A notebook whose saved outputs depend on ``alpha``: the recording a run keeps."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("# Churn model\nThe **same** text in both runs."),
        new_code_cell("import math", execution_count=1),
        new_code_cell(f"alpha = {alpha}", execution_count=2),
        new_code_cell(
            "print(alpha * 2)",
            execution_count=3,
            outputs=[new_output("stream", name="stdout", text=f"{alpha * 2}\n")],
        ),
        new_code_cell("unchanged = True", execution_count=4),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def _open_panel(page: Any, lab: Lab) -> list[str]:
    """Open the notebook, then the panel through its command (no click); the listed run ids."""
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        f" return w && w.context && w.context.path === '{NOTEBOOK}'; }}",
        timeout=90_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('nbtrack:show-runs')")
    page.wait_for_selector(ROW, timeout=60_000)
    ids: list[str] = page.eval_on_selector_all(ROW, "rows => rows.map(r => r.dataset.runId)")
    return ids


def _theme(page: Any, dark: bool) -> None:
    theme = "JupyterLab Dark" if dark else "JupyterLab Light"
    page.evaluate(f"window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{theme}'}})")
    page.wait_for_function(
        f"document.body.dataset.jpThemeLight === '{'false' if dark else 'true'}'", timeout=30_000
    )
    # The theme's CSS variables apply once its stylesheet has loaded: wait for the panel's colour.
    page.wait_for_function(
        "() => { const c = getComputedStyle(document.querySelector('#nbtrack-panel')).backgroundColor;"
        " const v = c.match(/\\d+/g).slice(0, 3).map(Number).reduce((a, b) => a + b, 0);"
        f" return {'v < 300' if dark else 'v > 600'}; }}",
        timeout=30_000,
    )


def _contrast(page: Any, what: str) -> int:
    result = page.evaluate(CONTRAST_JS, ["#nbtrack-panel", 4.5])
    assert result["checked"] > 5, result
    assert not result["bad"], f"{what}: text below 4.5:1: {json.dumps(result['bad'], indent=1)}"
    return int(result["checked"])


def _shot(page: Any, out: Path, name: str) -> None:
    path = out / f"{name}.png"
    page.locator("#nbtrack-panel").screenshot(path=str(path))
    print(f"screenshot: {path}")


def _fail_report(page: Any, out: Path, browser: Browser, lab: Lab) -> None:
    page.screenshot(path=str(out / "failure.png"))
    print(f"screenshot: {out / 'failure.png'}")
    print("\n".join(["--- browser console ---", *browser.console[-60:]]))
    print("--- jupyter lab log ---\n" + lab.log_tail())


def test_keyboard_only_and_contrast_in_both_themes(
    tmp_path: Path, lab_factory: Any, browser: Browser, shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "screenshots"
    out.mkdir()
    # Given three runs of a notebook, one with a name far too long for the sidebar
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / NOTEBOOK, ["alpha = 1"])
    monkeypatch.chdir(root)
    for name, alpha, loss in (("first", 0.1, 0.5009), ("second", 0.2, 0.25), (LONG_NAME, 0.3, 0.125)):
        _track(shell, nb, name, alpha, loss)
    lab = lab_factory(root)
    page = browser.page
    try:
        # When the user opens the panel by its command, the keyboard is on the first row
        ids = _open_panel(page, lab)
        assert len(ids) == 3, ids
        page.wait_for_function("document.activeElement.classList.contains('nbtrack-run-row')")
        focus = page.evaluate(FOCUS_JS)
        assert focus["runId"] == ids[0] and focus["visible"], focus

        # Then a long name is ellipsised with its full text on hover, numbers never wrap
        name = page.locator(f'{ROW}[data-run-id="{ids[0]}"] .nbtrack-run-name')
        assert LONG_NAME in (name.get_attribute("title") or "")
        assert page.evaluate(
            "el => el.scrollWidth > el.clientWidth && getComputedStyle(el).textOverflow === 'ellipsis'",
            name.element_handle(),
        )
        nums = page.eval_on_selector_all(
            ".nbtrack-run-metrics .nbtrack-num",
            "els => els.map(e => [e.textContent, e.getClientRects().length,"
            " getComputedStyle(e).fontVariantNumeric, getComputedStyle(e).whiteSpace])",
        )
        assert nums and all(n[1] == 1 and n[2] == "tabular-nums" and n[3] == "nowrap" for n in nums), nums
        assert any(n[0] == "0.5009" for n in nums), nums

        # When it moves down twice and presses Enter, the details open in place of the list
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        focus = page.evaluate(FOCUS_JS)
        assert focus["runId"] == ids[2] and focus["visible"], focus
        page.keyboard.press("ArrowUp")
        assert page.evaluate(FOCUS_JS)["runId"] == ids[1]
        page.keyboard.press("Enter")
        details = page.wait_for_selector(f'.nbtrack-details[data-run-id="{ids[1]}"] .nbtrack-details-name')
        assert details.inner_text() == "second"
        assert page.is_hidden(".nbtrack-list-area")
        panel_top = page.locator("#nbtrack-panel").bounding_box()["y"]
        assert details.bounding_box()["y"] - panel_top < 200  # at the top, not below a list
        focus = page.evaluate(FOCUS_JS)
        assert "nbtrack-back" in focus["cls"] and focus["visible"], focus
        # ... the embedded store's MLflow UI hint is there to copy
        command = page.inner_text(".nbtrack-details .nbtrack-command")
        assert command.startswith("mlflow ui --backend-store-uri sqlite:///"), command
        _shot(page, out, "details-light")
        _contrast(page, "details, light theme")

        # When it presses Escape, the list is back with focus on the same row
        page.keyboard.press("Escape")
        page.wait_for_selector(".nbtrack-list-area:not([hidden])")
        focus = page.evaluate(FOCUS_JS)
        assert focus["runId"] == ids[1] and focus["visible"], focus

        # When it adds the next run to the opened one with Space, their diff opens in place
        selected = f'{ROW}[data-run-id="{ids[1]}"][aria-selected="true"]'
        assert page.query_selector(selected) is not None
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Space")
        page.wait_for_selector('.nbtrack-diff .nbtrack-diff-param[data-name="alpha"]', timeout=60_000)
        assert page.is_hidden(".nbtrack-list-area")
        _shot(page, out, "diff-light")
        _contrast(page, "diff, light theme")
        # ... and Escape goes back to the list, on the row it left
        page.keyboard.press("Escape")
        page.wait_for_selector(".nbtrack-list-area:not([hidden])")
        assert page.evaluate(FOCUS_JS)["runId"] == ids[2]
        _shot(page, out, "list-light")
        checked = _contrast(page, "list, light theme")

        # Then in the dark theme too every text and pill is at least 4.5:1
        _theme(page, dark=True)
        _shot(page, out, "list-dark")
        checked += _contrast(page, "list, dark theme")
        page.keyboard.press("Enter")
        page.wait_for_selector(".nbtrack-details .nbtrack-details-name")
        _shot(page, out, "details-dark")
        checked += _contrast(page, "details, dark theme")
        print(f"contrast: {checked} text elements checked, all >= 4.5:1")
    except Exception:
        _fail_report(page, out, browser, lab)
        raise


def test_notebook_diff_and_recorded_notebook(
    tmp_path: Path, lab_factory: Any, browser: Browser, shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "screenshots"
    out.mkdir()
    # Given two runs whose saved notebooks differ in one output
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = root / NOTEBOOK
    monkeypatch.chdir(root)
    for alpha in (1, 3):
        _notebook_with_output(nb, alpha)
        _track(shell, nb, f"alpha-{alpha}", alpha, 1.0 / alpha)
    lab = lab_factory(root)
    page = browser.page
    try:
        newer, older = _open_panel(page, lab)
        # When both are selected and the notebook diff is opened
        for run_id in (older, newer):
            page.click(f'{ROW}[data-run-id="{run_id}"] .nbtrack-run-select')
        page.click(".nbtrack-open-nbdiff")
        view = page.wait_for_selector(".nbtrack-nbdiff[data-loaded='true']", timeout=60_000)
        # Then it is in the main area, nbdime shows the changed output, unchanged cells are hidden
        assert page.evaluate(
            "() => [...window.jupyterapp.shell.widgets('main')].some(w => w.hasClass('nbtrack-nbdiff'))"
        )
        assert page.inner_text("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current").startswith("Diff ")
        outputs = page.inner_text(".nbtrack-nbdiff .jp-Cell-diff:has(.jp-Diff-outputsContainer)")
        assert "2" in outputs and "6" in outputs and "print(alpha * 2)" in outputs, outputs
        unchanged = ".nbtrack-nbdiff .jp-Cell-diff.jp-Diff-unchanged"
        assert page.locator(unchanged).count() >= 2
        assert all(not e.is_visible() for e in page.query_selector_all(unchanged))
        page.click(".nbtrack-hide-unchanged-toggle")
        assert all(e.is_visible() for e in page.query_selector_all(unchanged))
        page.click(".nbtrack-hide-unchanged-toggle")
        assert all(not e.is_visible() for e in page.query_selector_all(unchanged))
        sides = page.eval_on_selector_all(".nbtrack-nbdiff-side", "els => els.map(e => e.value)")
        assert sides == ["saved", "saved"], sides
        view.screenshot(path=str(out / "nbdiff.png"))
        print(f"screenshot: {out / 'nbdiff.png'}")

        # When a recorded notebook is opened, then closed
        page.on("pageerror", lambda e: print(f"pageerror stack: {e.stack}"))
        errors_before = [m for m in browser.console if m.startswith("pageerror")]
        page.click(".nbtrack-back")
        page.click(f'{ROW}[data-run-id="{newer}"] .nbtrack-run-name')
        page.click(f'.nbtrack-details[data-run-id="{newer}"] .nbtrack-open-notebook')
        page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " return w && w.context && w.context.path.startsWith('nbtrack-runs:') && w.context.isReady; }",
            timeout=60_000,
        )
        page.wait_for_timeout(1500)  # let late rendering and kernel-preference handling settle
        page.evaluate(
            "() => { window.__nbtrackRecorded = window.jupyterapp.shell.currentWidget;"
            " window.__nbtrackRecorded.close(); }"
        )
        # Then it closes without asking to save, and the page threw nothing
        page.wait_for_function("() => window.__nbtrackRecorded.isDisposed", timeout=20_000)
        assert page.query_selector(".jp-Dialog") is None
        errors = [m for m in browser.console if m.startswith("pageerror")]
        assert errors == errors_before, errors

        # When the older run is renamed, given a Markdown note, then archived from its details
        page.click(".nbtrack-back")
        page.click(f'{ROW}[data-run-id="{older}"] .nbtrack-run-name')
        page.click(f'.nbtrack-details[data-run-id="{older}"] .nbtrack-rename')
        page.fill(".nbtrack-rename-input", "baseline")
        page.press(".nbtrack-rename-input", "Enter")
        page.wait_for_function(
            "document.querySelector('.nbtrack-details-name')?.textContent === 'baseline'", timeout=30_000
        )
        page.click(".nbtrack-edit-note")
        page.fill(".nbtrack-note-input", "Kept as the **baseline** run")
        page.click(".nbtrack-save-note")
        strong = page.wait_for_selector(".nbtrack-note-rendered strong", timeout=30_000)
        assert strong.inner_text() == "baseline"
        detail = lab.api(f"nbtrack/runs/{older}?notebook={NOTEBOOK}")
        assert (detail["name"], detail["note"]) == ("baseline", "Kept as the **baseline** run"), detail
        page.click(".nbtrack-archive")
        page.click(".jp-Dialog .jp-mod-accept")
        page.wait_for_selector(".nbtrack-list-area:not([hidden])", timeout=30_000)
        page.wait_for_function(f"document.querySelectorAll('{ROW}').length === 1", timeout=30_000)
        assert page.eval_on_selector_all(ROW, "rows => rows.map(r => r.dataset.runId)") == [newer]
    except Exception:
        _fail_report(page, out, browser, lab)
        raise


def test_dead_tracking_server_shows_one_line_and_the_pending_runs(
    tmp_path: Path, lab_factory: Any, browser: Browser, shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "screenshots"
    out.mkdir()
    # Given a project whose tracking server (a dead loopback port) was down while two runs were tracked
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("NBTRACK_TRACKING_URI", dead)
    monkeypatch.setenv("NBTRACK_TRACKING_TIMEOUT", "2")
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb = write_notebook(root / NOTEBOOK, ["x = 1"])
    monkeypatch.chdir(root)
    for i in (1, 2):
        _track(shell, nb, f"offline-{i}", i, 0.5)
    # ... and Lab's configuration points at the same server
    config = tmp_path / "jupyter" / "config"
    config.mkdir(parents=True)
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"NbtrackConfig": {"tracking_uri": dead, "tracking_timeout": 2}})
    )
    lab = lab_factory(root)
    page = browser.page
    try:
        # When the panel lists the notebook's runs
        ids = _open_panel(page, lab)
        # Then the two pending runs are listed, flagged, with what to run
        assert len(ids) == 2, ids
        assert page.locator(".nbtrack-badge-pending").count() == 2
        notes = page.eval_on_selector_all(".nbtrack-upload-note", "els => els.map(e => e.title)")
        assert len(notes) == 2 and all("nbtrack sync" in n for n in notes), notes
        # ... under one plain line saying why
        warning = page.wait_for_selector(".nbtrack-warning")
        text = warning.inner_text()
        assert "\n" not in text.strip() and "unreachable" in text and "nbtrack sync" in text, text
        assert text.startswith("While searching runs, the tracking server http://127.0.0.1:"), text
        # ... and the page holds no raw exception text
        body = page.inner_text("body") + " ".join(
            page.eval_on_selector_all("#nbtrack-panel [title]", "els => els.map(e => e.title)")
        )
        for raw in ("urllib3", "HTTPConnectionPool", "Traceback", "Max retries"):
            assert raw not in body, raw
        _shot(page, out, "dead-server")
        # When a pending run's details are opened, what pending means is said in words
        page.keyboard.press("Enter")
        note = page.wait_for_selector(".nbtrack-details .nbtrack-pending-note")
        assert "nbtrack sync" in note.inner_text()
        body = page.inner_text("body")
        for raw in ("urllib3", "HTTPConnectionPool", "Traceback"):
            assert raw not in body, raw
        _shot(page, out, "dead-server-details")
    except Exception:
        _fail_report(page, out, browser, lab)
        raise
