"""Issue 16: no planted secret reaches any byte nbtrack stores, renders or serves.

One table (``FORMS``) lists every secret form with the channel it is planted through. They are
planted for real in one git + DVC project:

- a real Jupyter kernel (jupyter_client) with secrets in its environment, driven cell by cell as a
  front-end would: secrets typed in cells, printed in outputs, shown in (ANSI-coloured) tracebacks,
  set with ``%env`` / ``%set_env``, given as ``%track start --tag``, in the notebook's and a cell's
  metadata, and in the editor's unsaved content sent over the panel's ``nbtrack`` comm;
- uncommitted edits (``.dvc/config``, YAML, ``.properties``) and untracked credential files
  (``kaggle.json``, ``.docker/config.json``, ``.ppk``, a PGP private key block, ``.netrc``,
  ``id_rsa``, ``.npmrc``, a ``.env`` file) for ``git.diff``;
- the ``papermill`` command line (``-p token …``, ``-r``, ``-y``), run as a real ``papermill``
  process whose kernel tracks itself;
- then ``nbtrack replay`` of that run writes its HTML and JUnit reports.

Every byte is then searched, raw and in JSON-escaped, URL-quoted, HTML-escaped and base64 forms:
the SQLite store's files (``mlflow.db`` and the artifacts beside it), the reports, and the REST
responses of the Jupyter server extension (runs list, every run's detail, the diff).

The spool of server mode is covered by ``tests/test_secrets.py`` (a real ``mlflow server``; it
scans every file of the spool folder).

Values are generated with the right shape from a seeded generator, so that no credential-looking
literal sits in the source (secret scanners would flag the repository).
"""

from __future__ import annotations

import base64
import html
import json
import os
import random
import string
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest import all_runs, git, make_project, store_client

pytestmark = pytest.mark.kernel

_RNG = random.Random(16_005)
_UP = string.ascii_uppercase + string.digits
_AN = string.ascii_letters + string.digits
_HEX = "0123456789abcdef"
_B64 = _AN + "+/"


def _gen(alphabet: str, n: int) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


def _pw() -> str:
    """A typed password: letters, a dash, digits (nothing a URL or a shell would need to escape)."""
    return _gen(string.ascii_letters, 7) + "-" + _gen(string.digits, 4) + _gen(string.ascii_letters, 5)


def _pem(kind: str) -> tuple[str, str]:
    """A private-key block and one of its body lines (what must vanish)."""
    line = _gen(_B64, 64)
    body = "MII" + _gen(_B64, 61) + "\n" + line + "\n" + _gen(_B64, 40) + "=="
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n", line


def _jwt() -> str:
    return "ey" + "J" + _gen(_AN, 30) + ".eyJ" + _gen(_AN, 40) + "." + _gen(_AN + "-_", 43)


@dataclass(frozen=True)
class Form:
    """One secret form: its channel, the text as planted, and the part that must never be stored."""

    id: str
    channel: str
    planted: str
    secret: str


def _f(id: str, channel: str, planted: str, secret: str | None = None) -> Form:
    return Form(id, channel, planted, planted if secret is None else secret)


_RSA, _RSA_LINE = _pem("RSA PRIVATE KEY")
_GCP, _GCP_LINE = _pem("PRIVATE KEY")
_SSH, _SSH_LINE = _pem("OPENSSH PRIVATE KEY")
_PGP_LINE = _gen(_B64, 64)
_PGP = f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQVYBG{_gen(_B64, 58)}\n{_PGP_LINE}\n=ab12\n"
_PGP += "-----END PGP PRIVATE KEY BLOCK-----\n"
_PPK_LINE = _gen(_B64, 64)
_PPK = (
    "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\nPublic-Lines: 2\n"
    f"AAAAC3NzaC1lZDI1NTE5AAAAI{_gen(_B64, 40)}\n{_gen(_B64, 20)}\nPrivate-Lines: 1\n{_PPK_LINE}\n"
    f"Private-MAC: {_gen(_HEX, 64)}\n"
)
_DOCKER_PW = _pw()
_DOCKER_AUTH = base64.b64encode(f"ana:{_DOCKER_PW}".encode()).decode()
_BASIC = base64.b64encode(f"svc:{_pw()}".encode()).decode()
_AZ_KEY = _gen(_B64, 86) + "=="

