"""One redaction policy for everything nbtrack records.

Secrets are recognised by *name* (``MY_SERVICE_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``DB_PASSWORD``)
and by *value shape* (cloud keys, GitHub/Slack/OpenAI-style tokens, JWTs, private-key blocks,
credentials inside URLs). Every capture provider calls these functions; none keeps its own list.

Example:
    >>> strip_url_credentials("https://user:pass@git.example.com/team/repo.git")
    'https://git.example.com/team/repo.git'
    >>> redact_env({"HOME": "/root", "MY_SERVICE_TOKEN": "s3cr3t"})["MY_SERVICE_TOKEN"]
    '[REDACTED]'
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[REDACTED]"

# Words that, as a part of a variable name, mark its value as secret.
_SECRET_NAME_WORDS = (
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "PWD",
    "APIKEY",
    "API_KEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "CREDENTIALS",
    "AUTH",
    "COOKIE",
    "SESSION_KEY",
    "SIGNATURE",
    "CLIENT_KEY",
    "ACCOUNT_KEY",
    "CONN_STR",
    "CONNECTION_STRING",
    "DSN",
)
# Names that contain a secret word but are not secrets.
_SAFE_NAMES = {
    "PWD",
    "OLDPWD",
    "PASSWORD_STORE_DIR",
    "JPY_SESSION_NAME",
    "SSH_AUTH_SOCK",
    # Hugging Face tokenizers' switch ("true"/"false"); the glued-name rule would hide it.
    "TOKENIZERS_PARALLELISM",
}

_NAME_RE = re.compile(
    r"(^|[_\-.])(" + "|".join(re.escape(w) for w in _SECRET_NAME_WORDS) + r")s?($|[_\-.])",
    re.IGNORECASE,
)
# Also catch glued names such as GITHUBTOKEN or DBPASSWORD.
_GLUED_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|APIKEY|CREDENTIAL)", re.IGNORECASE)

# Shapes of secret values, anchored loosely so they are found inside longer text too.
_VALUE_PATTERNS = [
    r"AKIA[0-9A-Z]{16}",  # AWS access key id
    r"ASIA[0-9A-Z]{16}",  # AWS temporary access key id
    r"gh[pousr]_[A-Za-z0-9]{20,}",  # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{20,}",
    r"glpat-[A-Za-z0-9\-_]{20,}",  # GitLab
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
    # Not inside a word: "risk-model-experiments-2024" or "disk-..." are not keys.
    r"(?<![A-Za-z0-9])sk-[A-Za-z0-9\-_]{20,}",  # OpenAI / Anthropic style keys
    r"(?<![A-Za-z0-9])sk_(live|test)_[A-Za-z0-9]{16,}",  # Stripe
    r"AIza[0-9A-Za-z\-_]{35}",  # Google API key
    r"ya29\.[0-9A-Za-z\-_]{20,}",  # Google OAuth access token
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"dapi[0-9a-f]{32}",  # Databricks
    r"npm_[A-Za-z0-9]{36}",
    r"pypi-[A-Za-z0-9\-_]{50,}",
    r"eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",  # JWT
    # The whole block (to its END line, else to the end of the text): the header alone would
    # leave the key material itself in redacted text.
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----|[\s\S]*)",
    r"(?i:AccountKey)=[A-Za-z0-9+/=]{20,}",  # Azure storage connection string
    r"(?i:SharedAccessSignature)=[^;\s]{10,}",
    # "Password=...;" in ODBC / ADO.NET / JDBC strings and "DB_PASSWORD=..." dotenv lines, but not
    # the keyword argument "connect(host=h, password=pw)", so a code file is not taken for a secret.
    r"(?i:(?:(?<=[;_?&\"'])|(?<=export )|(?m:^))(?:password|pwd)=)[^;\s&]+",
    r"machine\s+\S+\s+login\s+\S+\s+password\s+\S+",  # a .netrc entry
]
_VALUE_RE = re.compile("|".join(f"(?:{p})" for p in _VALUE_PATTERNS))

# user:password@ (or token@) inside any scheme://
# The password part runs to the *last* "@" before the path: an unencoded "@" in a password
# ("user:p@ss@host") must not leave "ss@host" behind.
_URL_CRED_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<cred>[^/@\s:]*(:[^/?#\s]*)?)@")
_URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>]+")
_QUERY_SECRET_KEYS = re.compile(
    r"(?i)^(access_?token|token|api_?key|key|secret|password|pass|sig|signature|auth|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|client_secret)$"
)


def is_secret_name(name: str, extra_patterns: Iterable[str] = ()) -> bool:
    """True when an environment-variable (or config key) name marks its value as secret."""
    upper = name.upper()
    if upper in _SAFE_NAMES:
        return False
    if _NAME_RE.search(upper) or _GLUED_RE.search(upper):
        return True
    return any(fnmatch.fnmatch(upper, p.upper()) for p in extra_patterns)


def looks_secret(value: str) -> bool:
    """True when a value has the shape of a known secret or carries credentials in a URL."""
    if _VALUE_RE.search(value):
        return True
    return bool(_URL_CRED_RE.search(value))


def strip_url_credentials(url: str) -> str:
    """Remove ``user:password@`` and secret query parameters from a URL (other text is kept).

    Works for ``https``, ``ssh``, ``s3``, ``postgresql`` and any other ``scheme://`` URL; scp-style
    git remotes (``git@host:repo``) carry no secret and are returned unchanged.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return _URL_CRED_RE.sub(lambda m: m.group("scheme"), url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_QUERY_SECRET_KEYS.match(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if _QUERY_SECRET_KEYS.match(k) else v) for k, v in pairs])
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing secret; re-assembling would turn sqlite:////abs into sqlite://abs
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def _strip_secret_query(match: re.Match[str]) -> str:
    url = match.group(0)
    if "?" not in url:
        return url
    try:
        keys = [k for k, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)]
    except ValueError:
        return url
    return strip_url_credentials(url) if any(_QUERY_SECRET_KEYS.match(k) for k in keys) else url


def redact_text(text: str) -> str:
    """Scrub credentials in URLs and known secret shapes from free text."""
    text = _URL_CRED_RE.sub(lambda m: m.group("scheme"), text)
    # Signed URLs (S3 presigned, SAS) carry their credential in the query string.
    text = _URL_RE.sub(_strip_secret_query, text)
    return _VALUE_RE.sub(REDACTED, text)


def redact_value(name: str, value: str, extra_patterns: Iterable[str] = ()) -> str:
    """The value to store for ``name=value``: redacted when either side looks secret."""
    if is_secret_name(name, extra_patterns):
        return REDACTED
    if _VALUE_RE.search(value):
        return REDACTED
    if "://" in value:
        return " ".join(strip_url_credentials(v) if "://" in v else v for v in value.split(" "))
    return value


def redact_env(env: Mapping[str, str], extra_patterns: Iterable[str] = ()) -> dict[str, str]:
    """A copy of an environment with every secret value replaced by ``[REDACTED]``."""
    patterns = list(extra_patterns)
    return {name: redact_value(name, value, patterns) for name, value in sorted(env.items())}
