"""The exceptions nbtrack raises, one tree, each family with its CLI exit code.

::

    NbtrackError                      exit 10  (anything not more specific)
    ├── ConfigError                   exit 11  bad configuration or tracking URI
    ├── NotebookError                 exit 12  notebook missing, unreadable or not a notebook
    ├── CaptureError                  exit 13  a snapshot section could not be taken
    ├── StoreError                    exit 14  the MLflow store failed or is unreachable
    │   ├── StoreDamagedError         exit 14  the embedded store's file is not a readable database
    │   ├── StoreLockedError          exit 14  another process kept the embedded store locked
    │   │                                      longer than NBTRACK_STORE_LOCK_TIMEOUT (default 20 s)
    │   ├── StoreReadOnlyError        exit 14  the embedded store (or its folder) cannot be written
    │   └── RunNotFoundError          exit 15  no run with that id
    ├── SnapshotError                 exit 16  a run's snapshot or artifacts are missing, damaged,
    │                                          or of an unknown schema version
    ├── NoProvenanceError             exit 19  no recorded run produced a model, run artifact or
    │                                          file (`nbtrack provenance`, `nbtrack replay models:/`)
    ├── CannotReplay                  exit 3   a run cannot be replayed (run, data, code or
    │                                          environment missing); replay's verdicts are 0-2
    └── UsageError                    exit 64  wrong arguments or a call at the wrong moment

Every message says what failed and how to fix it, on one line. Front-ends translate: the magics
raise IPython's ``UsageError``, the CLI prints ``nbtrack: <message>`` and exits with the code above.
Two exit codes are outcomes, not errors: 17, ``nbtrack run`` of a notebook whose cell raised (the run
is recorded FAILED), and 18, ``nbtrack sweep`` with a trial that did not finish.
"""

from __future__ import annotations


class NbtrackError(Exception):
    """Base of every error nbtrack raises on purpose."""

    exit_code = 10


class ConfigError(NbtrackError):
    """The configuration (or a tracking URI) cannot be used."""

    exit_code = 11


class NotebookError(NbtrackError):
    """A notebook file is missing, unreadable, or not a notebook."""

    exit_code = 12


class CaptureError(NbtrackError):
    """A snapshot section could not be captured."""

    exit_code = 13


class StoreError(NbtrackError):
    """The MLflow tracking store failed or cannot be reached."""

    exit_code = 14


class StoreDamagedError(StoreError):
    """The embedded store's database file is not a database SQLite can read (garbage, truncated)."""


class StoreLockedError(StoreError):
    """Another process kept the embedded store locked longer than nbtrack waits for it."""


class StoreReadOnlyError(StoreError):
    """The embedded store, or the folder it is (to be) created in, cannot be written."""


class RunNotFoundError(StoreError):
    """No run with the given id exists in the store."""

    exit_code = 15


class SnapshotError(NbtrackError):
    """A run's snapshot (or another recorded artifact) is missing, damaged, or of an unknown schema
    version."""

    exit_code = 16


class NoProvenanceError(NbtrackError):
    """Nothing the store recorded produced the target: no such model version or alias, or no run's
    artifacts, logged models or produced DVC outputs hold a file with that hash."""

    exit_code = 19


class CannotReplay(NbtrackError):
    """A run cannot be replayed: the run, its code, its data or its environment is unavailable.

    Exit code 3, beside replay's verdicts (0 reproduced, 1 diverged, 2 failed to execute).
    """

    exit_code = 3


class UsageError(NbtrackError):
    """Wrong arguments, or a verb used at the wrong moment (``%track stop`` with no run)."""

    exit_code = 64