# fmt: off
FORMS: list[Form] = [
    # --- the kernel's environment (names that say "secret", and neutral names with secret values) ---
    _f("env-passphrase-name", "env:DB_PASSPHRASE", _pw()),
    _f("env-pw-suffix-name", "env:SMTP_PW", _pw()),
    _f("env-java-tool-options-password", "env:JAVA_TOOL_OPTIONS", _pw()),
    _f("env-java-options-datasource-password", "env:_JAVA_OPTIONS", _pw()),
    _f("env-spark-s3a-secret-key", "env:PYSPARK_SUBMIT_ARGS", _gen(_B64, 40)),
    _f("env-spark-azure-account-key", "env:SPARK_OPTS", _AZ_KEY),
    _f("env-sendgrid-neutral-name", "env:MAIL_RELAY", "SG." + _gen(_AN, 22) + "." + _gen(_AN + "-_", 43)),
    _f("env-vault-neutral-name", "env:VAULT_BOOT", "hv" + "s." + _gen(_AN, 90)),
    _f("env-digitalocean-neutral-name", "env:DO_CFG", "do" + "p_v1_" + _gen(_HEX, 64)),
    _f("env-aws-key-id-neutral-name", "env:CFG_ID", "AK" + "IA" + _gen(_UP, 16)),
    _f("env-azure-ad-secret-neutral-name", "env:AZ_APP", _gen(_AN, 3) + "8Q~" + _gen(_AN, 31)),
    _f("env-gitlab-deploy-token", "env:GL_DEPLOY", "gl" + "dt-" + _gen(_AN, 20)),
    # --- typed in cells (assigned to names that say nothing: the shape alone gives them away) ------
    _f("cell-sendgrid", "cell", "SG." + _gen(_AN, 22) + "." + _gen(_AN, 43)),
    _f("cell-mailgun", "cell", "ke" + "y-" + _gen(_HEX, 32)),
    _f("cell-mailchimp", "cell", _gen(_HEX, 32) + "-us" + "14"),
    _f("cell-twilio-api-key", "cell", "S" + "K" + _gen(_HEX, 32)),
    _f("cell-telegram-bot", "cell", _gen(string.digits, 10) + ":A" + _gen(_AN + "_-", 34)),
    _f("cell-teams-webhook", "cell", _gen(_HEX, 8) + "-" + _gen(_HEX, 4) + "@" + _gen(_HEX, 24)),
    _f("cell-discord-webhook", "cell", _gen(_AN + "_-", 68)),
    _f("cell-slack-webhook", "cell", _gen(_AN, 24)),
    _f("cell-vault", "cell", "hv" + "s." + _gen(_AN, 24)),
    _f("cell-digitalocean", "cell", "do" + "o_v1_" + _gen(_HEX, 64)),
    _f("cell-authorization-basic", "cell", _BASIC),
    _f("cell-authorization-bearer-opaque", "cell", _gen(_AN, 40)),
    _f("cell-curl-u", "cell", _pw()),
    _f("cell-github-classic", "cell", "gh" + "p_" + _gen(_AN, 36)),
    _f("cell-github-fine-grained", "cell", "github" + "_pat_11" + _gen(_UP, 20) + "_" + _gen(_AN, 59)),
    _f("cell-gitlab-pat", "cell", "gl" + "pat-" + _gen(_AN, 20)),
    _f("cell-aws-key-id", "cell", "AS" + "IA" + _gen(_UP, 16)),
    _f("cell-aws-secret-access-key", "cell", _gen(_B64, 40)),
    _f("cell-gcp-api-key", "cell", "AI" + "za" + _gen(_AN + "-_", 35)),
    _f("cell-gcp-service-account-key", "cell", _GCP, _GCP_LINE),
    _f("cell-azure-storage-account-key", "cell", _gen(_B64, 86) + "=="),
    _f("cell-stripe", "cell", "sk" + "_live_" + _gen(_AN, 24)),
    _f("cell-openai", "cell", "sk" + "-proj-" + _gen(_AN, 48)),
    _f("cell-huggingface", "cell", "h" + "f_" + _gen(_AN, 34)),
    _f("cell-npm", "cell", "np" + "m_" + _gen(_AN, 36)),
    _f("cell-pypi", "cell", "py" + "pi-AgEIcHlwaS5vcmc" + _gen(_AN + "-_", 70)),
    _f("cell-jwt", "cell", _jwt()),
    _f("cell-rsa-private-key", "cell", _RSA, _RSA_LINE),
    _f("cell-postgres-url-password", "cell", _pw()),
    _f("cell-mongodb-url-password", "cell", _pw()),
    _f("cell-shopify", "cell", "sh" + "pat_" + _gen(_HEX, 32)),
    _f("cell-linear", "cell", "lin" + "_api_" + _gen(_AN, 40)),
    _f("cell-newrelic", "cell", "NR" + "AK-" + _gen(_UP, 27)),
    _f("cell-grafana", "cell", "gl" + "sa_" + _gen(_AN, 32) + "_" + _gen(_HEX, 8)),
    _f("cell-age-secret-key", "cell", "AGE-SECRET" + "-KEY-1" + _gen(_UP, 58)),
    _f("cell-databricks", "cell", "da" + "pi" + _gen(_HEX, 32)),
    _f("cell-slack-bot", "cell", "xo" + "xb-" + _gen(string.digits, 12) + "-" + _gen(_AN, 24)),
    # --- only in outputs (the cell builds them from halves) and in tracebacks ----------------------
    _f("output-printed-github-token", "output", "gh" + "o_" + _gen(_AN, 36)),
    _f("output-bearer-jwt", "output", _jwt()),
    _f("output-repr-telegram", "output", _gen(string.digits, 9) + ":A" + _gen(_AN, 34)),
    _f("traceback-secret-literal-in-frame", "traceback", _pw()),
    _f("traceback-stripe-in-message", "traceback", "r" + "k_live_" + _gen(_AN, 24)),
    _f("traceback-url-password-in-message", "traceback", _pw()),
    # --- %track start --tag, %env / %set_env, metadata, the editor's unsaved content ---------------
    _f("tag-api-key", "tag", _gen(_AN, 32)),
    _f("tag-pw-suffix", "tag", _pw()),
    _f("tag-gitlab-shaped", "tag", "gl" + "pat-" + _gen(_AN, 20)),
    _f("env-magic-passphrase", "%env", _pw()),
    _f("set-env-magic-pw", "%env", _pw()),
    _f("env-magic-space-form-token", "%env", _gen(_AN, 28)),
    _f("notebook-metadata-api-key", "metadata", _gen(_AN, 32)),
    _f("notebook-metadata-client-secret", "metadata", _pw()),
    _f("cell-metadata-password", "metadata", _pw()),
    _f("live-unsaved-anthropic-key", "live", "sk" + "-ant-api03-" + _gen(_AN, 80)),
    # --- papermill's command line ----------------------------------------------------------------
    _f("papermill-p-token", "papermill argv", _gen(_AN, 30)),
    _f("papermill-p-db-password", "papermill argv", _pw()),
    _f("papermill-r-api-key", "papermill argv", _gen(_AN, 26)),
    _f("papermill-y-webhook-secret", "papermill argv", _pw()),
    # --- git.diff: untracked credential files and uncommitted config edits --------------------------
    _f("untracked-kaggle-json", "untracked file", _gen(_HEX, 32)),
    _f("untracked-docker-config-auth", "untracked file", _DOCKER_AUTH),
    _f("untracked-docker-config-password", "untracked file", _DOCKER_PW),
    _f("untracked-putty-ppk", "untracked file", _PPK, _PPK_LINE),
    _f("untracked-pgp-private-key-block", "untracked file", _PGP, _PGP_LINE),
    _f("untracked-netrc", "untracked file", _pw()),
    _f("untracked-id-rsa", "untracked file", _SSH, _SSH_LINE),
    _f("untracked-npmrc-auth-token", "untracked file", _gen(_HEX, 8) + "-" + _gen(_HEX, 27)),
    _f("untracked-dotenv-pw", "untracked file", _pw()),
    _f("dvc-config-password-edit", ".dvc/config edit", _pw()),
    _f("dvc-config-url-password-edit", ".dvc/config edit", _pw()),
    _f("yaml-api-key-edit", "YAML edit", _gen(_AN, 32)),
    _f("yaml-client-secret-edit", "YAML edit", _pw()),
    _f("properties-password-edit", ".properties edit", _pw()),
    _f("properties-spring-password-edit", ".properties edit", _pw()),
]
# fmt: on
S = {f.id: f.planted for f in FORMS}


