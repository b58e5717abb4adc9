"""One configuration for every nbtrack front-end: the magics, the CLI, the server extension, replays.

Each front-end builds it once, with :func:`load_config` (a CLI command, the server extension's start,
``%load_ext nbtrack``), from the same sources in the same order. Highest first:

1. an explicit argument: a CLI flag (``nbtrack runs --tracking-uri URI``), a magic option
   (``%track start --experiment churn``), the command line of the Jupyter server or of the kernel
   (``jupyter lab --NbtrackConfig.max_replays=4``, a ``--config`` file given there);
2. Jupyter config files, ``c.NbtrackConfig.<name> = ...``: ``jupyter_server_config`` over
   ``jupyter_config``, each in the folders of ``jupyter --paths`` (``JUPYTER_CONFIG_DIR`` or
   ``~/.jupyter``, ``{sys.prefix}/etc/jupyter``, ``/usr/local/etc/jupyter``, ``/etc/jupyter``; the
   first listed wins), ``.json`` over ``.py`` in one folder - as every Jupyter application reads them;
3. the IPython profile: ``ipython_kernel_config`` over ``ipython_config`` in the profile folder, then
   ``{sys.prefix}/etc/ipython``, ``/usr/local/etc/ipython``, ``/etc/ipython``; a kernel reads its own
   profile, the CLI and the server the default one (``$IPYTHONDIR/profile_default``, else
   ``~/.ipython/profile_default``);
4. the environment variables named in each setting's help (``NBTRACK_TRACKING_URI``, ...), read only
   when no file sets the value;
5. the defaults.

A process a front-end starts (a replay job, a replay's kernel, one replay of a batch) gets the whole
configuration of its parent instead, as JSON in ``NBTRACK_CONFIG`` (:func:`to_env`: the environment,
never argv, since the tracking URI may carry credentials); :func:`load_config` then returns exactly
that. A ``.py`` config file is executed only when it mentions ``NbtrackConfig`` (or loads a
subconfig): the CLI and a kernel do not run a server's whole configuration. A config file that fails
to load is skipped with a one-line warning naming it, as Jupyter itself does.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from traitlets import Bool, Float, Int, List, Unicode, default
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

    autotrack = Bool(
        help=(
            "With nbtrack loaded in a kernel (%load_ext nbtrack, or c.InteractiveShellApp.extensions), "
            "start a tracked run the first time the kernel starts an MLflow run (mlflow.log_*, "
            "start_run, an autolog run) when none is tracked; it ends at %track stop or kernel "
            "shutdown. Env: NBTRACK_AUTOTRACK=1."
        )
    ).tag(config=True)

    @default("autotrack")
    def _default_autotrack(self) -> bool:
        return (_env("NBTRACK_AUTOTRACK") or "").lower() in ("1", "true", "yes")

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
#: replay kernels, the replays of a batch), so that they use exactly its values.
CONFIG_ENV = "NBTRACK_CONFIG"
#: Jupyter's config files (lowest first), in every folder of ``jupyter_config_path()``.
JUPYTER_FILES = ("jupyter_config", "jupyter_server_config")
#: The IPython profile's config files (lowest first), as a kernel of that profile reads them.
IPYTHON_FILES = ("ipython_config", "ipython_kernel_config")
_SECTION = "NbtrackConfig"
_log = logging.getLogger(__name__)


def to_env(config: NbtrackConfig, **changes: Any) -> dict[str, str]:
    """Environment variables that make :func:`load_config` in a child process return ``config``.

    Args:
        config: the configuration to hand on, whole.
        changes: settings that differ for the child (e.g. the store a replay's run is in).

    Raises:
        TypeError: a name in ``changes`` is no setting of :class:`NbtrackConfig`.

    Example:
        >>> env = to_env(NbtrackConfig(), store_dir="runs")
        >>> list(env), json.loads(env["NBTRACK_CONFIG"])["store_dir"]
        (['NBTRACK_CONFIG'], 'runs')
    """
    values = {name: getattr(config, name) for name in config.trait_names(config=True)}
    unknown = sorted(set(changes) - set(values))
    if unknown:
        raise TypeError(f"NbtrackConfig has no setting {', '.join(unknown)}")
    values.update(changes)
    return {CONFIG_ENV: json.dumps(values)}


def load_config(app_config: Any = None, *, shell: Any = None) -> NbtrackConfig:
    """The configuration, from every source in the order of this module's docstring.

    Args:
        app_config: the front-end application's own traitlets ``Config`` (the Jupyter server's: its
            command line and ``--config`` file, over the files it shares with everyone).
        shell: the IPython shell of a kernel: its ``config`` is the profile it loaded, and its
            application's command line ranks first.

    Example:
        >>> load_config().git_diff_max_bytes
        1000000
    """
    handed = _handed_down()
    if handed is not None:
        return handed
    if shell is not None:
        profile, top = getattr(shell, "config", None), _command_line(shell)
    else:
        profile, top = _read_files(IPYTHON_FILES, _ipython_dirs()), None
    layers = [profile, _read_files(JUPYTER_FILES, _jupyter_dirs()), app_config, top]
    values: dict[str, Any] = {}
    for layer in layers:  # lowest first: a later layer overrides the values it sets
        values.update(_section(layer))
    from traitlets.config import Config

    # Through traitlets, not as keyword arguments: an unknown name gets its "did you mean" warning.
    return NbtrackConfig(config=Config({_SECTION: values}))


def _handed_down() -> NbtrackConfig | None:
    """The configuration a parent process put in ``NBTRACK_CONFIG``, if any."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        return None
    try:
        values = json.loads(raw)
    except ValueError:
        values = None
    if not isinstance(values, dict):
        _log.warning("nbtrack: %s is not a JSON object of settings; ignored", CONFIG_ENV)
        return None
    known = NbtrackConfig.class_trait_names(config=True)
    return NbtrackConfig(**{k: v for k, v in values.items() if k in known})


