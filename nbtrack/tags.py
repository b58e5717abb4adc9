"""Every MLflow tag name nbtrack writes or reads, in one place.

A run carries few ``nbtrack.*`` tags: only the facts someone filters on in MLflow's UI or that
nbtrack's own listings and searches read (schema version, dirty code, data status, out-of-order
execution, replay links, the spool's upload state, the owner that orphan detection checks).
Everything else nbtrack knows about a run (each section's status, how the notebook was found, the
papermill input, the nbtrack version, the project, edits after execution, unsaved editor content)
lives in ``nbtrack/snapshot.json`` only.

Example:
    >>> from nbtrack import tags
    >>> f"tags.`{tags.SCHEMA_VERSION}` != ''"
    "tags.`nbtrack.schema_version` != ''"
"""

from __future__ import annotations

# --- MLflow's system tags (its UI and clients understand them) ---------------------------------------
SOURCE_NAME = "mlflow.source.name"
SOURCE_TYPE = "mlflow.source.type"
GIT_COMMIT = "mlflow.source.git.commit"
GIT_BRANCH = "mlflow.source.git.branch"
GIT_REPO_URL = "mlflow.source.git.repoURL"
RUN_NAME = "mlflow.runName"
NOTE = "mlflow.note.content"
#: The role of a dataset input of a run (an input tag, not a run tag), and nbtrack's two values:
#: the DVC data in the workspace when the run started, and the DVC outputs the run wrote.
DATASET_CONTEXT = "mlflow.data.context"
DATASET_INPUT, DATASET_OUTPUT = "input", "output"

# --- nbtrack's run facts ----------------------------------------------------------------------------
#: Marks a run tracked by nbtrack; every listing filters on it.
SCHEMA_VERSION = "nbtrack.schema_version"
GIT_DIRTY = "nbtrack.git.dirty"
#: The worst workspace state of the DVC outputs: clean, modified, missing, unknown (or absent, error).
DATA_STATUS = "nbtrack.data.status"
OUT_OF_ORDER = "nbtrack.out_of_order"
#: 1 for a kernel's first run, 2 for the next...: a replay matches its runs to the original's by it.
KERNEL_RUN_INDEX = "nbtrack.kernel_run_index"
#: One line naming the cell that failed a FAILED run and its exception (the whole in snapshot.json).
FAILURE = "nbtrack.failure"
#: On a run the notebook's own MLflow code started inside a tracked run: the tracked run's id.
TRACKED_RUN = "nbtrack.tracked_run"
#: Seconds the capture providers took for a run, start and end sections summed (a float as text):
#: the server's Prometheus histogram of nbtrack's own overhead reads it.
CAPTURE_SECONDS = "nbtrack.capture.seconds"

#: Which runner started a run no ``%track start`` started: ``papermill engine`` (``nbtrack run``,
#: ``papermill --engine nbtrack``), ``JupyterLab Run All``, ``autotrack``.
STARTED_BY = "nbtrack.started_by"

# --- sweeps and clones ------------------------------------------------------------------------------
#: On a sweep's parent run: the sweep (JSON: mode, space, source, trials, seed); ``nbtrack.sweep.*``
#: tags there say how it went (trials, finished, failed, best_run_id, best_value, best_params).
SWEEP = "nbtrack.sweep"
#: On a trial: its sweep's parent run (beside MLflow's own ``mlflow.parentRunId``) and its number.
SWEEP_PARENT = "nbtrack.sweep.parent"
SWEEP_TRIAL = "nbtrack.sweep.trial"
#: On a trial started from a recorded run (a sweep of RUN_ID, the panel's "Clone with new
#: parameters"): that run's id.
CLONE_OF = "nbtrack.clone_of"
MLFLOW_PARENT = "mlflow.parentRunId"

# --- replays ----------------------------------------------------------------------------------------
REPLAY_OF = "nbtrack.replay_of"
REPLAY_ID = "nbtrack.replay_id"
REPLAY_VERDICT = "nbtrack.replay.verdict"

# --- the local spool (runs bound for a tracking server) ---------------------------------------------
SYNC_STATE = "nbtrack.sync.state"
SERVER_RUN_ID = "nbtrack.sync.server_run_id"
LAST_ERROR = "nbtrack.sync.last_error"
SYNC_TARGET = "nbtrack.sync.target"
#: On the server copy: the spool run it was uploaded from (what makes an upload resumable).
SPOOL_RUN_ID = "nbtrack.spool_run_id"
#: The files nbtrack logged into a spool run: ``{"nbtrack/notebook.ipynb": [size, sha256], ...}``.
SYNC_FILES = "nbtrack.sync.files"
#: Tags that describe the spool copy only, never copied to the server.
SPOOL_ONLY = (SYNC_STATE, SERVER_RUN_ID, LAST_ERROR, SYNC_TARGET, SYNC_FILES)
#: On a server run whose upload has not finished: the host whose spool holds the rest of it.
UPLOAD_PENDING = "nbtrack.upload.pending"
#: Values of :data:`SYNC_STATE`.
PENDING, UPLOADED = "pending", "uploaded"

# --- the process that owns a running run (orphan detection) -----------------------------------------
OWNER_PREFIX = "nbtrack.owner."
OWNER_HOST = "nbtrack.owner.host"
OWNER_PID = "nbtrack.owner.pid"
OWNER_STARTED = "nbtrack.owner.started"
#: The owner's start time in clock ticks since boot, and that boot's id (immune to clock jumps).
OWNER_START_TICKS = "nbtrack.owner.start_ticks"
OWNER_BOOT_ID = "nbtrack.owner.boot_id"
KILLED_REASON = "nbtrack.killed_reason"