def _halves(text: str) -> str:
    """Python source that builds ``text`` at run time, so that it appears only in outputs."""
    cut = len(text) // 2
    return f"{text[:cut]!r} + {text[cut:]!r}"


ENV = {
    "DB_PASSPHRASE": S["env-passphrase-name"],
    "SMTP_PW": S["env-pw-suffix-name"],
    "JAVA_TOOL_OPTIONS": f"-Xmx2g -Djavax.net.ssl.keyStorePassword={S['env-java-tool-options-password']}",
    "_JAVA_OPTIONS": f"-Dspring.datasource.password={S['env-java-options-datasource-password']} -Dx=1",
    "PYSPARK_SUBMIT_ARGS": (
        f"--conf spark.hadoop.fs.s3a.secret.key={S['env-spark-s3a-secret-key']} pyspark-shell"
    ),
    "SPARK_OPTS": f"--conf spark.hadoop.fs.azure.account.key.acct.blob.core.windows.net={_AZ_KEY}",
    "MAIL_RELAY": S["env-sendgrid-neutral-name"],
    "VAULT_BOOT": S["env-vault-neutral-name"],
    "DO_CFG": S["env-digitalocean-neutral-name"],
    "CFG_ID": S["env-aws-key-id-neutral-name"],
    "AZ_APP": S["env-azure-ad-secret-neutral-name"],
    "GL_DEPLOY": S["env-gitlab-deploy-token"],
}

