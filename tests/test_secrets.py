"""No secret reaches anything nbtrack logs: a corpus of realistic secrets placed for real, a real run.

The secrets live where users really keep them: in the kernel's environment, in git remotes
(``git remote add``), in ``.dvc/config`` and ``.dvc/config.local`` (``dvc remote add/modify``), in
the tracking URI (basic-auth credentials in an ``http://`` URI of a real ``mlflow server``, which
MLflow sends as basic auth and the open server ignores), in notebook cells, their outputs, the
editor's unsaved content, a ``--tag``, a ``parameters`` cell, and uncommitted files. A run is
tracked through the real magics; then every artifact, tag, param, metric name, dataset input and
the snapshot are downloaded and searched byte for byte.

Values are generated with the right shape from a seeded generator, so that no credential-looking
literal sits in the source (secret scanners would flag the repository).
"""

from __future__ import annotations

import json
import os
import random
import string
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import download_all, dvc, git, make_project, snapshot_of, store_client

from nbtrack.redact import REDACTED

_RNG = random.Random(20240605)
_UPPER = string.ascii_uppercase + string.digits
_ALNUM = string.ascii_letters + string.digits
_B64 = _ALNUM + "+/"


def _gen(alphabet: str, n: int) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


def _pw() -> str:
    """A typed password: mixed case, digits, a dash (no character a URL would need to escape)."""
    return _gen(string.ascii_letters, 6) + "-" + _gen(string.digits, 4) + _gen(string.ascii_letters, 4)


def _jwt() -> str:
    return "eyJ" + _gen(_ALNUM, 30) + ".eyJ" + _gen(_ALNUM, 40) + "." + _gen(_ALNUM + "-_", 43)


def _pem_body() -> str:
    return "MII" + _gen(_B64, 61) + "\n" + _gen(_B64, 64) + "\n" + _gen(_B64, 40) + "=="


@dataclass(frozen=True)
class Secret:
    """One secret of the corpus: where it is placed, its full value, and the part that must vanish."""

    id: str
    where: str
    value: str
    secret: str


AWS_ID = "AKIA" + _gen(_UPPER, 16)
AWS_SECRET = _gen(_B64, 40)
GCP_PEM = _pem_body()
GCP_SA = {
    "type": "service_account",
    "project_id": "churn-prod",
    "private_key_id": _gen("0123456789abcdef", 40),
    "private_key": f"-----BEGIN PRIVATE KEY-----\n{GCP_PEM}\n-----END PRIVATE KEY-----\n",
    "client_email": "trainer@churn-prod.iam.gserviceaccount.com",
}
AZURE_KEY = _gen(_B64, 86) + "=="
GHP = "ghp_" + _gen(_ALNUM, 36)
GH_FINE = "github_pat_11" + _gen(_UPPER, 20) + "_" + _gen(_ALNUM, 59)
GLPAT = "glpat-" + _gen(_ALNUM, 20)
SLACK_BOT = "xoxb-" + _gen(string.digits, 12) + "-" + _gen(string.digits, 13) + "-" + _gen(_ALNUM, 24)
SLACK_HOOK_PATH = f"T{_gen(_UPPER, 8)}/B{_gen(_UPPER, 10)}/{_gen(_ALNUM, 24)}"
STRIPE = "sk_live_" + _gen(_ALNUM, 24)
OPENAI = "sk-proj-" + _gen(_ALNUM + "-_", 48)
HF = "hf_" + _gen(_ALNUM, 34)
JWT = _jwt()
PEM = _pem_body()
PG_URL_PW, LIBPQ_PW, NETRC_PW, DVC_URL_PW, DVC_LOCAL_PW = _pw(), _pw(), _pw(), _pw(), _pw()
MLFLOW_PW, GIT_PW_TOKEN, CELL_PW, PARAM_VALUE, DIFF_TOKEN = (
    _pw(),
    "ghp_" + _gen(_ALNUM, 36),
    _pw(),
    _pw(),
    _pw(),
)
KAGGLE = _gen("0123456789abcdef", 32)
API_KEY = _gen(_ALNUM, 32)
DVC_AWS_ID, DVC_AWS_SECRET = "AKIA" + _gen(_UPPER, 16), _gen(_B64, 40)
OUTPUT_JWT, LIVE_OPENAI, TAG_STRIPE = _jwt(), "sk-" + _gen(_ALNUM, 48), "sk_live_" + _gen(_ALNUM, 24)
UNTRACKED_AWS = "AKIA" + _gen(_UPPER, 16)

