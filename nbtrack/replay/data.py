"""The replay workspace's data: every recorded DVC output checked out from the cache at its recorded hash.

The workspace's ``.dvc/config.local`` points ``cache.dir`` at the source project's cache and lists
link types before ``copy``; only objects the cache lacks are fetched from the DVC remote. The
outputs the run writes are then made reflinks or copies, never links into the cache, and the
files still linked are watched (:mod:`nbtrack.replay.cache_guard`): the user's cache objects are
checked, never rewritten by the replay, nor deleted.
"""

from __future__ import annotations

import logging
import os
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
from nbtrack.replay.cache_guard import detach, written_outputs
from nbtrack.replay.dvc_cache import cache_objects, link_kind, missing_objects, verify_objects
from nbtrack.replay.dvc_config import configure_dvc

if TYPE_CHECKING:
    from nbtrack.replay.workspace import Workspace


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
    """``path`` relative to ``root``, or None when it lies outside.

    Example:
        >>> inside("/work/proj/data", "/work/proj"), inside("/work/proj", "/work/proj")
        ('data', '')
        >>> inside("/etc", "/work") is None
        True
    """
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
    """Check out every output of the run's data section in the workspace, at its recorded hash.

    Args:
        ws: the workspace, its code checked out; gets the restored outputs (``data``) and risks.
        data: the snapshot's ``data`` section (``root``, ``outputs``).
        git_data: the snapshot's ``git`` section (``root``, ``commit``).
        src_top: the top of the source repository, whose DVC cache and config the workspace uses.
        progress: show DVC's progress bars while fetching.
        say: receives one-line status messages.

    Raises:
        CannotReplay: an output is in neither the cache nor the remote, or DVC cannot check it out.

    Example:
        >>> restore_data(ws, snap.section("data").data, git_data, Path("."), False, print)  # doctest: +SKIP
        restoring data/churn.csv (md5 3f2a9c01…) from the DVC cache: hardlink
    """
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
    cache_dir = configure_dvc(ws.dvc_root, src_top / rel, ws.base)
    ws.guard.source_root = src_top / rel
    written = written_outputs(data)
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
                ws.data.append(_restore_one(repo, ws, out, cache_dir, errors, say, out["path"] in written))
        finally:
            repo.close()


def _open_repo(ws: Workspace) -> Any:
    from dvc.repo import Repo

    repo = Repo(str(ws.dvc_root))
    # $DVC_SITE_CACHE_DIR beats core.site_cache_dir: then DVC's state for this repository lives
    # there, in a folder of its own that cleanup() removes too.
    ws.remember_state_folder(str(repo.site_cache_dir))
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
    """
    problems: list[str] = []
    broken: list[str] = []
    found = {
        rel_path(out.fs_path, repo.root_dir): (stage, out)
        for stage, _ in collect_stages(repo, {}, problems, broken)
        for out in stage.outs
    }
    commit = str(git_data.get("commit"))[:12]
    _drop_broken(repo, broken, risks, commit)
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
        if current != rec["hash"]:
            risks.append(
                f"{source} at commit {commit} says {path} is {current}, the run recorded {rec['hash']}; "
                "the replay uses the recorded version (the workspace's DVC file is rewritten)"
            )
            _rewrite_hash(stage, out, rec, pipeline=":" in source)
            rewritten = True
    return cached, rewritten


def _drop_broken(repo: Any, broken: list[str], risks: list[str], commit: str) -> None:
    """Remove the DVC files DVC cannot load (broken YAML, ...) from the workspace.

    DVC's checkout loads every DVC file of the project and would fail on one, for every output.
    """
    for path in broken:
        os.unlink(path)  # the workspace's copy: the user's file is untouched
    if broken:
        names = ", ".join(rel_path(path, repo.root_dir) for path in broken)
        them = "them" if len(broken) > 1 else "it"
        risks.append(
            f"DVC cannot load {names} at commit {commit}; the workspace leaves {them} out so that DVC "
            "can check out the other outputs"
        )


def _rewrite_hash(stage: Any, out: Any, rec: dict[str, Any], *, pipeline: bool) -> None:
    """Write the recorded hash into the output's DVC file (for a pipeline stage, its dvc.lock entry)."""
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta

    out.hash_info = HashInfo(rec.get("hash_name") or "md5", rec["hash"])
    out.meta = Meta(isdir=bool(rec.get("is_dir")), size=rec.get("size"), nfiles=rec.get("nfiles"))
    if pipeline:
        stage.dvcfile.dump(stage, update_pipeline=False)
    else:
        stage.dvcfile.dump(stage)


