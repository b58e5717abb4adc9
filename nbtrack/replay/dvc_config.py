"""The DVC configuration of a replay workspace: the source project's own, pointed at its cache.

``.dvc/config.local`` in the workspace names the source's cache folder and lists link types
before ``copy`` (a 1 GiB input is then a link made in milliseconds, not a copy), keeps DVC's state
for the workspace under the workspace's folder, and carries the source's remotes and their
credentials: the workspace is a temporary folder on the same machine, never part of a snapshot.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nbtrack.capture.data import import_dvc, one_line
from nbtrack.errors import CannotReplay

__all__ = ["configure_dvc"]

_LINKS = "reflink,hardlink,symlink,copy"


def configure_dvc(ws_dvc: Path, src_dvc: Path, base: Path) -> str:
    """Write the workspace's ``.dvc/config.local``: the source's, with its cache and link types.

    Returns the cache folder. The source's local config holds remote credentials; it is copied to
    a temporary folder on the same machine and never into a snapshot.

    Raises:
        CannotReplay: DVC cannot read the source's or the commit's configuration.

    Example:
        >>> configure_dvc(ws.repo, Path("~/proj").expanduser(), ws.base)  # doctest: +SKIP
        '/home/me/proj/.dvc/cache'
    """
    import_dvc()
    from dvc.config import Config, ConfigError, merge
    from dvc.config_schema import RelPath

    has_dvc = (src_dvc / ".dvc").is_dir()
    try:
        src = Config(dvc_dir=str(src_dvc / ".dvc")) if has_dvc else None
        local = src.load_one("local") if src is not None else {}
        ws_config = Config(dvc_dir=str(ws_dvc / ".dvc"))
        committed = ws_config.load_one("repo")
    except ConfigError as exc:
        raise CannotReplay(
            f"DVC cannot read the configuration of {src_dvc} or of the run's commit ({one_line(exc)}); "
            "fix it (dvc config --list shows it)"
        ) from exc
    cache = dict(src["cache"]) if src is not None else {}
    # What DVC uses in the source: a configured cache.dir, else its .dvc/cache; a source that is
    # not a DVC project (an odd checkout) gets a cache that goes with the workspace.
    cache_dir = str(cache.get("dir") or (src_dvc / ".dvc" / "cache" if has_dvc else base / "dvc-cache"))
    types = cache.get("type") or _LINKS
    remotes = local.setdefault("remote", {})
    for name, conf in (committed.get("remote") or {}).items():
        url = conf.get("url")
        if isinstance(url, RelPath) and "url" not in remotes.get(name, {}):
            # A relative local remote is relative to the .dvc folder it was written for.
            moved = os.path.join(str(src_dvc / ".dvc"), os.path.relpath(url, str(ws_dvc / ".dvc")))
            remotes.setdefault(name, {})["url"] = os.path.normpath(moved)
    local.setdefault("cache", {}).update(
        dir=cache_dir, type=types if isinstance(types, str) else ",".join(types)
    )
    if cache.get("shared"):
        local["cache"]["shared"] = cache["shared"]
    local.setdefault("core", {}).update(site_cache_dir=str(base / "dvc-site-cache"), analytics=False)
    local = _plain_paths(local, RelPath)
    try:
        with ws_config.edit("local") as conf:
            merge(conf, local)
    except ConfigError as exc:
        raise CannotReplay(
            f"the DVC configuration for the workspace is invalid ({one_line(exc)}); "
            f"fix {src_dvc / '.dvc' / 'config.local'}"
        ) from exc
    return cache_dir


def _plain_paths(value: Any, relpath: type) -> Any:
    """Paths DVC resolved while reading (``RelPath``) as plain absolute strings, so they stay absolute."""
    if isinstance(value, dict):
        return {k: _plain_paths(v, relpath) for k, v in value.items()}
    return str(value) if isinstance(value, relpath) else value
