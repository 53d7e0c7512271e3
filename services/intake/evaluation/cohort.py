"""Read the evaluation cohort from the database under the caller's identity (RLS applies), and audit it."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import msgspec

from services.intake.evaluation.report import CohortRecord, Report, build_report
from shared import audit
from shared.codes import EVALUATION_SCOPE
from shared.db import Identity, create_pool, load_sql, transaction

_PKG = "services.intake.evaluation"

__all__ = ["build_off_loop", "load_cohort", "load_provenance", "report_for", "report_from_database"]


async def load_cohort(conn: asyncpg.Connection) -> list[CohortRecord]:
    """Every referral the caller may read whose consent covers evaluation now, with its intervention
    counts and outcome observations. A youth who never gave the `evaluation` scope, or withdrew it,
    is in no cohort, so in no report or export made afterwards."""
    referrals = await conn.fetch(load_sql(_PKG, "cohort_referrals"), EVALUATION_SCOPE)
    ids = [r["id"] for r in referrals]
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    firsts: dict[str, dict[str, date]] = defaultdict(dict)
    for r in await conn.fetch(load_sql(_PKG, "cohort_interventions"), ids):
        counts[str(r["referral_id"])][r["type"]] = r["n"]
        firsts[str(r["referral_id"])][r["type"]] = r["first_on"]
    outcomes: dict[str, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    observed: dict[str, dict[str, dict[str, date]]] = defaultdict(lambda: defaultdict(dict))
    for r in await conn.fetch(load_sql(_PKG, "cohort_outcomes"), ids):
        outcomes[str(r["referral_id"])][r["point"]][r["measure"]] = r["value"]
        observed[str(r["referral_id"])][r["point"]][r["measure"]] = r["observed_on"]
    advocate: dict[str, float] = {}
    exam: dict[str, str] = {}
    for r in await conn.fetch(load_sql(_PKG, "cohort_protocol"), ids):
        if r["code"] == "advocate_response":
            advocate[str(r["referral_id"])] = max(0.0, float(r["minutes"]))
        elif r["outcome"] is not None:
            exam[str(r["referral_id"])] = r["outcome"]
    records = []
    for r in referrals:
        rid = str(r["id"])
        records.append(
            CohortRecord(
                referral_id=rid,
                youth_key=r["youth_key"],
                received_at=r["received_at"],
                region=r["region"],
                partner=r["partner"],
                age_years=r["age_years"],
                urgency=r["urgency"],
                needs=list(r["needs"]),
                status=r["status"],
                close_reason=r["close_reason"],
                intake=_intake(r["intake"]),
                engaged_at=r["engaged_at"],
                closed_at=r["closed_at"],
                interventions=counts.get(rid, {}),
                intervention_dates=firsts.get(rid, {}),
                outcomes={p: dict(m) for p, m in outcomes.get(rid, {}).items()},
                outcome_dates={p: dict(m) for p, m in observed.get(rid, {}).items()},
                advocate_minutes=advocate.get(rid),
                exam_outcome=exam.get(rid),
            )
        )
    return records


def _intake(value: object) -> dict[str, Any]:
    # shared.db pools decode jsonb; a bare connection hands over its text.
    decoded = msgspec.json.decode(value) if isinstance(value, str | bytes) else value
    if not isinstance(decoded, dict):
        raise TypeError("referrals.intake must be a JSON object")
    return decoded


async def load_provenance(conn: asyncpg.Connection) -> list[str]:
    """Notes about the data itself (e.g. that it is a synthetic, backdated demo), oldest first."""
    return [r["note"] for r in await conn.fetch(load_sql(_PKG, "provenance"))]


async def build_off_loop(records: list[CohortRecord], provenance: list[str]) -> Report:
    """``build_report`` in a worker thread: the models and the suppression's linear programmes take
    seconds for thousands of youth, which must not stall the service's event loop."""
    return await asyncio.to_thread(build_report, records, datetime.now(UTC), provenance)


async def report_for(conn: asyncpg.Connection, identity: Identity, detail: dict[str, Any]) -> Report:
    """The report as ``identity`` may see it (row-level security applies), audited in ``conn``'s
    transaction."""
    report = await build_off_loop(await load_cohort(conn), await load_provenance(conn))
    await audit.record(conn, identity, "evaluation.report", "evaluation", "", detail)
    return report


async def report_from_database(dsn: str, actor: str = "cli") -> Report:
    """Build the evaluation report as an evaluator would see it (connect as the service role: row-level
    security applies, so PII tables read as empty), and audit that it was produced."""
    identity = Identity(role="evaluator", actor_id=actor)
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with transaction(pool, identity) as conn:
            report = await report_for(conn, identity, {"via": "cli"})
    finally:
        await pool.close()
    return report
