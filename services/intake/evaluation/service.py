"""The evaluator's outputs read from the database: the de-identified export and the suppressed report, audited."""

from __future__ import annotations

import secrets
from datetime import datetime

import asyncpg

from services.intake.core.auth import Caller
from services.intake.evaluation.cohort import load_cohort, report_for
from services.intake.evaluation.report import ExportRow, Report, export_rows
from shared import audit

__all__ = ["export", "report"]


async def export(conn: asyncpg.Connection, caller: Caller, fmt: str, now: datetime) -> list[ExportRow]:
    """One de-identified row per youth and referral, pseudonymous under a salt made for this export alone."""
    rows = export_rows(await load_cohort(conn), secrets.token_bytes(32), now)
    await audit.record(
        conn, caller.identity, "evaluation.export", "evaluation", "", {"format": fmt, "rows": len(rows)}
    )
    return rows


async def report(conn: asyncpg.Connection, caller: Caller) -> Report:
    """The aggregate report with small-cell suppression, built off the event loop (seconds at 5,000
    youth) and audited."""
    return await report_for(conn, caller.identity, {})