_TYPED = [f for f in FORMS if f.channel == "cell"]
_TYPED_SOURCE = {
    "cell-teams-webhook": "hook = 'https://acme.webhook.office.com/webhookb2/{}/IncomingWebhook/{}/{}'".format(
        S["cell-teams-webhook"], _gen(_HEX, 32), _gen(_HEX, 8) + "-" + _gen(_HEX, 4)
    ),
    "cell-discord-webhook": f"hook = 'https://discord.com/api/webhooks/{_gen(string.digits, 18)}/"
    f"{S['cell-discord-webhook']}'",
    "cell-slack-webhook": f"hook = 'https://hooks.slack.com/services/T{_gen(_UP, 8)}/B{_gen(_UP, 10)}/"
    f"{S['cell-slack-webhook']}'",
    "cell-authorization-basic": f"headers = {{'Authorization': 'Basic {_BASIC}'}}",
    "cell-authorization-bearer-opaque": "cmd = 'curl -H \"Authorization: Bearer "
    f"{S['cell-authorization-bearer-opaque']}\" https://api.example.com/v1/jobs'",
    "cell-curl-u": f"cmd = 'curl -u ana:{S['cell-curl-u']} https://api.example.com/v1'",
    "cell-aws-secret-access-key": f"creds = dict(aws_secret_access_key='{S['cell-aws-secret-access-key']}')",
    "cell-azure-storage-account-key": "conn = 'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey="
    f"{S['cell-azure-storage-account-key']};EndpointSuffix=core.windows.net'",
    "cell-postgres-url-password": f"url = 'postgresql://app:{S['cell-postgres-url-password']}@db.internal/app'",
    "cell-mongodb-url-password": "url = 'mongodb+srv://admin:"
    f"{S['cell-mongodb-url-password']}@cluster0.abcde.mongodb.net/?retryWrites=true'",
}
SURROGATE_CELL = '# a lone surrogate: \udcff\nodd = "x\\udcffy"\nprint(odd)'

