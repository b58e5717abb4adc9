"""What a replay found (:class:`ReplayResult`), and the values its options take.

The result is the one record every consumer of a replay reads: the CLI prints it and writes it as
JSON, the reports render it, the server's replay job streams it to the panel, and the replay run
carries it as ``replay/verdict.json``. Who holds only the JSON (a batch reads each run's result
from a subprocess) turns it back into the record with :meth:`ReplayResult.from_dict`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from nbtrack.replay.verdict import CANNOT_REPLAY, EXIT_CODES

__all__ = ["ENVS", "MODES", "OUTPUT_MODES", "Progress", "ReplayResult", "parse_value"]

#: ``--mode``: pick by the run's flags, or force the saved notebook or the execution history.
MODES = ("auto", "notebook", "history")
#: ``--env``: the current interpreter's kernel, or a virtualenv rebuilt from the recorded pins.
ENVS = ("current", "recreate")
#: ``--outputs``: differing cell outputs make DIVERGED (check), are only listed (report), or are
#: not compared (ignore). The same values as :data:`nbtrack.replay.outputs.OUTPUT_MODES`.
OUTPUT_MODES = ("check", "report", "ignore")
#: ``on_progress(done, total)`` after each executed cell.
Progress = Callable[[int, int], None]


@dataclass
class ReplayResult:
    """What a replay found; ``to_dict()`` is the JSON the CLI, the reports and the server share.

    The comparison rows (``metrics``, ``params``, ``outputs``: produced DVC outputs) are those of
    :mod:`nbtrack.replay.verdict`; ``cell_outputs``, ``figures`` and ``skipped_outputs`` those of
    :func:`nbtrack.replay.outputs.compare_outputs_of` (the recorded executed notebook against the
    replay's); ``evidence`` counts what was compared of each kind (``metrics``, ``params``,
    ``outputs``, ``cell_outputs``, ``figures``); ``nondeterministic`` lists the results that varied
    between the replays themselves (``--repeat``), and ``repeats`` the extra replays (their run, own
    verdict and message); ``expected_errors`` the cells that raised as they did in the original.
    ``provenance`` says whether the code was checked against the repository and what differs.
    ``environment`` is :func:`nbtrack.compare.diff_environment`'s drift and ``code_diff`` the
    cell-level diff of :func:`nbtrack.compare.diff_cells` (papermill's injected cell left out).

    Example:
        >>> result = ReplayResult("3f2a9c41", verdict="REPRODUCED", message="2 metrics ... match")
        >>> result.exit_code, ReplayResult.from_dict(result.to_dict()) == result
        (0, True)
    """

    run_id: str
    verdict: str = CANNOT_REPLAY
    message: str = ""
    run_name: str | None = None
    experiment: str | None = None
    notebook: str | None = None
    replay_run_id: str | None = None
    mode: str | None = None
    mode_reason: str | None = None
    env: str = "current"
    kernel: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"recorded": {}, "overrides": {}})
    risks: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    cell_outputs: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    skipped_outputs: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, int] = field(default_factory=dict)
    outputs_mode: str = "check"
    expected_errors: list[dict[str, Any]] = field(default_factory=list)
    nondeterministic: list[dict[str, Any]] = field(default_factory=list)
    repeats: list[dict[str, Any]] = field(default_factory=list)
    failure: dict[str, Any] | None = None
    environment: dict[str, Any] = field(
        default_factory=lambda: {"available": False, "reason": "not compared"}
    )
    data: list[dict[str, Any]] = field(default_factory=list)
    code_diff: list[dict[str, Any]] = field(default_factory=list)
    #: :class:`nbtrack.replay.provenance.Provenance` as a dict: whether the run's code was checked
    #: against the repository, what differs, and whether the replay refused (``refused``) for it.
    provenance: dict[str, Any] = field(default_factory=dict)
    #: ``nbtrack replay models:/...``: the re-created model against the registered one
    #: (:func:`nbtrack.replay.model_check.check_model`); empty for a replay of a run id.
    model: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    started: str = ""
    workspace: str | None = None
    view: str | None = None

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for the verdict (a verdict nbtrack does not know counts as CANNOT_REPLAY)."""
        return EXIT_CODES.get(self.verdict, EXIT_CODES[CANNOT_REPLAY])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplayResult:
        """The result a ``to_dict()`` (or a hand-made dict holding some of its keys) describes.

        Unknown keys (``exit_code``, which follows from the verdict) are ignored; a missing or null
        key takes the field's default, except ``verdict`` (a result that names none reads as
        ``UNKNOWN``, as the reports have always shown it) and ``env`` (none: it never ran).

        Example:
            >>> ReplayResult.from_dict({"run_id": "3f2a", "verdict": "FAILED", "exit_code": 2}).exit_code
            2
        """
        names = [spec.name for spec in dataclasses.fields(cls)]
        values = {name: data[name] for name in names if data.get(name) is not None}
        values["run_id"] = str(data.get("run_id") or "")
        values["verdict"] = str(data.get("verdict") or "UNKNOWN")
        values.setdefault("env", "")  # a result that never chose a kernel (it could not start)
        values["message"] = str(data.get("message") or "")
        return cls(**values)


def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value typed as papermill's own ``-p`` types it.

    Example:
        >>> [parse_value(v) for v in ("3", "0.5", "True", "None", "abc")]
        [3, 0.5, True, None, 'abc']
    """
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
