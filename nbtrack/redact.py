"""One redaction policy for everything nbtrack records.

Secrets are recognised by *name* (``MY_SERVICE_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``KAGGLE_KEY``)
and by *value shape* (cloud keys, GitHub/GitLab/Slack/OpenAI-style tokens, JWTs, private-key blocks,
credentials inside URLs, ``password=`` in connection strings, ``.netrc`` entries, string literals
assigned to a secret-named variable). Every capture provider and the tracker go through a
:class:`Redactor` (:func:`policy` builds it from the config, adding the user's own name globs and
value regexes); none keeps its own list.

A redacted secret becomes ``[REDACTED]``; only the secret part goes, so the host of a URL, the name of
a variable and the ``git`` user of ``ssh://git@host/repo`` stay readable.

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

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from nbtrack.errors import ConfigError

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
    r"(^|[_\-.])(" + "|".join(re.escape(w) for w in _SECRET_NAME_WORDS) + r")s?($|[_\-.])"
    # ..._KEY at the end: KAGGLE_KEY, OPENAI_KEY, STRIPE_KEY (not KEY_PATH, KEYWORDS).
    r"|(^|[_\-.])KEYS?$",
    re.IGNORECASE,
)
# Also catch glued names such as GITHUBTOKEN or DBPASSWORD.
_GLUED_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|APIKEY|CREDENTIAL)", re.IGNORECASE)

# A value "word" that cannot be code: not an identifier followed by a call, attribute or index.
_NOT_CODE = r"(?![A-Za-z_][\w.]*[(\[,)])"
# A key=value connection string's bare value (libpq); never a quote, comma or bracket of code.
_WORD = r"[^\s'\",()\[\]]+"
# Variable names whose string literal is a secret (``db_password = "..."``, ``token='...'``).
_SECRET_VAR = (
    r"[A-Za-z0-9_]*?(?i:password|passwd|secret|token|api_?key|apikey|access_?key|secret_?key|"
    r"private_?key|account_?key|client_?secret|credentials?)(?![A-Za-z0-9_])"
)

_SECRET_VAR_RE = re.compile(_SECRET_VAR)

# (kind, regex). A group named ``v`` marks the secret part (the rest is kept); without one the
# whole match is the secret. Anchored loosely, so they are found inside longer text too.
_VALUE_RULES: tuple[tuple[str, str], ...] = (
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
def _compiled_rules() -> tuple[re.Pattern[str], list[str]]:
    """One alternation of every rule; group ``k<i>`` is rule i, ``v<i>`` its secret part.

    Compiled at first use, not at import: ``%load_ext nbtrack`` imports this module.
    """
    parts, kinds = [], []
    for i, (kind, rx) in enumerate(_VALUE_RULES):
        for name in "vq":
            rx = rx.replace(f"(?P<{name}>", f"(?P<{name}{i}>").replace(f"(?P={name})", f"(?P={name}{i})")
        parts.append(f"(?P<k{i}>{rx})")
        kinds.append(kind)
    return re.compile("|".join(parts)), kinds


# user:password@ (or token@) inside any scheme://
# The password part runs to the *last* "@" before the path: an unencoded "@" in a password
# ("user:p@ss@host") must not leave "ss@host" behind.
_URL_CRED_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^/@\s:]*)(?P<pw>:[^/?#\s]*)?@")
_URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>]+")
_QUERY_SECRET_KEYS = re.compile(
    r"(?i)^(access_?token|token|api_?key|key|secret|password|pass|sig|signature|auth|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|client_secret)$"
)
# A user name alone (no password) is kept when it looks like one ("ssh://git@", "ssh://alice@") and
# not like a token used as the user ("https://ghp_...@github.com", 40 hex characters). Over HTTP a
# lone user is how tokens are passed ("https://TOKEN@host"): only "git" is kept there.
_PLAIN_USER_RE = re.compile(r"[A-Za-z][A-Za-z0-9._\-]{0,31}")
# Output data of these MIME types is base64: redacting inside it would only corrupt it.
_BINARY_MIME_RE = re.compile(r"^(?:image/(?!svg)|audio/|video/|application/(?:pdf|octet-stream|zip))")


# Every value rule needs one of these: a cheap test that skips the 25-way alternation for the
# package names, paths and versions that make up most of what is recorded (~5x faster there).
_ANCHORS_RE = re.compile(
    r"AKIA|ASIA|gh[pousr]_|github_pat_|glpat-|xox[a-z]-|hooks\.slack\.com|webhooks/|sk-|[sr]k_|AIza|"
    r"ya29\.|hf_|dapi|npm_|pypi-|eyJ|PRIVATE KEY|(?i:accountkey|sharedaccess|passw|pwd|secret|token|key|"
    r"credential)"
)


def _user_to_keep(scheme: str, user: str, value_re: re.Pattern[str]) -> str:
    if not user or not _PLAIN_USER_RE.fullmatch(user) or value_re.search(user):
        return ""
    if scheme.lower().rstrip(":/") in ("http", "https") and user != "git":
        return ""
    if len(user) >= 16 and any(c.isdigit() for c in user):  # random-looking: a token
        return ""
    return user


class Redactor:
    """The redaction policy, with the user's extra name globs and value regexes.

    Args:
        env_patterns: extra variable-name globs (fnmatch, case-insensitive) whose values are secret.
        value_patterns: extra value regexes; a group named ``secret`` narrows what is redacted,
            else the whole match is.

    Raises:
        ConfigError: a value pattern is not a valid regular expression.

    Example:
        >>> Redactor(value_patterns=[r"corp-[0-9a-f]{12}"]).text("key corp-0123456789ab here")
        'key [REDACTED] here'
    """

    def __init__(self, env_patterns: Iterable[str] = (), value_patterns: Iterable[str] = ()) -> None:
        self.env_patterns = [p.upper() for p in env_patterns]
        self.value_patterns = list(value_patterns)
        self._value_re, self._kinds = _compiled_rules()
        self._extra: list[re.Pattern[str]] = []
        for pattern in self.value_patterns:
            try:
                self._extra.append(re.compile(pattern))
            except re.error as exc:
                raise ConfigError(
                    f"redaction value pattern {pattern!r} is not a regular expression ({exc}); fix "
                    "NbtrackConfig.redact_value_patterns or NBTRACK_REDACT_VALUES"
                ) from exc

    # --- names -----------------------------------------------------------------------------------
    def is_secret_name(self, name: str) -> bool:
        """True when an environment-variable (or config key) name marks its value as secret."""
        upper = name.upper()
        if upper in _SAFE_NAMES:
            return False
        if _NAME_RE.search(upper) or _GLUED_RE.search(upper):
            return True
        return any(fnmatch.fnmatchcase(upper, p) for p in self.env_patterns)

    # --- values ----------------------------------------------------------------------------------
    def _sub_value(self, match: re.Match[str], found: list[str]) -> str:
        group = match.lastgroup or "k0"
        i = int(group[1:])
        found.append(self._kinds[i])
        whole, start = match.group(0), match.start()
        v = match.span(f"v{i}") if f"v{i}" in match.re.groupindex else (-1, -1)
        if (match.group(f"v{i}") if v[0] >= 0 else whole) == REDACTED:
            found.pop()  # already redacted
            return whole
        if v[0] < 0:
            return REDACTED
        return whole[: v[0] - start] + REDACTED + whole[v[1] - start :]

    def _sub_url_cred(self, match: re.Match[str], found: list[str]) -> str:
        user, has_pw = match.group("user"), match.group("pw") is not None
        keep = "" if has_pw else _user_to_keep(match.group("scheme"), user, self._value_re)
        if keep != user or has_pw:
            found.append("url-credentials")
        return match.group("scheme") + (keep + "@" if keep else "")

    def scan_and_redact(self, text: str) -> tuple[str, list[str]]:
        """``text`` with every secret replaced, and the kinds of secret found (in order, repeated)."""
        found: list[str] = []
        if "://" in text:
            text = _URL_CRED_RE.sub(lambda m: self._sub_url_cred(m, found), text)
            # Signed URLs (S3 presigned, SAS) carry their credential in the query string.
            text = _URL_RE.sub(lambda m: _strip_secret_query(m, found), text)
        # Again while something was found: a rule's kept prefix (libpq's "host=... user=...") may
        # have covered another secret in the same pass. Redacted values are not found twice.
        for _ in range(4 if _ANCHORS_RE.search(text) else 0):
            count = len(found)
            text = self._value_re.sub(lambda m: self._sub_value(m, found), text)
            if len(found) == count:
                break
        for extra in self._extra:
            text = extra.sub(lambda m: _sub_extra(m, found), text)
        return text, found

    def text(self, text: str) -> str:
        """Scrub credentials in URLs and known secret shapes from free text."""
        return self.scan_and_redact(text)[0]

    def looks_secret(self, value: str) -> bool:
        """True when a value has the shape of a known secret or carries credentials in a URL."""
        return bool(self.scan_and_redact(value)[1])

    def url(self, url: str) -> str:
        """Remove passwords and tokens (``user:password@``, secret query parameters) from a URL.

        Works for ``https``, ``ssh``, ``s3``, ``postgresql`` and any other ``scheme://`` URL. A plain
        user name alone (``ssh://git@host``) is kept; scp-style git remotes (``git@host:repo``)
        carry no secret and are returned unchanged.
        """
        if "://" not in url:
            return url
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.text(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            keep = "" if ":" in userinfo else _user_to_keep(parts.scheme, userinfo, self._value_re)
            netloc = f"{keep}@{host}" if keep else host
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(_QUERY_SECRET_KEYS.match(k) for k, _ in pairs):
                query = urlencode([(k, REDACTED if _QUERY_SECRET_KEYS.match(k) else v) for k, v in pairs])
        if netloc == parts.netloc and query == parts.query:
            return url  # nothing secret; re-assembling would turn sqlite:////abs into sqlite://abs
        return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))

    def value(self, name: str, value: str) -> str:
        """The value to store for ``name=value``: redacted when either side looks secret."""
        if self.is_secret_name(name):
            return REDACTED
        redacted, found = self.scan_and_redact(value)
        if not found:
            return value
        if set(found) <= {"url-credentials", "url-secret-query"}:
            return redacted  # the URL without its credentials is still worth having
        return REDACTED

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Notebook parameters with secrets redacted: values of secret-named variables
        (``api_key``, ``db_password``; not ``max_tokens``) and secret-shaped strings anywhere."""
        return {
            name: REDACTED if _SECRET_VAR_RE.fullmatch(name) else self.tree(value)
            for name, value in values.items()
        }

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        """A copy of an environment with every secret value replaced by ``[REDACTED]``."""
        return {name: self.value(name, value) for name, value in sorted(env.items())}

    # --- structures ------------------------------------------------------------------------------
    def tree(self, obj: Any, found: list[str] | None = None) -> Any:
        """JSON-like data with every string redacted; unchanged parts are the same objects.

        Multi-line text stored as a list of lines (nbformat's way) is redacted joined, so a private
        key spread over several lines goes whole. Base64 payloads of binary MIME types are kept.
        """
        sink: list[str] = [] if found is None else found
        if isinstance(obj, str):
            new, kinds = self.scan_and_redact(obj)
            sink.extend(kinds)
            return new
        if isinstance(obj, list):
            if obj and all(isinstance(s, str) for s in obj) and all(s.endswith("\n") for s in obj[:-1]):
                joined = "".join(obj)
                new, kinds = self.scan_and_redact(joined)
                if not kinds:
                    return obj
                sink.extend(kinds)
                return new.splitlines(keepends=True)
            items = [self.tree(item, sink) for item in obj]
            return obj if all(a is b for a, b in zip(items, obj, strict=True)) else items
        if isinstance(obj, dict):
            out = {
                k: v if isinstance(k, str) and _BINARY_MIME_RE.match(k) else self.tree(v, sink)
                for k, v in obj.items()
            }
            return obj if all(out[k] is obj[k] for k in obj) else out
        return obj

    def notebook(self, nb: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A notebook with secrets redacted from every cell and its metadata, and where they were.

        Returns:
            The notebook (``nb`` itself when nothing was found) and findings
            ``{"cell": index or None for the notebook's metadata, "where": "source" | "outputs" |
            "attachments" | "metadata", "kinds": [...]}``.

        Example:
            >>> nb = {"cells": [{"cell_type": "code", "source": "token = 'abc123'", "outputs": []}]}
            >>> Redactor().notebook(nb)[1]
            [{'cell': 0, 'where': 'source', 'kinds': ['secret-literal']}]
        """
        findings: list[dict[str, Any]] = []
        cells = []
        for i, cell in enumerate(nb.get("cells") or []):
            if not isinstance(cell, dict):
                cells.append(cell)
                continue
            new = dict(cell)
            for where in ("source", "outputs", "attachments", "metadata"):
                if where in cell:
                    kinds: list[str] = []
                    new[where] = self.tree(cell[where], kinds)
                    if kinds:
                        findings.append({"cell": i, "where": where, "kinds": sorted(set(kinds))})
            cells.append(new)
        meta_kinds: list[str] = []
        metadata = self.tree(nb.get("metadata"), meta_kinds)
        if meta_kinds:
            findings.append({"cell": None, "where": "metadata", "kinds": sorted(set(meta_kinds))})
        if not findings:
            return nb, []
        out = dict(nb, cells=cells)
        if "metadata" in nb:
            out["metadata"] = metadata
        return out, findings


def _sub_extra(match: re.Match[str], found: list[str]) -> str:
    found.append("custom")
    if "secret" in match.re.groupindex and match.group("secret") is not None:
        start = match.start()
        a, b = match.span("secret")
        whole = match.group(0)
        return whole[: a - start] + REDACTED + whole[b - start :]
    return REDACTED


def _strip_secret_query(match: re.Match[str], found: list[str]) -> str:
    url = match.group(0)
    if "?" not in url:
        return url
    try:
        keys = [k for k, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)]
    except ValueError:
        return url
    if not any(_QUERY_SECRET_KEYS.match(k) for k in keys):
        return url
    stripped = _default().url(url)
    if stripped != url:
        found.append("url-secret-query")
    return stripped


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
    """True when an environment-variable (or config key) name marks its value as secret."""
    return policy_with(extra_patterns).is_secret_name(name)


def looks_secret(value: str) -> bool:
    """True when a value has the shape of a known secret or carries credentials in a URL."""
    return _default().looks_secret(value)


def strip_url_credentials(url: str) -> str:
    """Remove passwords and tokens from a URL; see :meth:`Redactor.url`."""
    return _default().url(url)


def redact_text(text: str) -> str:
    """Scrub credentials in URLs and known secret shapes from free text."""
    return _default().text(text)


def redact_value(name: str, value: str, extra_patterns: Iterable[str] = ()) -> str:
    """The value to store for ``name=value``: redacted when either side looks secret."""
    return policy_with(extra_patterns).value(name, value)


def redact_env(env: Mapping[str, str], extra_patterns: Iterable[str] = ()) -> dict[str, str]:
    """A copy of an environment with every secret value replaced by ``[REDACTED]``."""
    return policy_with(extra_patterns).env(env)


def policy_with(extra_patterns: Iterable[str]) -> Redactor:
    """The default policy plus extra variable-name globs."""
    patterns = tuple(extra_patterns)
    return _cached(patterns, ()) if patterns else _default()