KERNEL_CELLS = [
    *(_TYPED_SOURCE.get(f.id, f"v = {f.planted!r}") for f in _TYPED),
    f"print('found', {_halves(S['output-printed-github-token'])})",
    f"print('Authorization: Bearer ' + {_halves(S['output-bearer-jwt'])})",
    f"{_halves(S['output-repr-telegram'])}",
    f"api_secret = {S['traceback-secret-literal-in-frame']!r}\nrows = 3\nraise RuntimeError('no service')",
    f"raise PermissionError('key rejected: ' + {_halves(S['traceback-stripe-in-message'])})",
    "raise ConnectionError('cannot reach postgresql://app:' + "
    f"{_halves(S['traceback-url-password-in-message'])}"
    " + '@db.internal/app')",
    f"%env SERVICE_PASSPHRASE={S['env-magic-passphrase']}",
    f"%set_env DEPLOY_PW={S['set-env-magic-pw']}",
    f"%env NOTIFY_TOKEN {S['env-magic-space-form-token']}",
    SURROGATE_CELL,
    "import mlflow\nmlflow.log_metric('rows', 3)",
]
PM_CELLS = [
    ("parameters", "token = ''\ndb_password = ''\napi_key = ''\nwebhook_secret = ''\nalpha = 0.5"),
    "%load_ext nbtrack",
    "%track start --experiment corpus-pm",
    "import mlflow\nmlflow.log_metric('alpha', alpha)",
    "%track stop",
]


