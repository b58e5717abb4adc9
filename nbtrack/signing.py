"""Sign the notebooks nbtrack writes itself, so Jupyter opens them trusted.

A notebook opened in Jupyter shows its HTML/JavaScript outputs and widgets only when it is trusted:
its signature (an HMAC of its content under the user's secret) is in the user's signature database
in the Jupyter data dir. nbtrack signs what it writes — ``history.ipynb``, ``notebook.live.ipynb`` and
a replay's ``replay/output.ipynb`` — with nbformat's own :class:`~nbformat.sign.NotebookNotary`, so
the server extension (which checks signatures) opens them trusted and their outputs render as they
were recorded.

Signing only adds a row to that database; the notebook's bytes are not changed. It never fails a
run: a read-only data dir or a locked/corrupt database is logged at debug level and ignored.

``import nbformat`` costs 1.3-2.5 s (its jsonschema validation compiles a grammar at import), and
more on a loaded machine: far more than a whole ``%track stop``. So a kernel does not sign itself:
:func:`sign_later` hands the logged bytes to a detached ``python -m nbtrack.signing`` process, one
per kernel, started at its first stop (a few milliseconds to spawn; its nbformat import runs beside
the kernel). It signs shortly after each stop and outlives a kernel shut down right after its last
stop, as under papermill. A process that already has nbformat (replay) signs in place
with :func:`sign_notebook_bytes`.

Example:
    >>> sign_notebook_bytes(Path("history.ipynb").read_bytes())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("nbtrack.signing")

_lock = threading.Lock()
_signer: subprocess.Popen[bytes] | None = None


class _DebugOnly(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The notary's own warnings (database renamed, in-memory fallback) at debug level: never noise
    in the user's cell output, since signing is best effort."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)


def sign_later(notebooks: list[bytes]) -> subprocess.Popen[bytes] | None:
    """Sign each serialized notebook in this kernel's signer process; returns it (None: not signed).

    The signer is started at the first call (one ``import nbformat`` per kernel, not per run) and
    reads folders of notebooks from its stdin; it finishes its queue and exits when the kernel
    closes the pipe or dies.

    Example:
        >>> sign_later([Path("history.ipynb").read_bytes()])  # doctest: +SKIP
        <Popen: returncode: None args: [...]>
    """
    global _signer  # one signer per kernel process
    if not notebooks:
        return None
    try:
        folder = Path(tempfile.mkdtemp(prefix="nbtrack-sign-"))
        for i, raw in enumerate(notebooks):
            (folder / f"{i}.ipynb").write_bytes(raw)
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


def sign_notebook_bytes(raw: bytes) -> None:
    """Sign the notebook serialized in ``raw``, as Jupyter will read it back; never raises.

    The signature is computed on what ``nbformat.reads`` makes of these exact bytes (what a
    contents manager or the server extension reads), so it matches when they check it.
    """
    try:
        import nbformat  # heavy (1.3-2.5 s); see sign_later()
        from jupyter_core.paths import jupyter_data_dir
        from nbformat.sign import NotebookNotary, SQLiteSignatureStore

        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)  # type: ignore[no-untyped-call]
        # The user's data dir, which NotebookNotary() in jupyter_server uses too; passed explicitly
        # so that no JupyterApp is initialised inside the kernel just to find it.
        data_dir = Path(jupyter_data_dir())
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        db_file = str(data_dir / "nbsignatures.db")
        quiet = _DebugOnly(log, {})

        def store() -> Any:
            return SQLiteSignatureStore(db_file, log=quiet)  # type: ignore[no-untyped-call]

        notary = NotebookNotary(data_dir=str(data_dir), store_factory=store, log=quiet)  # type: ignore[no-untyped-call]
        with notary:
            notary.sign(nb)  # type: ignore[no-untyped-call]
            if notary.store.db_file == ":memory:":  # nbformat's fallback when the file is unusable
                log.debug("nbtrack: notebook not signed: %s cannot be written", db_file)
    except Exception as exc:  # never fail a run for a signature
        log.debug("nbtrack: notebook not signed: %s: %s", type(exc).__name__, exc, exc_info=True)


def _main() -> int:
    """``python -m nbtrack.signing``: for each folder read from stdin, sign its ``*.ipynb`` files,
    then remove the folder; exit at end of input."""
    for line in sys.stdin:
        folder = line.strip()
        if not folder:
            continue
        try:
            for path in sorted(Path(folder).glob("*.ipynb")):
                sign_notebook_bytes(path.read_bytes())
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
