"""Sign the notebooks nbtrack writes itself, only when Jupyter already trusted their source.

A notebook opened in Jupyter shows its HTML/JavaScript outputs and widgets only when it is trusted:
its signature (an HMAC of its content under the user's secret) is in the user's signature database
in the Jupyter data dir. Recording a notebook must never make it trusted: ``history.ipynb``,
``notebook.live.ipynb`` and a replay's ``replay/output.ipynb`` are signed (with nbformat's own
:class:`~nbformat.sign.NotebookNotary`) only when the notebook they were recorded from is trusted
here, its saved file's signature known to this user's notary. An untrusted notebook's records open
untrusted, as the notebook itself does; a notebook nbtrack cannot locate is never signed.

Signing only adds a row to that database; the notebook's bytes are not changed, and the user's own
files are never signed (a record whose content equals a trusted file is already trusted: it is left
alone). It never fails a run: a read-only data dir or a locked/corrupt database is logged at debug
level and ignored.

``import nbformat`` costs 1.3-2.5 s (its jsonschema validation compiles a grammar at import), and
more on a loaded machine: far more than a whole ``%track stop``. So a kernel does not sign itself:
:func:`sign_later` hands the logged bytes to a detached ``python -m nbtrack.signing`` process, one
per kernel, started at its first stop (a few milliseconds to spawn; its nbformat import runs beside
the kernel). It checks the source's trust and signs shortly after each stop, and outlives a kernel
shut down right after its last stop, as under papermill. A process that already has nbformat
(replay) signs in place with :func:`sign_if_trusted`.

Example:
    >>> sign_if_trusted([Path("history.ipynb").read_bytes()], Path("train.ipynb"))  # doctest: +SKIP
    False
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("nbtrack.signing")

_lock = threading.Lock()
_signer: subprocess.Popen[bytes] | None = None
#: The file, beside the notebooks handed to the signer, that names the notebook they were recorded from.
_SOURCE = "source.txt"


class _DebugOnly(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The notary's own warnings (database renamed, in-memory fallback) at debug level: never noise
    in the user's cell output, since signing is best effort."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)


def sign_later(notebooks: list[bytes], source: Path | None) -> subprocess.Popen[bytes] | None:
    """Sign each serialized notebook in this kernel's signer process, if ``source`` is trusted there;
    returns the signer (None: nothing handed over).

    The signer is started at the first call (one ``import nbformat`` per kernel, not per run) and
    reads folders of notebooks from its stdin; it finishes its queue and exits when the kernel
    closes the pipe or dies. The trust of ``source`` (the notebook file the run was recorded from)
    is checked there, when it signs.

    Example:
        >>> sign_later([Path("history.ipynb").read_bytes()], Path("train.ipynb"))  # doctest: +SKIP
        <Popen: returncode: None args: [...]>
    """
    global _signer  # one signer per kernel process
    if not notebooks or source is None:  # a notebook nbtrack cannot locate cannot be trusted
        return None
    try:
        folder = Path(tempfile.mkdtemp(prefix="nbtrack-sign-"))
        for i, raw in enumerate(notebooks):
            (folder / f"{i}.ipynb").write_bytes(raw)
        (folder / _SOURCE).write_text(str(source), encoding="utf-8", errors="surrogateescape")
        with _lock:
            for _ in range(2):  # a signer that died (killed, crashed) is replaced once
                if _signer is None or _signer.poll() is not None:
                    _signer = subprocess.Popen(
                        [sys.executable, "-m", "nbtrack.signing"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,  # not killed with the kernel's process group
                    )
                assert _signer.stdin is not None
                try:
                    _signer.stdin.write(f"{folder}\n".encode())
                    _signer.stdin.flush()
                    return _signer
                except BrokenPipeError:
                    _signer = None
        shutil.rmtree(folder, ignore_errors=True)
        return None
    except OSError as exc:  # never fail a run for a signature
        log.debug("nbtrack: notebooks not signed: %s", exc)
        return None


def sign_if_trusted(notebooks: list[bytes], source: Path | None) -> bool:
    """Sign the notebooks serialized in ``notebooks`` when the notebook file ``source`` is trusted
    by this user's notary; True when it was. Never raises, never signs ``source`` itself.

    Each signature is computed on what ``nbformat.reads`` makes of these exact bytes (what a
    contents manager or the server extension reads), so it matches when they check it. A notebook
    already trusted (the same content as a trusted file) is left alone.

    Example:
        >>> sign_if_trusted([b"{}"], None)
        False
    """
    if source is None:
        return False
    try:
        with _notary() as (notary, reads):
            if not _file_trusted(notary, reads, source):
                log.debug("nbtrack: records of %s not signed: the notebook is not trusted", source)
                return False
            for raw in notebooks:
                nb = reads(raw.decode("utf-8"), as_version=4)
                if not notary.check_signature(nb):
                    notary.sign(nb)
            if notary.store.db_file == ":memory:":  # nbformat's fallback when the file is unusable
                log.debug("nbtrack: notebooks not signed: the signature database cannot be written")
            return True
    except Exception as exc:  # never fail a run for a signature
        log.debug("nbtrack: notebook not signed: %s: %s", type(exc).__name__, exc, exc_info=True)
        return False


def is_trusted(path: Path) -> bool:
    """Whether this user's Jupyter trusts the notebook file at ``path`` (its signature is known).

    Example:
        >>> is_trusted(Path("no-such.ipynb"))
        False
    """
    try:
        with _notary() as (notary, reads):
            return _file_trusted(notary, reads, path)
    except Exception as exc:  # an unreadable database or file: not trusted
        log.debug("nbtrack: trust of %s unknown: %s: %s", path, type(exc).__name__, exc, exc_info=True)
        return False


def _file_trusted(notary: Any, reads: Any, path: Path) -> bool:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return bool(notary.check_signature(reads(raw, as_version=4)))


@contextlib.contextmanager
def _notary() -> Iterator[tuple[Any, Any]]:
    """The user's notary (the data dir jupyter_server's NotebookNotary uses too, passed explicitly
    so that no JupyterApp is initialised inside a kernel just to find it) and ``nbformat.reads``."""
    import nbformat  # heavy (1.3-2.5 s); see sign_later()
    from jupyter_core.paths import jupyter_data_dir
    from nbformat.sign import NotebookNotary, SQLiteSignatureStore

    data_dir = Path(jupyter_data_dir())
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db_file = str(data_dir / "nbsignatures.db")
    quiet = _DebugOnly(log, {})

    def store() -> Any:
        return SQLiteSignatureStore(db_file, log=quiet)  # type: ignore[no-untyped-call]

    notary = NotebookNotary(data_dir=str(data_dir), store_factory=store, log=quiet)  # type: ignore[no-untyped-call]
    with notary:
        yield notary, nbformat.reads


def _main() -> int:
    """``python -m nbtrack.signing``: for each folder read from stdin, sign its ``*.ipynb`` files if
    the notebook its ``source`` file names is trusted, then remove the folder; exit at end of input."""
    for line in sys.stdin:
        folder = line.strip()
        if not folder:
            continue
        try:
            source_file = Path(folder) / _SOURCE
            source = Path(source_file.read_text(encoding="utf-8", errors="surrogateescape"))
            sign_if_trusted([p.read_bytes() for p in sorted(Path(folder).glob("*.ipynb"))], source)
        except OSError as exc:
            log.debug("nbtrack: notebooks in %s not signed: %s", folder, exc)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
