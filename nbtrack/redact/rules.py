"""The shapes of secrets: secret-marking variable-name words and value rules, compiled once.

Only patterns live here; :class:`nbtrack.redact.Redactor` applies them. A value rule's group named
``v`` marks the secret part (the rest of the match is kept).

Example:
    >>> bool(NAME_RE.search("AWS_SECRET_ACCESS_KEY")), bool(NAME_RE.search("KEY_PATH"))
    (True, False)
"""

from __future__ import annotations

import functools
import re

# Words that, as a part of a variable name, mark its value as secret.
SECRET_NAME_WORDS = (
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
SAFE_NAMES = {
    "PWD",
    "OLDPWD",
    "PASSWORD_STORE_DIR",
    "JPY_SESSION_NAME",
    "SSH_AUTH_SOCK",
    # Hugging Face tokenizers' switch ("true"/"false"); the glued-name rule would hide it.
    "TOKENIZERS_PARALLELISM",
}

NAME_RE = re.compile(
    r"(^|[_\-.])(" + "|".join(re.escape(w) for w in SECRET_NAME_WORDS) + r")s?($|[_\-.])"
    # ..._KEY at the end: KAGGLE_KEY, OPENAI_KEY, STRIPE_KEY (not KEY_PATH, KEYWORDS).
    r"|(^|[_\-.])KEYS?$",
    re.IGNORECASE,
)
# Also catch glued names such as GITHUBTOKEN or DBPASSWORD.
GLUED_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|APIKEY|CREDENTIAL)", re.IGNORECASE)

# A value "word" that cannot be code: not an identifier followed by a call, attribute or index.
_NOT_CODE = r"(?![A-Za-z_][\w.]*[(\[,)])"
# A key=value connection string's bare value (libpq); never a quote, comma or bracket of code.
_WORD = r"[^\s'\",()\[\]]+"
# Variable names whose string literal is a secret (``db_password = "..."``, ``token='...'``).
_SECRET_VAR = (
    r"[A-Za-z0-9_]*?(?i:password|passwd|secret|token|api_?key|apikey|access_?key|secret_?key|"
    r"private_?key|account_?key|client_?secret|credentials?)(?![A-Za-z0-9_])"
)

SECRET_VAR_RE = re.compile(_SECRET_VAR)

# (kind, regex). A group named ``v`` marks the secret part (the rest is kept); without one the
# whole match is the secret. Anchored loosely, so they are found inside longer text too.
VALUE_RULES: tuple[tuple[str, str], ...] = (
    # The whole block (to its END line, else to the end of the text): the header alone would
    # leave the key material itself in redacted text.
    (
        "private-key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----|[\s\S]*)",
    ),
    ("aws-access-key-id", r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])"),
    (
        "aws-secret-access-key",
        r"(?i:aws_?secret_?access_?key|secret_?access_?key|aws_?secret_?key)[\"']?\s*[:=]\s*[\"']?"
        r"(?P<v>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
    ),
    ("github-token", r"gh[pousr]_[A-Za-z0-9]{20,}"),
    ("github-token", r"github_pat_[A-Za-z0-9_]{20,}"),
    ("gitlab-token", r"glpat-[A-Za-z0-9\-_]{20,}"),
    ("slack-token", r"xox[abposre]-[A-Za-z0-9\-]{10,}"),
    ("slack-webhook", r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<v>[A-Za-z0-9_/\-]{10,})"),
    ("discord-webhook", r"discord(?:app)?\.com/api/webhooks/(?P<v>[0-9]+/[A-Za-z0-9_\-]{20,})"),
    # Not inside a word: "risk-model-experiments-2024" or "disk-..." are not keys.
    ("openai-key", r"(?<![A-Za-z0-9])sk-[A-Za-z0-9\-_]{20,}"),
    ("stripe-key", r"(?<![A-Za-z0-9])[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("google-api-key", r"AIza[0-9A-Za-z\-_]{35}"),
    ("google-oauth-token", r"ya29\.[0-9A-Za-z\-_]{20,}"),
    ("huggingface-token", r"hf_[A-Za-z0-9]{30,}"),
    ("databricks-token", r"dapi[0-9a-f]{32}"),
    ("npm-token", r"npm_[A-Za-z0-9]{36}"),
    ("pypi-token", r"pypi-[A-Za-z0-9\-_]{50,}"),
    ("jwt", r"eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"),
    ("azure-account-key", r"(?i:AccountKey|SharedAccessKey)\s*=\s*(?P<v>[A-Za-z0-9+/=]{20,})"),
    ("azure-sas", r"(?i:SharedAccessSignature)\s*=\s*(?P<v>[^;\s\"']{10,})"),
    # A .netrc entry (one line or several): the password token only; machine and login stay.
    (
        "netrc-password",
        r"(?:machine\s+\S+|default)(?:\s+(?:login|account|port)\s+\S+)*\s+password\s+(?P<v>[^\s\"']+)",
    ),
    # libpq key=value connection strings: "host=db user=app password=x dbname=app".
    (
        "libpq-password",
        r"(?i:(?<![\w.])(?:host|hostaddr|port|dbname|user|sslmode|service|connect_timeout)\s*=\s*"
        r"(?:'[^']*'|" + _WORD + r")(?:\s+\w+\s*=\s*(?:'[^']*'|" + _WORD + r"))*?\s+password\s*=\s*)"
        r"(?P<v>'(?:[^'\\]|\\.)*'|" + _NOT_CODE + _WORD + ")",
    ),
    (
        "libpq-password",
        r"(?i:(?<![\w.])password\s*=\s*)(?P<v>'(?:[^'\\]|\\.)*'|" + _NOT_CODE + _WORD + ")"
        r"(?=\s+(?i:host|hostaddr|port|dbname|user|sslmode)\s*=)",
    ),
    # "Password=...;" in ODBC / ADO.NET / JDBC strings and "DB_PASSWORD=..." dotenv lines, but not
    # the keyword argument "connect(host=h, password=pw)", so code is not taken for a secret.
    (
        "password-assignment",
        r"(?i:(?:(?<=[;_?&\"'])|(?<=export )|(?m:^))(?:password|pwd)=)"
        + _NOT_CODE
        + r"(?P<v>[^;\s&\"'()\[\],]+)",
    ),
    # A string literal assigned to (or passed as) a secret-named variable, key or keyword argument.
    (
        "secret-literal",
        r"(?<![\w])"
        + _SECRET_VAR
        + r"[\"']?\]?\s*[:=]\s*[rRbBuUfF]?(?P<q>[\"'])(?P<v>[^\"'\n]{1,500})(?P=q)",
    ),
)


