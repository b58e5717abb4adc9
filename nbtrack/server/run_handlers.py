"""The headless runs' routes (issue 15): the parameters form and "Clone with new parameters".

``GET parameters?notebook=PATH[&run=RUN_ID]`` reads a notebook's ``parameters`` cell (the file under
the server root, or with ``run`` the notebook that run recorded) into the fields of a form, each
prefilled with the run's recorded value. ``POST runs/{run_id}/clone {"parameters": {...}}`` checks
the values against that cell (a bad one is a 400 naming the parameter) and starts a job, like a
replay's (:mod:`nbtrack.server.jobs`): ``python -m nbtrack.server.clone_job`` runs one sweep trial
of the run (its commit, diff and data, in an isolated workspace) with the new values. "Run all and
track" needs no route: it runs in the notebook's live kernel.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join

from nbtrack.errors import UsageError
from nbtrack.server.errors import NotFoundError, error_reply
from nbtrack.server.handlers import NbtrackHandler
from nbtrack.server.jobs import ReplaySpec
from nbtrack.server.service import NOTEBOOK_ARTIFACTS, NbtrackService, check_run_id

#: The form's input for each kind of default; ``any``: a Python literal typed as text.
INPUT_KINDS = ("int", "float", "bool", "str", "any")
_REDACTED = "[REDACTED]"
NO_CELL = (
    "has no cell tagged `parameters`; tag the cell that sets the notebook's parameters `parameters` "
    "(the cell's property inspector: Cell Tags) to clone it with new values"
)


class ParameterValueError(UsageError):
    """A value the clone form sent does not fit the ``parameters`` cell (the reply names the field)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"parameter {parameter}: {message}")
        self.parameter = parameter


def input_kind(declared: Any, default: Any) -> str:
    """The form input a parameter gets: its annotation's type, else its default value's.

    Example:
        >>> input_kind("None", 0.01), input_kind("int", 3), input_kind("None", "adam")
        ('float', 'int', 'str')
        >>> input_kind("None", [1, 2]), input_kind("None", True)
        ('any', 'bool')
    """
    if declared in ("int", "float", "bool", "str"):
        return str(declared)
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, (int, float)):
        return type(default).__name__
    return "str" if isinstance(default, str) else "any"


def check_value(field: dict[str, Any], value: Any) -> Any:
    """``value`` when it fits the field's input kind (an int for a float is made a float), else a
    :class:`ParameterValueError`.

    Example:
        >>> check_value({"name": "lr", "input": "float", "default": 0.01}, 1)
        1.0
        >>> check_value({"name": "depth", "input": "int", "default": 3}, "x")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        nbtrack.server.run_handlers.ParameterValueError: parameter depth: 'x' is not a whole number; ...
    """
    kind, name = field["input"], field["name"]
    hint = f"the parameters cell's default is {field.get('default')!r}"
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ParameterValueError(name, f"{value!r} is not a whole number; {hint}")
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterValueError(name, f"{value!r} is not a number; {hint}")
        return float(value)
    if kind == "bool" and not isinstance(value, bool):
        raise ParameterValueError(name, f"{value!r} is not true or false; {hint}")
    if kind == "str" and not isinstance(value, str):
        raise ParameterValueError(name, f"{value!r} is not text; {hint}")
    return value


def _fields(parameters: list[dict[str, Any]], recorded: dict[str, Any]) -> list[dict[str, Any]]:
    """The form's fields: each parameter with its input kind and the value to prefill."""
    fields = []
    for item in parameters:
        default = item.get("default")
        kind = input_kind(item.get("type"), default)
        value = recorded.get(item["name"], default)
        if value == _REDACTED or (kind != "any" and kind != "str" and isinstance(value, str)):
            value = default  # a secret stays unsent; a value recorded as text would not fit
        fields.append({**item, "default": default, "input": kind, "value": value})
    return fields


def _recorded_notebook(service: NbtrackService, run_id: str, notebook: str | None, folder: Path) -> Path:
    """The notebook a run recorded (as saved, else as the editor held it), written into ``folder``."""
    found = service.runs.resolve(service.resolver.target(notebook), run_id)
    for kind in ("saved", "live"):
        text = found.store.read_artifact(found.run_id, NOTEBOOK_ARTIFACTS[kind])
        if text is not None:
            path = folder / "notebook.ipynb"
            path.write_text(text, encoding="utf-8")
            return path
    raise NotFoundError(f"run {found.run_id} recorded no notebook, so its parameters cannot be read")


