"""The case manager's pages: the inbox with its live updates, answering offers, and case work."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar import Request, get, post
from litestar.response import Redirect, Template

from services.intake.cases import assignments, pii
from services.intake.cases import service as cases
from services.intake.cases.schemas import CloseIn, ContactIn, DeclineIn, InterventionIn, OutcomeIn
from services.intake.core.auth import Caller, require_staff
from services.intake.core.dependencies import CallerDb
from services.intake.core.problems import Problem
from services.intake.notifications import service as notifications
from services.intake.referrals.service import read_referral
from services.intake.web import case_extras, forms, protocol_pages
from services.intake.web import service as web
from services.intake.web.forms import refused_body
from services.intake.web.render import (
    checked_form,
    page,
    page_context,
    plain,
    redirect,
    uuid_or_404,
)
from services.intake.web.service import attempt
from shared.casework import FOLLOWUPS, INTERVENTION_TYPES, LOCAL_TZ, MEASURE_VALUES, OUTCOME_SOURCES
from shared.lifecycle import CLOSE_REASONS

__all__ = ["ROUTES"]


async def _inbox_data(conn: asyncpg.Connection, caller: Caller) -> dict[str, Any]:
    offers, cases_ = await web.inbox(conn, caller.id)
    open_cases, closed_cases = web.split_cases(cases_, datetime.now(LOCAL_TZ).date())
    await protocol_pages.annotate_next(conn, [*offers, *open_cases])
    return {
        "offers": offers,
        "cases": open_cases,
        "closed_cases": closed_cases,
        "reasons": forms.DECLINE_REASONS,
        "now": datetime.now(UTC),
    }


@get("/inbox", include_in_schema=False, guards=[require_staff("case_manager")])
async def inbox(request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection) -> Template:
    # The newest notification first, then the data: anything arriving in between is both shown and
    # replayed (a harmless refresh), never lost.
    seen = await notifications.latest_id(conn, caller.id)
    data = await _inbox_data(conn, caller)
    ctx = await page_context(
        request,
        caller,
        conn,
        **data,
        live={"src": f"/app/events?after={seen}", "fragment": "/app/inbox/fragment", "target": "inbox-body"},
    )
    return page(request, "inbox.html", ctx)


@get("/inbox/fragment", include_in_schema=False, guards=[require_staff("case_manager")])
async def inbox_fragment(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection
) -> Template:
    """The inbox's offers and caseload alone, for the live update (no layout)."""
    ctx = await page_context(request, caller, conn, **await _inbox_data(conn, caller))
    return page(request, "_inbox_body.html", ctx)


@post("/offers/{assignment_id:str}/accept", include_in_schema=False, guards=[require_staff("case_manager")])
async def accept_offer(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, assignment_id: str
) -> Redirect:
    await checked_form(request, caller)
    aid = uuid_or_404(assignment_id)
    if await attempt(db, lambda conn: assignments.accept(conn, caller, aid), refused=(409,)):
        return redirect("/app/inbox", msg="offer.closed")
    return redirect("/app/inbox", msg="offer.accepted")