def _restore_one(
    repo: Any,
    ws: Workspace,
    out: dict[str, Any],
    cache_dir: str,
    errors: list[str],
    say: Callable[[str], None],
    written: bool,
) -> RestoredOutput:
    """Check one output out at its recorded hash: from the cache, else fetched from the remote; one
    the run writes (``written``) as a reflink or copy."""
    path, name, value = out["path"], out.get("hash_name") or "md5", out["hash"]
    root = ws.dvc_root
    assert root is not None
    odb = repo.cache.legacy if name == "md5-dos2unix" else repo.cache.local
    started = time.perf_counter()
    missing = missing_objects(odb, out)
    if missing:
        _fetch(repo, odb, out, str(root / path), len(missing), cache_dir, errors, say)
    verify_objects(odb, out)
    try:
        repo.checkout(targets=[str(root / path)], force=True)
    except Exception as exc:  # DVC's many checkout errors: one fixable line
        raise CannotReplay(
            f"DVC could not check out {path} ({name} {value}) in the workspace ({one_line(exc)}); "
            f"run `dvc checkout {path}` in a kept workspace (keep=True) to see why"
        ) from exc
    link = _guard_links(ws, root, odb, out, written)
    say(f"restoring {path} ({name} {value[:8]}…) from the DVC {'remote' if missing else 'cache'}: {link}")
    seconds = round(time.perf_counter() - started, 3)
    return RestoredOutput(path, name, value, bool(out.get("is_dir")), link, bool(missing), seconds)


def _fetch(
    repo: Any,
    odb: Any,
    out: dict[str, Any],
    target: str,
    count: int,
    cache_dir: str,
    errors: list[str],
    say: Callable[[str], None],
) -> None:
    """Fetch the output's ``count`` missing cache objects from its DVC remote, or say why it cannot."""
    from dvc.exceptions import DownloadError

    path, name, value = out["path"], out.get("hash_name") or "md5", out["hash"]
    remote = out.get("remote") or repo.config["core"].get("remote")
    url = (repo.config["remote"].get(remote) or {}).get("url") if remote else None
    shown = strip_url_credentials(str(url)) if url else "not defined in .dvc/config"
    where = f"the remote '{remote}' ({shown})" if remote else "no DVC remote"
    say(f"fetching {path} ({name} {value[:8]}…, {count} object(s)) from {where}")
    del errors[:]
    try:
        repo.fetch(targets=[target])
    except DownloadError:
        pass  # what is still missing is told below
    except Exception as exc:  # noqa: BLE001 - no remote, unknown remote, auth: all one message
        errors.append(one_line(exc))
    if not missing_objects(odb, out):
        return
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


def _guard_links(ws: Workspace, root: Path, odb: Any, out: dict[str, Any], written: bool) -> str:
    """Detach from the cache the files of an output the run writes, and the links no copy in the
    project could mend; watch the rest that DVC linked.

    Returns the link most of the output's files got.
    """
    path, name, value = out["path"], out.get("hash_name") or "md5", out["hash"]
    kinds: Counter[str] = Counter()
    for rel, obj in cache_objects(odb, out) or []:
        try:
            kind = link_kind(root / rel, obj)
        except OSError as exc:
            raise CannotReplay(
                f"DVC did not restore {rel} of {path} ({name} {value}); run `dvc checkout {path}` to see why"
            ) from exc
        if kind in ("hardlink", "symlink") and (written or not ws.guard.can_link(rel, obj)):
            try:
                kind = detach(root / rel)
            except OSError as exc:
                raise CannotReplay(
                    f"could not copy {rel} out of the DVC cache into the replay's workspace "
                    f"({one_line(exc)}); free space in {ws.base.parent} or choose another folder"
                ) from exc
        elif kind in ("hardlink", "symlink"):
            ws.guard.watch(rel, obj, name)
        kinds[kind] += 1
    return kinds.most_common(1)[0][0] if kinds else "copy"
