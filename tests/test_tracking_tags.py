"""A run's MLflow tags are the few a person filters on; everything else is in snapshot.json. DVC
data appears in MLflow's UI as datasets with the role MLflow users expect (input, output).

An in-process IPython shell (no kernel start-up), a real git + DVC project, the real embedded store.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import all_runs, download_all, dvc_md5, make_project, snapshot_of, store_client, write_notebook

from nbtrack import __version__, tags

#: Every nbtrack tag a run tracked outside a replay carries (MLflow's system tags aside).
RUN_TAGS = {
    tags.SCHEMA_VERSION,
    tags.GIT_DIRTY,
    tags.DATA_STATUS,
    tags.OUT_OF_ORDER,
    tags.KERNEL_RUN_INDEX,
    tags.OWNER_HOST,
    tags.OWNER_PID,
    tags.OWNER_STARTED,
    # who owns the run, immune to wall-clock jumps (orphan detection reads them on every listing)
    tags.OWNER_START_TICKS,
    tags.OWNER_BOOT_ID,
    tags.CAPTURE_SECONDS,  # nbtrack's own capture time, for the server's metrics (issue 15)
}


def test_few_tags_and_the_rest_in_the_snapshot(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a git + DVC project whose notebook rewrites a DVC-tracked file during the run
    root = make_project(tmp_path / "proj")
    nb = write_notebook(root / "nb.ipynb", ["1 + 1"])
    monkeypatch.chdir(root)
    recorded = dvc_md5(root, "data/churn.csv")
    # When a run is tracked
    shell.run_cell(f"%track start --notebook {nb} --tag team=churn", store_history=True)
    shell.run_cell("open('data/churn.csv', 'a').write('1,2.0,3,12,0\\n')", store_history=True)
    shell.run_cell("%track stop", store_history=True)
    client = store_client(root)
    (run,) = all_runs(client)
    # Then its nbtrack tags are only the status facts listings read and the owner's
    found = {k for k in run.data.tags if k.startswith("nbtrack.")}
    assert found == RUN_TAGS
    assert run.data.tags[tags.DATA_STATUS] == "clean"  # at start: the run's input was committed
    assert run.data.tags[tags.SOURCE_NAME] == "nb.ipynb" and run.data.tags["team"] == "churn"
    # And what the tags used to say is in snapshot.json
    snapshot = snapshot_of(download_all(client, run.info.run_id, tmp_path / "dl"))
    assert snapshot["nbtrack_version"] == __version__
    assert snapshot["run"]["project"] == "proj"
    assert snapshot["run"]["notebook_method"] == "explicit"
    assert "papermill" not in snapshot["run"]
    assert {name: s["status"] for name, s in snapshot["sections"].items()} == {
        "notebook": "ok",
        "parameters": "absent",  # no parameters cell
        "environment": "ok",
        "git": "ok",
        "data": "ok",
        "results": "ok",
    }
    notebook = snapshot["sections"]["notebook"]["data"]
    assert "edited_after_execution" in notebook and notebook["live"]["received"] is False
    # And the DVC data is a dataset input of role `input` (recorded hash) and, rewritten by the run,
    # one of role `output` (the new content's hash), both named after DVC
    (produced,) = snapshot["sections"]["data"]["data"]["produced"]
    new = hashlib.md5((root / "data" / "churn.csv").read_bytes()).hexdigest()
    assert (produced["path"], produced["before"], produced["after"]) == ("data/churn.csv", recorded, new)
    datasets = {
        (d.tags[0].value, d.dataset.name, d.dataset.digest): d.dataset for d in run.inputs.dataset_inputs
    }
    assert set(datasets) == {("input", "data/churn.csv", recorded), ("output", "data/churn.csv", new)}
    for dataset in datasets.values():
        source = json.loads(dataset.source)
        assert dataset.source_type == "dvc" and source["uri"] == "dvc://proj/data/churn.csv"
        assert source["hash"] == recorded  # what DVC records until `dvc add`/`dvc commit`
