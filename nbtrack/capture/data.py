"""The data section: every DVC-tracked output, its recorded hash, and whether the workspace matches it.

Outputs come from every ``*.dvc`` file and every ``dvc.yaml`` stage (hashes from its ``dvc.lock``),
found by the walk DVC's own index does (``.dvcignore`` honoured; git-ignored and output folders
pruned). DVC's loaders build the stages and outputs, but nbtrack reads the YAML itself so that an
unquoted all-digit md5 stays a string (DVC's loader makes it an int: ``dvc status`` crashes on it).

The workspace check is DVC's: ``hash_file`` for files and ``build`` for folders, answered from DVC's
state cache (inode/mtime/size → hash), which they fill when it lacks an entry, so an unchanged 1 GiB
file is never re-read. Nothing here takes DVC's repository lock (``Repo.status`` does, and fails
after ~3 s while a ``dvc`` command runs); the state is SQLite in WAL mode, so reading it never waits.

On top, ``ctx.state["data"]`` keeps the open ``Repo``, the parsed DVC files and a memo of each
folder output's hash; a folder is answered without rebuilding it (``capture/folders.py``).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtrack.capture.base import RACY_NS, CaptureContext, CaptureResult, SectionUnavailable
from nbtrack.capture.folders import folder_hash
from nbtrack.capture.locate import nearest_ancestor
from nbtrack.errors import CaptureError
from nbtrack.redact import Redactor, policy
from nbtrack.tags import DATASET_INPUT as INPUT
from nbtrack.tags import DATASET_OUTPUT as OUTPUT

STATUSES = ("clean", "modified", "missing", "unknown")
# Keys whose values DVC needs as strings; plain YAML scalars there may parse as int or float.
_STRING_KEYS = frozenset({"md5", "etag", "checksum", "version_id", "path", "rev", "rev_lock"})


@dataclass
class _KernelCache:
    """What survives between captures in one kernel (``ctx.state["data"]``)."""

    root: str
    repo: Any
    # (folder, hash name) -> (fingerprint of its files' stat keys, its hash): see capture/folders.py
    folders: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    # DVC file -> (its stat key, parsed and validated content, text)
    parsed: dict[str, tuple[tuple[int, ...], dict[str, Any], str]] = field(default_factory=dict)


class DataProvider:
    """Records every DVC-tracked output of the project and whether the workspace copy matches."""

    name = "data"

    def capture(self, ctx: CaptureContext) -> CaptureResult:
        root = find_dvc_root(ctx.project_root)
        if root is None:
            raise SectionUnavailable(
                f"not a DVC project: no .dvc folder at or above {ctx.project_root}; "
                "run `dvc init` to track data"
            )
        import_dvc()
        from dvc import __version__

        cache = _open(ctx, root)
        repo = cache.repo
        problems: list[str] = []
        remote, remotes = _remotes(repo.config, problems, policy(ctx.config))
        stages = collect_stages(repo, cache.parsed, problems)
        described = (
            _describe(repo, cache, stage, out, source, problems)
            for stage, source in stages
            for out in stage.outs
        )
        outputs = sorted((e for e in described if e is not None), key=lambda o: (o["path"], o["source"]))
        summary = {s: sum(o["status"] == s for o in outputs) for s in STATUSES}
        data = {"root": repo.root_dir, "dvc_version": str(__version__), "outputs": outputs}
        data.update(remote=remote, remotes=remotes, summary=summary, problems=problems)
        return CaptureResult(data=data)


def find_dvc_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` that holds a ``.dvc`` folder, else None."""
    return nearest_ancestor(start, lambda f: (f / ".dvc").is_dir())


