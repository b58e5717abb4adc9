"""Property tests (hypothesis): the snapshot schema, the ``%track`` argument parser, the redaction.

Kept fast (modest ``max_examples``, no deadline on a shared 2-core machine); they run in the default
test run.
"""

from __future__ import annotations

import json
import shlex
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError as IPythonUsageError

from nbtrack.magics import _cell_parser, _parser, _split, _tags
from nbtrack.models import SCHEMA_VERSION, Section, Snapshot
from nbtrack.redact import Redactor, redact_text

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- the snapshot schema -------------------------------------------------------------------------

_TEXT = st.text(max_size=12)
# What JSON carries: no NaN/inf (not equal to themselves, and not JSON), any other finite float.
_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _TEXT
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_SECTIONS = st.dictionaries(
    _TEXT,
    st.builds(
        Section,
        name=st.just(""),
        status=st.sampled_from(["ok", "absent", "error"]),
        reason=st.none() | _TEXT,
        data=st.dictionaries(_TEXT, _JSON, max_size=4),
        duration_ms=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    ),
    max_size=5,
)


@FAST
@given(run=st.dictionaries(_TEXT, _JSON, max_size=5), sections=_SECTIONS, version=_TEXT)
def test_snapshot_round_trips_through_json(
    run: dict[str, Any], sections: dict[str, Section], version: str
) -> None:
    for name, section in sections.items():
        section.name = name
    snap = Snapshot(run=run, sections=sections, nbtrack_version=version)
    back = Snapshot.from_json(snap.to_json())
    assert back == snap
    assert back.to_json() == snap.to_json()  # a stable document: replay and diff read the same bytes


@FAST
@given(value=_JSON)
def test_any_other_document_is_a_snapshot_error(value: Any) -> None:
    from nbtrack.errors import SnapshotError

    # Given a document of the right version whose run or sections are anything at all
    for doc in (
        {"schema_version": SCHEMA_VERSION, "run": value, "sections": {}},
        {"schema_version": SCHEMA_VERSION, "run": {}, "sections": value},
        {"schema_version": SCHEMA_VERSION, "run": {}, "sections": {"data": value}},
        {"schema_version": SCHEMA_VERSION, "run": {}, "sections": {"data": {"duration_ms": value}}},
        value,
    ):
        # Then reading it gives a snapshot or a SnapshotError, never another exception
        try:
            Snapshot.from_json(json.dumps(doc))
        except SnapshotError as exc:
            assert "\n" not in str(exc)


@FAST
@given(version=st.integers() | _TEXT | st.none())
def test_snapshot_of_another_schema_version_is_refused(version: Any) -> None:
    from nbtrack.errors import SnapshotError

    if version == SCHEMA_VERSION:
        return
    text = json.dumps({"schema_version": version, "run": {}, "sections": {}})
    with pytest.raises(SnapshotError, match="schema version"):
        Snapshot.from_json(text)


# --- the %track argument parser ------------------------------------------------------------------

# Any printable text, quoted for the shell as a user would (spaces, quotes, '=' and '-' included).
_VALUE = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=15)
_KEY = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="="), min_size=1, max_size=8
)


def _option(flag: str, value: str) -> str:
    # --flag=value: also a value starting with "-" is taken as the value, as argparse documents.
    return shlex.quote(f"--{flag}={value}")


@FAST
@given(
    experiment=st.none() | _VALUE,
    name=st.none() | _VALUE,
    notebook=st.none() | _VALUE,
    tags=st.dictionaries(_KEY, _VALUE, max_size=3),
    cell=st.booleans(),
)
def test_start_options_parse_to_what_was_given(
    experiment: str | None, name: str | None, notebook: str | None, tags: dict[str, str], cell: bool
) -> None:
    words = [] if cell else ["start"]
    for flag, value in (("experiment", experiment), ("name", name), ("notebook", notebook)):
        if value is not None:
            words.append(_option(flag, value))
    words += [_option("tag", f"{k}={v}") for k, v in tags.items()]
    line = " ".join(words)
    args = (_cell_parser() if cell else _parser()).parse_args(_split(line))
    assert (args.experiment, args.name, args.notebook) == (experiment, name, notebook)
    assert _tags(args.tag) == tags
    if not cell:
        assert args.verb == "start"


_WORDS = st.sampled_from(
    ["start", "stop", "status", "show", "--experiment", "--name", "-e", "-n", "-t", "--tag", "--notebook",
     "--bogus", "-x", "'", '"', "a=b", "=", "--", "-", "x y", "\\", "--tag=", "launch", "\n", "--name=\n"]
)  # fmt: skip


@FAST
@given(line=st.lists(_WORDS | st.text(max_size=10), max_size=6).map(" ".join) | st.text(max_size=40))
@example(line="start --bogus 'a\nb'")
@example(line="launch\nnow")
def test_garbage_is_a_one_line_usage_error(line: str) -> None:
    for parser in (_parser(), _cell_parser()):
        try:
            args = parser.parse_args(_split(line))
            _tags(getattr(args, "tag", None) or [])
        except IPythonUsageError as exc:
            message = str(exc)
            assert message.startswith("%track") and "\n" not in message, message
        # Any other exception fails the test: argparse must never exit or print.


# --- redaction -----------------------------------------------------------------------------------

_B64 = string.ascii_letters + string.digits + "+/"
_ALNUM = string.ascii_letters + string.digits


