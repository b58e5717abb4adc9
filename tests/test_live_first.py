"""The editor's live content reaches ``%track stop`` on the first Run All in a fresh kernel.

A fresh kernel has no ``nbtrack`` comm until ``%load_ext nbtrack`` runs, and Run All has by then
queued every cell's execute_request: an answer on the main shell would be handled after the last
cell. The panel answers the comm's opening over a kernel subshell (JEP 91, as JupyterLab sends comm
messages once the comm's subshell is up); the kernel handles it in the subshell's thread while the
cells run, and the run-ending cell waits (bounded) for content that covers it. Here a real kernel
gets the messages in the order a fresh Run All makes them, from a jupyter_client playing the panel.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, download_all, git, make_project, snapshot_of, store_client, write_notebook
from test_frontend import Lab, kernel_env, own_jupyter_dirs, text_of

pytestmark = pytest.mark.kernel

CELLS = ["%load_ext nbtrack", "%track start --name first-run-all", "x = 41 + 1", "%track stop"]
REL = "notebooks/train.ipynb"


class RunAll(Lab):
    """The panel in a fresh kernel: Run All's execute requests first, then the comm's answers."""

    def execute_cell(self, code: str, cell_id: str) -> str:
        """An execute_request as JupyterLab sends a cell's: with its ``cellId``."""
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
        self.kc.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def subshell(self) -> str:
        """A kernel subshell, as JupyterLab creates one for the comm's target."""
        msg = self.kc.session.msg("create_subshell_request", {})
        self.kc.control_channel.send(msg)
        deadline = time.monotonic() + 60
        while True:
            reply = self.kc.control_channel.get_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                return str(reply["content"]["subshell_id"])

    def comm_send(self, data: dict[str, Any], subshell_id: str | None) -> None:
        msg = self.kc.session.msg("comm_msg", {"comm_id": self.comm_id, "data": data})
        if subshell_id is not None:
            msg["header"]["subshell_id"] = subshell_id
        self.kc.shell_channel.send(msg)

    def run_all(
        self, ids: list[str], answer: list[dict[str, Any]], *, subshells: bool, timeout: float = 300
    ) -> list[dict[str, Any]]:
        """Send every cell at once; answer the comm's opening with ``answer`` (over a subshell when
        ``subshells``); return the iopub messages of the cells until the last is idle."""
        msg_ids = [self.execute_cell(code, cell_id) for code, cell_id in zip(CELLS, ids, strict=True)]
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["msg_type"] == "comm_open" and msg["content"]["target_name"] == "nbtrack":
                self.comm_id = msg["content"]["comm_id"]
                subshell_id = self.subshell() if subshells else None
                for data in answer:
                    self.comm_send(data, subshell_id)
            if msg["parent_header"].get("msg_id") not in msg_ids:
                continue
            if msg["msg_type"] == "status":
                state = msg["content"]["execution_state"]
                if msg["parent_header"]["msg_id"] == msg_ids[-1] and state == "idle":
                    return out
                continue
            out.append(msg)


def _project(tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    root = make_project(tmp_path / "proj", use_dvc=False)
    nb_path = write_notebook(root / REL, CELLS)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    return root, nb_path, json.loads(nb_path.read_text())


def _answer(nb_path: Path, notebook: dict[str, Any], pending: list[str]) -> list[dict[str, Any]]:
    """What the panel sends when the kernel opens the comm: the content first, then the path."""
    return [
        {"type": "live", "path": REL, "cell_id": None, "pending": pending, "notebook": notebook},
        {"type": "path", "path": REL, "abs_path": str(nb_path)},
    ]


def _live_section(root: Path, tmp_path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    client = store_client(root)
    (run,) = all_runs(client)
    assert run.info.run_name == "first-run-all"
    files = download_all(client, run.info.run_id, tmp_path / "dl")
    return snapshot_of(files)["sections"]["notebook"]["data"]["live"], files


def test_first_run_all_in_a_fresh_kernel_logs_the_live_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a saved notebook, edited in the editor but not saved, and a fresh kernel started for it
    root, nb_path, saved = _project(tmp_path)
    ids = [c["id"] for c in saved["cells"]]
    edited = json.loads(json.dumps(saved))
    edited["cells"][2]["source"] = "x = 6 * 7  # edited, not saved"
    own_jupyter_dirs(tmp_path, monkeypatch)
    env = kernel_env(tmp_path, JPY_SESSION_NAME=str(nb_path))
    with RunAll(nb_path.parent, env) as lab:
        # When Run All sends every cell before the comm exists, and the panel answers the comm's
        # opening (during the first cell) over a subshell, with every cell still pending
        messages = lab.run_all(ids, _answer(nb_path, edited, ids), subshells=True)
        errors = [m["content"] for m in messages if m["msg_type"] == "error"]
        assert errors == [], errors
    # Then the run logged the editor's content, unsaved edit included
    live, files = _live_section(root, tmp_path)
    assert live["received"] is True, live
    assert json.loads(files["nbtrack/notebook.live.ipynb"]) == edited
    assert live["differences"] == ["1 cell(s) edited but not saved"]


def test_without_a_subshell_the_stop_waits_only_its_bound_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a fresh kernel whose frontend answers on the main shell (no subshells)
    root, nb_path, saved = _project(tmp_path)
    ids = [c["id"] for c in saved["cells"]]
    own_jupyter_dirs(tmp_path, monkeypatch)
    env = kernel_env(tmp_path, JPY_SESSION_NAME=str(nb_path))
    with RunAll(nb_path.parent, env) as lab:
        # When Run All runs: the answer queues behind the cells
        messages = lab.run_all(ids, _answer(nb_path, saved, ids), subshells=False)
        assert [m for m in messages if m["msg_type"] == "error"] == [], text_of(messages, "stderr")
    # Then the run still ends, without live content, and its snapshot says why
    live, files = _live_section(root, tmp_path)
    assert live["received"] is False
    assert "no live content from the editor" in live["reason"]
    assert "nbtrack/notebook.live.ipynb" not in files


def test_content_from_before_the_run_is_not_taken_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the panel's content sent when the comm opened, listing only the first cell as pending
    # (the user ran `%load_ext` alone, then the rest later, and the panel sent nothing since)
    root, nb_path, saved = _project(tmp_path)
    ids = [c["id"] for c in saved["cells"]]
    own_jupyter_dirs(tmp_path, monkeypatch)
    env = kernel_env(tmp_path, JPY_SESSION_NAME=str(nb_path))
    with RunAll(nb_path.parent, env) as lab:
        messages = lab.run_all(ids, _answer(nb_path, saved, ids[:1]), subshells=True)
        assert [m for m in messages if m["msg_type"] == "error"] == [], text_of(messages, "stderr")
    # Then that content does not cover the stop: it is not recorded as the run's
    live, files = _live_section(root, tmp_path)
    assert live["received"] is False
    assert "nbtrack/notebook.live.ipynb" not in files
