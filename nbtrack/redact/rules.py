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
    "PASSPHRASE",
    "PASS",
    "PWD",
    "PW",
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
GLUED_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|APIKEY|CREDENTIAL)", re.IGNORECASE)

# A value "word" that cannot be code: not an identifier followed by a call, attribute or index.
_NOT_CODE = r"(?![A-Za-z_][\w.]*[(\[,)])"
# A key=value connection string's bare value (libpq); never a quote, comma or bracket of code.
_WORD = r"[^\s'\",()\[\]]+"
# Variable names whose string literal is a secret (``db_password = "..."``, ``token='...'``).
_SECRET_VAR = (
    r"[A-Za-z0-9_]*?(?i:password|passwd|passphrase|secret|token|api_?key|apikey|access_?key|secret_?key|"
    r"private_?key|account_?key|client_?secret|credentials?|_pw|pw)(?![A-Za-z0-9_])"
)

SECRET_VAR_RE = re.compile(_SECRET_VAR)
# The last part(s) of a dotted setting name that holds a secret: ``keyStorePassword``,
# ``fs.s3a.secret.key``, ``fs.azure.account.key.ACCOUNT.blob.core.windows.net``.
_DOTTED_SECRET = (
    r"(?:[A-Za-z0-9_\-]*(?i:password|passwd|passphrase|secret|token|credentials?)(?:\.key)?"
    r"|(?i:secret\.key|access\.key|account\.key)(?:\.[A-Za-z0-9_\-.]+)?)"
)