# --- planting ------------------------------------------------------------------------------------
def _write_nb(path: Path, sources: list[Any], metadata: dict[str, Any], cell_meta: dict[int, Any]) -> None:
    """The notebook as Jupyter saves it (JSON escapes keep a lone surrogate writable)."""
    cells = []
    for i, src in enumerate(sources):
        meta: dict[str, Any] = dict(cell_meta.get(i, {}))
        if isinstance(src, tuple):
            meta["tags"] = [src[0]]
            src = src[1]
        cells.append(
            {"cell_type": "code", "id": f"c{i}", "source": src, "metadata": meta, "outputs": [],
             "execution_count": None}
        )  # fmt: skip
    nb = {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.write_text(json.dumps(nb, indent=1))


def _plant_files(root: Path) -> None:
    """Committed config files, then uncommitted edits and untracked credential files."""
    (root / "config").mkdir()
    (root / "config" / "app.yaml").write_text("service:\n  host: api.example.com\n  retries: 3\n")
    (root / "conf").mkdir()
    (root / "conf" / "db.properties").write_text("db.host=db.internal\ndb.user=app\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "configs and notebooks")
    with (root / ".dvc" / "config").open("a") as fh:
        fh.write(
            "['remote \"dav\"']\n"
            f"    url = https://dvcuser:{S['dvc-config-url-password-edit']}@dav.example.com/store\n"
            f"    password = {S['dvc-config-password-edit']}\n"
        )
    (root / "config" / "app.yaml").write_text(
        "service:\n  host: api.example.com\n  retries: 3\n"
        f'  api_key: {S["yaml-api-key-edit"]}\n  client_secret: "{S["yaml-client-secret-edit"]}"\n'
    )
    (root / "conf" / "db.properties").write_text(
        f"db.host=db.internal\ndb.user=app\ndb.password={S['properties-password-edit']}\n"
        f"spring.datasource.password = {S['properties-spring-password-edit']}\n"
    )
    (root / "kaggle.json").write_text(json.dumps({"username": "ana", "key": S["untracked-kaggle-json"]}))
    (root / ".docker").mkdir()
    (root / ".docker" / "config.json").write_text(
        json.dumps({"auths": {"reg.example.com": {"auth": _DOCKER_AUTH}}})
    )
    (root / "keys").mkdir()
    (root / "keys" / "deploy.ppk").write_text(_PPK)
    (root / "notes.txt").write_text("backup of the signing key:\n" + _PGP)
    (root / ".netrc").write_text(f"machine api.example.com login ana password {S['untracked-netrc']}\n")
    (root / "deploy").mkdir()
    (root / "deploy" / "id_rsa").write_text(_SSH)
    (root / ".npmrc").write_text(f"//registry.npmjs.org/:_authToken={S['untracked-npmrc-auth-token']}\n")
    (root / "prod.env").write_text(f"DEBUG=0\nDB_PW={S['untracked-dotenv-pw']}\n")
    (root / "helpers.py").write_text("def double(x):\n    return 2 * x\n")  # an ordinary file: kept


class _Kernel:
    """A real kernel driven as a front-end drives it (execute requests, the panel's comm)."""

    def __init__(self, root: Path, nb_path: Path, env: dict[str, str]) -> None:
        from jupyter_client.manager import start_new_kernel

        full = {**os.environ, **env, "JPY_SESSION_NAME": str(nb_path)}
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(root), env=full)
        self.comm_id: str | None = None

    def run(self, code: str) -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = []
        reply = self.kc.execute_interactive(code, output_hook=msgs.append, timeout=180)
        for msg in msgs:
            if msg["msg_type"] == "comm_open" and msg["content"].get("target_name") == "nbtrack":
                self.comm_id = msg["content"]["comm_id"]
        msgs.append(reply)
        return msgs

    def send(self, data: dict[str, Any]) -> None:
        assert self.comm_id is not None, "the kernel opened no nbtrack comm"
        msg = self.kc.session.msg("comm_msg", {"comm_id": self.comm_id, "data": data})
        self.kc.shell_channel.send(msg)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def _track_in_kernel(root: Path, nb_path: Path) -> list[dict[str, Any]]:
    """Every cell of the corpus run in a real kernel; the panel sends the path and unsaved content."""
    kernel = _Kernel(root, nb_path, ENV)
    try:
        kernel.run("%load_ext nbtrack")
        tags = f"--tag api_key={S['tag-api-key']} --tag smtp_pw={S['tag-pw-suffix']}"
        tags += f" --tag deploy={S['tag-gitlab-shaped']}"
        out = kernel.run(f"%track start --experiment corpus {tags}")
        for cell in KERNEL_CELLS:
            out += kernel.run(cell)
        live = json.loads(nb_path.read_text())
        live["cells"].append(
            {"cell_type": "code", "id": "unsaved", "metadata": {}, "execution_count": None, "outputs": [],
             "source": f"client = Anthropic(api_key={S['live-unsaved-anthropic-key']!r})"}
        )  # fmt: skip
        kernel.send({"type": "path", "path": nb_path.name, "abs_path": str(nb_path)})
        kernel.send({"type": "live", "path": nb_path.name, "cell_id": None, "notebook": live})
        kernel.run("1 + 1")  # the comm messages are handled before this cell
        out += kernel.run("%track stop")
        return out
    finally:
        kernel.close()


def _track_with_papermill(root: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """A real ``papermill`` process with secret parameters on its command line."""
    papermill = str(Path(sys.executable).with_name("papermill"))
    argv = [
        papermill, "pm.ipynb", str(tmp / "pm-out.ipynb"),
        "-p", "token", S["papermill-p-token"], "-p", "db_password", S["papermill-p-db-password"],
        "-r", "api_key", S["papermill-r-api-key"], "-y", f"webhook_secret: {S['papermill-y-webhook-secret']}",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "NBTRACK_PAPERMILL"} | {"PWD": str(root)}
    return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=600)


@dataclass
class Planted:
    base: Path
    root: Path
    kernel_run: str
    pm_run: str
    kernel_output: list[dict[str, Any]]
    reports: dict[str, bytes]
    replay: dict[str, Any]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planted]:
    base = tmp_path_factory.mktemp("corpus")
    with pytest.MonkeyPatch.context() as mp:
        for name in (
            "MLFLOW_TRACKING_URI",
            "NBTRACK_TRACKING_URI",
            "MLFLOW_EXPERIMENT_NAME",
            "NBTRACK_CONFIG",
        ):
            mp.delenv(name, raising=False)
        mp.setenv("JUPYTER_DATA_DIR", str(base / "jupyter-data"))
        mp.setenv("JUPYTER_CONFIG_DIR", str(base / "jupyter-config"))
        mp.setenv("IPYTHONDIR", str(base / "ipython"))
        mp.setenv("DVC_NO_ANALYTICS", "1")
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        yield _plant(base)


