"""The first Run All in a fresh kernel records the editor's live content; the panel's first look.

Given a project with one tracked run and a notebook that tracks another, when JupyterLab starts and
the user opens the notebook and the panel, the panel lists the run (the time from Lab answering
``/api/status`` to that first list is printed: a figure, not an assertion). When the user edits a
cell without saving and runs Run All once in the notebook's fresh kernel, then the run logged
``notebook.live.ipynb``, equal to the editor's content, unsaved edit included: the panel sent it when
the kernel opened the comm (at ``%load_ext nbtrack``, while Run All's cells were queued), over the
comm's kernel subshell, and ``%track stop`` waited for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, download_all, git, make_project, store_client, write_notebook

from .conftest import Browser, Lab

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.timeout(420)]

NOTEBOOK = "train.ipynb"
CELLS = ["%load_ext nbtrack", "%track start --name first-run-all", "x = 41 + 1\nprint(x)", "%track stop"]
EDITED = "x = 6 * 7  # edited in the editor, not saved\nprint(x)"
ROW = ".nbtrack-run-row[data-run-id]"
PANEL_TAB = '.jp-SideBar.jp-mod-right .lm-TabBar-tab[data-id="nbtrack-panel"]'
CURRENT = "window.jupyterapp.shell.currentWidget"
#: One run tracked before Lab starts, in a plain IPython (so the first list has a row to render).
TRACK_ONE = (
    "from IPython.core.interactiveshell import InteractiveShell\n"
    "ip = InteractiveShell.instance()\n"
    "ip.run_line_magic('load_ext', 'nbtrack')\n"
    f"ip.run_line_magic('track', 'start --notebook {NOTEBOOK} --name before-lab')\n"
    "ip.run_line_magic('track', 'stop')\n"
)


def _project(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "proj", use_dvc=False)
    write_notebook(root / NOTEBOOK, CELLS)
    (root / ".gitignore").write_text(".nbtrack/\n.ipynb_checkpoints/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NBTRACK_", "JPY_"))}
    env.update(DVC_NO_ANALYTICS="1", MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true")
    subprocess.run([sys.executable, "-c", TRACK_ONE], cwd=root, env=env, check=True, capture_output=True)
    return root


def _first_list(page: Any, lab: Lab, up: float) -> None:
    """Open the notebook and the panel; print how long after Lab's start the first list showed."""
    asked: list[float] = []
    answered: list[float] = []
    page.on("request", lambda r: asked.append(time.monotonic()) if "/nbtrack/runs?" in r.url else None)
    page.on("response", lambda r: answered.append(time.monotonic()) if "/nbtrack/runs?" in r.url else None)
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
    page.wait_for_selector(PANEL_TAB, timeout=90_000)
    if "lm-mod-current" not in (page.get_attribute(PANEL_TAB, "class") or ""):
        page.click(PANEL_TAB)
    page.wait_for_selector(ROW, timeout=90_000)
    listed = time.monotonic()
    request = f"; its runs request answered {answered[0] - asked[0]:.2f} s after sent" if answered else ""
    print(f"\nfirst list after Lab start: {listed - up:.2f} s{request}")


def test_first_run_all_in_a_fresh_kernel_logs_the_live_content(
    tmp_path: Path, lab_factory: Any, browser: Browser
) -> None:
    # Given a project with one tracked run, and JupyterLab just started on it
    root = _project(tmp_path)
    lab: Lab = lab_factory(root)
    up = time.monotonic()  # the fixture returns once /api/status answers
    page = browser.page
    try:
        # When the user opens the notebook and the panel, the panel lists the earlier run
        _first_list(page, lab, up)
        page.wait_for_function(
            f"() => {{ const w = {CURRENT}; return w && w.context && w.context.path === '{NOTEBOOK}'"
            " && w.sessionContext.session && w.sessionContext.session.kernel"
            " && w.sessionContext.session.kernel.status === 'idle'; }",
            timeout=90_000,
        )
        # ... edits a cell without saving, and runs Run All once in the fresh kernel
        page.evaluate(f"{CURRENT}.content.widgets[2].model.sharedModel.setSource({json.dumps(EDITED)})")
        assert page.evaluate(f"{CURRENT}.context.model.dirty") is True
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(f"document.querySelectorAll('{ROW}').length >= 2", timeout=180_000)
        editor = json.loads(page.evaluate(f"JSON.stringify({CURRENT}.context.model.toJSON())"))
    except Exception:
        print("console:\n" + "\n".join(browser.console[-40:]))
        print("lab log:\n" + lab.log_tail())
        raise

    # Then the run logged the editor's content: its cells, unsaved edit included
    client = store_client(root)
    run = next(r for r in all_runs(client) if r.info.run_name == "first-run-all")
    files = download_all(client, run.info.run_id, tmp_path / "dl")
    assert "nbtrack/notebook.live.ipynb" in files, sorted(files)
    live = json.loads(files["nbtrack/notebook.live.ipynb"])
    cells = [(c["id"], c["cell_type"], _text(c["source"])) for c in live["cells"]]
    assert cells == [(c["id"], c["cell_type"], _text(c["source"])) for c in editor["cells"]]
    assert cells[2][2] == EDITED
    snapshot = json.loads(files["nbtrack/snapshot.json"])
    assert snapshot["sections"]["notebook"]["data"]["live"]["received"] is True


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source)
