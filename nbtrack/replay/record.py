"""The replay's last stage: the verdict on the replay's own run.

A tag (``nbtrack.replay.verdict``) for run lists and MLflow's search, and three artifacts under
``replay/``: the result as JSON, the HTML report and papermill's output notebook. Like everything
nbtrack logs, through the redaction policy: the replay may have run the original notebook, secrets
included, from the checkout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from nbtrack import tags
from nbtrack.replay.result import ReplayResult
from nbtrack.signing import sign_if_trusted

if TYPE_CHECKING:
    from nbtrack.config import NbtrackConfig
    from nbtrack.store import MlflowStore

__all__ = ["record"]


def record(
    store: MlflowStore,
    run_id: str,
    result: ReplayResult,
    output: Path | bytes | None,
    config: NbtrackConfig,
    trust_from: Path | None = None,
) -> None:
    """Tag the replay run ``run_id`` in ``store`` with the verdict and log the result and report.

    Args:
        store: the store that holds the replay's run.
        run_id: the replay's run.
        result: the replay's result, verdict decided.
        output: papermill's output notebook (its file, or its bytes once the workspace is gone),
            None when it wrote none.
        config: the configuration whose redaction policy applies.
        trust_from: the user's notebook file the replayed run was recorded from: the output
            notebook is signed (opens trusted) only when Jupyter trusts that file.

    Example:
        >>> output = ws.base / "out" / "train.ipynb"
        >>> record(store, result.replay_run_id, result, output, config)  # doctest: +SKIP
    """
    from nbtrack.redact import policy
    from nbtrack.replay.reports import html_report

    redactor = policy(config)
    data = redactor.tree(json.loads(json.dumps(result.to_dict(), default=str)))
    files = {
        "replay/verdict.json": json.dumps(data, indent=1, default=str).encode(),
        "replay/report.html": html_report([data]).encode(),
    }
    if output is not None:
        raw = output if isinstance(output, bytes) else output.read_bytes()
        safe, found = redactor.notebook(json.loads(raw))
        safe_text = json.dumps(safe, indent=1, ensure_ascii=False) + "\n"
        files["replay/output.ipynb"] = safe_text.encode() if found else raw
        # Trusted only as far as the notebook it replays: a replay never makes code trusted.
        sign_if_trusted([files["replay/output.ipynb"]], trust_from)
    store.set_tags(run_id, {tags.REPLAY_VERDICT: result.verdict})
    store.log_files(run_id, files)