def _section(config: Any) -> dict[str, Any]:
    """The ``NbtrackConfig`` section of a traitlets ``Config`` (or a plain dict), else {}."""
    if not isinstance(config, dict) or _SECTION not in config:
        return {}
    section = config[_SECTION]
    return dict(section) if isinstance(section, dict) else {}


def _command_line(shell: Any) -> Any:
    """The command-line config of the application running ``shell`` (an IPython kernel), if any."""
    node = getattr(shell, "parent", None)
    for _ in range(8):  # shell -> kernel -> kernel app; a bound, not a walk of arbitrary objects
        if node is None:
            return None
        cli = getattr(node, "cli_config", None)
        if cli is not None:
            return cli
        node = getattr(node, "parent", None)
    return None


def _jupyter_dirs() -> list[str]:
    from jupyter_core.paths import jupyter_config_path  # the search path of every Jupyter application

    return jupyter_config_path()


def _ipython_dirs() -> list[str]:
    """Where a kernel of the default IPython profile looks for config, first wins (as IPython's own
    application; computed here: importing IPython costs a CLI command far more than these paths)."""
    ipython_dir = os.environ.get("IPYTHONDIR") or os.path.join("~", ".ipython")
    dirs = [os.path.join(os.path.expanduser(ipython_dir), "profile_default")]
    dirs.append(os.path.join(sys.prefix, "etc", "ipython"))
    if os.name != "nt":
        dirs += ["/usr/local/etc/ipython", "/etc/ipython"]
    return dirs


def _read_files(names: tuple[str, ...], dirs: list[str]) -> dict[str, Any]:
    """The ``NbtrackConfig`` settings of config files ``names`` (lowest first) in ``dirs`` (first
    wins), merged in the order traitlets' ``Application.load_config_file`` merges them."""
    from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

    values: dict[str, Any] = {}
    for name in names:
        for folder in reversed(dirs):
            for loader_class, ext in ((PyFileConfigLoader, ".py"), (JSONFileConfigLoader, ".json")):
                if _worth_loading(os.path.join(folder, name + ext)):
                    values.update(_section(_load_file(loader_class(name + ext, path=folder))))
    return {_SECTION: values}


def _load_file(loader: Any) -> Any:
    """What one config file sets, through traitlets' own loader; None when it cannot be loaded."""
    try:
        return loader.load_config()
    except Exception as exc:  # noqa: BLE001 - a user's file may raise anything; Jupyter logs it too
        why = (str(exc).strip().splitlines() or [""])[0]
        path = loader.full_filename or loader.filename
        _log.warning(
            "nbtrack: config file %s ignored (%s: %s); fix or remove it",
            path,
            type(exc).__name__,
            why,
        )
        return None


def _worth_loading(path: str) -> bool:
    """Whether ``path`` is a config file that may set nbtrack's settings.

    A ``.py`` file runs arbitrary code (a server's may import jupyter_server, 1.4 s): it is executed
    only when it names ``NbtrackConfig`` or loads another file that may.
    """
    if path.endswith(".json"):
        return os.path.isfile(path)
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError:  # absent, a folder, unreadable: Jupyter would skip it too
        return False
    return _SECTION.encode() in text or b"load_subconfig" in text
