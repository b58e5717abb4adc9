"""The compare view in a real JupyterLab, driven in headless chromium.

Given a git + DVC project whose notebook made 30 tracked runs (one real kernel, nbclient) that
each log a per-epoch loss and draw a matplotlib figure, when the user opens the compare view from
the panel and from the command palette, then only the varying columns show, a metric sorts the
rows, an MLflow filter narrows them (a bad one says why in one line), three selected runs chart
as three lines and parallel coordinates, the gallery shows each one's figure, and a bulk tag
shows up as a column. Screenshots in light and dark theme.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import git, make_project, write_notebook

from .conftest import Browser, Clock, Lab, shot

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.timeout(600)]

NOTEBOOK = "train.ipynb"
RUNS = 30
LRS = ("0.01", "0.1", "0.001")
CELLS: list[Any] = [
    "%load_ext nbtrack",
    ("parameters", "lr = 0.01\ndepth = 2"),
    "%track start --experiment compare --name run-0",
    "import matplotlib.pyplot as plt\nimport mlflow\n\n"
    "losses = [1.0 / (epoch + 1) + lr * depth for epoch in range(5)]\n"
    "for epoch, loss in enumerate(losses):\n"
    '    mlflow.log_metric("loss", loss, step=epoch)\n'
    'mlflow.log_metric("acc", 1 - losses[-1] / 4)\n'
    "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot(losses)\nplt.show()",
    "%track stop",
]
# Selectors the compare view promises (labextension/src/compare/).
VIEW = ".nbtrack-compare"
ROW = f"{VIEW} tr.nbtrack-cmp-row[data-run-id]"
PANEL_TAB = '.jp-SideBar.jp-mod-right .lm-TabBar-tab[data-id="nbtrack-panel"]'


#: WCAG contrast of each element's text on its effective background (alpha-blended up the tree).
_CONTRAST_JS = """(selectors) => {
  const rgba = c => { const m = c.match(/[\\d.]+/g).map(Number); return [m[0], m[1], m[2], m[3] ?? 1]; };
  const over = (top, bottom) => top.slice(0, 3).map((v, i) => v * top[3] + bottom[i] * (1 - top[3]));
  const background = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] === 1) { break; } }
    }
    return layers.reverse().reduce((acc, c) => over(c, acc), [255, 255, 255]);
  };
  const lum = rgb => { const [r, g, b] = rgb.map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const out = {};
  for (const sel of selectors) {
    const el = document.querySelector(sel);
    if (!el) { out[sel] = null; continue; }
    const bg = background(el);
    const fg = over(rgba(getComputedStyle(el).color), bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    out[sel] = Math.round(((a + 0.05) / (b + 0.05)) * 100) / 100;
  }
  return out;
}"""
CONTRAST_TARGETS = [
    f"{VIEW} .nbtrack-cmp-sort",
    f"{VIEW} tr.nbtrack-cmp-row td.nbtrack-cmp-td",
    f"{VIEW} .nbtrack-cmp-toolbar .nbtrack-cmp-status",
    f"{VIEW} .nbtrack-cmp-toggle[aria-pressed='true']",
    f"{VIEW} .nbtrack-cmp-toggle[aria-pressed='false']",
    f"{VIEW} .nbtrack-cmp-action:not(:disabled)",
    f"{VIEW} .nbtrack-cmp-selected-count",
    f"{VIEW} .nbtrack-cmp-chart figcaption",
]


def _check_contrast(page: Any, theme: str) -> None:
    """Every text of the view >= 4.5:1 (WCAG AA), a toggle pressed to measure that state too."""
    page.eval_on_selector(
        f"{VIEW} .nbtrack-cmp-toggle[data-toggle='archived']", "b => b.setAttribute('aria-pressed', 'true')"
    )
    ratios = page.evaluate(_CONTRAST_JS, CONTRAST_TARGETS)
    page.eval_on_selector(
        f"{VIEW} .nbtrack-cmp-toggle[data-toggle='archived']", "b => b.setAttribute('aria-pressed', 'false')"
    )
    print(f"contrast ({theme}): " + ", ".join(f"{k.split(' ', 1)[1]}={v}" for k, v in ratios.items()))
    low = {k: v for k, v in ratios.items() if v is None or v < 4.5}
    assert not low, (theme, low)


def _make_runs(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """30 tracked runs from ONE kernel: the notebook's cells re-executed with new parameters.

    The notebook is written to disk with its outputs before each ``%track stop`` (as a user's
    autosave would), so each run's recorded notebook holds that run's figure.
    """
    import nbformat
    from nbclient import NotebookClient

    path = root / NOTEBOOK
    nb = nbformat.read(path, as_version=4)
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))  # how a headless kernel finds its notebook
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(root)}}
    )
    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        for i in range(RUNS):
            nb.cells[1].source = f"lr = {LRS[i % 3]}\ndepth = {2 + i % 5}"
            nb.cells[2].source = f"%track start --experiment compare --name run-{i}"
            for index in (1, 2, 3):
                client.execute_cell(nb.cells[index], index)
            nbformat.write(nb, str(path))
            client.execute_cell(nb.cells[4], 4)
            errors = [o for c in nb.cells for o in c.outputs if o.get("output_type") == "error"]
            assert not errors, errors


def _column(page: Any, key: str) -> list[str]:
    """The rendered cells of one column, top to bottom (only the rows in the DOM)."""
    return page.eval_on_selector_all(
        f'{ROW} td[data-key="{key}"]', "cells => cells.map(c => c.getAttribute('title'))"
    )


def _headers(page: Any) -> list[str]:
    return page.eval_on_selector_all(f"{VIEW} th[data-key]", "ths => ths.map(t => t.dataset.key)")


def _total(page: Any) -> str:
    return page.inner_text(f"{VIEW} .nbtrack-cmp-toolbar .nbtrack-cmp-status")


def _wait_total(page: Any, n: int) -> None:
    page.wait_for_function(
        f"() => {{ const s = document.querySelector('{VIEW} .nbtrack-cmp-toolbar .nbtrack-cmp-status');"
        f" return s && s.textContent.startsWith('{n} run') && !s.textContent.includes('loading'); }}",
        timeout=60_000,
    )


def _open_from_panel(page: Any) -> None:
    page.click(PANEL_TAB)
    page.click("#nbtrack-panel .nbtrack-compare-open")
    page.wait_for_selector(ROW, timeout=60_000)


def _check_table(page: Any, lab: Lab, clock: Clock) -> list[str]:
    """Varying columns only, sort by a metric, filter by a param; returns the run ids by acc."""
    _wait_total(page, RUNS)
    everything = lab.api(f"nbtrack/compare?notebook={NOTEBOOK}&columns=all&limit=1")
    varying = {c["key"] for c in everything["columns"] if c["varies"]}
    shown = _headers(page)
    print(f"columns shown: {shown}")
    assert set(shown) - {"run.name", "run.status"} <= varying, (shown, varying)
    assert {"params.lr", "params.depth", "metrics.loss.last", "metrics.acc.last"} <= set(shown)
    assert "git.commit" not in shown and "data.version" not in shown  # the same for every run

    # Sort by a metric: descending first, then ascending (server-side).
    page.click(f'{VIEW} .nbtrack-cmp-sort[data-key="metrics.acc.last"]')
    page.wait_for_selector(f'{VIEW} th[data-key="metrics.acc.last"][aria-sort="descending"]')
    _wait_total(page, RUNS)
    page.wait_for_function(f"() => document.querySelectorAll('{ROW}').length > 0", timeout=30_000)
    shown_acc = [float(v) for v in _column(page, "metrics.acc.last")]
    assert len(shown_acc) >= 5 and shown_acc == sorted(shown_acc, reverse=True), shown_acc
    sorted_api = lab.api(
        f"nbtrack/compare?notebook={NOTEBOOK}&sort=metrics.acc.last&order=desc&limit={RUNS}"
    )["rows"]
    ids_in_dom = page.eval_on_selector_all(ROW, "rows => rows.map(r => r.dataset.runId)")
    assert ids_in_dom == [r["run_id"] for r in sorted_api][: len(ids_in_dom)]
    page.click(f'{VIEW} .nbtrack-cmp-sort[data-key="metrics.acc.last"]')
    page.wait_for_selector(f'{VIEW} th[data-key="metrics.acc.last"][aria-sort="ascending"]')
    page.wait_for_function(
        f"() => {{ const c = [...document.querySelectorAll('{ROW} td[data-key=\"metrics.acc.last\"]')]"
        ".map(td => Number(td.title)); return c.length > 1 && c[0] <= c[c.length - 1]; }",
        timeout=30_000,
    )
    clock("sorted by a metric")

    # Filter by a param (MLflow syntax): 10 of the 30 runs; a bad filter says why, in one line.
    box = page.locator(f"{VIEW} .nbtrack-cmp-filter")
    box.fill("params.lr = '0.01'")
    box.press("Enter")
    _wait_total(page, RUNS // 3)
    assert page.locator(ROW).count() == RUNS // 3
    box.fill("params.lr === 1")
    box.press("Enter")
    page.wait_for_function(
        f"() => document.querySelector('{VIEW} .nbtrack-cmp-filter-error').textContent.length > 0",
        timeout=30_000,
    )
    error = page.inner_text(f"{VIEW} .nbtrack-cmp-filter-error")
    print(f"bad filter: {error}")
    assert "\n" not in error.strip() and "Traceback" not in error
    box.fill("")
    box.press("Enter")
    _wait_total(page, RUNS)
    clock("filtered by a param")
    return [r["run_id"] for r in sorted_api]


def _check_virtual(page: Any) -> None:
    """A small viewport holds far fewer row elements than runs; scrolling reaches the last one."""
    page.set_viewport_size({"width": 1500, "height": 560})
    page.wait_for_timeout(300)
    in_dom = page.locator(ROW).count()
    print(f"rows in the DOM at 560 px: {in_dom} of {RUNS}")
    assert 0 < in_dom <= 20, in_dom
    page.eval_on_selector(f"{VIEW} .nbtrack-cmp-table-scroll", "el => { el.scrollTop = el.scrollHeight; }")
    page.wait_for_selector(f'{ROW}[data-index="{RUNS - 1}"]', timeout=30_000)
    assert page.locator(f'{ROW}[data-index="0"]').count() == 0  # scrolled out: gone from the DOM
    page.eval_on_selector(f"{VIEW} .nbtrack-cmp-table-scroll", "el => { el.scrollTop = 0; }")
    page.wait_for_selector(f'{ROW}[data-index="0"]')
    page.set_viewport_size({"width": 1500, "height": 950})


def _check_selection(page: Any, out: Path, clock: Clock) -> None:
    """Select 3 runs (click, shift-click): 3 loss lines, parallel coordinates, 3 figures."""
    page.locator(f'{ROW}[data-index="0"] .nbtrack-cmp-select').click()
    page.locator(f'{ROW}[data-index="2"] .nbtrack-cmp-select').click(modifiers=["Shift"])
    assert page.locator(f"{ROW}[aria-selected=true]").count() == 3
    loss = f'{VIEW} .nbtrack-cmp-history[data-metric="loss"] .nbtrack-cmp-vega[data-drawn="true"]'
    page.wait_for_selector(loss, timeout=60_000)
    assert page.get_attribute(loss, "data-series") == "3"
    lines = page.locator(f"{loss} svg g.mark-line path").count()
    assert lines == 3, lines
    parallel = f'{VIEW} .nbtrack-cmp-parallel .nbtrack-cmp-vega[data-drawn="true"]'
    page.wait_for_selector(parallel, timeout=30_000)
    assert page.locator(f"{parallel} svg g.mark-line path").count() == 3
    clock("charts drawn")
    page.wait_for_function(
        f"() => document.querySelectorAll('{VIEW} .nbtrack-cmp-gallery-run').length === 3"
        f" && [...document.querySelectorAll('{VIEW} .nbtrack-cmp-gallery-run')]"
        ".every(r => r.querySelectorAll('.jp-OutputArea img').length === 1)",
        timeout=60_000,
    )
    clock("gallery: one figure per run")
    shot(page, out, "1-compare-light")
    _check_contrast(page, "light")
    page.locator(f"{VIEW} .nbtrack-cmp-gallery").scroll_into_view_if_needed()
    shot(page, out, "1-gallery-light")
    page.eval_on_selector(f"{VIEW} .nbtrack-cmp-selection", "el => { el.scrollTop = 0; }")


def _check_bulk_tag(page: Any, clock: Clock) -> None:
    """Select two runs (a click, then the keyboard: arrows move, space selects), tag them."""
    page.click(f"{VIEW} .nbtrack-cmp-clear")
    page.locator(f'{ROW}[data-index="0"] .nbtrack-cmp-select').click()
    table = page.locator(f"{VIEW} table.nbtrack-cmp-table")
    table.focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_selector(f'{ROW}[data-index="1"].nbtrack-cmp-focus')
    outline = page.eval_on_selector(
        f'{ROW}[data-index="1"].nbtrack-cmp-focus td', "td => getComputedStyle(td).outlineStyle"
    )
    assert outline == "solid", outline  # the focused row is visibly marked
    page.keyboard.press("Space")
    page.wait_for_selector(f'{ROW}[data-index="1"][aria-selected="true"]')
    assert page.locator(f"{ROW}[aria-selected=true]").count() == 2
    page.click(f'{VIEW} .nbtrack-cmp-action[data-action="tag"]')
    page.locator(".jp-Dialog input").fill("team=vision")
    page.click(".jp-Dialog .jp-mod-accept")
    page.wait_for_selector(f'{VIEW} th[data-key="tags.team"]', timeout=60_000)
    tagged = [v for v in _column(page, "tags.team") if v]
    assert tagged == ["vision", "vision"], tagged
    clock("bulk tag shown as a column")


def _reopen(page: Any, run_id: str, clock: Clock) -> None:
    """Close the view; open it from the command palette, then from a run card's button."""
    assert page.evaluate("window.jupyterapp.commands.label('nbtrack:open-compare')") == "Compare runs"
    page.evaluate("window.jupyterapp.shell.currentWidget.close()")
    page.wait_for_selector(VIEW, state="detached", timeout=30_000)
    page.keyboard.press("Control+Shift+C")
    palette = page.locator(".lm-CommandPalette-input")
    palette.fill("Compare runs")
    page.wait_for_selector('.lm-CommandPalette-item[data-command="nbtrack:open-compare"]')
    palette.press("Enter")
    page.wait_for_selector(ROW, timeout=60_000)
    _wait_total(page, RUNS)
    clock("compare view open (palette)")
    page.evaluate("window.jupyterapp.shell.currentWidget.close()")
    page.wait_for_selector(VIEW, state="detached", timeout=30_000)
    # The run card's button (plain HTML in the card's output): one document listener serves all.
    page.evaluate(
        """([run, nb]) => { const b = document.createElement('button');
        b.className = 'nbtrack-open-compare'; b.dataset.nbtrackRun = run; b.dataset.nbtrackNotebook = nb;
        b.textContent = 'Compare runs'; document.querySelector('.jp-Notebook').append(b);
        b.click(); b.remove(); }""",
        [run_id, NOTEBOOK],
    )
    page.wait_for_selector(f'{ROW}[data-run-id="{run_id}"][aria-selected="true"]', timeout=60_000)
    assert page.locator(f"{ROW}[aria-selected=true]").count() == 1
    clock("compare view open (run card) with its run selected")


def test_compare_view(
    tmp_path: Path, lab_factory: Any, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    out = tmp_path / "screenshots"
    out.mkdir()
    print(f"\nbrowser test output: {tmp_path}")

    # Given a committed git + DVC project whose notebook made 30 tracked runs
    root = make_project(tmp_path / "proj")
    write_notebook(root / NOTEBOOK, CELLS)
    (root / ".gitignore").write_text(".nbtrack/\n.ipynb_checkpoints/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    _make_runs(root, monkeypatch)
    monkeypatch.delenv("JPY_SESSION_NAME")
    clock(f"{RUNS} runs tracked by one kernel")
    lab: Lab = lab_factory(root)
    clock("jupyter lab up")
    page = browser.page
    try:
        page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
        page.wait_for_function(
            "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            f" return w && w.context && w.context.path === '{NOTEBOOK}'; }}",
            timeout=90_000,
        )
        # When the user opens the compare view from the panel
        _open_from_panel(page)
        clock("compare view open (panel)")
        by_acc = _check_table(page, lab, clock)
        _check_virtual(page)
        clock("virtualised")
        _check_selection(page, out, clock)
        _check_bulk_tag(page, clock)

        # Dark theme: the charts redraw in its colours
        page.evaluate(
            "window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
        )
        page.wait_for_function("document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
        page.wait_for_selector(
            f'{VIEW} .nbtrack-cmp-history .nbtrack-cmp-vega[data-drawn="true"]', timeout=30_000
        )
        page.wait_for_timeout(500)
        shot(page, out, "2-compare-dark")
        _check_contrast(page, "dark")
        page.locator(f"{VIEW} .nbtrack-cmp-gallery").scroll_into_view_if_needed()
        shot(page, out, "2-gallery-dark")

        _reopen(page, by_acc[0], clock)
        errors = [m for m in browser.console if m.startswith("pageerror")]
        assert not errors, errors
    except Exception:
        shot(page, out, "failure")
        print("\n".join(["--- browser console ---", *browser.console[-60:]]))
        print("--- jupyter lab log ---\n" + lab.log_tail())
        raise
    finally:
        clock("done")
