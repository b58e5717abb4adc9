"""Where secrets hide in a form the value rules cannot see alone: named assignments, colour codes,
command lines and credential files.

- ``NAME=value`` in shell lines, dotenv files, ``%env`` / ``%set_env`` (source, transformed source
  and the ``env: NAME=value`` line it prints): the value goes when the *name* marks a secret
  (``*_PW``, ``*PASSPHRASE*``, ``*_TOKEN``), as for the environment.
- ANSI colour codes (IPython's tracebacks) split a secret's pattern: text holding them is scanned
  without them, and comes back without them only when something was redacted.
- A command line (papermill's ``-p NAME VALUE``, ``-r``, ``-y``, ``-b``, ``--opt=value``).
- Files: credential files known by name or place (``kaggle.json``, ``.docker/config.json``, ``*.ppk``)
  are never stored; config files (INI, YAML, ``.properties``, TOML, dotenv, ``.dvc/config``) get
  ``key = value`` rules that would misfire on Python code.

Example:
    >>> NAMED_RE.search("%env DB_PW=hunter2").group("v")
    'hunter2'
"""

from __future__ import annotations

import fnmatch
import re

# "NAME=value" where NAME says the value is secret: %env / %set_env lines, IPython's transformed
# form of them, the "env: NAME=value" line %env prints, shell/dotenv assignments of UPPER_CASE names,
# %track's --tag NAME=VALUE.
NAMED_RE = re.compile(
    r"(?m)(?:%(?:set_)?env[ \t]+|^env:[ \t]+|run_line_magic\(['\"](?:set_)?env['\"],[ \t]*['\"])"
    r"(?P<n>[A-Za-z_][\w.]*)(?:[ \t]*=[ \t]*|[ \t]+)(?P<v>[^\n'\"]+)"
    r"|(?:(?<=[\s;!&|(])|^)(?:export[ \t]+)?(?P<n2>[A-Z][A-Z0-9_]*)=(?P<v2>(?![$`])[^\s\"';&|)]+)"
    # %track start --tag NAME=VALUE (the magic's line as history and the notebook keep it)
    r"|(?:--tag|-t)[ \t=]+(?P<n3>[\w.\-]+)=(?P<v3>[^\s\"']+)"
)
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")

# key = value / key: value in config files (.dvc/config, INI, YAML, .properties, TOML, dotenv).
CONFIG_RE = re.compile(
    r"(?m)^[ \t+\-]*[\"']?(?P<n>[A-Za-z_][\w.\-]*)[\"']?[ \t]*[=:][ \t]*[\"']?(?P<v>[^\s\"'#][^\n\"']*?)"
    r"[\"']?[ \t]*(?:#.*)?$"
)
CONFIG_FILES = (
    "*.ini", "*.cfg", "*.conf", "*.config", "*.properties", "*.yaml", "*.yml", "*.toml", "*.env",
    ".env*", "*.tfvars", "config", "config.local", "*.json",
)  # fmt: skip
# Files that by their name or place hold credentials: listed as left out, never stored.
CREDENTIAL_FILES = (
    ".env", ".env.*", ".envrc", ".netrc", "_netrc", ".pgpass", ".pypirc", ".npmrc", ".yarnrc.yml",
    ".git-credentials", ".s3cfg", ".boto", ".htpasswd", ".vault-token", "*.pem", "*.key", "*.p12",
    "*.pfx", "*.jks", "*.keystore", "*.ppk", "*.kdbx", "*.gpg", "*.asc", "secring.*", "id_rsa*",
    "id_dsa*", "id_ecdsa*", "id_ed25519*", "credentials", "credentials.*", "kaggle.json",
    "client_secret*.json", "service-account*.json", "*.tfvars", "terraform.tfstate*",
)  # fmt: skip
CREDENTIAL_PATHS = (
    "*.docker/config.json", "*.aws/credentials", "*.aws/config", "*.kube/config", "*.ssh/*",
    "*.gnupg/*", "*.config/gcloud/*", "*.azure/*", "*.kaggle/*", "*.databrickscfg",
)  # fmt: skip


def is_credential_file(path: str) -> bool:
    """True when a file's name or place says it holds credentials (its content is never stored).

    Example:
        >>> is_credential_file("home/.docker/config.json"), is_credential_file("src/config.json")
        (True, False)
    """
    posix = "/" + path.replace("\\", "/").lstrip("/")
    name = posix.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) for p in CREDENTIAL_FILES) or any(
        fnmatch.fnmatch(posix, "*/" + p.lstrip("*")) or fnmatch.fnmatch(posix, p) for p in CREDENTIAL_PATHS
    )


def is_config_file(path: str) -> bool:
    """True when a file is a config file whose ``key = value`` lines are judged by their key.

    Example:
        >>> is_config_file(".dvc/config"), is_config_file("train.py")
        (True, False)
    """
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) for p in CONFIG_FILES)


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences (colours, OSC hyperlinks).

    Example:
        >>> strip_ansi("\\x1b[0;31mtoken\\x1b[0m")
        'token'
    """
    return ANSI_RE.sub("", text)


# papermill's options whose next argument(s) are parameters (name value / name raw / yaml / b64).
_PARAM_PAIR = {"-p", "--parameters", "-r", "--parameters_raw"}
_PARAM_TEXT = {"-y", "--parameters_yaml", "-f", "--parameters_file"}
_PARAM_B64 = {"-b", "--parameters_base64"}


def argv_secret_positions(argv: list[str], secret_name: object, looks_secret: object) -> set[int]:
    """Indexes of a command line's arguments that are secret: a parameter value whose name is
    secret-named, base64 parameters, any argument that looks secret by itself.

    ``secret_name`` and ``looks_secret`` are the policy's predicates (callables of one string).

    Example:
        >>> sorted(argv_secret_positions(["papermill", "a.ipynb", "-p", "token", "x1"],
        ...        lambda n: n == "token", lambda v: False))
        [4]
    """
    assert callable(secret_name) and callable(looks_secret)
    secret: set[int] = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _PARAM_PAIR and i + 2 < len(argv):
            if secret_name(argv[i + 1]) or looks_secret(argv[i + 2]):
                secret.add(i + 2)
            i += 3
            continue
        if arg in _PARAM_B64 and i + 1 < len(argv):
            secret.add(i + 1)  # unreadable here: never kept
            i += 2
            continue
        named = arg.startswith("--") and "=" in arg and secret_name(arg[2:].partition("=")[0])
        if named or looks_secret(arg):
            secret.add(i)
        i += 1
    return secret
