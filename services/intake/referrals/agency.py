"""The coordinating agency's own intake (hotline, walk-in, self-referral): its referrals' "partner".

The agency is represented by one partner row of kind ``coordinating_agency``, made on first use (an empty
database stays empty until then), with no API keys and no webhooks. Its intake staff act as that partner
for referral creation (row-level security: role ``intake_staff``, the agency's partner id), so their
referrals take the partners' own path (validation, sealing, idempotency, matching, outbox, routing) and
count in the evaluation by origin like any other; the audit log names the person.
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from services.intake.core.auth import Caller
from services.intake.core.problems import Problem
from shared.db import SYSTEM, load_sql, transaction

__all__ = ["AGENCY_NAME", "agency_caller", "agency_partner_id"]

AGENCY_NAME = "Coordinating agency (own intake)"
_ENSURE_AGENCY = load_sql("services.intake.referrals", "ensure_agency")
_cached: dict[int, str] = {}


async def agency_partner_id(pool: asyncpg.Pool) -> str:
    """The agency's partner id (made the first time; remembered per pool)."""
    key = id(pool)
    if key not in _cached:
        async with transaction(pool, SYSTEM) as conn:
            found = await conn.fetchval(_ENSURE_AGENCY, uuid.uuid4(), AGENCY_NAME)
        if found is None:
            raise Problem(503, "The coordinating agency's partner record could not be made.")
        _cached[key] = str(found)
    return _cached[key]


async def agency_caller(pool: asyncpg.Pool, caller: Caller) -> Caller:
    """An intake staff member as the referral service sees them: acting for the agency's partner row."""
    if caller.role != "intake_staff":
        raise Problem(403, "Only the agency's intake staff take hotline and walk-in referrals.")
    return msgspec.structs.replace(caller, partner_id=await agency_partner_id(pool))
