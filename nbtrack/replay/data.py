"""The replay workspace's data: every recorded DVC output linked from the cache at its recorded hash.

The workspace's ``.dvc/config.local`` points ``cache.dir`` at the source project's cache and lists
link types before ``copy``; only objects the cache lacks are fetched from the DVC remote; the
user's cache objects are checked, never rewritten or deleted.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtrack.capture.data import collect_stages, import_dvc, one_line, rel_path
from nbtrack.errors import CannotReplay
from nbtrack.redact import strip_url_credentials

if TYPE_CHECKING:
    from nbtrack.replay.workspace import Workspace

_LINKS = "reflink,hardlink,symlink,copy"
_CACHE_MODE = 0o444  # DVC's mode for a cache object it trusts without hashing it again
_FS_IOC_FIEMAP = 0xC020660B
_FIEMAP_EXTENT_SHARED = 0x2000


@dataclass
class RestoredOutput:
    """One DVC output as checked out in the workspace."""

    path: str  # relative to the DVC root, as recorded
    hash_name: str
    hash: str
    is_dir: bool
    link: str  # reflink | hardlink | symlink | copy; for a folder, what most of its files got
    fetched: bool  # True when it had to come from the DVC remote
    seconds: float


def inside(path: str, root: str) -> str | None:
    """``path`` relative to ``root``, or None when it lies outside."""
    for a, b in ((path, root), (os.path.realpath(path), os.path.realpath(root))):
        try:
            rel = os.path.relpath(a, b)
        except ValueError:  # another drive
            continue
        if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
            return "" if rel == os.curdir else rel
    return None


# --- data ----------------------------------------------------------------------------------------
def restore_data(
    ws: Workspace,
    data: dict[str, Any],
    git_data: dict[str, Any],
    src_top: Path,
    progress: bool,
    say: Callable[[str], None],
) -> None:
    rel = inside(str(data["root"]), git_data["root"])
    if rel is None:
        ws.risks.append(f"the DVC project {data['root']} is outside the git repository; no data is restored")
        return
    ws.dvc_root = ws.repo / rel
    outputs = list(data.get("outputs") or [])
    ws.risks.extend(_data_risks(outputs))
    if not (ws.dvc_root / ".dvc").is_dir():
        raise CannotReplay(
            f"{Path(rel, '.dvc').as_posix()} is not in commit {str(git_data.get('commit'))[:12]}; "
            "commit the DVC project's .dvc folder (git add .dvc) and record the run again"
        )
    if not outputs:
        return
    cache_dir = _configure_dvc(ws.dvc_root, src_top / rel, ws.base)
    import_dvc()  # heavy (~0.5 s): only when there is data to restore
    with _dvc_logging(quiet=not progress) as errors:
        repo = _open_repo(ws)
        try:
            cached, rewritten = _align_dvc_files(repo, outputs, ws.risks, git_data)
            if rewritten:
                repo.close()  # DVC must load the rewritten DVC files again
                repo = _open_repo(ws)
            # DVC's graph now (it imports networkx), so that each output times its own work only;
            # what is wrong with an output is told when it is checked out.
            with suppress(Exception):
                repo.find_outs_by_path(str(ws.dvc_root / outputs[0]["path"]))
            for out in cached:
                ws.data.append(_restore_one(repo, ws, out, cache_dir, errors, say))
        finally:
            repo.close()


def _open_repo(ws: Workspace) -> Any:
    from dvc.repo import Repo

    repo = Repo(str(ws.dvc_root))
    # $DVC_SITE_CACHE_DIR beats core.site_cache_dir: then DVC's state for this repository lives
    # there, in a folder of its own that cleanup() removes too.
    state = str(repo.site_cache_dir)
    if inside(state, str(ws.base)) is None and state not in ws._elsewhere:
        ws._elsewhere.append(state)
    return repo


def _data_risks(outputs: list[dict[str, Any]]) -> list[str]:
    risks = []
    for out in outputs:
        path, name, recorded = out["path"], out.get("hash_name") or "md5", out["hash"]
        if out.get("status") == "modified":
            risks.append(
                f"{path} was modified ({name} {out.get('workspace_hash')}, not committed to DVC) when the "
                f"run was recorded; the replay uses the DVC-recorded version {recorded}"
            )
        elif out.get("status") == "missing":
            risks.append(
                f"{path} was missing from the workspace when the run was recorded; the replay "
                f"restores the DVC-recorded version {recorded}, which the run did not have"
            )
        elif out.get("status") == "unknown":
            risks.append(
                f"{path} could not be checked when the run was recorded; the replay uses the "
                f"DVC-recorded version {recorded}, which the run may not have read"
            )
    return risks


def _configure_dvc(ws_dvc: Path, src_dvc: Path, base: Path) -> str:
    """Write the workspace's ``.dvc/config.local``: the source's, with its cache and link types.

    Returns the cache folder. The source's local config holds remote credentials; it is copied to
    a temporary folder on the same machine and never into a snapshot.
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