# (kind, regex). A group named ``v`` marks the secret part (the rest is kept); without one the
# whole match is the secret. Anchored loosely, so they are found inside longer text too.
VALUE_RULES: tuple[tuple[str, str], ...] = (
    # The whole block (to its END line, else to the end of the text): the header alone would
    # leave the key material itself in redacted text.
    (
        "private-key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)",
    ),
    # A PuTTY key file (.ppk): its private lines and MAC, whatever the version.
    ("putty-private-key", r"Private-Lines:\s*\d+(?P<v>[\s\S]*?(?:Private-MAC:\s*\S+|$))"),
    ("aws-access-key-id", r"(?<![A-Z0-9])(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![0-9A-Z])"),
    (
        "aws-secret-access-key",
        r"(?i:aws_?secret_?access_?key|secret_?access_?key|aws_?secret_?key)[\"']?\s*[:=]\s*[\"']?"
        r"(?P<v>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
    ),
    ("github-token", r"gh[pousr]_[A-Za-z0-9]{20,}"),
    ("github-token", r"github_pat_[A-Za-z0-9_]{20,}"),
    ("gitlab-token", r"(?:glpat|gldt|glft|glsoat|glrt|glcbt|glptt|glagent)-[A-Za-z0-9\-_]{20,}"),
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
    # --- from detect-secrets' plugin denylists (Yelp, 1.5) and gitleaks' default rules -------------
    ("sendgrid-key", r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"),
    ("mailgun-key", r"(?<![A-Za-z0-9_\-])key-[0-9a-zA-Z]{32}(?![A-Za-z0-9])"),
    ("mailchimp-key", r"(?<![0-9a-z])[0-9a-f]{32}-us[0-9]{1,2}(?![0-9])"),
    ("twilio-key", r"(?<![A-Za-z0-9])(?:SK|AC)[0-9a-f]{32}(?![0-9a-fA-F])"),
    ("telegram-bot-token", r"(?<![0-9])[0-9]{5,16}:A[A-Za-z0-9_\-]{34}(?![A-Za-z0-9_\-])"),
    ("teams-webhook", r"\.webhook\.office\.com/webhookb2/(?P<v>[A-Za-z0-9@/\-]{20,})"),
    ("teams-webhook", r"\.logic\.azure\.com(?::443)?/workflows/(?P<v>[A-Za-z0-9/\-]{20,})"),
    ("vault-token", r"(?<![A-Za-z0-9])hv[sbr]\.[A-Za-z0-9_\-]{24,}"),
    ("digitalocean-token", r"(?<![A-Za-z0-9])do[por]_v1_[a-f0-9]{64}"),
    ("shopify-token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("square-token", r"(?:sq0csp|sq0atp|EAAA)[0-9A-Za-z\-_]{40,}"),
    ("linear-key", r"lin_api_[A-Za-z0-9]{40}"),
    ("postman-key", r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}"),
    ("doppler-token", r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,}"),
    ("newrelic-key", r"NR(?:AK|II|JS)-[A-Za-z0-9]{20,}"),
    ("sentry-token", r"sntr[ysu]_[A-Za-z0-9+/=_]{40,}"),
    ("grafana-token", r"(?:glsa|glc)_[A-Za-z0-9+/=_]{32,}"),
    ("age-secret-key", r"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
    ("pulumi-token", r"pul-[a-f0-9]{40}"),
    ("terraform-token", r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9\-_=]{60,}"),
    ("artifactory-token", r"(?<![A-Za-z0-9])AKC[a-zA-Z0-9]{10,}"),
    ("azure-ad-client-secret", r"(?<![A-Za-z0-9_~.])[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}"),
    ("npmrc-auth", r"(?i:_auth(?:Token)?\s*=\s*)(?P<v>[^\s\"']{8,})"),
    # HTTP credentials typed in code, a shell line or a header dump ("{token}"/"$TOKEN" is code).
    (
        "authorization-header",
        r"(?i:authorization[\"']?\s*[:=,]\s*[\"']?\s*(?:basic|bearer|token|digest)\s+)"
        r"(?P<v>(?![{$])[A-Za-z0-9+/=._~\-]{6,})",
    ),
    # (not "docker run -u 1000:1000", a uid:gid)
    (
        "curl-user",
        r"(?<![\w\-])(?:-u|--user|--proxy-user)[ =]?[\"']?(?![0-9]+:[0-9]+(?![^\s\"']))[^\s:\"'@]{1,64}:"
        r"(?P<v>[^\s\"']+)",
    ),
    # JVM system properties and Spark/Hadoop settings: -Djavax.net.ssl.keyStorePassword=...,
    # --conf spark.hadoop.fs.s3a.secret.key=..., fs.azure.account.key.ACCOUNT...=...
    (
        "jvm-property",
        r"(?<![\w.\-])(?:-D|--conf[ =]|spark\.hadoop\.)(?:[A-Za-z0-9_\-]+\.)*"
        + _DOTTED_SECRET
        + r"[ \t]*=[ \t]*"
        r"(?P<v>" + _NOT_CODE + r"[^\s\"',;]+)",
    ),
    # The same dotted names without a prefix (a .properties line, a value of SPARK_CONF): ``=`` without
    # spaces, so that Python's ``self.password = password`` is not taken for one.
    (
        "jvm-property",
        r"(?<![\w.\-])(?:[A-Za-z0-9_\-]+\.)+" + _DOTTED_SECRET + r"=(?P<v>" + _NOT_CODE + r"[^\s\"',;]+)",
    ),
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


_SECRET_WORDS = ("passw", "passp", "secret", "token", "credential", "pwd", "pw", "key")
# Per rule (same order as VALUE_RULES), lowercase strings one of which the text must hold for the
# rule to be tried: the alternation is built from the rules whose anchors occur (~2x faster on a
# snapshot than trying ~50 rules, most of which start with a character class, at every position).
RULE_ANCHORS: tuple[tuple[str, ...], ...] = (
    ("private key",),
    ("private-lines",),
    ("a3t", "akia", "asia", "abia", "acca"),
    ("secret",),
    ("_",),
    ("github_pat_",),
    ("gl",),
    ("xox",),
    ("hooks.slack.com",),
    ("webhooks/",),
    ("sk-",),
    ("k_live_", "k_test_"),
    ("aiza",),
    ("ya29.",),
    ("hf_",),
    ("dapi",),
    ("npm_",),
    ("pypi-",),
    ("eyj",),
    ("sg.",),
    ("key-",),
    ("-us",),
    ("sk", "ac"),
    (":a",),
    ("webhook.office.com",),
    ("logic.azure.com",),
    ("hvs.", "hvb.", "hvr."),
    ("_v1_",),
    ("shp",),
    ("sq0", "eaaa"),
    ("lin_api_",),
    ("pmak-",),
    ("dp.",),
    ("nrak-", "nrii-", "nrjs-"),
    ("sntr",),
    ("glsa_", "glc_"),
    ("age-secret-key-",),
    ("pul-",),
    ("atlasv1",),
    ("akc",),
    ("q~",),
    ("_auth",),
    ("authorization",),
    ("-u", "--user", "--proxy-user"),
    ("-d", "--conf", "spark.hadoop."),
    ("passw", "passp", "secret", "token", "credential", ".key"),
    ("accountkey", "sharedaccesskey"),
    ("sharedaccesssignature",),
    ("password",),
    ("password",),
    ("password",),
    ("password", "pwd"),
    _SECRET_WORDS,
)

_ANCHOR_LIST = tuple((anchor, i) for i, anchors in enumerate(RULE_ANCHORS) for anchor in anchors)


@functools.lru_cache(maxsize=256)
def compiled_rules(subset: frozenset[int] | None = None) -> tuple[re.Pattern[str], list[str]]:
    """One alternation of every rule (or of ``subset``); group ``k<i>`` is rule i, ``v<i>`` its
    secret part. ``kinds[i]`` is rule i's kind whatever the subset.

    Compiled at first use, not at import: ``%load_ext nbtrack`` imports this module.

    Example:
        >>> pattern, kinds = compiled_rules()
        >>> match = pattern.search("export DB_PASSWORD=hunter2")
        >>> kinds[int(match.lastgroup[1:])]
        'password-assignment'
    """
    parts, kinds = [], []
    for i, (kind, rx) in enumerate(VALUE_RULES):
        kinds.append(kind)
        if subset is not None and i not in subset:
            continue
        for name in "vq":
            rx = rx.replace(f"(?P<{name}>", f"(?P<{name}{i}>").replace(f"(?P={name})", f"(?P={name}{i})")
        parts.append(f"(?P<k{i}>{rx})")
    return re.compile("|".join(parts)), kinds


def rules_for(text: str) -> re.Pattern[str] | None:
    """The alternation of the rules whose anchors ``text`` holds (None when no rule applies).

    Example:
        >>> rules_for("import numpy as np") is None, rules_for("x = 'ghp_...'") is not None
        (True, True)
    """
    if not ANCHORS_RE.search(text):
        return None
    lower = text.lower()
    subset = frozenset(i for anchor, i in _ANCHOR_LIST if anchor in lower)
    return compiled_rules(subset)[0] if subset else None


# user:password@ (or token@) inside any scheme://
# The password part runs to the *last* "@" before the path: an unencoded "@" in a password
# ("user:p@ss@host") must not leave "ss@host" behind.
# The lookbehind starts a scheme only where one can start: without it, a long run of scheme
# characters before "://" (a 300 KB parameter) was retried from every position, quadratically.
URL_CRED_RE = re.compile(
    r"(?<![A-Za-z0-9+.\-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^/@\s:]*)(?P<pw>:[^/?#\s]*)?@"
)
URL_RE = re.compile(r"(?<![A-Za-z0-9+.\-])[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>]+")
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
    r"A3T|AKIA|ASIA|ABIA|ACCA|gh[pousr]_|github_pat_|gl[a-z]{1,5}-|xox[a-z]-|hooks\.slack\.com|webhook|sk-|[sr]k_|"
    r"AIza|ya29\.|hf_|dapi|npm_|pypi-|eyJ|PRIVATE KEY|Private-Lines|SG\.|-us[0-9]|SK[0-9a-f]{8}|"
    r"AC[0-9a-f]{8}|[0-9]:A|logic\.azure|hv[sbr]\.|do[por]_v1_|shp[acps]|sq0|EAAA|lin_api_|PMAK-|dp\.|"
    r"NR(?:AK|II|JS)-|sntr|gls?[ac]_|AGE-SECRET|pul-|atlasv1|AKC|Q~|-u|--user|"
    r"(?i:accountkey|sharedaccess|passw|passp|pwd|pw|secret|token|key|credential|auth)"
)