@post("/offers/{assignment_id:str}/decline", include_in_schema=False, guards=[require_staff("case_manager")])
async def decline_offer(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, assignment_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    aid = uuid_or_404(assignment_id)
    data = forms.body(DeclineIn, {"reason": forms.decline_reason(fields)})
    keys = request.app.state.pii_keys
    if await attempt(
        db, lambda conn: assignments.decline(conn, caller, aid, data.reason, keys), refused=(409,)
    ):
        return redirect("/app/inbox", msg="offer.closed")
    return redirect("/app/inbox", msg="offer.declined")


@get("/cases/{referral_id:str}", include_in_schema=False, guards=[require_staff("case_manager")])
async def case_page(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, referral_id: str
) -> Template:
    rid = uuid_or_404(referral_id)
    referral = plain(await read_referral(conn, caller, rid))
    # The audited read: every view of a youth's details is a row in the audit log.
    details: dict[str, Any] | None = None
    pii_gone = False
    try:
        details = plain(await pii.read_details(conn, caller, request.app.state.pii_keys, rid))
    except Problem as exc:
        if exc.status_code != 410:
            raise
        pii_gone = True
    casework: dict[str, Any] = {"history": plain(await cases.history(conn, rid))}
    if referral["status"] in ("engaged", "closed"):
        casework["interventions"] = plain(await cases.interventions(conn, rid))
        casework["outcomes"] = plain(await cases.outcomes(conn, rid))
        if referral["status"] == "closed":
            # Nothing more is asked of a closed case: its schedule shows what was due, not what is to come.
            today = _today()
            casework["outcomes"]["followups"] = [
                f
                for f in casework["outcomes"]["followups"]
                if "completed_at" in f or str(f["due_on"]) <= today
            ]
    ctx = await page_context(
        request,
        caller,
        conn,
        referral=referral,
        language=await web.referral_language(conn, rid),
        pii=details,
        pii_gone=pii_gone,
        casework=casework,
        today=_today(),
        contact_methods=forms.CONTACT_METHODS,
        intervention_types=INTERVENTION_TYPES,
        followups=FOLLOWUPS,
        sources=OUTCOME_SOURCES,
        measures=MEASURE_VALUES,
        close_reasons=CLOSE_REASONS,
        # Issue 17: the consent's days left and renewal; referrals probably of the same youth.
        consent=await case_extras.consent_panel(conn, caller, rid),
        matches=await case_extras.matches_panel(conn, caller, rid),
        match_referral=rid,
        # Issue 18: the child-protection protocol's steps (none for 18-24).
        protocol=await protocol_pages.protocol_panel(conn, caller, request.app.state.pii_keys, rid),
    )
    return page(request, "case.html", ctx)


def _today() -> str:
    return datetime.now(LOCAL_TZ).date().isoformat()


async def _case_action(db: CallerDb, caller: Caller, referral_id: str, change: Any) -> Redirect:
    """One case change; a refusal (409/422) is a message on the case page."""
    rid = uuid_or_404(referral_id)
    if await attempt(db, lambda conn: change(conn, rid)):
        return redirect(f"/app/cases/{rid}", msg="case.refused")
    return redirect(f"/app/cases/{rid}", msg="case.saved")


@post("/cases/{referral_id:str}/contact", include_in_schema=False, guards=[require_staff("case_manager")])
async def case_contact(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, referral_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    data = refused_body(ContactIn, forms.contact_body(fields))
    if data is None:
        return redirect(f"/app/cases/{uuid_or_404(referral_id)}", msg="case.refused")
    return await _case_action(
        db, caller, referral_id, lambda conn, rid: cases.contact(conn, caller, rid, data)
    )


@post(
    "/cases/{referral_id:str}/interventions", include_in_schema=False, guards=[require_staff("case_manager")]
)
async def case_intervention(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, referral_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    data = refused_body(InterventionIn, forms.intervention_body(fields))
    if data is None:
        return redirect(f"/app/cases/{uuid_or_404(referral_id)}", msg="case.refused")
    return await _case_action(
        db, caller, referral_id, lambda conn, rid: cases.add_intervention(conn, caller, rid, data)
    )


@post("/cases/{referral_id:str}/outcomes", include_in_schema=False, guards=[require_staff("case_manager")])
async def case_outcomes(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, referral_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    data = refused_body(OutcomeIn, forms.outcome_body(fields))
    if data is None:
        return redirect(f"/app/cases/{uuid_or_404(referral_id)}", msg="case.refused")
    return await _case_action(
        db, caller, referral_id, lambda conn, rid: cases.add_outcomes(conn, caller, rid, data)
    )


@post("/cases/{referral_id:str}/close", include_in_schema=False, guards=[require_staff("case_manager")])
async def case_close(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, referral_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    data = refused_body(CloseIn, {"reason": fields.get("reason", "")})
    if data is None:
        return redirect(f"/app/cases/{uuid_or_404(referral_id)}", msg="case.refused")
    return await _case_action(db, caller, referral_id, lambda conn, rid: cases.close(conn, caller, rid, data))


ROUTES: list[Any] = [
    inbox,
    inbox_fragment,
    accept_offer,
    decline_offer,
    case_page,
    case_contact,
    case_intervention,
    case_outcomes,
    case_close,
]
