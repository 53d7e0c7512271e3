"""Staff pages' part of issue 17: possible matches (link or dismiss) and consent (days left, renewal).

The case page and the supervisor's queue page include these panels; the posts below act through the
same services as the API (row-level security, audit)."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, post
from litestar.response import Redirect

from services.intake.cases import renewal
from services.intake.core.auth import Caller, require_staff
from services.intake.core.dependencies import CallerDb
from services.intake.core.problems import Problem
from services.intake.referrals import matches
from services.intake.referrals.schemas import Consent
from services.intake.web import forms
from services.intake.web.referral_form import CONSENT_SCOPES, local_instant
from services.intake.web.render import checked_form, plain, redirect, safe_next, uuid_or_404
from services.intake.web.service import attempt

__all__ = ["ROUTES", "consent_panel", "matches_panel"]


async def matches_panel(conn: asyncpg.Connection, caller: Caller, referral_id: str) -> list[dict[str, Any]]:
    """The referral's possible matches for a staff page ([] when the caller may see none)."""
    try:
        return [plain(m) for m in await matches.list_matches(conn, caller, referral_id)]
    except Problem:
        return []


async def consent_panel(conn: asyncpg.Connection, caller: Caller, referral_id: str) -> dict[str, Any] | None:
    """The consent in force and its days left, for the case manager's case page."""
    try:
        return {**plain(await renewal.read_consent(conn, caller, referral_id)), "scopes": CONSENT_SCOPES}
    except Problem:
        return None


@post(
    "/referrals/{referral_id:str}/matches/{match_id:str}/{verdict:str}",
    include_in_schema=False,
    guards=[require_staff("case_manager", "supervisor", "admin")],
)
async def decide_match(
    request: Request[Any, Any, Any],
    caller: Caller,
    db: CallerDb,
    referral_id: str,
    match_id: str,
    verdict: str,
) -> Redirect:
    fields = await checked_form(request, caller)
    rid, mid = uuid_or_404(referral_id), uuid_or_404(match_id)
    target = safe_next(fields.get("next")) or f"/app/cases/{rid}"
    decision = {"link": "linked", "dismiss": "dismissed"}.get(verdict)
    if decision is None:
        raise Problem(404, "not found")
    if await attempt(
        db, lambda conn: matches.decide(conn, caller, rid, mid, decision), refused=(404, 409, 422)
    ):
        return redirect(target, msg="pr.refused")
    return redirect(target, msg="match.saved")


@post("/cases/{referral_id:str}/consent", include_in_schema=False, guards=[require_staff("case_manager")])
async def renew_consent(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, referral_id: str
) -> Redirect:
    await checked_form(request, caller)
    rid = uuid_or_404(referral_id)
    posted = await request.form()
    scopes = (
        [v for v in posted.getall("consent.scope") if isinstance(v, str)] if "consent.scope" in posted else []
    )
    doc = {
        "obtained_at": local_instant(str(posted.get("consent.obtained_at", ""))),
        "expires_at": local_instant(str(posted.get("consent.expires_at", ""))),
        "method": str(posted.get("consent.method", "")),
        "scope": scopes,
    }
    data = forms.refused_body(Consent, {k: v for k, v in doc.items() if v not in (None, "")})
    if data is None or await attempt(db, lambda conn: renewal.renew(conn, caller, rid, data)):
        return redirect(f"/app/cases/{rid}", msg="cs.refused")
    return redirect(f"/app/cases/{rid}", msg="cs.renewed")


ROUTES: list[Any] = [decide_match, renew_consent]