def _plant(base: Path) -> Planted:
    from nbtrack.cli import main

    root = make_project(base / "root" / "proj", rows=50)
    nb_path = root / "corpus.ipynb"
    metadata = {
        "service": {"api_key": S["notebook-metadata-api-key"], "region": "eu-west-1"},
        "auth": {"client_secret": S["notebook-metadata-client-secret"]},
    }
    cell_meta = {1: {"db": {"password": S["cell-metadata-password"], "host": "db.internal"}}}
    _write_nb(nb_path, ["%load_ext nbtrack", *KERNEL_CELLS], metadata, cell_meta)
    _write_nb(root / "pm.ipynb", PM_CELLS, {}, {})
    _plant_files(root)
    kernel_output = _track_in_kernel(root, nb_path)
    pm = _track_with_papermill(root, base)
    assert pm.returncode == 0, pm.stderr[-3000:]
    client = store_client(root)
    runs = {r.data.tags.get("mlflow.source.name"): r.info.run_id for r in all_runs(client)}
    assert set(runs) >= {"corpus.ipynb", "pm.ipynb"}, runs
    reports = {"replay.html": base / "replay.html", "replay.xml": base / "replay.xml"}
    code = main(["--project", str(root), "replay", runs["pm.ipynb"], "--html", str(reports["replay.html"]),
                 "--junit", str(reports["replay.xml"]), "--json", "--allow-uncommitted"])  # fmt: skip
    assert code in (0, 1, 2, 3, 4, 5)
    replay = {"code": code}
    return Planted(
        base, root, runs["corpus.ipynb"], runs["pm.ipynb"], kernel_output,
        {name: p.read_bytes() for name, p in reports.items() if p.exists()}, replay,
    )  # fmt: skip


# --- scanning ------------------------------------------------------------------------------------
def _forms_of(secret: str) -> list[bytes]:
    """The secret as raw bytes and in the encodings a store or a response may give it."""
    forms = {secret, json.dumps(secret)[1:-1], quote(secret, safe=""), html.escape(secret)}
    out = [f.encode() for f in forms]
    out.append(base64.b64encode(secret.encode()))
    return out


def _leaks(blob: bytes) -> list[str]:
    return [f.id for f in FORMS if any(form in blob for form in _forms_of(f.secret))]


def _stored_files(root: Path) -> dict[str, bytes]:
    store = root / ".nbtrack"
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in store.rglob("*") if p.is_file()}


# --- the tests -----------------------------------------------------------------------------------
def test_the_corpus_is_broad_and_covers_every_channel() -> None:
    assert len(FORMS) >= 60
    assert len({f.id for f in FORMS}) == len(FORMS)
    assert len({f.secret for f in FORMS}) == len(FORMS)
    channels = {f.channel.split(":")[0] for f in FORMS}
    assert channels >= {"env", "cell", "output", "traceback", "tag", "%env", "metadata", "live",
                        "papermill argv", "untracked file", ".dvc/config edit", "YAML edit",
                        ".properties edit"}  # fmt: skip
    assert all(len(f.secret) >= 12 for f in FORMS)


def test_every_form_was_really_planted(planted: Planted) -> None:
    # the kernel saw the secrets: outputs and tracebacks carry them before nbtrack stores anything
    shown = json.dumps(planted.kernel_output, default=str)
    for form_id in ("output-printed-github-token", "traceback-stripe-in-message"):
        assert S[form_id] in shown, form_id
    assert "\\u001b[" in shown  # tracebacks are ANSI-coloured
    assert f"env: SERVICE_PASSPHRASE={S['env-magic-passphrase']}" in shown
    status = git(planted.root, "status", "--porcelain", "--untracked-files=all")
    for path in (".dvc/config", "config/app.yaml", "conf/db.properties", "kaggle.json", ".docker/config.json",
                 "keys/deploy.ppk", "notes.txt", ".netrc", "deploy/id_rsa", ".npmrc",
                 "prod.env"):  # fmt: skip
        assert path in str(status), path


