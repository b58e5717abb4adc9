"""Reading a tracking server's runs over MLflow's REST API, without importing MLflow.

``import mlflow`` takes 1.5-5 s here; listing a notebook's runs on a tracking server is two HTTP
calls. For an ``http(s)://`` store, :class:`RestReader` answers the reads the panel's and the CLI's
listings make (find a run, search runs, the experiments behind them) with the standard library's
``urllib``, calling the same endpoints with the same arguments MLflow's ``RestStore`` sends for
``MlflowClient.get_run``, ``search_runs``, ``get_experiment_by_name`` and ``search_experiments``, and
reading the same JSON it parses; the page tokens are the server's own, so either path continues the
other's pages. Writes, artifacts and everything else stay on MLflow.

It authenticates as MLflow's client does from the environment (``MLFLOW_TRACKING_TOKEN``: a bearer
token; ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``: basic auth). Anything it cannot do exactly as
MLflow would raises :class:`~nbtrack.store.read_sqlite.Unsupported` and the caller asks MLflow: TLS
settings (``MLFLOW_TRACKING_INSECURE_TLS``, a server or client certificate), an auth plugin
(``MLFLOW_TRACKING_AUTH``), a server that does not answer or answers what this module does not
expect (MLflow's own call then gives the one-line error, with its retries bounded).

Example:
    >>> reader = RestReader.for_uri("http://mlflow.example.com")  # doctest: +SKIP
    >>> runs, token = reader.search_runs([Filter("tag", "nbtrack.schema_version", "!=", "")], 50)
"""

from __future__ import annotations

import base64
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from nbtrack.models import RunRecord
from nbtrack.store.read_sqlite import (
    EXPERIMENTS_PAGE,
    MAX_RESULTS,
    Filter,
    ReadMiss,
    Unsupported,
    check_run_id,
)

log = logging.getLogger("nbtrack.store")

#: Settings that change how MLflow's client connects or authenticates: with any of them set, MLflow
#: is asked (it knows what they mean; a plain ``urllib`` call would not honour them).
_MLFLOW_ONLY = (
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_ENABLE_WORKSPACES",
    "MLFLOW_WORKSPACE",
)


