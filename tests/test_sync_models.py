"""MLflow 3 logged models made in a spooled run reach the tracking server with ``nbtrack sync``.

A real kernel tracks a run against a real ``mlflow server`` that is down the whole time (the run,
its logged model and the model's registered version wait in the local spool); then the server
answers and ``nbtrack sync`` uploads the run with its model: created under the server run, its
artifacts downloadable, its version registered; a second sync copies nothing; and ``nbtrack
provenance`` on the server leads from the registered version, and from the model file, to the run.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import mlflow
import pytest
from conftest import LateServer, git, make_project, write_notebook

from nbtrack.cli import main
from nbtrack.runner import execute_notebook

pytestmark = [pytest.mark.kernel, pytest.mark.server]

EXPERIMENT = f"models-{uuid.uuid4().hex[:8]}"  # this module's own, on the shared server
REGISTERED = f"synced-{uuid.uuid4().hex[:8]}"

CELLS = [
    "%load_ext nbtrack",
    f"%track start --experiment {EXPERIMENT} --name modeller",
    "import pickle\nimport mlflow\n"
    "with open('model.pkl', 'wb') as f:\n    pickle.dump({'w': [4, 5, 6]}, f, protocol=4)\n"
    "class Echo(mlflow.pyfunc.PythonModel):\n"
    "    def predict(self, context, model_input):\n        return model_input\n"
    "mlflow.log_metric('acc', 0.75)\n"
    "mlflow.pyfunc.log_model(name='model', python_model=Echo(), artifacts={'weights': 'model.pkl'},\n"
    f"                        pip_requirements=['mlflow'], registered_model_name={REGISTERED!r})",
    "%track stop",
]


def test_sync_uploads_logged_models_and_their_versions(
    tmp_path: Path,
    late_server: LateServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlflow.tracking import MlflowClient

    from nbtrack.config import load_config
    from nbtrack.store.spool import Spool
    from nbtrack.store.sync_models import SPOOL_MODEL_ID, copy_logged_models
    from nbtrack.tags import LAST_ERROR

    # Given a run that logged and registered a model while its tracking server was down
    url = late_server.url
    root = make_project(tmp_path / "proj", use_dvc=False, rows=20)
    (root / ".gitignore").write_text("model.pkl\n")
    write_notebook(root / "train.ipynb", CELLS)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    env = {"MLFLOW_TRACKING_URI": url, "NBTRACK_TRACKING_TIMEOUT": "2"}
    execute_notebook(root / "train.ipynb", tmp_path / "executed.ipynb", cwd=root, env=env)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("NBTRACK_TRACKING_TIMEOUT", "5")
    spool = Spool.for_server(url, load_config())
    (pending,) = spool.pending()
    (local_model,) = spool.store.client.search_logged_models([pending.experiment_id])

    # When the server answers and `nbtrack sync` runs
    late_server.up()
    assert main(["--project", str(root), "sync", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ((spool_id, server_id),) = [(u["run_id"], u["server_run_id"]) for u in report["uploaded"]]
    assert spool_id == pending.run_id

    # Then the logged model is on the server, under the uploaded run, complete
    client = MlflowClient(tracking_uri=url)
    run = client.get_run(server_id)
    (model,) = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{server_id}'"
    )
    assert model.name == "model" and str(model.status) == "READY"
    assert model.tags[SPOOL_MODEL_ID] == local_model.model_id
    assert {m.key for m in model.metrics or []} == {m.key for m in local_model.metrics or []}
    assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
    # its artifacts download, byte for byte what the notebook wrote
    got = Path(
        mlflow.artifacts.download_artifacts(f"models:/{model.model_id}", dst_path=str(tmp_path / "dl"))
    )
    assert (got / "MLmodel").is_file()
    assert (got / "artifacts" / "model.pkl").read_bytes() == (root / "model.pkl").read_bytes()
    # and the version registered in the spool is registered on the server, from that model
    (version,) = client.search_model_versions(f"name = '{REGISTERED}'")
    assert version.source == f"models:/{model.model_id}" and version.run_id == server_id

    # And uploading again copies nothing: no second model, no second version
    assert main(["--project", str(root), "sync", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["uploaded"] == []
    local_run = spool.store.client.get_run(spool_id)
    assert copy_logged_models(spool.store.client, client, local_run, server_id, run.info.experiment_id) == 0
    assert len(client.search_logged_models([run.info.experiment_id])) == 1
    assert len(client.search_model_versions(f"name = '{REGISTERED}'")) == 1

    # And on the server, the registered version and the model file both lead back to the run
    assert main(["--project", str(root), "provenance", f"models:/{REGISTERED}/1", "--json"]) == 0
    (facts,) = json.loads(capsys.readouterr().out)["matches"]
    assert facts["run_id"] == server_id and facts["notebook"] == "train.ipynb"
    assert main(["--project", str(root), "provenance", str(root / "model.pkl"), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [m["run_id"] for m in found["matches"]] == [server_id]
    assert "logged model model (artifacts/model.pkl)" in found["matches"][0]["matched_by"]

    # And with the server up, the kernel's background uploader (a thread: everything it imports
    # is preloaded) takes the next run's model along; `nbtrack sync` finishes what the kernel's
    # bounded exit left
    env["NBTRACK_TRACKING_TIMEOUT"] = "15"
    execute_notebook(root / "train.ipynb", tmp_path / "executed-2.ipynb", cwd=root, env=env)
    assert [r.tags.get(LAST_ERROR) or None for r in spool.pending()] in ([], [None])
    assert main(["--project", str(root), "sync", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["failed"] == []
    models = client.search_logged_models([run.info.experiment_id])
    assert len(models) == 2 and {str(m.status) for m in models} == {"READY"}
    assert len(client.search_model_versions(f"name = '{REGISTERED}'")) == 2
