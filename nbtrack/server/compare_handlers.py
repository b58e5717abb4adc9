"""The compare view's REST handlers: ``compare``, ``compare.csv``, ``histories``, ``gallery``.

Thin, as :mod:`nbtrack.server.handlers`' are: read the query, run :mod:`nbtrack.server.compare`'s
function in the service's thread pool, write the reply. Authenticated and authorized like every
nbtrack verb; errors become JSON through the one table in :mod:`nbtrack.server.errors`.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized

from nbtrack.errors import UsageError
from nbtrack.runs.table import TableQuery
from nbtrack.server import compare
from nbtrack.server.handlers import NbtrackHandler


def _integer(name: str, raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw[:40]!r}: give an integer") from None


def _flag(name: str, raw: str | None) -> bool:
    if raw in (None, "", "0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise UsageError(f"{name}={raw[:40]!r}: give 0 or 1")


class _TableHandler(NbtrackHandler):
    """The query parameters the table and its CSV share."""

    def table_args(self) -> tuple[str | None, str, str | None, TableQuery, bool]:
        only = [part.strip() for part in (self.arg("only") or "").split(",") if part.strip()]
        query = TableQuery(
            q=self.arg("q"),
            sort=self.arg("sort") or None,
            order=self.arg("order") or "desc",
            offset=_integer("offset", self.arg("offset"), 0),
            limit=_integer("limit", self.arg("limit"), 100),
            only=only,
            same_data=self.arg("same_data") or None,
            columns=self.arg("columns") or "varying",
        ).check()
        scope = self.arg("scope") or "notebook"
        return self.arg("notebook"), scope, self.arg("filter"), query, _flag("archived", self.arg("archived"))


class CompareHandler(_TableHandler):
    """``GET /nbtrack/compare``: one page of the runs table (columns with ``varies``, rows)."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        notebook, scope, filter, query, archived = self.table_args()
        self.reply(
            await self.service.call(compare.table, self.service, notebook, scope, filter, query, archived)
        )


class CompareCsvHandler(_TableHandler):
    """``GET /nbtrack/compare.csv``: every matching row as CSV (``keys``: the columns, in order)."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        notebook, scope, filter, query, archived = self.table_args()
        keys = [k.strip() for k in (self.arg("keys") or "").split(",") if k.strip()] or None
        text = await self.service.call(
            compare.table_as_csv, self.service, notebook, scope, filter, query, keys, archived
        )
        stem = PurePosixPath(notebook).stem if notebook and scope == "notebook" else "project"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "runs"
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{safe}-runs.csv"')
        self.write(text)
        # (APIHandler.finish would set Content-Type back to JSON)
        self.update_api_activity()
        tornado.web.RequestHandler.finish(self)


class HistoriesHandler(NbtrackHandler):
    """``GET /nbtrack/histories?runs=ID,ID&keys=k,k``: metric histories in step order."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        reply = await self.service.call(
            compare.histories, self.service, self.arg("notebook"), self.arg("runs"), self.arg("keys")
        )
        self.reply(reply)


class GalleryHandler(NbtrackHandler):
    """``GET /nbtrack/gallery?runs=ID,ID&cell=KEY&source=history|saved|live``: one cell's outputs."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        reply = await self.service.call(
            compare.gallery,
            self.service,
            self.arg("notebook"),
            self.arg("runs"),
            self.arg("cell") or None,
            self.arg("source") or None,
        )
        self.reply(reply)


def routes() -> list[tuple[str, Any]]:
    """(pattern under <base_url>nbtrack/, handler class) pairs."""
    return [
        ("compare", CompareHandler),
        ("compare.csv", CompareCsvHandler),  # the documented path ("." matches itself too)
        ("histories", HistoriesHandler),
        ("gallery", GalleryHandler),
    ]
