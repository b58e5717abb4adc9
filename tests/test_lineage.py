"""From a deployed model back to the run that made it: ``nbtrack provenance`` and ``nbtrack replay
models:/...``. One real tracked run (a real kernel, a git + DVC project, the embedded SQLite MLflow
store) logs an MLflow 3 model and writes ``model.pkl`` (a DVC output, also logged as an artifact);
the model is registered in the store's registry and aliased ``champion``; one replay."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import mlflow
import pytest
from conftest import all_runs, dvc, git, make_project, store_client, write_notebook

from nbtrack.cli import main
from nbtrack.runner import execute_notebook

pytestmark = pytest.mark.kernel

TRAIN = [
    "%load_ext nbtrack",
    "%track start --experiment lineage --name trainer",
    "import pickle\nimport mlflow\n"
    "weights = {'w': [1, 2, 3], 'b': 0.5}\n"
    "with open('model.pkl', 'wb') as f:\n    pickle.dump(weights, f, protocol=4)\n"
    "class Echo(mlflow.pyfunc.PythonModel):\n"
    "    def predict(self, context, model_input):\n        return model_input\n"
    "mlflow.log_metric('acc', 0.9)\n"
    "mlflow.pyfunc.log_model(name='model', python_model=Echo(), artifacts={'weights': 'model.pkl'},\n"
    "                        pip_requirements=['mlflow'])\n"
    "mlflow.log_artifact('model.pkl')",
    "%track stop",
]


def _cli(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--project", str(root), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The project, its one tracked run, and version 1 of registered model ``m`` (alias champion)."""
    tmp = tmp_path_factory.mktemp("lineage")
    root = make_project(tmp / "proj", rows=50)
    (root / "model.pkl").write_bytes(b"placeholder: the notebook overwrites it")
    dvc(root, "add", "-q", "model.pkl")  # a DVC output the run produces
    write_notebook(root / "train.ipynb", TRAIN)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook and model output")
    execute_notebook(root / "train.ipynb", tmp / "executed.ipynb", cwd=root)
    client = store_client(root)
    (run,) = all_runs(client)
    (model,) = client.search_logged_models([run.info.experiment_id])
    client.create_registered_model("m")
    # (MLflow's SQL registry looks a `models:/m-...` source up through the process-wide tracking URI)
    mlflow.set_tracking_uri(client.tracking_uri)
    version = client.create_model_version(
        "m", source=f"models:/{model.model_id}", run_id=run.info.run_id, model_id=model.model_id
    )
    client.set_registered_model_alias("m", "champion", version.version)
    return {"root": root, "tmp": tmp, "run_id": run.info.run_id, "model_id": model.model_id}


