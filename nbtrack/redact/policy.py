"""The policy for a configuration, and the default policy as plain functions.

Redactors are cached: one per distinct set of user patterns, so compiling their regexes is paid
once per process.

Example:
    >>> redact_env({"HOME": "/root", "MY_SERVICE_TOKEN": "s3cr3t"})["MY_SERVICE_TOKEN"]
    '[REDACTED]'
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from nbtrack.redact.redactor import Redactor


@functools.cache
def _default() -> Redactor:
    return Redactor()


@functools.lru_cache(maxsize=16)
def _cached(env_patterns: tuple[str, ...], value_patterns: tuple[str, ...]) -> Redactor:
    return Redactor(env_patterns, value_patterns)


def policy(config: Any = None) -> Redactor:
    """The redaction policy for a config (its ``redact_env_patterns`` and ``redact_value_patterns``).

    Example:
        >>> policy().text("https://alice:pw@host/x")
        'https://host/x'
    """
    if config is None:
        return _default()
    env = tuple(getattr(config, "redact_env_patterns", ()) or ())
    values = tuple(getattr(config, "redact_value_patterns", ()) or ())
    return _default() if not env and not values else _cached(env, values)


# --- the default policy as functions (what most callers need) -------------------------------------
def is_secret_name(name: str, extra_patterns: Iterable[str] = ()) -> bool:
    """True when an environment-variable (or config key) name marks its value as secret.

    Example:
        >>> is_secret_name("KAGGLE_KEY"), is_secret_name("MAX_TOKENS_PATH", ["MAX_*"])
        (True, True)
    """
    return policy_with(extra_patterns).is_secret_name(name)


def looks_secret(value: str) -> bool:
    """True when a value has the shape of a known secret or carries credentials in a URL.

    Example:
        >>> looks_secret("postgresql://app:hunter2@db/app"), looks_secret("0.25")
        (True, False)
    """
    return _default().looks_secret(value)


def strip_url_credentials(url: str) -> str:
    """Remove passwords and tokens from a URL; see :meth:`Redactor.url`.

    Example:
        >>> strip_url_credentials("s3://bucket/data.csv?X-Amz-Signature=abc")
        's3://bucket/data.csv?X-Amz-Signature=%5BREDACTED%5D'
    """
    return _default().url(url)


def redact_text(text: str) -> str:
    """Scrub credentials in URLs and known secret shapes from free text.

    Example:
        >>> redact_text("db_password = 'hunter2'")
        "db_password = '[REDACTED]'"
    """
    return _default().text(text)


def redact_value(name: str, value: str, extra_patterns: Iterable[str] = ()) -> str:
    """The value to store for ``name=value``: redacted when either side looks secret.

    Example:
        >>> redact_value("API_TOKEN", "abc"), redact_value("HOME", "/root")
        ('[REDACTED]', '/root')
    """
    return policy_with(extra_patterns).value(name, value)


def redact_env(env: Mapping[str, str], extra_patterns: Iterable[str] = ()) -> dict[str, str]:
    """A copy of an environment with every secret value replaced by ``[REDACTED]``.

    Example:
        >>> redact_env({"CORP_ID": "42"}, ["CORP_*"])
        {'CORP_ID': '[REDACTED]'}
    """
    return policy_with(extra_patterns).env(env)


def policy_with(extra_patterns: Iterable[str]) -> Redactor:
    """The default policy plus extra variable-name globs.

    Example:
        >>> policy_with(["CORP_*"]).is_secret_name("corp_id")
        True
    """
    patterns = tuple(extra_patterns)
    return _cached(patterns, ()) if patterns else _default()
