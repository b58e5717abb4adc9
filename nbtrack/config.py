"""One configuration for the magics, the server extension and the CLI.

Set values in any Jupyter/IPython config file (``c.NbtrackConfig.git_diff_max_bytes = 2_000_000``),
or through the environment variables named in each trait's help; the environment is read when no
config file sets the value.
"""

from __future__ import annotations

import json
import os
from typing import Any

from traitlets import Float, Int, List, Unicode, default
from traitlets.config import Configurable


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


class NbtrackConfig(Configurable):  # type: ignore[misc]
    """Settings shared by every nbtrack front-end."""

    tracking_uri = Unicode(
        help=(
            "MLflow tracking URI. Empty: an embedded SQLite store in <project root>/<store_dir>. "
            "Env: NBTRACK_TRACKING_URI, then MLFLOW_TRACKING_URI."
        )
    ).tag(config=True)

    store_dir = Unicode(
        help="Folder, relative to the project root, of the embedded store. Env: NBTRACK_STORE_DIR."
    ).tag(config=True)

    experiment = Unicode(
        help=(
            "Experiment used when %track start names none. Empty: the project folder's name. "
            "Env: NBTRACK_EXPERIMENT, then MLFLOW_EXPERIMENT_NAME."
        )
    ).tag(config=True)

    git_diff_max_bytes = Int(
        1_000_000,
        help="Cap on the uncommitted diff kept in a snapshot; the cap and the full size are recorded.",
    ).tag(config=True)

    untracked_max_files = Int(
        200, help="Cap on the untracked files listed (and included in git.diff) per snapshot."
    ).tag(config=True)

    untracked_max_file_bytes = Int(
        100_000, help="Untracked files larger than this are listed but not included in git.diff."
    ).tag(config=True)

    notebook_max_bytes = Int(
        50_000_000, help="Saved notebooks larger than this are not copied into the run (recorded)."
    ).tag(config=True)

    history_max_cells = Int(
        10_000, help="Cap on the execution history kept per kernel; older cells are dropped (recorded)."
    ).tag(config=True)

    redact_env_patterns = List(
        Unicode(),
        help=(
            "Extra environment-variable name patterns (fnmatch, case-insensitive) whose values are "
            "never stored. Env: NBTRACK_REDACT_ENV (comma-separated)."
        ),
    ).tag(config=True)

    redact_value_patterns = List(
        Unicode(),
        help=(
            "Extra regular expressions for secret values, redacted wherever nbtrack records text "
            "(environment, tags, params, snapshot.json, notebooks, git.diff); a group named `secret` "
            "narrows the redaction to that part. Env: NBTRACK_REDACT_VALUES (a JSON list, or one "
            "regex per line)."
        ),
    ).tag(config=True)

    server_timeout = Float(
        1.0, help="Seconds to wait for a Jupyter server when asking it for the notebook's path."
    ).tag(config=True)

    mlflow_ui_url = Unicode(
        help=(
            "URL of an MLflow UI showing the tracking store (e.g. http://localhost:5000), for the panel's "
            "links to runs. Empty: the tracking server itself when the store is an HTTP server, else no "
            "link. Env: NBTRACK_MLFLOW_UI_URL."
        )
    ).tag(config=True)

    max_replays = Int(
        2, help="Replays the server extension runs at once; further replay requests wait in a queue."
    ).tag(config=True)

    replay_timeout = Float(
        1800.0,
        help="Seconds a replay started from the panel may run before the server extension stops it.",
    ).tag(config=True)

    tracking_timeout = Float(
        5.0,
        help=(
            "Seconds one call of nbtrack to a tracking server may take (the reachability check at "
            "%track start, each request of an upload, the CLI and the panel), retries included as far "
            "as MLflow allows; MLflow's own default waits ~4 min for a dead server. "
            "Env: NBTRACK_TRACKING_TIMEOUT."
        ),
    ).tag(config=True)

    spool_dir = Unicode(
        help=(
            "Folder of the local spool: with a tracking server, each run is written here first (an "
            "embedded MLflow store per server) and uploaded in the background, or by `nbtrack sync` "
            "when the server was unreachable. Empty: $XDG_DATA_HOME/nbtrack/spool "
            "(~/.local/share/nbtrack/spool). Env: NBTRACK_SPOOL_DIR."
        )
    ).tag(config=True)

    @default("tracking_uri")
    def _default_tracking_uri(self) -> str:
        return _env("NBTRACK_TRACKING_URI", "MLFLOW_TRACKING_URI") or ""

    @default("mlflow_ui_url")
    def _default_mlflow_ui_url(self) -> str:
        return _env("NBTRACK_MLFLOW_UI_URL") or ""

    @default("tracking_timeout")
    def _default_tracking_timeout(self) -> float:
        raw = _env("NBTRACK_TRACKING_TIMEOUT")
        try:
            return max(0.1, float(raw)) if raw else 5.0
        except ValueError:
            return 5.0

    @default("spool_dir")
    def _default_spool_dir(self) -> str:
        explicit = _env("NBTRACK_SPOOL_DIR")
        if explicit:
            return explicit
        data_home = _env("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        return os.path.join(data_home, "nbtrack", "spool")

    @default("store_dir")
    def _default_store_dir(self) -> str:
        return _env("NBTRACK_STORE_DIR") or ".nbtrack"

    @default("experiment")
    def _default_experiment(self) -> str:
        return _env("NBTRACK_EXPERIMENT", "MLFLOW_EXPERIMENT_NAME") or ""

    @default("redact_env_patterns")
    def _default_redact_env_patterns(self) -> list[str]:
        raw = _env("NBTRACK_REDACT_ENV") or ""
        return [p.strip() for p in raw.split(",") if p.strip()]

    @default("redact_value_patterns")
    def _default_redact_value_patterns(self) -> list[str]:
        return _patterns_from_env(_env("NBTRACK_REDACT_VALUES") or "")


def _patterns_from_env(raw: str) -> list[str]:
    """``NBTRACK_REDACT_VALUES``: a JSON list of regexes, else one regex per line (commas are regex)."""
    if raw.lstrip().startswith("["):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
            return [p for p in parsed if p]
    return [line.strip() for line in raw.splitlines() if line.strip()]


#: The whole configuration, as JSON, handed by a front-end to the processes it starts (replay jobs,
#: replay kernels), so that they use exactly its values.
CONFIG_ENV = "NBTRACK_CONFIG"


def to_env(config: NbtrackConfig) -> dict[str, str]:
    """Environment variables that make :func:`load_config` in a child process return ``config``.

    Example:
        >>> list(to_env(NbtrackConfig()))
        ['NBTRACK_CONFIG']
    """
    values = {
        name: getattr(config, name) for name in config.trait_names() if config.trait_metadata(name, "config")
    }
    return {CONFIG_ENV: json.dumps(values)}


def load_config(parent_config: Any = None) -> NbtrackConfig:
    """Build the config, from a Jupyter/IPython ``Config`` object when one is at hand.

    Example:
        >>> load_config().git_diff_max_bytes
        1000000
    """
    raw = os.environ.get(CONFIG_ENV)
    if raw:
        # Started by a front-end that passed its whole configuration: that is the configuration.
        try:
            values = json.loads(raw)
        except ValueError:
            values = None
        if isinstance(values, dict):
            known = NbtrackConfig.class_trait_names(config=True)
            return NbtrackConfig(**{k: v for k, v in values.items() if k in known})
    if parent_config is None:
        return NbtrackConfig()
    return NbtrackConfig(config=parent_config)
