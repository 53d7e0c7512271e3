"""Who the partner pages act for, and what they read in transactions of their own (issue 17).

A partner's API key or partner user acts for its partner; the agency's intake staff act for the agency's
partner row (services/intake/referrals/agency.py). The pages' posts run each change in a transaction of
its own (web/service.py ``attempt``); these readers do the same for what a page shows afterwards.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from services.intake.core.auth import Caller
from services.intake.core.dependencies import CallerDb, provide_caller
from services.intake.core.problems import Problem
from services.intake.partners import apikeys, webhooks
from services.intake.referrals import service as referrals
from services.intake.referrals.agency import agency_caller
from services.intake.web.render import plain
from services.intake.web.service import display_name
from shared.db import load_sql

__all__ = ["is_partner", "keys", "name", "provide_referrer", "referral_rows", "webhook_rows"]

_PARTNER_NAME = load_sql("services.intake.web", "partner_name")


def is_partner(caller: Caller) -> bool:
    # A partner's API key, or (accounts work) a partner user: both act for one partner.
    return bool(caller.partner_id) and (
        caller.kind == "partner" or caller.role in ("partner", "partner_user")
    )


async def provide_referrer(request: Request[Any, Any, Any]) -> Caller:
    """The caller of the partner pages: a partner (key or user), or the agency's intake staff acting for
    the agency's partner row. Anyone else: 403."""
    caller = await provide_caller(request)
    if caller.role == "intake_staff":
        return await agency_caller(request.app.state.pool, caller)
    if is_partner(caller):
        return caller
    raise Problem(403, "These pages are for partners and the agency's intake staff.")


async def name(db: CallerDb, caller: Caller) -> str:
    """The header's name: the intake staff member's, or the partner organisation's."""
    async with db.transaction() as conn:
        if caller.role == "intake_staff":
            return await display_name(conn, caller.id)
        return str(await conn.fetchval(_PARTNER_NAME, caller.partner_id) or "")


async def referral_rows(db: CallerDb, caller: Caller) -> list[dict[str, Any]]:
    """The caller's referrals' status views, newest first (never case notes or interventions)."""
    async with db.transaction() as conn:
        rows = await referrals.visible_referrals(conn, caller, limit=200)
    return [plain(referrals.referral_view(r)) for r in rows]


async def webhook_rows(db: CallerDb, caller: Caller) -> list[dict[str, Any]]:
    async with db.transaction() as conn:
        return list(plain((await webhooks.list_endpoints(conn, caller)).items))


async def keys(db: CallerDb, caller: Caller) -> list[dict[str, Any]]:
    async with db.transaction() as conn:
        return list(plain(await apikeys.list_keys(conn, caller.partner_id)))


async def create_key(db: CallerDb, caller: Caller, label: str) -> str:
    async with db.transaction() as conn:
        return (await apikeys.create_key(conn, caller.identity, caller.partner_id, label)).api_key