def dataset_inputs(
    section_data: dict[str, Any], *, context: str = INPUT, paths: Collection[str] | None = None
) -> list[dict[str, str]]:
    """MLflow datasets for a data section's DVC outputs (all, or those at ``paths``).

    ``context`` is MLflow's ``mlflow.data.context``: ``input`` for the data in the workspace at start
    (nbtrack cannot tell training from evaluation data, so it claims neither), ``output`` for what the
    run wrote. The digest is the DVC hash (of the new content, for an output); the source type
    ``dvc``; the source JSON, its ``uri`` ``dvc://<remote, else project>/<path>``.

    Example:
        >>> data = {"outputs": [{"path": "a.csv", "hash": "ab" * 16}], "remote": None, "root": "/p/churn"}
        >>> (found,) = dataset_inputs(data)
        >>> found["digest"], found["context"], json.loads(found["source"])["uri"]
        ('abababababababababababababababab', 'input', 'dvc://churn/a.csv')
    """
    default = section_data.get("remote") or {}
    remotes = section_data.get("remotes") or {}
    project = Path(str(section_data.get("root") or "project")).name
    inputs = []
    for out in (o for o in section_data.get("outputs") or [] if paths is None or o["path"] in paths):
        own = out.get("remote")  # an output may name its own remote in its .dvc file / dvc.yaml
        name = own or default.get("name")
        source = {"uri": f"dvc://{name or project}/{out['path']}", "path": out["path"], "hash": out["hash"]}
        source.update(hash_name=out.get("hash_name"), remote=name, status=out.get("status"))
        source["url"] = remotes.get(own) if own else default.get("url")
        if out.get("workspace_hash"):
            source["workspace_hash"] = out["workspace_hash"]
        new = out.get("workspace_hash") if context == OUTPUT and out.get("status") == "modified" else None
        digest = str(new or out["hash"])[:36]  # MLflow's limit; an md5 folder hash is exactly 36
        item = {"name": out["path"], "digest": digest, "source_type": "dvc", "source": json.dumps(source)}
        inputs.append({**item, "context": context})
    return inputs


# --- the repository ------------------------------------------------------------------------------
def import_dvc() -> None:
    """Import DVC without letting it replace the kernel's ``sys.stdout``/``sys.stderr``.

    ``import dvc`` runs ``dvc.logger.setup()``, whose ``colorama.init()`` wraps both streams in
    ANSI-stripping proxies for the rest of the process: the notebook would lose its colours.
    """
    if "dvc" in sys.modules:
        return
    streams = sys.stdout, sys.stderr
    try:
        import dvc  # noqa: F401
    finally:
        sys.stdout, sys.stderr = streams


def _open(ctx: CaptureContext, root: Path) -> _KernelCache:
    """The kernel's open ``Repo`` for ``root``, reset so that edited config and ignores are re-read."""
    from dvc.repo import Repo

    cache = ctx.state.get("data")
    try:
        if isinstance(cache, _KernelCache) and cache.root == str(root):
            # What DVC does around each locked command; a new Repo would cost ~25 ms more.
            reset = getattr(cache.repo, "_reset", None)  # private to DVC: fall back if it goes
            if reset is None:
                cache.repo = Repo(str(root))
            else:
                reset()
            _ = cache.repo.config  # re-read now, so that a broken config fails here
            return cache
        if isinstance(cache, _KernelCache):
            cache.repo.close()
        # Creates the repository's lock object; nothing here ever acquires it.
        cache = _KernelCache(str(root), Repo(str(root)))
    except Exception as exc:
        ctx.state.pop("data", None)
        raise CaptureError(
            f"DVC could not open the project at {root} ({one_line(exc)}); "
            "fix .dvc/config (see `dvc config --list`) or run `dvc doctor`"
        ) from exc
    ctx.state["data"] = cache
    return cache


