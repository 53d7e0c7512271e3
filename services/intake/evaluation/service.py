"""The evaluator's outputs read from the database: the de-identified export, the suppressed report and its
HTML and CSV forms; each one audited in the caller's transaction."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from services.intake.core.auth import Caller
from services.intake.evaluation.cohort import load_cohort, report_for
from services.intake.evaluation.html import render_html
from services.intake.evaluation.report import ExportRow, Report, export_csv, export_rows, tables_csv
from shared import audit

__all__ = ["ExportDocument", "export", "export_document", "report", "report_html", "report_tables"]


class ExportDocument(msgspec.Struct, kw_only=True):
    generated_at: datetime
    # Pseudonyms are HMACs under a salt made for this export alone: they link rows of one youth within
    # this export and nothing across exports.
    pseudonyms: str = "per-export"
    rows: list[ExportRow]


async def export(
    conn: asyncpg.Connection, caller: Caller, fmt: str, now: datetime, via: str = "api"
) -> list[ExportRow]:
    """One de-identified row per youth and referral, pseudonymous under a salt made for this export alone."""
    rows = export_rows(await load_cohort(conn), secrets.token_bytes(32), now)
    detail: dict[str, Any] = {"format": fmt, "rows": len(rows)}
    if via != "api":
        detail["via"] = via
    await audit.record(conn, caller.identity, "evaluation.export", "evaluation", "", detail)
    return rows


async def export_document(
    conn: asyncpg.Connection, caller: Caller, fmt: str, now: datetime, via: str
) -> bytes:
    """The export as the bytes of a download: CSV with a header line, or the JSON document."""
    rows = await export(conn, caller, fmt, now, via)
    if fmt == "csv":
        return export_csv(rows).encode()
    return msgspec.json.encode(ExportDocument(generated_at=now, rows=rows))


async def report(conn: asyncpg.Connection, caller: Caller, via: str = "api") -> Report:
    """The aggregate report with small-cell suppression, built off the event loop (seconds at 5,000
    youth) and audited."""
    return await report_for(conn, caller.identity, {} if via == "api" else {"via": via})


async def report_html(conn: asyncpg.Connection, caller: Caller, language: str, via: str) -> str:
    """The report as one self-contained HTML page in ``language`` (a download), audited as such."""
    built = await report_for(conn, caller.identity, {"via": via, "format": "html", "language": language})
    return await asyncio.to_thread(render_html, built, language)


async def report_tables(conn: asyncpg.Connection, caller: Caller, via: str) -> str:
    """Every table of the report as one long CSV (the same suppressed numbers), audited as such."""
    return tables_csv(await report_for(conn, caller.identity, {"via": via, "format": "tables_csv"}))