def test_a_model_alias_names_the_run_and_the_notebook(
    tracked: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # When the alias a service loads is traced
    code, out, err = _cli(capsys, tracked["root"], "provenance", "models:/m@champion")
    # Then it names the run, its notebook, its commit, data, environment and who ran it
    assert code == 0, err
    assert tracked["run_id"] in out and "(trainer)" in out
    assert "notebook    train.ipynb" in out
    assert "registered model m version 1 (alias @champion)" in out
    assert "data/churn.csv" in out and "environment Python 3." in out and "mlflow 3." in out
    assert "ran by" in out and "replays     none" in out
    # and the JSON says the same, with the logged model behind the version
    code, out, _ = _cli(capsys, tracked["root"], "provenance", "models:/m/1", "--json")
    found = json.loads(out)
    assert code == 0 and found["kind"] == "model" and found["count"] == 1
    assert found["model"]["model_id"] == tracked["model_id"] and found["model"]["model_name"] == "model"
    (facts,) = found["matches"]
    assert facts["run_id"] == tracked["run_id"] and facts["notebook"] == "train.ipynb"
    assert facts["experiment"] == "lineage" and facts["commit"] and facts["user"]
    assert [p["path"] for p in facts["produced"]] == ["model.pkl"]
    # and `models:/m/latest`, `runs:/RUN/model` (MLflow 3: the run's logged model) and `runs:/RUN/FILE`
    # name the same run, and the model each means
    for spec, model in [
        ("models:/m/latest", {"version": "1", "model_id": tracked["model_id"]}),
        (f"runs:/{tracked['run_id'][:8]}/model", {"model_id": tracked["model_id"], "model_name": "model"}),
        (f"runs:/{tracked['run_id']}/model.pkl", {"artifact_path": "model.pkl"}),
    ]:
        code, out, err = _cli(capsys, tracked["root"], "provenance", spec, "--json")
        found = json.loads(out)
        assert code == 0, err
        assert [m["run_id"] for m in found["matches"]] == [tracked["run_id"]]
        assert model.items() <= found["model"].items(), found["model"]


def test_the_registry_is_read_from_sqlite_as_mlflow_reads_it_and_provenance_imports_no_mlflow(
    tracked: dict[str, Any],
) -> None:
    import subprocess
    import sys

    from nbtrack.errors import NoProvenanceError
    from nbtrack.store import MlflowStore, embedded_uri
    from nbtrack.store.models import experiment_name, logged_model_info, registered_version

    # Given the store read straight from its tables, and through MLflow's client
    uri, folder = embedded_uri(tracked["root"])
    fast, slow = MlflowStore(uri, artifact_root=folder / "artifacts"), MlflowStore(uri)
    slow.reader = None
    # Then versions, aliases (also MLflow's reserved `latest`), the logged model and the experiment
    # read the same, and the fast reads never opened MLflow
    for ask in ({"alias": "champion"}, {"alias": "latest"}, {"version": "1"}, {"version": "latest"}):
        assert registered_version(fast, "m", **ask) == registered_version(slow, "m", **ask), ask
    assert logged_model_info(fast, tracked["model_id"]) == logged_model_info(slow, tracked["model_id"])
    experiment = fast.get_run(tracked["run_id"]).experiment_id
    assert experiment_name(fast, experiment) == experiment_name(slow, experiment) == "lineage"
    assert fast._client is None
    # and a miss is MLflow's answer, in the same words (nbtrack asks MLflow for them)
    for ask in ({"alias": "nobody"}, {"version": "7"}):
        with pytest.raises(NoProvenanceError) as by_fast:
            registered_version(fast, "m", **ask)
        with pytest.raises(NoProvenanceError) as by_slow:
            registered_version(slow, "m", **ask)
        assert str(by_fast.value) == str(by_slow.value) and "@champion->1" in str(by_fast.value)
    # And `nbtrack provenance models:/m@champion` in a fresh process answers without importing MLflow
    probe = (
        "import sys\nfrom nbtrack.cli import main\n"
        f"code = main(['--project', {str(tracked['root'])!r}, 'provenance', 'models:/m@champion'])\n"
        "print('imported mlflow' if 'mlflow' in sys.modules else 'no mlflow', code)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "no mlflow 0", (out.stdout[-2000:], out.stderr[-2000:])
    assert tracked["run_id"] in out.stdout


def test_a_model_file_is_traced_by_its_hash(
    tracked: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the model file a service actually loads: a copy, elsewhere
    deployed = tracked["tmp"] / "service" / "model.pkl"
    deployed.parent.mkdir()
    shutil.copy(tracked["root"] / "model.pkl", deployed)
    # When it is traced
    code, out, err = _cli(capsys, tracked["root"], "provenance", str(deployed), "--json")
    # Then the run is found three ways: its artifact, its logged model's file, its produced DVC output
    assert code == 0, err
    found = json.loads(out)
    assert found["kind"] == "file" and found["count"] == 1
    (facts,) = found["matches"]
    assert facts["run_id"] == tracked["run_id"]
    via = facts["matched_by"]
    assert "artifact model.pkl" in via and "logged model model (artifacts/model.pkl)" in via
    assert f"DVC output model.pkl (md5 {found['hashes']['md5']})" in via


def test_nothing_found_exits_19_saying_what_was_searched(
    tracked: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = tracked["tmp"] / "stranger.pkl"
    stranger.write_bytes(b"no run made this")
    code, out, err = _cli(capsys, tracked["root"], "provenance", str(stranger))
    assert code == 19 and not out
    assert (
        err.count("\n") == 1 and "matches nothing: searched the artifacts of 1 run(s), 1 logged model" in err
    )
    code, _, err = _cli(capsys, tracked["root"], "provenance", "models:/m@staging")
    assert code == 19 and "aliases: @champion->1" in err and err.count("\n") == 1
    code, _, err = _cli(capsys, tracked["root"], "provenance", "models:/nosuch/1")
    assert code == 19 and "no registered model 'nosuch'" in err
    code, _, err = _cli(capsys, tracked["root"], "provenance", str(tracked["tmp"] / "missing.pkl"))
    assert code == 64 and "no such file" in err


def test_replaying_the_champion_reproduces_and_compares_the_model(
    tracked: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # When the registered alias is replayed
    code, out, _ = _cli(capsys, tracked["root"], "replay", "models:/m@champion", "--json")
    result = json.loads(out)
    # Then the run that made it is replayed, and reproduces
    assert code == 0, result["message"]
    assert result["run_id"] == tracked["run_id"] and result["verdict"] == "REPRODUCED"
    # and the re-created model was compared with the registered one, file by file
    model = result["model"]
    assert model["target"] == "models:/m@champion" and model["replayed"].startswith("models:/m-")
    files = {row["path"]: row["same"] for row in model["files"]}
    assert files["artifacts/model.pkl"] is True and "MLmodel" not in files
    assert model["compared"] == ("files" if model["identical"] else "metrics")
    assert "Model: " in result["message"] and model["note"] in result["message"]
    # and the provenance now lists that replay with its verdict
    code, out, _ = _cli(capsys, tracked["root"], "provenance", "models:/m@champion", "--json")
    (facts,) = json.loads(out)["matches"]
    assert [(r["run_id"], r["verdict"]) for r in facts["replays"]] == [
        (result["replay_run_id"], "REPRODUCED")
    ]
