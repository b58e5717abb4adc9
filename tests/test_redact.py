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
