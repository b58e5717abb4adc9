"""The run card: ipywidgets with the panel connected, the HTML card headless; ``%track show``; the
"Compare with previous run" button, clicked the way JupyterLab clicks it (a comm message)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import all_runs, download_all, git, make_project, snapshot_of, store_client, write_notebook
from test_frontend import (
    WIDGET_VIEW,
    Lab,
    displays,
    eventually_signed,
    kernel_env,
    nbtrack_msgs,
    own_jupyter_dirs,
    text_of,
    trust_file,
)

from nbtrack.magics.card import RunCardWidget
from nbtrack.store import MlflowStore

pytestmark = pytest.mark.kernel


def test_headless_run_shows_the_html_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    own_jupyter_dirs(tmp_path, monkeypatch)
    # Given a tracked notebook executed by plain nbclient: no panel, yet a kernel where the comm opens
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb_path = write_notebook(
        root / "train.ipynb",
        [
            "%load_ext nbtrack",
            "%track start --name headless",
            "import mlflow; mlflow.log_metric('acc', 0.75)",
            "%track stop",
        ],
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    trust_file(nb_path)  # a notebook the user trusts: its records open trusted too
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb_path))  # how this headless kernel finds its notebook
    nb = nbformat.read(str(nb_path), as_version=4)
    # When it runs
    NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(root)}}, timeout=300
    ).execute()
    # Then the stop cell shows the HTML card with the run's id, not a widget
    (run,) = all_runs(store_client(root))
    (card,) = [o["data"] for o in nb.cells[3].outputs if o["output_type"] == "display_data"]
    assert WIDGET_VIEW not in card
    assert run.info.run_id in card["text/html"] and "nbtrack-run-card" in card["text/html"]
    assert "acc=0.75" in card["text/plain"]
    # And the snapshot says no editor content was received, and why; the history is signed
    files = download_all(store_client(root), run.info.run_id, tmp_path / "dl")
    live = snapshot_of(files)["sections"]["notebook"]["data"]["live"]
    assert live["received"] is False and "no JupyterLab panel" in live["reason"]
    assert "nbtrack/notebook.live.ipynb" not in files
    assert "nbtrack.notebook.unsaved" not in run.data.tags
    assert eventually_signed(files["nbtrack/history.ipynb"])  # by a process that outlives the kernel


def _widget_models(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """comm id -> state of every widget model the kernel opened."""
    return {
        m["content"]["comm_id"]: m["content"]["data"]["state"]
        for m in messages
        if m["msg_type"] == "comm_open" and m["content"]["target_name"] == "jupyter.widget"
    }


def _click_compare(lab: Any, messages: list[dict[str, Any]]) -> str:
    """Click the card's compare button as JupyterLab does; the HTML its Output then shows."""
    models = _widget_models(messages)
    (card,) = displays(messages)
    children = models[card[WIDGET_VIEW]["model_id"]]["children"]  # the card's VBox
    (button,) = [
        cid
        for cid, s in models.items()
        if s["_model_name"] == "ButtonModel" and s["description"] == "Compare with previous run"
    ]
    (output,) = [cid for cid, s in models.items() if s["_model_name"] == "OutputModel"]
    assert f"IPY_MODEL_{output}" in children
    caused = lab.send({"method": "custom", "content": {"event": "click"}}, comm_id=button)
    updates = [
        m["content"]["data"]["state"]["outputs"]
        for m in caused
        if m["msg_type"] == "comm_msg"
        and m["content"]["comm_id"] == output
        and "outputs" in m["content"]["data"].get("state", {})
    ]
    assert updates, caused
    return "".join(o["data"]["text/html"] for o in updates[-1])


def test_widget_card_show_and_compare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a notebook, in a kernel with the panel connected
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb_path = write_notebook(root / "train.ipynb", ["%load_ext nbtrack"])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    own_jupyter_dirs(tmp_path, monkeypatch)
    with Lab(root, kernel_env(tmp_path)) as lab:
        lab.load_nbtrack()
        lab.send({"type": "path", "path": "train.ipynb", "abs_path": str(nb_path)})
        # When two runs log different params and metrics
        ids = []
        for name, alpha, acc in (("a", "0.1", 0.8), ("b", "0.5", 0.9)):
            lab.execute(f"%track start --name {name}")
            lab.execute(
                f"import mlflow; mlflow.log_param('alpha', '{alpha}'); mlflow.log_metric('acc', {acc})"
            )
            reply, stopped = lab.execute("%track stop")
            assert reply["status"] == "ok", text_of(stopped, "stderr")
            ids.append(nbtrack_msgs(stopped, lab.comm_id)[0]["run_id"])
        first, second = ids
        # Then the second run's card is a widget (with the HTML card as its fallback)
        (card,) = displays(stopped)
        assert WIDGET_VIEW in card
        assert second in card["text/html"]
        # And clicking "Compare with previous run" shows what differs from the first run
        page = _click_compare(lab, stopped)
        assert first in page
        assert "<td>alpha</td><td>0.1</td><td>0.5</td>" in page
        assert "<td>acc</td><td>0.8</td><td>0.9</td><td>+0.1</td>" in page

        # When the first run's card is shown again by id
        reply, shown = lab.execute(f"%track show {first}")
        # Then it is that run's card, whose compare finds no earlier run
        (card,) = displays(shown)
        assert WIDGET_VIEW in card and first in card["text/html"] and "acc=0.8" in card["text/plain"]
        assert "No previous run of <code>train.ipynb</code>" in _click_compare(lab, shown)
        # And `%track show` alone is the kernel's last run
        (card,) = displays(lab.execute("%track show")[1])
        assert second in card["text/html"]

        # When the id is unknown
        reply, failed = lab.execute("%track show nosuchrun")
        # Then one line says which id and what to do, without a traceback
        assert reply["status"] == "error"
        message = text_of(failed, "stderr") + "".join(
            "\n".join(m["content"]["traceback"]) for m in failed if m["msg_type"] == "error"
        )
        assert "nosuchrun" in message and "nbtrack runs" in message
        assert "Traceback" not in message
        assert len(message.strip().splitlines()) == 1, message
        assert not displays(failed)


def test_open_in_mlflow_link_only_for_a_server_store(tmp_path: Path) -> None:
    summary = {"run_id": "r1", "run_name": "a", "status": "FINISHED", "notebook": "nb.ipynb"}
    server = MlflowStore("http://127.0.0.1:5000")
    local = MlflowStore(f"sqlite:///{tmp_path / 'mlflow.db'}")
    url = "http://127.0.0.1:5000/#/experiments/1/runs/r1"
    linked = RunCardWidget({**summary, "view": url}, server)
    plain = RunCardWidget({**summary, "view": "mlflow ui --backend-store-uri ..."}, local)
    links = [w.value for w in linked.widget.children[1].children[1:]]
    assert links == [f'<a href="{url}" target="_blank" rel="noopener noreferrer">Open in MLflow</a>']
    assert len(plain.widget.children[1].children) == 1  # the compare button alone
    bundle = linked._repr_mimebundle_()
    assert WIDGET_VIEW in bundle and "r1" in bundle["text/html"] and json.dumps(bundle)