ENV = {
    "AWS_ACCESS_KEY_ID": AWS_ID,
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    "GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps(GCP_SA),
    "AZURE_STORAGE": (
        f"DefaultEndpointsProtocol=https;AccountName=churnstore;AccountKey={AZURE_KEY};"
        "EndpointSuffix=core.windows.net"
    ),
    # Names that say nothing: the value's shape alone must give these away.
    "CI_HELPER": GHP,
    "RELEASE_BOT": GH_FINE,
    "GL_DEPLOY": GLPAT,
    "NOTIFIER": SLACK_BOT,
    "ALERTS_HOOK": f"https://hooks.slack.com/services/{SLACK_HOOK_PATH}",
    "BILLING": STRIPE,
    "LLM_PROVIDER": OPENAI,
    "HUB_LOGIN": HF,
    "SESSION_JWT": JWT,
    "DEPLOY_KEY_PEM": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM}\n-----END OPENSSH PRIVATE KEY-----",
    "DATABASE_URL": f"postgresql://app:{PG_URL_PW}@db.internal:5432/app",
    "PG_CONNINFO": f"host=db.internal port=5432 user=app password={LIBPQ_PW} dbname=app",
    "NETRC_ENTRY": f"machine api.example.com login alice password {NETRC_PW}",
    "KAGGLE_KEY": KAGGLE,
    "API_KEY": API_KEY,
}

CORPUS = [
    Secret("aws-access-key-id", "env", AWS_ID, AWS_ID),
    Secret("aws-secret-access-key", "env", AWS_SECRET, AWS_SECRET),
    Secret("gcp-service-account-private-key", "env+cell", GCP_SA["private_key"], GCP_PEM.split("\n")[1]),
    Secret("azure-storage-connection-string", "env", ENV["AZURE_STORAGE"], AZURE_KEY),
    Secret("github-classic-token", "env", GHP, GHP),
    Secret("github-fine-grained-token", "env", GH_FINE, GH_FINE),
    Secret("gitlab-pat", "env", GLPAT, GLPAT),
    Secret("slack-bot-token", "env", SLACK_BOT, SLACK_BOT),
    Secret("slack-webhook-url", "env", ENV["ALERTS_HOOK"], SLACK_HOOK_PATH),
    Secret("stripe-live-key", "env", STRIPE, STRIPE),
    Secret("openai-key", "env", OPENAI, OPENAI),
    Secret("huggingface-token", "env", HF, HF),
    Secret("jwt", "env", JWT, JWT.split(".")[2]),
    Secret("pem-private-key", "env", ENV["DEPLOY_KEY_PEM"], PEM.split("\n")[1]),
    Secret("postgresql-url", "env", ENV["DATABASE_URL"], PG_URL_PW),
    Secret("libpq-conninfo-password", "env", ENV["PG_CONNINFO"], LIBPQ_PW),
    Secret("netrc-password", "env+untracked", ENV["NETRC_ENTRY"], NETRC_PW),
    Secret("kaggle-key", "env", KAGGLE, KAGGLE),
    Secret("generic-api-key", "env", API_KEY, API_KEY),
    Secret("git-remote-https-token", "git remote", GIT_PW_TOKEN, GIT_PW_TOKEN),
    Secret("gitlab-remote-oauth2", "git remote", GLPAT, GLPAT),
    Secret("dvc-remote-url-password", ".dvc/config", DVC_URL_PW, DVC_URL_PW),
    Secret("dvc-remote-password", ".dvc/config.local", DVC_LOCAL_PW, DVC_LOCAL_PW),
    Secret("dvc-remote-access-key-id", ".dvc/config.local", DVC_AWS_ID, DVC_AWS_ID),
    Secret("dvc-remote-secret-access-key", ".dvc/config.local", DVC_AWS_SECRET, DVC_AWS_SECRET),
    Secret("mlflow-tracking-uri-password", "tracking URI", MLFLOW_PW, MLFLOW_PW),
    Secret("password-typed-into-a-cell", "cell", CELL_PW, CELL_PW),
    Secret("jwt-in-a-cell-output", "output", OUTPUT_JWT, OUTPUT_JWT.split(".")[2]),
    Secret("openai-key-in-unsaved-editor-content", "live", LIVE_OPENAI, LIVE_OPENAI),
    Secret("stripe-key-in-a-tag", "--tag", TAG_STRIPE, TAG_STRIPE),
    Secret("secret-named-parameter", "parameters cell", PARAM_VALUE, PARAM_VALUE),
    Secret("token-in-an-uncommitted-change", "git.diff", DIFF_TOKEN, DIFF_TOKEN),
    Secret("aws-key-in-an-untracked-file", "git.diff", UNTRACKED_AWS, UNTRACKED_AWS),
]