def _s(alphabet: str, n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=n, max_size=n)


# (the text that holds the secret, the secret part that must vanish)
_SECRETS: st.SearchStrategy[tuple[str, str]] = st.one_of(
    _s(string.ascii_uppercase + string.digits, 16).map(lambda b: ("AKIA" + b,) * 2),
    _s(_ALNUM, 36).map(lambda b: ("ghp_" + b,) * 2),
    _s(_ALNUM, 60).map(lambda b: ("github_pat_11" + b,) * 2),
    _s(_ALNUM, 20).map(lambda b: ("glpat-" + b,) * 2),
    _s(_ALNUM, 24).map(lambda b: ("xoxb-1234567890-" + b, b)),
    _s(_ALNUM, 24).map(lambda b: ("https://hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D4/" + b, b)),
    _s(_ALNUM, 40).map(lambda b: ("sk-proj-" + b,) * 2),
    _s(_ALNUM, 24).map(lambda b: ("sk_live_" + b,) * 2),
    _s(_ALNUM, 34).map(lambda b: ("hf_" + b,) * 2),
    _s(_ALNUM, 30).map(lambda b: ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0." + b, b)),
    _s(_B64, 64).map(lambda b: (f"-----BEGIN PRIVATE KEY-----\n{b}\n-----END PRIVATE KEY-----", b)),
    _s(_B64, 86).map(lambda b: (f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={b}==;", b)),
    _s(_ALNUM, 12).map(lambda p: (f"https://alice:PW{p}@git.example.com/org/repo.git", "PW" + p)),
    _s(_ALNUM, 12).map(lambda p: (f"postgresql://app:PW{p}@db:5432/app", "PW" + p)),
    _s(_ALNUM, 12).map(lambda p: (f"host=db user=app password=PW{p} dbname=app", "PW" + p)),
    _s(_ALNUM, 12).map(lambda p: (f"machine h.example.com login bob password PW{p}", "PW" + p)),
    _s(_ALNUM, 12).map(lambda p: (f'db_password = "PW{p}"', "PW" + p)),
    _s(_ALNUM, 12).map(lambda p: (f"Server=tcp:db;Database=app;User ID=svc;Password=PW{p};", "PW" + p)),
)
# Surroundings: any text, kept apart from the secret by a separator a real document would have.
_AROUND = st.text(max_size=30)
_SEP = st.sampled_from([" ", "\n", "\t", " (", ") ", "; ", ", "])


@FAST
@given(secret=_SECRETS, before=_AROUND, after=_AROUND, sep1=_SEP, sep2=_SEP)
def test_a_secret_in_any_surroundings_never_survives(
    secret: tuple[str, str], before: str, after: str, sep1: str, sep2: str
) -> None:
    text, core = secret
    assume(core not in before + after)
    out = redact_text(before + sep1 + text + sep2 + after)
    assert core not in out


@FAST
@given(parts=st.lists(_SECRETS.map(lambda s: s[0]) | st.text(max_size=25), max_size=5), sep=_SEP)
def test_redaction_is_idempotent(parts: list[str], sep: str) -> None:
    once = redact_text(sep.join(parts))
    assert redact_text(once) == once


# Ordinary notebook text: code, paths, URLs without credentials, words that merely mention secrets.
_ORDINARY = st.sampled_from(
    [
        "x = 1", "df = pd.read_csv('data/churn.csv')", "print(df.head())", "model.fit(X, y)",
        "https://example.com/docs?page=2&lang=en", "git@github.com:org/repo.git",
        "ssh://git@git.example.com/team/repo.git", "s3://bucket/dvc", "sqlite:////tmp/p/.nbtrack/mlflow.db",
        "risk-model-experiments-2024", "sk-short", "max_tokens = 512", 'tokenizer = "bert-base-uncased"',
        "conn = connect(host=h, password=os.environ['PGPASSWORD'])", "password = getpass()",
        "3f2a9c01d4e5b6a7c8d9e0f1a2b3c4d5", "/home/alice/project/notebooks/train.ipynb", "TOKEN_LIMIT",
        "the password is in the vault", "api_key = os.environ['API_KEY']", "0.91", "",
    ]
)  # fmt: skip


@FAST
@given(
    parts=st.lists(_ORDINARY | st.text(string.ascii_lowercase + " .,_()=0123456789", max_size=20), max_size=8)
)
def test_text_without_secrets_is_unchanged(parts: list[str]) -> None:
    text = "\n".join(parts)
    assert redact_text(text) == text


@FAST
@given(secret=_SECRETS, index=st.integers(0, 2), as_lines=st.booleans())
def test_notebook_redaction_finds_the_cell_and_keeps_the_rest(
    secret: tuple[str, str], index: int, as_lines: bool
) -> None:
    text, core = secret
    sources = ["x = 1\n", "y = 2\n", "z = 3\n"]
    sources[index] = f"value = 1\n{text}\nprint(value)\n"
    cells = [
        {"cell_type": "code", "source": s.splitlines(keepends=True) if as_lines else s, "outputs": []}
        for s in sources
    ]
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    safe, findings = Redactor().notebook(nb)
    assert core not in json.dumps(safe)
    assert [f["cell"] for f in findings] == [index]
    assert safe["cells"][index - 1] == nb["cells"][index - 1]  # other cells untouched
    joined = "".join(safe["cells"][index]["source"])
    assert joined.startswith("value = 1\n") and joined.endswith("print(value)\n")