@contextmanager
def _dvc_logging(*, quiet: bool) -> Iterator[list[str]]:
    """Collect DVC's error log lines (a fetch's reasons); ``quiet`` also hides its bars and notes."""
    errors: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record.getMessage())

    handler = _Keep(logging.ERROR)
    names = ("dvc", "dvc_data", "dvc_objects")
    # DVC's and dvc-data's progress bars turn themselves off when their logger is above ERROR.
    levels = {name: logging.ERROR for name in names} | dict.fromkeys(
        ("dvc.progress", "dvc_data.callbacks"), logging.CRITICAL
    )
    before = {name: logging.getLogger(name).level for name in levels}
    for name in names:
        logging.getLogger(name).addHandler(handler)
    if quiet:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    try:
        yield errors
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(handler)
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


def _align_dvc_files(
    repo: Any, outputs: list[dict[str, Any]], risks: list[str], git_data: dict[str, Any]
) -> tuple[list[dict[str, Any]], bool]:
    """Make the workspace's DVC files name the recorded hashes.

    Returns the outputs DVC keeps in its cache (a ``cache: false`` output, such as a metrics file,
    is git's to restore) and whether a DVC file was rewritten or removed.

    A DVC file that cannot be loaded (broken YAML, ...) is removed from the workspace: DVC's
    checkout loads every DVC file of the project and would fail on it, for every output.
    """
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta

    problems: list[str] = []
    broken: list[str] = []
    found = {
        rel_path(out.fs_path, repo.root_dir): (stage, out)
        for stage, _ in collect_stages(repo, {}, problems, broken)
        for out in stage.outs
    }
    commit = str(git_data.get("commit"))[:12]
    for path in broken:
        os.unlink(path)  # the workspace's copy: the user's file is untouched
    if broken:
        names = ", ".join(rel_path(path, repo.root_dir) for path in broken)
        them = "them" if len(broken) > 1 else "it"
        risks.append(
            f"DVC cannot load {names} at commit {commit}; the workspace leaves {them} out so that DVC "
            "can check out the other outputs"
        )
    cached, rewritten = [], bool(broken)
    for rec in outputs:
        path, source = rec["path"], rec.get("source") or "its DVC file"
        if path not in found:
            said = f" (DVC says: {problems[0]})" if problems else ""
            raise CannotReplay(
                f"{path} ({rec.get('hash_name')} {rec['hash']}) is tracked by {source}, which is not "
                f"in commit {commit} nor in git.diff{said}; commit {source.split(':')[0]} and record "
                "the run again"
            )
        stage, out = found[path]
        if not out.use_cache:
            if not os.path.lexists(out.fs_path):
                risks.append(f"{path} is a DVC output kept out of the cache and not in commit {commit}")
            continue
        cached.append(rec)
        current = str(out.hash_info.value) if out.hash_info else None
        if current == rec["hash"]:
            continue
        risks.append(
            f"{source} at commit {commit} says {path} is {current}, the run recorded {rec['hash']}; "
            "the replay uses the recorded version (the workspace's DVC file is rewritten)"
        )
        out.hash_info = HashInfo(rec.get("hash_name") or "md5", rec["hash"])
        out.meta = Meta(isdir=bool(rec.get("is_dir")), size=rec.get("size"), nfiles=rec.get("nfiles"))
        if ":" in source:  # a pipeline stage: only its dvc.lock entry changes
            stage.dvcfile.dump(stage, update_pipeline=False)
        else:
            stage.dvcfile.dump(stage)
        rewritten = True
    return cached, rewritten


def _objects(odb: Any, out: dict[str, Any]) -> list[tuple[str, str]] | None:
    """(workspace path relative to the DVC root, cache object path) of every file of an output.

    None when a folder's listing (its ``.dir`` object) is not in the cache.
    """
    top = odb.oid_to_path(out["hash"])
    if not out.get("is_dir"):
        return [(out["path"], top)]
    try:
        with open(top, encoding="utf-8") as fobj:
            entries = json.load(fobj)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise CannotReplay(
            f"the DVC cache object {top} listing {out['path']} is damaged; delete it and run "
            f"`dvc fetch {out['path']}`"
        ) from exc
    name = out.get("hash_name") or "md5"
    return [(f"{out['path']}/{e['relpath']}", odb.oid_to_path(e.get(name) or e["md5"])) for e in entries]


def _missing(odb: Any, out: dict[str, Any]) -> list[str]:
    """Cache objects of the output that are absent (just the ``.dir`` object if the listing is)."""
    objects = _objects(odb, out)
    if objects is None:
        return [odb.oid_to_path(out["hash"])]
    return [obj for _, obj in objects if not os.path.exists(obj)]