def _notebook(path: Path) -> Path:
    """The saved notebook: secrets typed into cells and shown in outputs."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    cells = [
        new_code_cell(f'alpha = 0.5\napi_key = "{PARAM_VALUE}"', metadata={"tags": ["parameters"]}),
        new_code_cell(f'db_password = "{CELL_PW}"\nrows = 3'),
        new_code_cell(f"service_account = {json.dumps(GCP_SA, indent=1)}"),
        new_code_cell(
            "print('Authorization: Bearer ' + session)\nengine_url",
            outputs=[
                new_output("stream", name="stdout", text=f"Authorization: Bearer {OUTPUT_JWT}\n"),
                new_output(
                    "execute_result",
                    data={"text/plain": f"'{ENV['DATABASE_URL']}'"},
                    execution_count=4,
                ),
            ],
        ),
        new_code_cell("import mlflow\nmlflow.log_metric('rows', rows)"),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def _place_secrets(root: Path, monkeypatch: pytest.MonkeyPatch, server: str) -> str:
    """Put every secret of the corpus where users keep them; the tracking URI with credentials."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    git(root, "remote", "add", "origin", f"https://alice:{GIT_PW_TOKEN}@github.com/org/churn.git")
    git(root, "remote", "add", "deploy", "ssh://git@git.example.com/team/churn.git")
    git(root, "remote", "add", "gl", f"https://oauth2:{GLPAT}@gitlab.com/grp/churn.git")
    dvc(root, "remote", "add", "-d", "storage", f"https://dvcuser:{DVC_URL_PW}@dav.example.com/store")
    dvc(root, "remote", "modify", "--local", "storage", "password", DVC_LOCAL_PW)
    dvc(root, "remote", "add", "s3store", "s3://churn-bucket/dvc")
    dvc(root, "remote", "modify", "--local", "s3store", "access_key_id", DVC_AWS_ID)
    dvc(root, "remote", "modify", "--local", "s3store", "secret_access_key", DVC_AWS_SECRET)
    assert DVC_LOCAL_PW in (root / ".dvc" / "config.local").read_text()
    (root / "settings.py").write_text("TIMEOUT = 30\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "remotes and settings")
    # Uncommitted: a tracked file gets a token, untracked files hold credentials.
    (root / "settings.py").write_text(f'TIMEOUT = 30\nHUB_TOKEN = "{DIFF_TOKEN}"\n')
    (root / "creds.py").write_text(f"KEY_ID = '{UNTRACKED_AWS}'\n")
    (root / ".netrc").write_text(ENV["NETRC_ENTRY"] + "\n")
    (root / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    scheme, rest = server.split("://", 1)
    return f"{scheme}://mlflowuser:{MLFLOW_PW}@{rest}"


def _live_message(shell: Any, nb_path: Path) -> None:
    """What the JupyterLab panel sends: the path, then the editor's content with an unsaved cell."""
    frontend = shell._nbtrack_frontend
    content = json.loads(nb_path.read_text())
    content["cells"].append(
        {"cell_type": "code", "id": "unsaved1", "metadata": {}, "execution_count": None, "outputs": [],
         "source": f'import openai\nopenai.api_key = "{LIVE_OPENAI}"'}
    )  # fmt: skip
    path_msg = {"type": "path", "path": nb_path.name, "abs_path": str(nb_path)}
    frontend._on_msg({"content": {"data": path_msg}})
    live_msg = {"type": "live", "path": nb_path.name, "cell_id": None, "notebook": content}
    frontend._on_msg({"content": {"data": live_msg}})


def _everything(client: Any, run: Any, dest: Path) -> tuple[bytes, dict[str, bytes]]:
    """Every byte MLflow holds for a run: artifacts, tags, params, metrics, inputs, run info."""
    files = download_all(client, run.info.run_id, dest)
    datasets = [
        {"name": d.dataset.name, "digest": d.dataset.digest, "source": d.dataset.source}
        for d in run.inputs.dataset_inputs
    ]
    facts = {
        "tags": run.data.tags,
        "params": run.data.params,
        "metrics": run.data.metrics,
        "inputs": datasets,
        "info": {k: str(v) for k, v in vars(run.info).items()},
        "experiment": client.get_experiment(run.info.experiment_id).name,
    }
    return b"\n".join([*files.values(), json.dumps(facts).encode()]), files


def test_corpus_is_broad() -> None:
    assert len(CORPUS) >= 20
    assert len({s.id for s in CORPUS}) == len(CORPUS)


@pytest.mark.server
def test_no_secret_reaches_the_tracking_server(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server: str
) -> None:
    from mlflow.tracking import MlflowClient

    # Given a git + DVC project with secrets in every place a user keeps them
    root = make_project(tmp_path / "proj")
    nb_path = _notebook(root / "train.ipynb")
    uri = _place_secrets(root, monkeypatch, mlflow_server)
    monkeypatch.setenv("NBTRACK_TRACKING_URI", uri)
    monkeypatch.chdir(root)
    experiment = f"secrets-{uuid.uuid4().hex[:8]}"
    # When a run is tracked through the magics, its cells run, and the panel sends unsaved content
    shell.run_cell(
        f"%track start --notebook {nb_path} --experiment {experiment} --tag deploy={TAG_STRIPE}",
        store_history=True,
    )
    for source in (
        f'alpha = 0.5\napi_key = "{PARAM_VALUE}"',
        f'db_password = "{CELL_PW}"\nrows = 3',
        f"service_account = {json.dumps(GCP_SA)}",
        f"session = {OUTPUT_JWT!r}\nprint('Authorization: Bearer ' + session)",
        "import mlflow\nmlflow.log_metric('rows', rows)",
    ):
        assert shell.run_cell(source, store_history=True).success
    _live_message(shell, nb_path)
    shell.run_cell("%track stop", store_history=True)
    from nbtrack.store.sync import wait_for_uploads

    assert wait_for_uploads(120)  # the run went to the local spool first, then up in the background

    # Then the run reached the server through the URI with credentials (sent as basic auth)
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics == {"rows": 3.0}
    everything, files = _everything(client, run, tmp_path / "dl")
    expected = {"snapshot.json", "notebook.ipynb", "notebook.html", "notebook.live.ipynb"}
    expected |= {"history.ipynb", "requirements.txt", "git.diff"}
    assert {name.removeprefix("nbtrack/") for name in files} >= expected

    # And no secret of the corpus is in any byte of it, nor in any file of the local spool
    leaked = [s.id for s in CORPUS if s.secret.encode() in everything]
    assert leaked == []
    spool_files = [p for p in Path(os.environ["NBTRACK_SPOOL_DIR"]).rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in spool_files)
    assert any(p.name == "snapshot.json" for p in spool_files)
    spooled = b"".join(p.read_bytes() for p in spool_files)
    assert [s.id for s in CORPUS if s.secret.encode() in spooled] == []

    # While the non-secret facts around them are all still there
    snap = snapshot_of(files)
    sections = snap["sections"]
    assert run.data.tags["mlflow.source.git.repoURL"] == "https://github.com/org/churn.git"
    assert sections["git"]["data"]["remotes"] == {
        "origin": "https://github.com/org/churn.git",
        "deploy": "ssh://git@git.example.com/team/churn.git",
        "gl": "https://gitlab.com/grp/churn.git",
    }
    assert sections["data"]["data"]["remotes"] == {
        "storage": "https://dav.example.com/store",
        "s3store": "s3://churn-bucket/dvc",
    }
    assert snap["run"]["tracking_uri"] == mlflow_server
    env_vars = sections["environment"]["data"]["env_vars"]
    for name in ENV:
        assert name in env_vars, name
    assert env_vars["DATABASE_URL"] == "postgresql://db.internal:5432/app"
    assert env_vars["KAGGLE_KEY"] == env_vars["API_KEY"] == env_vars["CI_HELPER"] == REDACTED
    assert run.data.tags["deploy"] == REDACTED
    assert run.data.params["api_key"] == REDACTED and run.data.params["alpha"] == "0.5"
    # the stored notebooks are still notebooks, with only the secrets gone
    saved = json.loads(files["nbtrack/notebook.ipynb"])
    sources = ["".join(c["source"]) for c in saved["cells"]]
    assert sources[1] == f'db_password = "{REDACTED}"\nrows = 3'
    assert '"client_email": "trainer@churn-prod.iam.gserviceaccount.com"' in sources[2]
    history = json.loads(files["nbtrack/history.ipynb"])
    assert any("rows = 3" in "".join(c["source"]) for c in history["cells"])
    # and the snapshot says where secrets were redacted, so replay and the user know
    redacted = sections["notebook"]["data"]["redacted"]
    assert {(f["cell"], f["where"]) for f in redacted["notebook.ipynb"]} == {
        (0, "source"),
        (1, "source"),
        (2, "source"),
        (3, "outputs"),
    }
    assert {"history.ipynb", "notebook.live.ipynb"} <= set(redacted)
    # the uncommitted changes: the file holding a token and the credential files are left out
    diff = sections["git"]["data"]["diff"]
    assert [s["path"] for s in diff["secret_skipped"]] == ["settings.py"]
    assert {s["path"] for s in diff["untracked_skipped"]} == {".netrc", "creds.py"}
    assert b"def double(x)" in files["nbtrack/git.diff"]


@pytest.mark.kernel
def test_replay_runs_the_original_of_a_redacted_notebook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import all_runs, write_notebook

    from nbtrack.cli import main
    from nbtrack.runner import execute_notebook

    # Given a committed notebook with a password typed into a cell, tracked through papermill
    cells = [
        "%load_ext nbtrack",
        "%track start --experiment secrets",
        f'password = "{CELL_PW}"\nimport mlflow\nmlflow.log_metric("pw_len", len(password))',
        "%track stop",
    ]
    assert len(CELL_PW) != len(REDACTED)  # so that running the redacted copy would diverge
    root = make_project(tmp_path / "proj", rows=50)
    write_notebook(root / "nb.ipynb", cells)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notebook")
    execute_notebook(root / "nb.ipynb", tmp_path / "executed.ipynb", cwd=root)
    client = store_client(root)
    (original,) = all_runs(client)
    files = download_all(client, original.info.run_id, tmp_path / "dl")
    assert CELL_PW.encode() not in files["nbtrack/notebook.ipynb"]
    # When it is replayed
    code = main(["--project", str(root), "replay", original.info.run_id, "--json"])
    result = json.loads(capsys.readouterr().out)
    # Then the replay ran the original from the checkout (the same bytes), and reproduced
    assert code == 0, result["message"]
    assert result["verdict"] == "REPRODUCED"
    assert not any("redacted" in r for r in result["risks"])
    # and the replay's own run holds no secret either (its output notebook included)
    replay = client.get_run(result["replay_run_id"])
    replay_files = download_all(client, replay.info.run_id, tmp_path / "dl-replay")
    assert "nbtrack/replay/output.ipynb" in replay_files
    assert not any(CELL_PW.encode() in data for data in replay_files.values())
