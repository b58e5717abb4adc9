"""The run actions' and the notebook diff's routes (issue 14): ``POST actions/<action>``, ``GET nbdiff``.

Thin handlers over :mod:`nbtrack.server.actions`; authentication, authorization and XSRF as every
nbtrack handler (a POST from a cookie session needs the ``X-XSRFToken`` header; no token is a 403).
"""

from __future__ import annotations

import json
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized

from nbtrack.server.errors import error_reply
from nbtrack.server.handlers import NbtrackHandler


class ActionHandler(NbtrackHandler):
    """``POST /nbtrack/actions/{action}``: rename, note, tag, archive, restore or purge runs."""

    @tornado.web.authenticated
    @authorized
    async def post(self, action: str) -> None:
        from nbtrack.server.actions import run_action

        body = self.json_body(action[:40], '{"runs": [RUN_ID, ...]}')
        reply = await self.service.call(run_action, self.service, action, self.arg("notebook"), body)
        self.reply(reply)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """As every nbtrack handler, but a refused action is a 409 (not a store failure's 502)."""
        from nbtrack.store.actions import ActionRefused

        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, ActionRefused):
            _, body = error_reply(exc, status_code)
            self.set_status(409)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(body))
            return
        super().write_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """A refused action is the user's to fix: one warning line, no traceback."""
        from nbtrack.store.actions import ActionRefused

        if isinstance(value, ActionRefused):
            self.log.warning("nbtrack: 409 %s: %s", self._request_summary(), str(value).splitlines()[0])
            return
        super().log_exception(typ, value, tb)


class NbdiffHandler(NbtrackHandler):
    """``GET /nbtrack/nbdiff?a=&b=&side_a=&side_b=``: nbdime's diff of two runs' recorded notebooks."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        from nbtrack.server.actions import notebook_diff

        reply = await self.service.call(
            notebook_diff,
            self.service,
            self.arg("notebook"),
            self.arg("a"),
            self.arg("b"),
            self.arg("side_a"),
            self.arg("side_b"),
        )
        self.reply(reply)


def routes() -> list[tuple[str, Any]]:
    """(pattern under <base_url>nbtrack/, handler class) pairs."""
    return [(r"actions/(?P<action>[^/]+)", ActionHandler), ("nbdiff", NbdiffHandler)]