def _verify(odb: Any, out: dict[str, Any]) -> None:
    """Hash the objects DVC itself would not trust (not read-only), as ``dvc``'s cache check does."""
    from dvc_data.hashfile.hash import file_md5

    for rel, obj in _objects(odb, out) or []:
        if stat.S_IMODE(os.stat(obj).st_mode) == _CACHE_MODE:
            continue
        expected = os.path.basename(os.path.dirname(obj)) + os.path.basename(obj).removesuffix(".dir")
        actual = file_md5(obj, name=out.get("hash_name") or "md5")
        if actual != expected:
            raise CannotReplay(
                f"the DVC cache copy of {rel} ({obj}) is damaged: it hashes to {actual}, not {expected}; "
                f"delete it and run `dvc fetch {out['path']}`, or `dvc add` it again where the data is"
            )


def _restore_one(
    repo: Any,
    ws: Workspace,
    out: dict[str, Any],
    cache_dir: str,
    errors: list[str],
    say: Callable[[str], None],
) -> RestoredOutput:
    path, name, value = out["path"], out.get("hash_name") or "md5", out["hash"]
    root = ws.dvc_root
    assert root is not None
    odb = repo.cache.legacy if name == "md5-dos2unix" else repo.cache.local
    target = str(root / path)
    started = time.perf_counter()
    missing = _missing(odb, out)
    if missing:
        remote = out.get("remote") or repo.config["core"].get("remote")
        url = (repo.config["remote"].get(remote) or {}).get("url") if remote else None
        shown = strip_url_credentials(str(url)) if url else "not defined in .dvc/config"
        where = f"the remote '{remote}' ({shown})" if remote else "no DVC remote"
        say(f"fetching {path} ({name} {value[:8]}…, {len(missing)} object(s)) from {where}")
        from dvc.exceptions import DownloadError

        del errors[:]
        try:
            repo.fetch(targets=[target])
        except DownloadError:
            pass  # what is still missing is told below
        except Exception as exc:  # noqa: BLE001 - no remote, unknown remote, auth: all one message
            errors.append(one_line(exc))
        if _missing(odb, out):
            push = out.get("source") if str(out.get("source", "")).endswith(".dvc") else path
            fix = f"push it from a machine that has it (dvc push {push}) or restore the cache"
            lead = f"{path} ({name} {value})"
            if not remote:
                raise CannotReplay(
                    f"{lead} is not in the DVC cache ({cache_dir}) and the project has no DVC remote; {fix}"
                )
            if errors:
                raise CannotReplay(
                    f"{lead} is not in the DVC cache ({cache_dir}) and fetching it from {where} failed "
                    f"({errors[0]}); check the remote and its credentials (dvc remote list), or {fix}"
                )
            raise CannotReplay(f"{lead} is in neither the DVC cache ({cache_dir}) nor {where}; {fix}")
    _verify(odb, out)
    try:
        repo.checkout(targets=[target], force=True)
    except Exception as exc:  # DVC's many checkout errors: one fixable line
        raise CannotReplay(
            f"DVC could not check out {path} ({name} {value}) in the workspace ({one_line(exc)}); "
            f"run `dvc checkout {path}` in a kept workspace (keep=True) to see why"
        ) from exc
    kinds: Counter[str] = Counter()
    for rel, obj in _objects(odb, out) or []:
        try:
            kinds[_link_kind(root / rel, obj)] += 1
            st = os.stat(root / rel)
        except OSError as exc:
            raise CannotReplay(
                f"DVC did not restore {rel} of {path} ({name} {value}); run `dvc checkout {path}` to see why"
            ) from exc
        ws._inputs[rel] = (st.st_ino, st.st_mtime_ns, st.st_size)
    link = kinds.most_common(1)[0][0] if kinds else "copy"
    say(f"restoring {path} ({name} {value[:8]}…) from the DVC {'remote' if missing else 'cache'}: {link}")
    seconds = round(time.perf_counter() - started, 3)
    return RestoredOutput(path, name, value, bool(out.get("is_dir")), link, bool(missing), seconds)


def _link_kind(path: Path, obj: str) -> str:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    cached = os.stat(obj)
    if (st.st_dev, st.st_ino) == (cached.st_dev, cached.st_ino):
        return "hardlink"
    return "reflink" if _shares_extents(path) else "copy"


def _shares_extents(path: Path) -> bool:
    """True when the file's first extent is shared (Linux FIEMAP): a reflink, not a copy.

    Other systems (and empty files) answer False: a clone is then reported as a copy.
    """
    if sys.platform != "linux":
        return False
    import fcntl
    import struct

    # struct fiemap (32 bytes) asking for one extent, then one struct fiemap_extent (56 bytes).
    buf = bytearray(struct.pack("=QQIIII", 0, 2**64 - 1, 0, 0, 1, 0) + bytes(56))
    try:
        with open(path, "rb") as fobj:
            fcntl.ioctl(fobj.fileno(), _FS_IOC_FIEMAP, buf)
    except OSError:
        return False
    mapped = struct.unpack_from("=I", buf, 20)[0]
    flags = struct.unpack_from("=I", buf, 32 + 40)[0]
    return bool(mapped and flags & _FIEMAP_EXTENT_SHARED)
