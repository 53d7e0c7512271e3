"""The evaluation page for evaluators (programme managers sign in as evaluators) and administrators: the
report with its charts and tables in the page's language, and its downloads, every one audited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from litestar import Request, Response, get
from litestar.response import Template

from services.intake.core.auth import Caller, require_staff
from services.intake.evaluation import service as evaluation
from services.intake.evaluation.html import render_body
from services.intake.web.render import lang_of, page, page_context

__all__ = ["ROUTES"]

_GUARD = [require_staff("evaluator", "admin")]
# Audited as coming from the web page (the API's own downloads are audited without "via").
_VIA = "web"


def _download(content: bytes, media_type: str, filename: str) -> Response[bytes]:
    # Never cached on the way; a download, not a page (the report carries its own styles).
    return Response(
        content=content,
        media_type=media_type,
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _stamp(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}"


@get("/evaluation", include_in_schema=False, guards=_GUARD)
async def evaluation_page(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection
) -> Template:
    report = await evaluation.report(conn, caller, via=_VIA)
    body = render_body(report, lang_of(request))
    return page(request, "evaluation.html", await page_context(request, caller, conn, report_body=body))


@get("/evaluation/report.html", include_in_schema=False, guards=_GUARD)
async def report_download(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, lang: str | None = None
) -> Response[bytes]:
    language = lang if lang in ("en", "es") else lang_of(request)
    html = await evaluation.report_html(conn, caller, language, _VIA)
    name = f"refnet-evaluation-report-{language}-{_stamp(datetime.now(UTC))}.html"
    return _download(html.encode(), "text/html; charset=utf-8", name)


@get("/evaluation/tables.csv", include_in_schema=False, guards=_GUARD)
async def tables_download(caller: Caller, conn: asyncpg.Connection) -> Response[bytes]:
    tables = await evaluation.report_tables(conn, caller, _VIA)
    name = f"refnet-evaluation-tables-{_stamp(datetime.now(UTC))}.csv"
    return _download(tables.encode(), "text/csv; charset=utf-8", name)


async def _export(caller: Caller, conn: asyncpg.Connection, kind: Literal["csv", "json"]) -> Response[bytes]:
    now = datetime.now(UTC)
    content = await evaluation.export_document(conn, caller, kind, now, _VIA)
    media = "text/csv; charset=utf-8" if kind == "csv" else "application/json"
    return _download(content, media, f"refnet-evaluation-export-{_stamp(now)}.{kind}")


@get("/evaluation/export.csv", include_in_schema=False, guards=_GUARD)
async def export_csv_download(caller: Caller, conn: asyncpg.Connection) -> Response[bytes]:
    return await _export(caller, conn, "csv")


@get("/evaluation/export.json", include_in_schema=False, guards=_GUARD)
async def export_json_download(caller: Caller, conn: asyncpg.Connection) -> Response[bytes]:
    return await _export(caller, conn, "json")


ROUTES: list[Any] = [
    evaluation_page,
    report_download,
    tables_download,
    export_csv_download,
    export_json_download,
]
