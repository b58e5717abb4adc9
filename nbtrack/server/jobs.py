"""Replay jobs: each replay runs in its own process, outside any request, a few at a time.

A job is ``queued`` until one of ``max_running`` slots frees, ``running`` while its
``python -m nbtrack.server.replay_job`` process lives (its JSON lines update the progress, the stage
and, last, the result), then ``done`` (a verdict: REPRODUCED, DIVERGED, FAILED, CANNOT_REPLAY or
UNVERIFIED) or
``failed`` (no verdict: the process crashed, ran past the timeout, or the server shut down). Jobs
live in memory; the newest ``keep`` are kept. Everything here runs on the server's event loop
except :meth:`JobManager.kill_all`, the process-exit safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtrack.config import NbtrackConfig, load_config, to_env
from nbtrack.server.errors import NotFoundError, TooManyJobsError

# The result line carries the whole replay result (cell diffs, package drift): far over asyncio's
# default 64 KiB line limit.
_LINE_LIMIT = 64 * 1024 * 1024


@dataclass
class ReplaySpec:
    """What to replay, where, and how (the replay job's command line; the store, in its environment)."""

    run_id: str
    project: Path
    tracking_uri: str
    mode: str = "auto"
    env: str = "current"
    parameters: dict[str, Any] = field(default_factory=dict)
    #: Cell outputs: check (differences make DIVERGED), report (listed only) or ignore.
    outputs: str = "check"
    #: Replay a server's run even where its code is not what the repository holds at its commit.
    allow_uncommitted: bool = False
    #: What the job does, as its status and messages say: ``replay`` (a clone job: ``clone``).
    kind = "replay"

    def argv(self, parameters_file: Path | None = None) -> list[str]:
        """The command; the store's URI travels in the environment (it may carry credentials), the
        parameter overrides in ``parameters_file`` (a value may be longer than an argument may be,
        or a secret that ``ps`` would show)."""
        extra = ["--parameters-file", str(parameters_file)] if parameters_file is not None else []
        if self.allow_uncommitted:
            extra.append("--allow-uncommitted")
        return [
            sys.executable,
            "-m",
            "nbtrack.server.replay_job",
            self.run_id,
            "--project",
            str(self.project),
            "--mode",
            self.mode,
            "--env",
            self.env,
            "--outputs",
            self.outputs,
            *extra,
        ]


@dataclass
class Job:
    """One replay request and what became of it (``to_dict()`` is the API's ``Job``)."""

    spec: ReplaySpec
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "queued"
    done: int = 0
    total: int = 0
    stage: str | None = None
    verdict: str | None = None
    result: dict[str, Any] | None = None
    report: str | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    #: The parameters as the job's status shows them: redacted, long values shortened.
    shown_parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def fail(self, error: str) -> None:
        self.state, self.error, self.finished = "failed", error, time.time()

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "run_id": self.spec.run_id,
            "kind": self.spec.kind,
            "state": self.state,
            "progress": {"done": self.done, "total": self.total},
            "stage": self.stage,
            "verdict": self.verdict,
            "result": self.result,
            "report": self.report,
            "error": self.error,
            "mode": self.spec.mode,
            "environment": self.spec.env,
            "outputs": self.spec.outputs,
            "allow_uncommitted": self.spec.allow_uncommitted,
            "parameters": self.shown_parameters,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }


def shown_parameters(parameters: dict[str, Any], config: NbtrackConfig) -> dict[str, Any]:
    """Parameters as a job's status shows them: through the redaction policy, long strings shortened.

    Example:
        >>> shown_parameters({"api_key": "s3cr3t", "seed": 1, "blob": "x" * 5000}, NbtrackConfig())
        {'api_key': '[REDACTED]', 'seed': 1, 'blob': 'xxxx… (5000 characters)'}
    """
    from nbtrack.redact import policy
    from nbtrack.server.replay_job import shorten

    # Shortened first: the redaction scans every string, and a job's status needs no 300 KB value.
    shown: dict[str, Any] = policy(config).params(shorten(parameters))
    return shown


def _parameters_file(folder: Path, parameters: dict[str, Any]) -> Path:
    """The job's parameter overrides as JSON in a file only this user can read (``folder`` is private)."""
    path = folder / "parameters.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(parameters, out)
    return path