def test_no_planted_secret_in_any_stored_byte(planted: Planted) -> None:
    files = _stored_files(planted.root)
    assert any(name.endswith("mlflow.db") for name in files)
    names = {name.rsplit("/", 1)[-1] for name in files}
    assert {"snapshot.json", "notebook.ipynb", "history.ipynb", "notebook.live.ipynb", "git.diff"} <= names
    leaked = {name: _leaks(data) for name, data in files.items()}
    assert {name: ids for name, ids in leaked.items() if ids} == {}
    assert planted.reports, "the replay wrote no report"
    assert {name: _leaks(data) for name, data in planted.reports.items() if _leaks(data)} == {}


def test_what_is_not_secret_survives(planted: Planted) -> None:
    from mlflow.tracking import MlflowClient

    client: MlflowClient = store_client(planted.root)
    run = client.get_run(planted.kernel_run)
    assert run.data.tags["api_key"] == run.data.tags["smtp_pw"] == "[REDACTED]"
    assert run.data.metrics == {"rows": 3.0}
    files = _stored_files(planted.root)
    diff = next(
        data
        for name, data in files.items()
        if name.endswith(f"{planted.kernel_run}/artifacts/nbtrack/git.diff")
    )
    assert b"def double(x)" in diff  # the ordinary untracked file is kept
    snap = json.loads(
        next(
            d for n, d in files.items() if n.endswith(f"{planted.kernel_run}/artifacts/nbtrack/snapshot.json")
        )
    )
    skipped = {s["path"] for s in snap["sections"]["git"]["data"]["diff"]["untracked_skipped"]}
    assert skipped >= {
        "kaggle.json",
        ".docker/config.json",
        "keys/deploy.ppk",
        "notes.txt",
        ".netrc",
        "deploy/id_rsa",
    }
    pm_snap = json.loads(
        next(d for n, d in files.items() if n.endswith(f"{planted.pm_run}/artifacts/nbtrack/snapshot.json"))
    )
    command = pm_snap["run"]["papermill"]["command"]
    assert "-p token '[REDACTED]'" in command and "pm.ipynb" in command


def test_a_lone_surrogate_keeps_the_three_notebook_artifacts(planted: Planted) -> None:
    files = _stored_files(planted.root)
    prefix = f"{planted.kernel_run}/artifacts/nbtrack/"
    mine = {n.split(prefix, 1)[1]: d for n, d in files.items() if prefix in n}
    for name in ("notebook.ipynb", "history.ipynb", "notebook.live.ipynb"):
        assert name in mine, sorted(mine)
        nb = json.loads(mine[name])  # valid JSON, the lone surrogate as an escape
        assert any("lone surrogate" in "".join(c["source"]) for c in nb["cells"]), name
    saved = json.loads(mine["notebook.ipynb"])
    assert any("\udcff" in "".join(c["source"]) for c in saved["cells"])  # kept, not replaced


# --- the REST responses of the server extension ----------------------------------------------------
@pytest.fixture
def jp_root_dir(planted: Planted) -> Path:
    return planted.root.parent


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbtrack": True}}}


async def test_no_planted_secret_in_any_rest_response(planted: Planted, jp_fetch: Any) -> None:
    bodies: dict[str, bytes] = {}
    for nb in ("proj/corpus.ipynb", "proj/pm.ipynb"):
        response = await jp_fetch("nbtrack", "runs", params={"notebook": nb})
        bodies[f"runs?notebook={nb}"] = response.body
    listed = json.loads(bodies["runs?notebook=proj/corpus.ipynb"])
    assert planted.kernel_run in json.dumps(listed)
    params = {"notebook": "proj/corpus.ipynb"}
    for run_id in (planted.kernel_run, planted.pm_run):
        response = await jp_fetch("nbtrack", "runs", run_id, params=params)
        bodies[f"runs/{run_id}"] = response.body
    response = await jp_fetch(
        "nbtrack", "diff", params={"a": planted.kernel_run, "b": planted.pm_run, **params}
    )
    bodies["diff"] = response.body
    assert all(bodies.values())
    assert {name: _leaks(body) for name, body in bodies.items() if _leaks(body)} == {}