def _remotes(
    config: Any, problems: list[str], redactor: Redactor
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The default remote and every remote's URL, credentials stripped; no other config field
    (``password``, ``access_key_id``, ... of ``.dvc/config.local`` are never read)."""
    remotes = {
        str(name): redactor.text(redactor.url(str(section.get("url", ""))))
        for name, section in (config.get("remote") or {}).items()
    }
    default = (config.get("core") or {}).get("remote")
    if not default:
        return None, remotes
    if default not in remotes:
        problems.append(
            f"the default DVC remote '{default}' is not defined; run `dvc remote add {default} URL`"
        )
    return {"name": str(default), "url": remotes.get(default)}, remotes


# --- DVC files -----------------------------------------------------------------------------------
def collect_stages(
    repo: Any, parsed: dict[str, Any], problems: list[str], broken: list[str] | None = None
) -> list[tuple[Any, str]]:
    """Every stage of the project with the file it came from, found as DVC's index finds them.

    The path of every DVC file that could not be loaded at all is added to ``broken``, when given.
    """
    from dvc.dvcfile import is_valid_filename

    out_folders: set[str] = set()
    found: list[tuple[Any, str]] = []
    for folder, dirs, files in repo.dvcignore.walk(repo.fs, repo.root_dir, followlinks=False):
        for name in sorted(files):
            path = os.path.join(folder, name)
            if is_valid_filename(name) and not _git_ignored(repo, path):
                for stage, source in _load_stages(repo, path, parsed, problems, broken):
                    found.append((stage, source))
                    out_folders.update(o.fs_path for o in stage.outs if o.protocol == "local")
        # Like DVC: no DVC files are looked for inside outputs or git-ignored folders.
        dirs[:] = sorted(
            d
            for d in dirs
            if os.path.join(folder, d) not in out_folders
            and not _git_ignored(repo, os.path.join(folder, d) + os.sep)
        )
    return found


def _git_ignored(repo: Any, path: str) -> bool:
    try:
        return bool(repo.scm.is_ignored(path))
    except Exception:  # noqa: BLE001 - no git (dvc init --no-scm): nothing is ignored, as for DVC
        return False


def _load_stages(
    repo: Any, path: str, parsed: dict[str, Any], problems: list[str], broken: list[str] | None = None
) -> list[tuple[Any, str]]:
    """The stages of one ``.dvc`` or ``dvc.yaml`` file; a broken file becomes a problem line (and its
    path goes to ``broken``).

    DVC raises many kinds of error on a broken file (YAML, schema, AttributeError on an int hash):
    each is caught so that one file never costs the others.
    """
    from dvc.dvcfile import Lockfile, ProjectFile, SingleStageFile, load_file
    from dvc.stage.loader import SingleStageLoader, StageLoader

    rel = rel_path(path, repo.root_dir)
    dvcfile = load_file(repo, path)
    if not isinstance(dvcfile, ProjectFile):
        try:
            data, text = _read_yaml(path, SingleStageFile.SCHEMA, rel, parsed)
            if not data.get("outs"):
                raise ValueError("it lists no outs")
            return [(SingleStageLoader.load_stage(dvcfile, data, text), rel)]
        except Exception as exc:  # noqa: BLE001 - see the docstring
            fix = f"fix it or run `dvc add {rel[: -len('.dvc')]}` again"
            problems.append(f"{rel} is not a valid DVC file ({one_line(exc)}); {fix}")
            if broken is not None:
                broken.append(path)
            return []

    lock_path = os.path.join(os.path.dirname(path), "dvc.lock")
    lock_rel = rel_path(lock_path, repo.root_dir)
    lock: dict[str, Any] = {}
    try:
        if os.path.exists(lock_path):
            lock, _ = _read_yaml(lock_path, Lockfile.SCHEMA, lock_rel, parsed)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        fix = "run `dvc repro` (or `dvc commit`) to rewrite it"
        problems.append(f"{lock_rel} is not a valid DVC lock file ({one_line(exc)}); {fix}")
        if broken is not None:
            broken.append(lock_path)
        return []
    try:
        # DVC resolves dvc.yaml (templating, foreach/matrix, wdir); the lock data is nbtrack's.
        loader = StageLoader(dvcfile, dvcfile.contents, lock)
        names = list(loader)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        problems.append(f"{rel} is not a valid DVC pipeline ({one_line(exc)}); fix it, then run `dvc repro`")
        if broken is not None:
            broken.append(path)
        return []
    stages = []
    for name in names:
        try:
            stages.append((loader[name], f"{lock_rel}:{name}"))
        except Exception as exc:  # noqa: BLE001 - see the docstring
            problems.append(f"stage {rel}:{name} could not be loaded ({one_line(exc)}); fix it in {rel}")
    return stages


def _read_yaml(path: str, schema: Any, rel: str, parsed: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Parse and validate a DVC file as DVC does, except that hashes and paths keep their text.

    Kept in ``parsed`` by the file's stat (ruamel parses in pure Python, ~1 ms a file); DVC's
    loaders modify what they are given, so every caller gets its own copy.
    """
    from dvc.utils.serialize import parse_yaml
    from dvc.utils.strictyaml import validate
    from ruamel.yaml import YAML

    with open(path, encoding="utf-8") as fobj:
        st = os.fstat(fobj.fileno())
        key = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        known = parsed.get(path)
        if known is not None and known[0] == key:
            return copy.deepcopy(known[1]), known[2]
        text = fobj.read()
    data = parse_yaml(text, rel)
    if not isinstance(data, dict):
        raise ValueError("its top level is not a mapping")
    # The base loader resolves no types: every scalar is the text written in the file.
    _keep_strings(data, YAML(typ="base").load(text))
    validate(data, schema, text=text, path=rel)
    if st.st_mtime_ns < time.time_ns() - RACY_NS:
        parsed[path] = (key, copy.deepcopy(data), text)
    return data, text


def _keep_strings(typed: Any, raw: Any) -> None:
    """Put back, in place, the written text of string fields that YAML turned into numbers."""
    if isinstance(typed, dict) and isinstance(raw, dict):
        for key, value in typed.items():
            raw_value = raw.get(key) if isinstance(key, str) else None
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if key in _STRING_KEYS and number and isinstance(raw_value, str):
                typed[key] = raw_value
            else:
                _keep_strings(value, raw_value)
    elif isinstance(typed, list) and isinstance(raw, list):
        for typed_item, raw_item in zip(typed, raw, strict=False):
            _keep_strings(typed_item, raw_item)


# --- one output ----------------------------------------------------------------------------------
def _describe(
    repo: Any, cache: _KernelCache, stage: Any, out: Any, source: str, problems: list[str]
) -> dict[str, Any] | None:
    """The recorded facts about one output and its workspace status; None if it has none to record."""
    if out.protocol != "local" or not out.is_in_repo:
        problems.append(f"{out.def_path} (from {source}) is outside the DVC project; it is not recorded")
        return None
    name = rel_path(out.fs_path, repo.root_dir)
    hash_info = out.hash_info
    if not hash_info or not hash_info.value:
        stage_name = getattr(stage, "name", None)
        target = f"repro {rel_path(stage.path, repo.root_dir)}:{stage_name}" if stage_name else f"add {name}"
        problems.append(f"{name} (from {source}) has no recorded hash; run `dvc {target}`")
        return None
    entry: dict[str, Any] = {
        "path": name,
        "hash_name": out.hash_name,
        "hash": str(hash_info.value),
        "size": out.meta.size,
        "nfiles": out.meta.nfiles if hash_info.isdir else None,
        "is_dir": bool(hash_info.isdir),
        "source": source,
        "stage": getattr(stage, "name", None),
        "status": "unknown",
    }
    if getattr(out, "remote", None):
        entry["remote"] = out.remote
    try:
        current = _workspace_hash(repo, cache, out)
    except Exception as exc:  # noqa: BLE001 - unreadable file, .dvcignore inside a folder output, ...
        fix = "check that it is readable" if isinstance(exc, OSError) else "`dvc status` fails on it too"
        problems.append(f"could not hash {name} ({one_line(exc)}); {fix}")
        return entry
    if current is None:
        entry["status"] = "missing"
    elif current == entry["hash"]:
        entry["status"] = "clean"
    else:
        entry.update(status="modified", workspace_hash=current)
    return entry


def _workspace_hash(repo: Any, cache: _KernelCache, out: Any) -> str | None:
    """DVC's hash of the workspace copy (from its state cache where it can); None when absent."""
    from dvc_data.hashfile.hash import hash_file

    if not out.exists:  # also when .dvcignore hides it, as for DVC
        return None
    path, fs = out.fs_path, out.fs
    if not fs.isdir(path):
        # Passing the stat keeps DVC's progress bar away for files under 1 GiB.
        _, hash_info = hash_file(path, fs, out.hash_name, state=repo.state, info=fs.info(path))
        return str(hash_info.value)
    return folder_hash(repo, cache.folders, out)


def rel_path(path: str, root: str) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def one_line(exc: BaseException) -> str:
    """A short single-line account of an error, with the YAML parser's or the schema's detail."""
    cause = exc.__cause__ or exc.__context__
    problem, mark = getattr(cause, "problem", None), getattr(cause, "problem_mark", None)
    errors = getattr(cause, "errors", None)  # voluptuous' MultipleInvalid behind a schema error
    if problem:
        text = f"{problem} at line {mark.line + 1}" if mark is not None else str(problem)
    elif isinstance(errors, list) and errors:
        text = "; ".join(str(e) for e in errors[:3])
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."