def _signal_group(pid: int, signum: int) -> None:
    """Signal the job's process group (it is a session leader), or just the process off POSIX."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(pid, signum)
        else:  # pragma: no cover - Windows
            os.kill(pid, signum)


class JobManager:
    """Starts, limits, times out and forgets replay jobs.

    Example:
        >>> jobs = JobManager(max_running=2, timeout=1800, config=service.config)  # doctest: +SKIP
        >>> job = jobs.submit(ReplaySpec(run_id, project, store.uri))  # doctest: +SKIP
        >>> jobs.get(job.job_id).state  # doctest: +SKIP
        'running'
    """

    def __init__(
        self,
        *,
        max_running: int = 2,
        timeout: float = 1800.0,
        keep: int = 100,
        grace: float = 10.0,
        log: logging.Logger | None = None,
        config: NbtrackConfig | None = None,
    ) -> None:
        """``config`` is the server's, handed whole to every job (None: :func:`load_config`)."""
        self.config = config if config is not None else load_config()
        self.max_running = max(1, max_running)
        self.timeout = timeout
        self.keep = keep
        self.grace = grace
        self.log = log or logging.getLogger("nbtrack.server")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._slots = asyncio.Semaphore(self.max_running)
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(
                f"no replay job {job_id!r} on this server (jobs are kept in memory, the newest "
                f"{self.keep}, until the server restarts); start one with POST /nbtrack/runs/RUN_ID/replay"
            )
        return job

    def submit(self, spec: ReplaySpec) -> Job:
        """Queue a replay; it starts as soon as a slot is free. Call on the event loop."""
        if self._closing:
            raise TooManyJobsError("the Jupyter server is shutting down; start the replay after it restarts")
        if sum(job.active for job in self._jobs.values()) >= self.keep:
            raise TooManyJobsError(
                f"{self.keep} replay jobs are already queued or running; wait for some to finish"
            )
        job = Job(spec, shown_parameters=shown_parameters(spec.parameters, self.config))
        self._jobs[job.job_id] = job
        self._forget_old()
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def _forget_old(self) -> None:
        for job_id in [j.job_id for j in self._jobs.values() if not j.active]:
            if len(self._jobs) <= self.keep:
                break
            del self._jobs[job_id]

    async def _run(self, job: Job) -> None:
        async with self._slots:
            if self._closing:
                job.fail(f"the Jupyter server shut down before the {job.spec.kind} started")
                return
            job.state, job.started = "running", time.time()
            try:
                await self._execute(job)
            except Exception as exc:  # the job records it; the server goes on
                self.log.exception(
                    "nbtrack: %s job %s of run %s crashed", job.spec.kind, job.job_id, job.spec.run_id
                )
                job.fail(f"the {job.spec.kind} job could not run: {type(exc).__name__}: {exc}")
            finally:
                job.finished = job.finished or time.time()

    async def _execute(self, job: Job) -> None:
        spec = job.spec
        env = {
            **os.environ,
            # The server's whole configuration, naming the store the run is in (the replay, and the
            # kernel it starts, use both): the environment, not argv, and never the job's status.
            **to_env(self.config, tracking_uri=spec.tracking_uri),
            "NBTRACK_PARENT_PID": str(os.getpid()),
            "PYTHONUNBUFFERED": "1",
        }
        with tempfile.TemporaryDirectory(prefix="nbtrack-job-") as tmp:
            await self._spawn_and_wait(job, env, _parameters_file(Path(tmp), spec.parameters))

    async def _spawn_and_wait(self, job: Job, env: dict[str, str], parameters: Path) -> None:
        spec = job.spec
        proc = await asyncio.create_subprocess_exec(
            *spec.argv(parameters),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(spec.project),
            env=env,
            start_new_session=True,  # one process group: stopping it reaches the replay's helpers
            limit=_LINE_LIMIT,
        )
        self._procs[job.job_id] = proc
        self.log.info(
            "nbtrack: %s job %s of run %s started (pid %s)", spec.kind, job.job_id, spec.run_id, proc.pid
        )
        assert proc.stdout is not None and proc.stderr is not None
        tail: deque[str] = deque(maxlen=20)
        readers = asyncio.gather(self._read_events(proc.stdout, job), self._read_tail(proc.stderr, tail))
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), self.timeout)
        except asyncio.TimeoutError:
            timed_out = True
            await self._stop(proc)
        finally:
            self._procs.pop(job.job_id, None)
        try:  # a kernel the replay left behind may hold stderr open a little longer
            await asyncio.wait_for(readers, 10)
        except asyncio.TimeoutError:
            readers.cancel()
        if timed_out:
            job.fail(
                f"the {spec.kind} ran longer than NbtrackConfig.replay_timeout ({self.timeout:g} s) and was "
                "stopped; raise c.NbtrackConfig.replay_timeout for longer notebooks"
            )
        elif self._closing and job.result is None:
            job.fail(f"the Jupyter server shut down during the {spec.kind}")
        elif job.result is not None:
            job.state, job.finished = "done", time.time()
        else:
            last = next((line for line in reversed(tail) if line.strip()), None)
            job.fail(job.error or last or f"the {spec.kind} process exited with code {proc.returncode}")
        self.log.info(
            "nbtrack: %s job %s ended: %s %s", spec.kind, job.job_id, job.state, job.verdict or job.error
        )

    async def _read_events(self, stream: asyncio.StreamReader, job: Job) -> None:
        while raw := await stream.readline():
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # not one of ours; replay_job routes everything else to stderr
            if isinstance(event, dict):
                self._apply(job, event)

    @staticmethod
    def _apply(job: Job, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "progress":
            job.done, job.total = int(event.get("done") or 0), int(event.get("total") or 0)
        elif kind == "stage":
            job.stage = str(event.get("message") or "")[:500]
        elif kind == "result" and isinstance(event.get("result"), dict):
            job.result = event["result"]
            job.verdict = str(job.result.get("verdict") or "") or None
            job.report = str(event.get("report") or "") or None
        elif kind == "error":
            job.error = f"{event.get('error')}: {event.get('message')}"

    @staticmethod
    async def _read_tail(stream: asyncio.StreamReader, tail: deque[str]) -> None:
        while raw := await stream.readline():
            tail.append(raw.decode("utf-8", "replace").rstrip())

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM (the job shuts its kernel down, removes its workspace), SIGKILL after ``grace``."""
        if proc.returncode is not None:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.grace)
        except asyncio.TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def shutdown(self) -> None:
        """Stop every running replay and fail the queued ones (the server is stopping)."""
        self._closing = True
        await asyncio.gather(*(self._stop(proc) for proc in list(self._procs.values())))
        for job in self._jobs.values():
            if job.state == "queued":
                job.fail(f"the Jupyter server shut down before the {job.spec.kind} started")

    def kill_all(self) -> None:
        """Signal every running replay to stop; safe from ``atexit``, when no event loop runs."""
        self._closing = True
        for proc in list(self._procs.values()):
            if proc.returncode is None:
                _signal_group(proc.pid, signal.SIGTERM)
