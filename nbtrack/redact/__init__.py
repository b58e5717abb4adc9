"""One redaction policy for everything nbtrack records.

Secrets are recognised by *name* (``MY_SERVICE_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``KAGGLE_KEY``)
and by *value shape* (cloud keys, GitHub/GitLab/Slack/OpenAI-style tokens, JWTs, private-key blocks,
credentials inside URLs, ``password=`` in connection strings, ``.netrc`` entries, string literals
assigned to a secret-named variable). Every capture provider and the tracker go through a
:class:`Redactor` (:func:`policy` builds it from the config, adding the user's own name globs and
value regexes); none keeps its own list.

A redacted secret becomes ``[REDACTED]``; only the secret part goes, so the host of a URL, the name of
a variable and the ``git`` user of ``ssh://git@host/repo`` stay readable.

Names also count where a value sits beside its name: ``%env NAME=value`` and its output, shell and
dotenv ``NAME=value``, ``--tag NAME=VALUE``, secret-named keys of tags, notebook metadata and
parameters, ``key = value`` lines of config files (``.dvc/config``, YAML, ``.properties``), papermill's
``-p NAME VALUE``. Credential files (``kaggle.json``, ``.docker/config.json``, ``*.ppk``, ``id_rsa``)
are never stored; ANSI colour codes are removed before scanning (they split IPython's tracebacks).
The token shapes follow detect-secrets' plugin denylists and gitleaks' default rules, kept here as
regexes (the library is ~8-40x slower per line and its entropy plugins flag ordinary code).

Modules: :mod:`~nbtrack.redact.rules` (the shapes of secrets), :mod:`~nbtrack.redact.channels`
(named values, colour codes, command lines, credential and config files),
:mod:`~nbtrack.redact.redactor` (:class:`Redactor`, which applies them), :mod:`~nbtrack.redact.policy`
(the policy of a config and the default policy as functions).

Example:
    >>> strip_url_credentials("https://user:pass@git.example.com/team/repo.git")
    'https://git.example.com/team/repo.git'
    >>> strip_url_credentials("ssh://git@git.example.com/team/repo.git")
    'ssh://git@git.example.com/team/repo.git'
    >>> redact_env({"HOME": "/root", "MY_SERVICE_TOKEN": "s3cr3t"})["MY_SERVICE_TOKEN"]
    '[REDACTED]'
    >>> redact_text('conn = connect(host="db", password="hunter2")')
    'conn = connect(host="db", password="[REDACTED]")'
"""

from __future__ import annotations

from nbtrack.redact.channels import is_credential_file, strip_ansi
from nbtrack.redact.policy import (
    is_secret_name,
    looks_secret,
    policy,
    policy_with,
    redact_env,
    redact_text,
    redact_value,
    strip_url_credentials,
)
from nbtrack.redact.redactor import REDACTED, Redactor

__all__ = [
    "REDACTED",
    "Redactor",
    "is_credential_file",
    "is_secret_name",
    "looks_secret",
    "policy",
    "policy_with",
    "redact_env",
    "redact_text",
    "redact_value",
    "strip_ansi",
    "strip_url_credentials",
]