class RestReader:
    """A tracking server's runs read through MLflow's REST API (see the module's docstring)."""

    def __init__(self, uri: str, timeout: float) -> None:
        self.uri = uri.rstrip("/")
        self.timeout = timeout

    @classmethod
    def for_uri(cls, uri: str, timeout: float = 30.0) -> RestReader | None:
        """A reader for an ``http(s)://`` store; None for any other."""
        return cls(uri, timeout) if uri.startswith(("http://", "https://")) else None

    # --- the calls -------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        if any(os.environ.get(name) for name in _MLFLOW_ONLY):
            raise Unsupported("a TLS, auth-plugin or workspace setting MLflow's client applies")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        user, password = (
            os.environ.get("MLFLOW_TRACKING_USERNAME"),
            os.environ.get("MLFLOW_TRACKING_PASSWORD"),
        )
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif user and password:
            pair = base64.standard_b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {pair}"
        return headers

    def _call(self, method: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """One call to ``/api/2.0/mlflow/<endpoint>``: its JSON reply. An MLflow error reply raises
        :class:`ReadMiss` (its code and message); anything else unexpected :class:`Unsupported`."""
        url = f"{self.uri}/api/2.0/mlflow/{endpoint}"
        data = None
        if method == "GET":
            url += "?" + urllib.parse.urlencode(body)
        else:
            data = json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method, headers=self._headers())
        try:
            # Bounded by the store's timeout, as MLflow's calls are (nbtrack.store.http).
            with urllib.request.urlopen(request, timeout=max(1.0, self.timeout / 2)) as reply:
                answer = json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as exc:
            error = _error_of(exc)
            if error is not None and exc.code < 500:
                raise ReadMiss(*error) from None
            raise Unsupported(f"{endpoint}: HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:  # refused, timed out, not JSON: MLflow's call says it
            raise Unsupported(f"{endpoint}: {exc}") from None
        if not isinstance(answer, dict):
            raise Unsupported(f"{endpoint}: not a JSON object")
        return answer

    # --- reads -----------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, as ``MlflowClient.get_run`` finds it.

        Raises:
            ReadMiss: MLflow's error for a malformed or unknown id.
            Unsupported: ask MLflow.
        """
        check_run_id(run_id)  # (MLflow's client refuses a malformed id before any call)
        answer = self._call("GET", "runs/get", {"run_id": run_id, "run_uuid": run_id})
        return record(answer.get("run"))

    def search_runs(
        self,
        filters: Sequence[Filter],
        max_results: int,
        *,
        experiment: str | None = None,
        experiment_ids: Sequence[str] | None = None,
        page_token: str | bytes | None = None,
    ) -> tuple[list[RunRecord], str | None]:
        """Active runs matching every filter, newest first, one page: what ``MlflowStore.search_runs``
        gets from MLflow for the same arguments. Raises :class:`Unsupported`."""
        if not 1 <= max_results <= MAX_RESULTS:
            raise Unsupported("a search MLflow must check itself")
        try:
            ids = self._experiment_ids(experiment, experiment_ids)
        except ReadMiss as miss:
            raise Unsupported(str(miss)) from None  # MLflow's path raises its error
        if not ids:
            return [], None
        body: dict[str, Any] = {
            "experiment_ids": ids,
            "filter": " and ".join(f.mlflow() for f in filters),
            "run_view_type": "ACTIVE_ONLY",
            "max_results": max_results,
            "order_by": ["attributes.start_time DESC"],
        }
        if page_token:
            body["page_token"] = page_token.decode("ascii") if isinstance(page_token, bytes) else page_token
        try:
            answer = self._call("POST", "runs/search", body)
        except ReadMiss as miss:  # a filter the server refuses: MLflow's path words the error
            raise Unsupported(str(miss)) from None
        runs = [record(run) for run in answer.get("runs") or []]
        return runs, answer.get("next_page_token") or None

    def _experiment_ids(self, name: str | None, given: Sequence[str] | None) -> list[str]:
        """The experiments a search covers, as ``MlflowStore.search_runs`` picks them through MLflow."""
        if given is not None:
            return [str(i) for i in given]
        if name:
            try:
                found = self._call("GET", "experiments/get-by-name", {"experiment_name": name})
            except ReadMiss as miss:
                if miss.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return []
                raise
            return [str(found["experiment"]["experiment_id"])] if found.get("experiment") else []
        answer = self._call(
            "POST", "experiments/search", {"max_results": EXPERIMENTS_PAGE, "view_type": "ACTIVE_ONLY"}
        )
        return [str(e["experiment_id"]) for e in answer.get("experiments") or []]


def _error_of(exc: urllib.error.HTTPError) -> tuple[str, str] | None:
    """MLflow's ``(message, error_code)`` from an error reply; None when the reply is not MLflow's."""
    try:
        body = json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or "error_code" not in body:
        return None
    code = str(body["error_code"])
    return f"{code}: {body.get('message', '')}", code  # worded as MLflow's RestException


def record(run: Any) -> RunRecord:
    """A run in MLflow's REST JSON (``{"info": ..., "data": ...}``) as a :class:`RunRecord`, with what
    :func:`nbtrack.store.reading.to_record` takes from MLflow's ``Run`` for the same reply.

    Example:
        >>> record({"info": {"run_id": "0f3c", "experiment_id": "1", "status": "FINISHED"}}).status
        'FINISHED'
    """
    if not isinstance(run, dict) or not isinstance(run.get("info"), dict):
        raise Unsupported("a run reply without info")
    info, data = run["info"], run.get("data") or {}
    metrics = data.get("metrics") or []
    try:
        return RunRecord(
            run_id=str(info.get("run_id") or info["run_uuid"]),
            name=str(info.get("run_name", "")),  # RunInfo.from_proto: the proto's default, ""
            experiment_id=str(info["experiment_id"]),
            status=str(info.get("status", "RUNNING")),
            start_time=int(info.get("start_time") or 0),
            end_time=int(info.get("end_time") or 0) or None,  # (a zero end time means none)
            artifact_uri=info.get("artifact_uri") or "",
            tags={t["key"]: t.get("value", "") for t in data.get("tags") or []},
            params={p["key"]: p.get("value", "") for p in data.get("params") or []},
            metrics={m["key"]: float(m.get("value", "nan")) for m in metrics},
            last_metric_ms=max((int(m.get("timestamp", 0)) for m in metrics), default=None),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Unsupported(f"a run reply MLflow must read: {exc}") from None
