"""The :class:`Redactor`: one policy applied to names, values, URLs, notebooks and JSON trees.

Example:
    >>> Redactor().text("ssh://git@host/repo https://alice:pw@host/x")
    'ssh://git@host/repo https://host/x'
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from nbtrack.errors import ConfigError
from nbtrack.redact.channels import (
    ANSI_RE,
    CONFIG_RE,
    NAMED_RE,
    argv_secret_positions,
    is_config_file,
    is_credential_file,
    strip_ansi,
)
from nbtrack.redact.rules import (
    BINARY_MIME_RE,
    GLUED_RE,
    NAME_RE,
    PLAIN_USER_RE,
    QUERY_SECRET_KEYS,
    SAFE_NAMES,
    SECRET_VAR_RE,
    URL_CRED_RE,
    URL_RE,
    compiled_rules,
    rules_for,
)

REDACTED = "[REDACTED]"
# Dicts of keyed hashes (the environment's): a hash named GITHUB_TOKEN is no secret, and is compared.
_KEYED_HASHES = frozenset({"hashes", "env_hashes"})


def _user_to_keep(scheme: str, user: str, value_re: re.Pattern[str]) -> str:
    if not user or not PLAIN_USER_RE.fullmatch(user) or value_re.search(user):
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
        self._value_re, self._kinds = compiled_rules()
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
        if upper in SAFE_NAMES:
            return False
        if NAME_RE.search(upper) or GLUED_RE.search(upper):
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

    def _strip_secret_query(self, match: re.Match[str], found: list[str]) -> str:
        url = match.group(0)
        if "?" not in url:
            return url
        try:
            keys = [k for k, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)]
        except ValueError:
            return url
        if not any(QUERY_SECRET_KEYS.match(k) for k in keys):
            return url
        stripped = self.url(url)
        if stripped != url:
            found.append("url-secret-query")
        return stripped

    def scan_and_redact(self, text: str) -> tuple[str, list[str]]:
        """``text`` with every secret replaced, and the kinds of secret found (in order, repeated).

        Text holding ANSI colour codes (IPython's tracebacks) is scanned without them, since a code
        inside a secret splits its pattern; it keeps them unless something was redacted.
        """
        if "\x1b" in text and ANSI_RE.search(text):
            plain, found = self._scan(strip_ansi(text))
            return (plain, found) if found else (text, found)
        return self._scan(text)

    def _scan(self, text: str) -> tuple[str, list[str]]:
        found: list[str] = []
        if "://" in text:
            text = URL_CRED_RE.sub(lambda m: self._sub_url_cred(m, found), text)
            # Signed URLs (S3 presigned, SAS) carry their credential in the query string.
            text = URL_RE.sub(lambda m: self._strip_secret_query(m, found), text)
        if "=" in text or "env" in text:
            text = NAMED_RE.sub(lambda m: self._sub_named(m, found), text)
        # Again while something was found: a rule's kept prefix (libpq's "host=... user=...") may
        # have covered another secret in the same pass. Redacted values are not found twice.
        rules = rules_for(text)
        if rules is not None:
            for _ in range(4):
                count = len(found)
                text = rules.sub(lambda m: self._sub_value(m, found), text)
                if len(found) == count:
                    break
        for extra in self._extra:
            text = extra.sub(lambda m: _sub_extra(m, found), text)
        return text, found

    def _sub_named(self, match: re.Match[str], found: list[str], kind: str = "secret-named-value") -> str:
        """``NAME=value`` whose name marks a secret: the value goes, the name stays."""
        n, v = next((f"n{i}", f"v{i}") for i in ("", "2", "3") if match.group(f"v{i}") is not None)
        value = match.group(v).rstrip()
        name = match.group(n)
        # An UPPER_CASE name is an environment variable's (KAGGLE_KEY, MAX_TOKENS are judged as
        # in the environment); others are keys and tags (api_key yes, max_tokens no).
        secret = self.is_secret_name(name) if name.isupper() else self.secret_key(name)
        if not value or value == REDACTED or not secret:
            return match.group(0)
        found.append(kind)
        start, (a, _) = match.start(), match.span(v)
        whole = match.group(0)
        return whole[: a - start] + REDACTED + whole[a - start + len(value) :]

    def file_text(self, path: str, text: str) -> tuple[str, list[str]]:
        """A file's text as it may be stored, and the kinds found. A credential file (by name or
        place: ``kaggle.json``, ``.docker/config.json``, ``*.ppk``, ``id_rsa``) is never stored:
        its text becomes ``[REDACTED]``; config files also lose values of secret-named keys.

        Example:
            >>> Redactor().file_text(".dvc/config", "[core]\\n    password = hunter2\\n")[1]
            ['config-secret-key']
        """
        if is_credential_file(path):
            return REDACTED, ["credential-file"]
        text, found = self.scan_and_redact(text)
        if is_config_file(path):
            text = CONFIG_RE.sub(lambda m: self._sub_named(m, found, "config-secret-key"), text)
        return text, found

    def argv(self, argv: list[str]) -> list[str]:
        """A command line with its secrets redacted: papermill's ``-p NAME VALUE`` / ``-r`` values
        for secret-named parameters, base64 parameters, ``--password=...`` and secret-shaped
        arguments; the rest (paths, options) stays readable.

        Example:
            >>> Redactor().argv(["papermill", "in.ipynb", "out.ipynb", "-p", "token", "abc", "-p", "n", "3"])
            ['papermill', 'in.ipynb', 'out.ipynb', '-p', 'token', '[REDACTED]', '-p', 'n', '3']
        """

        def secret_name(name: str) -> bool:
            return self.is_secret_name(name) or bool(SECRET_VAR_RE.fullmatch(name.replace("-", "_")))

        secret = argv_secret_positions(argv, secret_name, self.looks_secret)
        out = []
        for i, arg in enumerate(argv):
            if i not in secret:
                out.append(self.file_text("parameters.yaml", arg)[0] if "\n" in arg or ": " in arg else arg)
            elif arg.startswith("--") and "=" in arg:
                out.append(arg.partition("=")[0] + "=" + REDACTED)
            else:
                out.append(REDACTED)
        return out

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
            if any(QUERY_SECRET_KEYS.match(k) for k, _ in pairs):
                query = urlencode([(k, REDACTED if QUERY_SECRET_KEYS.match(k) else v) for k, v in pairs])
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
            name: REDACTED if SECRET_VAR_RE.fullmatch(name) else self.tree(value)
            for name, value in values.items()
        }

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        """A copy of an environment with every secret value replaced by ``[REDACTED]``."""
        return {name: self.value(name, value) for name, value in sorted(env.items())}

    # --- structures ------------------------------------------------------------------------------
    def secret_key(self, name: str) -> bool:
        """True when a key (a tag, a metadata key, a parameter) names a secret: ``api_key``,
        ``db_pw``, ``GITHUB_TOKEN``, ``keyStorePassword``; not ``max_tokens``, ``secret_skipped``."""
        return _secret_key(name)

    def tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        """Run tags as they may be stored: a secret-named key's value goes, any value is scanned.

        Example:
            >>> Redactor().tags({"api_key": "abc", "team": "churn"})
            {'api_key': '[REDACTED]', 'team': 'churn'}
        """
        return dict(self.tree(dict(tags)))

    def tree(self, obj: Any, found: list[str] | None = None, keyed: bool = True) -> Any:
        """JSON-like data with every string redacted; unchanged parts are the same objects.

        Multi-line text stored as a list of lines (nbformat's way) is redacted joined, so a private
        key spread over several lines goes whole. Base64 payloads of binary MIME types are kept.
        ``keyed``: a string under a secret-named key (``api_key``, ``db_password``: tags, metadata,
        parameters) goes whole; not below ``hashes`` (keyed hashes of values, named by variable).
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
            items = [self.tree(item, sink, keyed) for item in obj]
            return obj if all(a is b for a, b in zip(items, obj, strict=True)) else items
        if isinstance(obj, dict):
            out = {k: self._entry(k, v, sink, keyed) for k, v in obj.items()}
            return obj if all(out[k] is obj[k] for k in obj) else out
        return obj

    def _entry(self, key: Any, value: Any, sink: list[str], keyed: bool) -> Any:
        if not isinstance(key, str):
            return self.tree(value, sink, keyed)
        if BINARY_MIME_RE.match(key):
            return value
        if keyed and isinstance(value, str) and value not in ("", REDACTED) and self.secret_key(key):
            sink.append("secret-named-key")
            return REDACTED
        return self.tree(value, sink, keyed and key not in _KEYED_HASHES)

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


@functools.lru_cache(maxsize=4096)
def _secret_key(name: str) -> bool:
    # Cached: a snapshot repeats a few hundred keys ("name", "version", ...) thousands of times.
    return bool(SECRET_VAR_RE.fullmatch(name.replace("-", "_").replace(".", "_")))


def _sub_extra(match: re.Match[str], found: list[str]) -> str:
    found.append("custom")
    if "secret" in match.re.groupindex and match.group("secret") is not None:
        start = match.start()
        a, b = match.span("secret")
        whole = match.group(0)
        return whole[: a - start] + REDACTED + whole[b - start :]
    return REDACTED