def parameter_form(service: NbtrackService, notebook: str | None, run: str | None) -> dict[str, Any]:
    """The ``GET parameters`` reply: the notebook's (or the run's recorded notebook's) parameters
    cell as form fields; ``why`` says why there is no form."""
    from nbtrack.sweep.parameters import notebook_parameters

    recorded: dict[str, Any] = {}
    run_id = None
    with tempfile.TemporaryDirectory(prefix="nbtrack-form-") as tmp:
        if run:
            check_run_id(run, "run")
            found, snap = service.runs.show(service.resolver.target(notebook), run)
            run_id = found.run_id
            section = snap.section("parameters")
            recorded = dict(section.data.get("values") or {}) if section.status == "ok" else {}
            path = _recorded_notebook(service, run_id, notebook, Path(tmp))
            what = f"the notebook run {run_id} recorded"
        elif notebook:
            path = service.resolver.notebook_path(notebook)
            if not path.is_file():
                raise NotFoundError(f"notebook {notebook!r} does not exist under the server's root")
            what = f"notebook {notebook}"
        else:
            raise UsageError("give the notebook: GET /nbtrack/parameters?notebook=PATH[&run=RUN_ID]")
        fields = _fields(notebook_parameters(path), recorded)
    return {
        "notebook": notebook,
        "run_id": run_id,
        "parameters": fields,
        "why": None if fields else f"{what} {NO_CELL}",
    }


@dataclass
class CloneSpec(ReplaySpec):
    """A clone job: one trial of the run with new parameter values (the job runs
    ``python -m nbtrack.server.clone_job``; the values travel in a private file, as a replay's)."""

    kind = "clone"

    def argv(self, parameters_file: Path | None = None) -> list[str]:
        extra = ["--parameters-file", str(parameters_file)] if parameters_file is not None else []
        project = ["--project", str(self.project)]
        return [sys.executable, "-m", "nbtrack.server.clone_job", self.run_id, *project, *extra]


def clone_spec(service: NbtrackService, run_id: str, notebook: str | None, body: Any) -> CloneSpec:
    """Check a clone request: a run the server may replay, values that fit its parameters cell."""
    body = {} if body is None else body
    if not isinstance(body, dict) or set(body) - {"parameters"}:
        raise UsageError('the clone request body must be a JSON object {"parameters": {NAME: VALUE}}')
    parameters = body.get("parameters") or {}
    spec = service.replay_spec(run_id, notebook, {"parameters": parameters})  # run, root, names
    form = parameter_form(service, notebook, spec.run_id)
    if not form["parameters"]:
        raise UsageError(f"run {spec.run_id}: {form['why']}")
    fields = {item["name"]: item for item in form["parameters"]}
    checked = {}
    for name, value in spec.parameters.items():
        if name not in fields:
            known = ", ".join(fields)
            raise ParameterValueError(name, f"not in the notebook's parameters cell; use one of {known}")
        checked[name] = check_value(fields[name], value)
    return CloneSpec(**{**asdict(spec), "parameters": checked})


class ParametersHandler(NbtrackHandler):
    """``GET /nbtrack/parameters?notebook=PATH[&run=RUN_ID]``: the clone form's fields."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        form = await self.service.call(parameter_form, self.service, self.arg("notebook"), self.arg("run"))
        self.reply(form)


class CloneHandler(NbtrackHandler):
    """``POST /nbtrack/runs/{run_id}/clone``: start a clone job; 202 with the job."""

    @tornado.web.authenticated
    @authorized(action="execute", resource="kernels")  # type: ignore[untyped-decorator]
    async def post(self, run_id: str) -> None:
        body = self.json_body("clone", '{"parameters": {NAME: VALUE}}')
        spec = await self.service.call(clone_spec, self.service, run_id, self.arg("notebook"), body)
        job = self.service.jobs.submit(spec)
        self.set_header("Location", url_path_join(self.base_url, "nbtrack", "jobs", job.job_id))
        self.reply(job.to_dict(), 202)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """As every nbtrack handler; a bad value also names its ``parameter`` (the form's field)."""
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, ParameterValueError):
            status, body = error_reply(exc, status_code)
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({**body, "parameter": exc.parameter}))
            return
        super().write_error(status_code, **kwargs)


def routes() -> list[tuple[str, Any]]:
    """(pattern under <base_url>nbtrack/, handler class) pairs."""
    return [("parameters", ParametersHandler), (r"runs/(?P<run_id>[^/]+)/clone", CloneHandler)]
