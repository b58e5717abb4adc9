"""The redaction policy against a corpus of realistic secret forms and of ordinary variables.

Token-shaped test values are assembled from pieces so that no complete credential-looking literal
sits in the source (secret scanners would flag the repository).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nbtrack.redact import (
    REDACTED,
    is_secret_name,
    looks_secret,
    redact_env,
    redact_text,
    redact_value,
    strip_url_credentials,
)

A36 = "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"  # 36 mixed characters to fill token bodies
AWS_ID = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS's documented example key id
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
GHP = "ghp_" + A36
GH_PAT = "github_pat_" + "11ABCDEFG0" + "_" + A36 + A36[:20]
GLPAT = "glpat-" + A36[:20]
SLACK = "xoxb-" + "1234567890-0987654321-" + A36[:24]
OPENAI = "sk-proj-" + A36 + A36
STRIPE = "sk_live_" + A36[:24]
GOOGLE = "AIza" + "Sy" + A36[:33]
GOOGLE_OAUTH = "ya29." + A36 + A36
HF = "hf_" + A36[:34]
DATABRICKS = "dapi" + "0123456789abcdef" * 2
JWT = "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0." + "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM_BODY = "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn" + "/ygWyF8PbnGy0AHB7MkcK2RQ"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCD" + "XJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
S3_SIG = "9f2b4c5d6e7f8a9b0c1d2e3f4a5b" + "6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b"
SAS_SIG = "Z3JhbnQtYWNjZXNz" + "LXNpZ25hdHVyZQ%3D%3D"


@dataclass(frozen=True)
class Case:
    """One secret: how it is met (``env``, ``value``, ``text`` or ``url``) and what must vanish."""

    id: str
    kind: str
    value: str
    secret: str
    name: str = "SOME_SETTING"


CORPUS = [
    Case("aws-key-id-in-text", "text", f"aws_access_key_id = {AWS_ID}\nregion = eu-west-1", AWS_ID),
    Case("aws-secret-env", "env", AWS_SECRET, AWS_SECRET, "AWS_SECRET_ACCESS_KEY"),
    Case("aws-session-token-env", "env", "IQoJb3JpZ2luX2VjEJr" + A36, A36, "AWS_SESSION_TOKEN"),
    Case("github-classic-value", "value", GHP, GHP, "CI_HELPER"),
    Case("github-fine-grained-text", "text", f"token: {GH_PAT}", GH_PAT),
    Case("gitlab-text", "text", f"GL={GLPAT} ./deploy.sh", GLPAT),
    Case("slack-bot-value", "value", SLACK, SLACK, "NOTIFIER"),
    Case("openai-text", "text", f"openai.api_key = '{OPENAI}'", OPENAI),
    Case("stripe-live-value", "value", STRIPE, STRIPE, "BILLING"),
    Case("google-api-key-text", "text", f"maps?key={GOOGLE}", GOOGLE),
    Case("google-oauth-text", "text", f"Authorization: Bearer {GOOGLE_OAUTH}", GOOGLE_OAUTH),
    Case("huggingface-text", "text", f"login(token='{HF}')", HF),
    Case("databricks-value", "value", DATABRICKS, DATABRICKS, "WORKSPACE"),
    Case("jwt-text", "text", f"Authorization: Bearer {JWT}", JWT),
    Case(
        "pem-private-key-text",
        "text",
        f"key:\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\nafter",
        PEM_BODY,
    ),
    Case(
        "pem-private-key-value",
        "value",
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n-----END OPENSSH PRIVATE KEY-----",
        PEM_BODY,
        "DEPLOY",
    ),
    Case(
        "azure-storage-connection-string",
        "value",
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURE_KEY};EndpointSuffix=core.windows.net",
        AZURE_KEY,
        "AZURE_STORAGE",
    ),
    Case(
        "sqlserver-connection-string",
        "value",
        "Server=tcp:db.example.net,1433;Database=app;User ID=svc;Password=Sql-Pa55word-77;",
        "Sql-Pa55word-77",
        "SQL_SERVER",
    ),
    Case(
        "postgres-url-env", "env", "postgresql://app:Pg-pa55-word@db:5432/app", "Pg-pa55-word", "DATABASE_URL"
    ),
    Case("postgres-url-at-in-password", "text", "engine = postgresql://app:p@ss-W0rd@db/app", "ss-W0rd"),
    Case("mysql-url-text", "text", "mysql+pymysql://root:My-sql-pw-42@127.0.0.1:3306/shop", "My-sql-pw-42"),
    Case(
        "mongodb-srv-url",
        "url",
        "mongodb+srv://admin:Mongo%40Pass-9@cluster0.abcde.mongodb.net/?retryWrites=true",
        "Mongo%40Pass-9",
    ),
    Case("redis-password-only-url", "url", "redis://:R3dis-secret@cache.internal:6379/0", "R3dis-secret"),
    Case("git-remote-basic-auth", "url", f"https://alice:{GHP}@github.com/org/repo.git", GHP),
    Case("gitlab-oauth2-remote", "url", f"https://oauth2:{GLPAT}@gitlab.com/grp/proj.git", GLPAT),
    Case(
        "s3-presigned-url",
        "url",
        "https://bucket.s3.amazonaws.com/data/train.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential={AWS_ID}%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z"
        f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={S3_SIG}",
        S3_SIG,
    ),
    Case(
        "azure-sas-url",
        "url",
        f"https://acct.blob.core.windows.net/c/b.parquet?sv=2022-11-02&sp=r&se=2030-01-01&sig={SAS_SIG}",
        SAS_SIG,
    ),
    Case(
        "netrc-entry", "text", "machine api.example.com login alice password Netrc-Pw-123\n", "Netrc-Pw-123"
    ),
    Case("db-password-env", "env", "hunter2", "hunter2", "DB_PASSWORD"),
    Case("github-token-env", "env", "gho_" + A36, A36, "GITHUB_TOKEN"),
    Case("hf-token-env", "env", HF, HF, "HF_TOKEN"),
    Case("pgpassword-glued-env", "env", "plain-words-pw", "plain-words-pw", "PGPASSWORD"),
    Case("mlflow-password-env", "env", "mlflow-pw", "mlflow-pw", "MLFLOW_TRACKING_PASSWORD"),
    Case("openai-key-env", "env", "not-shaped-like-a-key", "not-shaped-like-a-key", "OPENAI_API_KEY"),
    Case("azure-client-secret-env", "env", "Q~8Q~abc", "Q~8Q~abc", "AZURE_CLIENT_SECRET"),
    Case("jupyter-token-env", "env", "0123abcd", "0123abcd", "JUPYTER_TOKEN"),
    Case(
        "pip-index-with-credentials-env",
        "env",
        "https://build:Pypi-Pw-5@pypi.corp.example/simple",
        "Pypi-Pw-5",
        "PIP_INDEX_URL",
    ),
    Case("dotenv-line-text", "text", "DB_PASSWORD=DotEnv-Pw-8\nDEBUG=1\n", "DotEnv-Pw-8"),
    Case("libpq-conninfo-value", "value", "host=db port=5432 user=app password=Lib-pq-Pw-3 dbname=app",
         "Lib-pq-Pw-3", "PG_CONNINFO"),
    Case("libpq-conninfo-in-code", "text", "psycopg2.connect('dbname=app user=app password=Lib-pq-Pw-4')",
         "Lib-pq-Pw-4"),
    Case("slack-webhook-value", "value", "https://hooks.slack.com/services/T0ABCDEFG/B0ABCDEFGHI/" + A36[:24],
         A36[:24], "ALERTS"),
    Case("kaggle-key-env", "env", "0123456789abcdef0123456789abcdef", "0123456789abcdef", "KAGGLE_KEY"),
    Case("netrc-multiline-text", "text", "machine pypi.example.com\n  login build\n  password Netrc-Pw-9\n",
         "Netrc-Pw-9"),
    Case("password-literal-in-code", "text", 'connect(host="db", password="Typed-Pw-1")', "Typed-Pw-1"),
    Case("token-as-url-user", "url", f"https://{GHP}@github.com/org/repo.git", GHP),
]  # fmt: skip


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_secret_never_survives(case: Case) -> None:
    if case.kind == "env":
        out = redact_env({case.name: case.value, "HOME": "/home/u"})
        assert out[case.name] != case.value
        rendered = json.dumps(out)
    elif case.kind == "value":
        assert not is_secret_name(case.name), "the value alone must give the secret away"
        rendered = redact_value(case.name, case.value)
        assert rendered == REDACTED
        assert looks_secret(case.value)
    elif case.kind == "text":
        rendered = redact_text(case.value)
        assert looks_secret(case.value)
    else:
        stripped = strip_url_credentials(case.value)
        assert case.secret not in stripped
        assert case.value.split("://")[1].split("/")[0].rsplit("@")[-1] in stripped  # host kept
        rendered = stripped + "\n" + redact_text(f"fetch {case.value} now") + redact_value("U", case.value)
    assert case.secret not in rendered


def test_corpus_is_broad() -> None:
    assert len(CORPUS) >= 20
    assert {c.kind for c in CORPUS} == {"env", "value", "text", "url"}


ORDINARY = {
    "PATH": "/work/.venv/bin:/usr/local/bin:/usr/bin:/bin",
    "HOME": "/home/alice",
    "PWD": "/home/alice/project/notebooks",
    "OLDPWD": "/home/alice",
    "LANG": "en_US.UTF-8",
    "LC_ALL": "C.UTF-8",
    "SHELL": "/bin/bash",
    "USER": "alice",
    "TERM": "xterm-256color",
    "HOSTNAME": "gpu-box-3",
    "VIRTUAL_ENV": "/home/alice/project/.venv",
    "CONDA_DEFAULT_ENV": "base",
    "JPY_SESSION_NAME": "/home/alice/project/notebooks/risk-model-experiments-2024.ipynb",
    "JPY_PARENT_PID": "4242",
    "PYTHONPATH": "/home/alice/project/src",
    "PYTHONHASHSEED": "0",
    "KEYWORDS": "churn,baseline",
    "AUTHOR": "Alice Example",
    "GIT_AUTHOR_NAME": "Alice Example",
    "XAUTHORITY": "/home/alice/.Xauthority",
    "SSH_AUTH_SOCK": "/tmp/ssh-XXXX/agent.1",
    "PASSWORD_STORE_DIR": "/home/alice/.password-store",
    "TOKENIZERS_PARALLELISM": "false",
    "CUDA_VISIBLE_DEVICES": "0,1",
    "OMP_NUM_THREADS": "4",
    "HF_HOME": "/data/hf",
    "MLFLOW_TRACKING_URI": "http://localhost:5000",
    "MLFLOW_EXPERIMENT_NAME": "churn",
    "JUPYTER_CONFIG_DIR": "/home/alice/.jupyter",
    "DVC_NO_ANALYTICS": "1",
    "TASK_NAME": "disk-usage-report-for-the-data-team",
}


def test_ordinary_variables_are_kept() -> None:
    assert redact_env(ORDINARY) == ORDINARY
    for name in ORDINARY:
        assert not is_secret_name(name), name


def test_ordinary_text_is_unchanged() -> None:
    text = (
        "See https://example.com/docs?page=2&lang=en and git@github.com:org/repo.git; "
        "the risk-model-experiments-2024 task-runner-for-big-data-jobs, skipping sk-short.\n"
        "conn = psycopg2.connect(host=h, password=os.environ['PGPASSWORD'])"
    )
    assert redact_text(text) == text
    assert strip_url_credentials("git@github.com:org/repo.git") == "git@github.com:org/repo.git"


def test_extra_patterns_are_case_insensitive_globs() -> None:
    env = {"MYCO_ENDPOINT": "x", "myco_other": "y", "OTHER": "z"}
    assert redact_env(env, ["myco_*"]) == {"MYCO_ENDPOINT": REDACTED, "OTHER": "z", "myco_other": REDACTED}


# -- properties ---------------------------------------------------------------------------------

_SCHEMES = st.sampled_from(["https", "http", "ssh", "postgresql", "mysql", "mongodb+srv", "redis", "s3"])
_USER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=0, max_size=12)
_HOST = st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z]{2,5}){1,2}", fullmatch=True)
# Password bodies as people really type them, including characters that should be %-encoded.
_PW_BODY = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#[]"),
    min_size=1,
    max_size=24,
)


@settings(max_examples=300, deadline=None)
@given(scheme=_SCHEMES, user=_USER, body=_PW_BODY, host=_HOST)
@example(scheme="postgresql", user="app", body="p@ss:w0rd@x", host="db.example.com")
def test_strip_url_credentials_never_returns_the_password(
    scheme: str, user: str, body: str, host: str
) -> None:
    # Uppercase markers at both ends never occur in the lowercase user, host and path, so any
    # surviving piece of the password (its head or its tail) is seen.
    password = "PW" + body + "QZ"
    for pw in (quote(password, safe=""), password):  # well-formed, and typed raw with @ : etc.
        url = f"{scheme}://{user}:{pw}@{host}/team/repo.git"
        stripped = strip_url_credentials(url)
        assert stripped.endswith(f"{host}/team/repo.git")
        for out in (stripped, redact_text(f"remote = {url}\n"), redact_value("REMOTE", url)):
            assert "PW" not in out and "QZ" not in out, out


_FRAGMENTS = st.sampled_from(
    [c.value for c in CORPUS if c.kind in ("text", "url", "value")]
    + ["plain words", "https://example.com/a?b=c", "\n", " ", "PATH=/usr/bin", REDACTED]
)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.one_of(_FRAGMENTS, st.text(max_size=20)), max_size=6))
def test_redaction_is_idempotent(parts: list[str]) -> None:
    # Joined by newlines: glued together, one token's tail could swallow the next one's start,
    # which text never does.
    text = "\n".join(parts)
    once = redact_text(text)
    assert redact_text(once) == once
    assert not any(c.secret in once for c in CORPUS if c.kind in ("text", "url") and c.value in text)
    env = {f"V{i}": p for i, p in enumerate(parts)} | {"API_TOKEN": text}
    redacted = redact_env(env)
    assert redact_env(redacted) == redacted


@settings(max_examples=200, deadline=None)
@given(scheme=_SCHEMES, user=_USER, body=_PW_BODY, host=_HOST)
def test_strip_url_credentials_is_idempotent(scheme: str, user: str, body: str, host: str) -> None:
    url = f"{scheme}://{user}:{quote(body, safe='')}@{host}/p?token={quote(body, safe='')}&page=1"
    once = strip_url_credentials(url)
    assert strip_url_credentials(once) == once


def test_urls_without_credentials_are_returned_unchanged() -> None:
    for url in ("sqlite:////tmp/proj/.nbtrack/mlflow.db", "file:///a/b", "https://h/x?a=1&b=2"):
        assert strip_url_credentials(url) == url


def test_only_the_secret_part_goes() -> None:
    netrc = redact_text("machine api.example.com login alice password Netrc-Pw-123")
    assert netrc == f"machine api.example.com login alice password {REDACTED}"
    assert redact_text("host=db user=app password=x1y2 dbname=app") == (
        f"host=db user=app password={REDACTED} dbname=app"
    )
    hook = redact_text("https://hooks.slack.com/services/T0ABCDEFG/B0ABCDEFGHI/" + A36[:24])
    assert hook == f"https://hooks.slack.com/services/{REDACTED}"


def test_a_plain_user_is_kept_a_password_or_token_is_not() -> None:
    assert (
        strip_url_credentials("ssh://git@git.example.com/team/repo.git")
        == "ssh://git@git.example.com/team/repo.git"
    )
    assert redact_text("ssh://git@host/x.git") == "ssh://git@host/x.git"
    assert strip_url_credentials("ssh://git:pw@host/x.git") == "ssh://host/x.git"
    assert strip_url_credentials("https://tok3n-value@example.com/x.git") == "https://example.com/x.git"
    assert strip_url_credentials("https://git@example.com/x.git") == "https://git@example.com/x.git"


def test_extra_value_patterns_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbtrack.config import NbtrackConfig
    from nbtrack.errors import ConfigError
    from nbtrack.redact import Redactor, policy

    monkeypatch.setenv("NBTRACK_REDACT_VALUES", '["corp-[0-9a-f]{12}", "ticket=(?P<secret>\\\\w+)"]')
    redactor = policy(NbtrackConfig())
    assert redactor.text("id corp-0123456789ab, ticket=T1234 ok") == f"id {REDACTED}, ticket={REDACTED} ok"
    assert redactor.env({"CORP_ID": "corp-0123456789ab"}) == {"CORP_ID": REDACTED}
    assert redact_text("id corp-0123456789ab") == "id corp-0123456789ab"  # only where configured
    with pytest.raises(ConfigError, match="NBTRACK_REDACT_VALUES"):
        Redactor(value_patterns=["(unclosed"])


def test_notebook_redaction_keeps_binary_outputs_and_reports_cells() -> None:
    from nbtrack.redact import Redactor

    png = "iVBORw0KGgo" + "AIza" + "B" * 35  # base64 that happens to look like a Google key
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": "# Title", "metadata": {}},
            {
                "cell_type": "code",
                "source": ["x = 1\n", 'token = "abc-123"\n'],
                "outputs": [{"output_type": "display_data", "data": {"image/png": png, "text/plain": GHP}}],
                "metadata": {},
            },
        ],
        "metadata": {"papermill": {"parameters": {"db": "postgresql://u:Pw-9@db/x"}}},
    }
    safe, findings = Redactor().notebook(nb)
    cell = safe["cells"][1]
    assert cell["source"] == ["x = 1\n", f'token = "{REDACTED}"\n']
    assert cell["outputs"][0]["data"] == {"image/png": png, "text/plain": REDACTED}
    assert safe["metadata"]["papermill"]["parameters"]["db"] == "postgresql://db/x"
    assert findings == [
        {"cell": 1, "where": "source", "kinds": ["secret-literal"]},
        {"cell": 1, "where": "outputs", "kinds": ["github-token"]},
        {"cell": None, "where": "metadata", "kinds": ["url-credentials"]},
    ]
    assert Redactor().notebook(safe)[1] == []  # nothing left to find


# -- issue 16: the channels the value rules alone missed ---------------------------------------------
H36 = "0123456789abcdef" * 4  # hex to fill token bodies
TOKEN_SHAPES = {
    "sendgrid": "SG." + A36[:22] + "." + A36 + A36[:7],
    "mailgun": "key-" + H36[:32],
    "mailchimp": H36[:32] + "-us14",
    "twilio-api-key": "SK" + H36[:32],
    "telegram-bot": "1234567890:A" + A36[:34],
    "vault": "hvs." + A36[:24],
    "digitalocean": "dop_v1_" + H36,
    "shopify": "shpat_" + H36[:32],
    "linear": "lin_api_" + A36 + A36[:4],
    "newrelic": "NRAK-" + A36[:27].upper(),
    "grafana": "glsa_" + A36[:32] + "_" + H36[:8],
    "age": "AGE-SECRET-KEY-1" + (A36 + A36).upper()[:58],
    "gitlab-deploy": "gldt-" + A36[:20],
    "aws-sts-key-id": "ASIA" + "IOSFODNN7EXAMPLE",
    "azure-ad-client-secret": "abc8Q~" + A36[:31],
}


@pytest.mark.parametrize("name", sorted(TOKEN_SHAPES))
def test_token_shapes_typed_in_a_cell_are_redacted(name: str) -> None:
    token = TOKEN_SHAPES[name]
    out = redact_text(f"client = Client({token!r})\n")
    assert token not in out and REDACTED in out, out
    assert redact_value("NEUTRAL", token) == REDACTED


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("hook = 'https://acme.webhook.office.com/webhookb2/" + H36[:8] + "@" + H36[:24] + "/Incoming'",
         H36[:24]),
        ("curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA==' https://h", "dXNlcjpwYXNzd29yZA"),
        ('headers = {"Authorization": "Bearer ' + A36 + '"}', A36),
        ("curl -u alice:Cu-rl-Pw-77 https://api.example.com", "Cu-rl-Pw-77"),
        ("-Xmx2g -Djavax.net.ssl.keyStorePassword=Jks-Pw-1 -Dfile.encoding=UTF-8", "Jks-Pw-1"),
        ("--conf spark.hadoop.fs.s3a.secret.key=" + AWS_SECRET + " pyspark-shell", AWS_SECRET),
        ("fs.azure.account.key.acct.blob.core.windows.net=" + AZURE_KEY, AZURE_KEY),
        ("%env SERVICE_PASSPHRASE=open-sesame-42", "open-sesame-42"),
        ("%set_env DEPLOY_PW=Dep-Pw-9", "Dep-Pw-9"),
        ("%env NOTIFY_TOKEN Tok-en-55", "Tok-en-55"),
        ("env: SERVICE_PASSPHRASE=open-sesame-42\n", "open-sesame-42"),
        ("get_ipython().run_line_magic('env', 'SMTP_PW=Smtp-Pw-3')", "Smtp-Pw-3"),
        ("export SMTP_PW=Smtp-Pw-4 && send", "Smtp-Pw-4"),
        ("%track start --tag api_key=Tag-Key-1 --tag team=churn", "Tag-Key-1"),
        ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQVYBGX" + A36 + "\n-----END PGP PRIVATE KEY BLOCK-----",
         A36),
        ("PuTTY-User-Key-File-3: ssh-ed25519\nPrivate-Lines: 1\n" + A36 + "\nPrivate-MAC: " + H36, A36),
        ("//registry.npmjs.org/:_authToken=" + H36[:36], H36[:36]),
    ],
)  # fmt: skip
def test_named_and_shaped_secrets_in_text(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out, out
    assert redact_text(out) == out


def test_names_that_mark_secrets() -> None:
    for name in ("DB_PASSPHRASE", "GPG_PASSPHRASE", "SMTP_PW", "PW_SMTP", "fs.s3a.secret.key"):
        assert is_secret_name(name), name
    env = {
        "JAVA_TOOL_OPTIONS": "-Dx.password=Jvm-Pw-1",
        "_JAVA_OPTIONS": "-Xmx1g",
        "SPARK_HOME": "/opt/spark",
    }
    assert redact_env(env) == {**env, "JAVA_TOOL_OPTIONS": REDACTED}


def test_ordinary_code_and_commands_are_kept() -> None:
    for text in (
        "self.password = password\n",
        "docker run -u 1000:1000 image\n",
        "%env CUDA_VISIBLE_DEVICES=0\n",
        "env: OMP_NUM_THREADS=4\n",
        'headers = {"Authorization": f"Bearer {token}"}\n',
        "%track start --tag team=churn --tag max_tokens=512\n",
        "-Xmx2g -Dfile.encoding=UTF-8 -Dspark.driver.memory=4g\n",
        "scores = model.predict(X_test)\nprint(f'auc={auc:.3f}')\n",
    ):
        assert redact_text(text) == text, text


def test_tracebacks_are_scanned_without_their_colour_codes() -> None:
    # IPython colours each token of the failing frame's source: the codes split `api_secret = "..."`.
    frame = (
        "\x1b[0;31mRuntimeError\x1b[0m                              Traceback (most recent call last)\n"
        "Cell \x1b[0;32mIn[7], line 3\x1b[0m\n"
        "\x1b[1;32m      1\x1b[0m api_secret \x1b[38;5;241m=\x1b[39m \x1b[38;5;124m'\x1b[39m"
        "\x1b[38;5;124mTrace-Pw-5"
        "\x1b[39m\x1b[38;5;124m'\x1b[39m\n"
    )
    out = redact_text(frame)
    assert "Trace-Pw-5" not in out and REDACTED in out
    plain = "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"
    assert redact_text(plain) == plain  # nothing secret: the colours stay


def test_papermill_command_lines_keep_names_not_values() -> None:
    from nbtrack.redact import Redactor

    argv = ["papermill", "nb.ipynb", "out.ipynb", "-p", "token", "T0k-en-1", "-p", "alpha", "0.5",
            "-r", "api_key", "Raw-Key-2", "-y", "webhook_secret: Yaml-Sec-3", "-b", "c2VjcmV0OiB4",
            "--password=Opt-Pw-4", "--cwd", "/work"]  # fmt: skip
    out = Redactor().argv(argv)
    assert not any(
        s in " ".join(out) for s in ("T0k-en-1", "Raw-Key-2", "Yaml-Sec-3", "c2VjcmV0", "Opt-Pw-4")
    )
    assert out[:5] == argv[:5] and out[6:9] == argv[6:9] and out[-2:] == ["--cwd", "/work"]


def test_config_files_lose_values_of_secret_named_keys() -> None:
    from nbtrack.redact import Redactor, is_credential_file

    redactor = Redactor()
    dvc = "['remote \"dav\"']\n    url = https://dav.example.com/store\n    password = Dvc-Pw-6\n"
    yaml_text = "db:\n  host: db.internal\n  api_key: Yaml-Key-7\n  max_tokens: 512\n"
    props = "db.host=db\nspring.datasource.password = Spring-Pw-8\n"
    for path, text, secret, kept in (
        (".dvc/config", dvc, "Dvc-Pw-6", "url = https://dav.example.com/store"),
        ("conf/app.yaml", yaml_text, "Yaml-Key-7", "max_tokens: 512"),
        ("conf/db.properties", props, "Spring-Pw-8", "db.host=db"),
    ):
        out, kinds = redactor.file_text(path, text)
        assert secret not in out and kept in out and kinds, path
    assert redactor.file_text("train.py", "api_key: str = field()\n")[1] == []  # code, not config
    for path in ("kaggle.json", ".docker/config.json", "home/.docker/config.json", "keys/deploy.ppk",
                 "deploy/id_rsa", ".netrc", ".aws/credentials", "secring.gpg"):  # fmt: skip
        assert is_credential_file(path), path
    for path in ("config.json", "src/docker/config.py", "data/keys.csv", "train.ipynb"):
        assert not is_credential_file(path), path


def test_secret_named_keys_in_tags_metadata_and_parameters() -> None:
    from nbtrack.redact import Redactor

    redactor = Redactor()
    assert redactor.tags({"api_key": "abc", "smtp_pw": "x", "team": "churn", "max_tokens": "512"}) == {
        "api_key": REDACTED, "smtp_pw": REDACTED, "team": "churn", "max_tokens": "512"
    }  # fmt: skip
    cell = {"cell_type": "code", "source": "1", "outputs": [], "metadata": {"db": {"password": "p"}}}
    nb = {"cells": [cell], "metadata": {"service": {"client_secret": "s", "region": "eu"}}}
    safe, findings = redactor.notebook(nb)
    assert safe["cells"][0]["metadata"] == {"db": {"password": REDACTED}}
    assert safe["metadata"]["service"] == {"client_secret": REDACTED, "region": "eu"}
    assert {f["where"] for f in findings} == {"metadata"}
    # keyed hashes of the environment stay comparable
    env_section = {"env_hashes": {"key_id": "k", "hashes": {"GITHUB_TOKEN": H36[:32]}}}
    assert redactor.tree(env_section) is env_section


def test_a_lone_surrogate_is_written_as_an_escape() -> None:
    from nbtrack.capture.nbfile import notebook_bytes

    nb = {"cells": [{"cell_type": "code", "source": "odd = '\udcff'", "outputs": []}], "nbformat": 4}
    raw = notebook_bytes(nb)
    assert b"\\udcff" in raw and json.loads(raw) == nb
    assert notebook_bytes({"cells": [], "name": "café"}).decode() == '{\n "cells": [],\n "name": "café"\n}\n'