@functools.cache
def compiled_rules() -> tuple[re.Pattern[str], list[str]]:
    """One alternation of every rule; group ``k<i>`` is rule i, ``v<i>`` its secret part.

    Compiled at first use, not at import: ``%load_ext nbtrack`` imports this module.

    Example:
        >>> pattern, kinds = compiled_rules()
        >>> match = pattern.search("export DB_PASSWORD=hunter2")
        >>> kinds[int(match.lastgroup[1:])]
        'password-assignment'
    """
    parts, kinds = [], []
    for i, (kind, rx) in enumerate(VALUE_RULES):
        for name in "vq":
            rx = rx.replace(f"(?P<{name}>", f"(?P<{name}{i}>").replace(f"(?P={name})", f"(?P={name}{i})")
        parts.append(f"(?P<k{i}>{rx})")
        kinds.append(kind)
    return re.compile("|".join(parts)), kinds


# user:password@ (or token@) inside any scheme://
# The password part runs to the *last* "@" before the path: an unencoded "@" in a password
# ("user:p@ss@host") must not leave "ss@host" behind.
URL_CRED_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^/@\s:]*)(?P<pw>:[^/?#\s]*)?@")
URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>]+")
QUERY_SECRET_KEYS = re.compile(
    r"(?i)^(access_?token|token|api_?key|key|secret|password|pass|sig|signature|auth|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|client_secret)$"
)
# A user name alone (no password) is kept when it looks like one ("ssh://git@", "ssh://alice@") and
# not like a token used as the user ("https://ghp_...@github.com", 40 hex characters). Over HTTP a
# lone user is how tokens are passed ("https://TOKEN@host"): only "git" is kept there.
PLAIN_USER_RE = re.compile(r"[A-Za-z][A-Za-z0-9._\-]{0,31}")
# Output data of these MIME types is base64: redacting inside it would only corrupt it.
BINARY_MIME_RE = re.compile(r"^(?:image/(?!svg)|audio/|video/|application/(?:pdf|octet-stream|zip))")


# Every value rule needs one of these: a cheap test that skips the 25-way alternation for the
# package names, paths and versions that make up most of what is recorded (~5x faster there).
ANCHORS_RE = re.compile(
    r"AKIA|ASIA|gh[pousr]_|github_pat_|glpat-|xox[a-z]-|hooks\.slack\.com|webhooks/|sk-|[sr]k_|AIza|"
    r"ya29\.|hf_|dapi|npm_|pypi-|eyJ|PRIVATE KEY|(?i:accountkey|sharedaccess|passw|pwd|secret|token|key|"
    r"credential)"
)
