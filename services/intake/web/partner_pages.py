"""Pages for partners without developers and for the agency's own intake (issue 17).

The referral form at /app/referrals/new (partners, partner users, and the agency's intake staff for
hotline, walk-in and self-referrals) posts the API's referral body field by field: it is refused by the
API's own rules, each message next to its field, and submitted through the API's own service with an
idempotency key per form, so a double click or a resubmitted page never makes two referrals. Partners
also follow their referrals' statuses (never case notes or interventions), withdraw one, and manage
their webhooks and API keys. Every page acts as the signed-in caller: row-level security, validation,
audit and events as in the API.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from litestar import Request, Response, get, post
from litestar.di import Provide
from litestar.response import Redirect, Template

from services.intake.cases import consent
from services.intake.core.auth import Caller
from services.intake.core.dependencies import CallerDb
from services.intake.core.middleware import request_id
from services.intake.core.problems import Problem
from services.intake.partners import apikeys, webhooks
from services.intake.partners.schemas import WebhookIn
from services.intake.referrals import service as referrals
from services.intake.web import forms, referrer
from services.intake.web.referral_form import CONSENT_SCOPES, parse_referral_form
from services.intake.web.render import checked_form, context, page, redirect, uuid_or_404
from services.intake.web.service import attempt
from shared.codes import AGENCY_ORIGINS, NEED_CODES, REFERRAL_SETTINGS
from shared.youthkey import youth_key_secret

__all__ = ["ROUTES"]

_PARTNER_SETTINGS = tuple(s for s in REFERRAL_SETTINGS if s not in AGENCY_ORIGINS)
_LANGUAGES = ("en", "es", "ko", "zh", "tl", "vi", "hy", "ru", "fa", "ar", "km", "ja")
# The translated message shown next to a field the API refused (the API's own words follow it).
_FIELD_MESSAGES = {
    "youth.first_name": "rferr.first_name",
    "youth.last_name": "rferr.last_name",
    "youth.date_of_birth": "rferr.dob",
    "youth.phone": "rferr.phone",
    "youth.gender": "rferr.gender",
    "location.zip": "rferr.zip",
    "location.lat": "rferr.lat",
    "location.lon": "rferr.lon",
    "needs": "rferr.needs",
    "language": "rferr.language",
    "urgency": "rferr.urgency",
    "consent.obtained_at": "rferr.obtained",
    "consent.expires_at": "rferr.expires",
    "consent.method": "rferr.method",
    "consent.scope": "rferr.scope",
    "intake.referral_setting": "rferr.setting",
    "intake.prior_services": "rferr.setting",
    "intake.education_level": "rferr.setting",
    "intake.socioeconomic_status": "rferr.setting",
    "intake.age_first_exploited": "rferr.number",
    "intake.prior_arrests": "rferr.number",
    "notes": "rferr.notes",
}


_REFERRER = {"caller": Provide(referrer.provide_referrer)}


def _require_partner(caller: Caller) -> None:
    if not referrer.is_partner(caller):
        raise Problem(403, "Partners manage their own webhooks and keys.")


def _nav(caller: Caller) -> list[tuple[str, str]]:
    items = [("/app/referrals/new", "nav.new_referral"), ("/app/partner/referrals", "nav.my_referrals")]
    if referrer.is_partner(caller):
        items += [("/app/partner/webhooks", "nav.webhooks"), ("/app/partner/keys", "nav.keys")]
    return items


async def _context(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, **extra: Any
) -> dict[str, Any]:
    return context(request, caller, await referrer.name(db, caller), nav=_nav(caller), **extra)


def _form_context(
    caller: Caller, values: dict[str, Any], errors: dict[str, str], idem: str
) -> dict[str, Any]:
    agency = caller.role == "intake_staff"
    return {
        "agency": agency,
        "values": values,
        "errors": errors,
        "error_keys": {f: _FIELD_MESSAGES.get(f, "rferr.generic") for f in errors},
        "idem": idem,
        "need_codes": NEED_CODES,
        "settings": AGENCY_ORIGINS if agency else _PARTNER_SETTINGS,
        "scopes": CONSENT_SCOPES,
        "languages": _LANGUAGES,
        "prior_services": ("none", "voluntary", "mandated"),
        "education_levels": ("none", "primary", "some_high_school", "high_school", "some_college", "college"),
        "ses_levels": ("very_low", "low", "moderate", "high"),
        "methods": ("written", "electronic", "verbal"),
    }


@get("/referrals/new", include_in_schema=False, dependencies=_REFERRER)
async def referral_form(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Template:
    values: dict[str, Any] = {"needs": [], "consent.scope": ["case_management"], "language": "en"}
    ctx = await _context(request, caller, db, **_form_context(caller, values, {}, str(uuid.uuid4())))
    return page(request, "referral_form.html", ctx)


@post("/referrals/new", include_in_schema=False, dependencies=_REFERRER, status_code=303)
async def referral_submit(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Response[Any]:
    fields = await checked_form(request, caller)
    posted = await request.form()
    needs = [v for v in posted.getall("needs") if isinstance(v, str)] if "needs" in posted else []
    scopes = (
        [v for v in posted.getall("consent.scope") if isinstance(v, str)] if "consent.scope" in posted else []
    )
    idem = fields.get("_idem", "")
    try:
        idem = str(uuid.UUID(idem))
    except ValueError:
        idem = str(uuid.uuid4())  # a form without its key still gets one (it cannot be resubmitted)
    values: dict[str, Any] = {**fields, "needs": needs, "consent.scope": scopes}
    result = parse_referral_form(fields, scopes, needs, agency=caller.role == "intake_staff")
    conflict = False
    if result.body is not None:
        state = request.app.state
        try:
            await referrals.submit(
                db,
                caller,
                result.body,
                idempotency_key=f"web:{idem}",
                regions=state.regions,
                keyring=state.pii_keys.ring,
                youth_secret=youth_key_secret(state.settings.youth_key_secret, state.settings.secret_key),
                trace_id=request_id(request.scope),
            )
        except Problem as exc:
            if exc.status_code == 409:
                conflict = True
            elif exc.status_code == 422:
                result.errors.update({e["field"]: e["message"] for e in exc.errors or []})
            else:
                raise
        else:
            return redirect("/app/partner/referrals", msg="pr.submitted")
    ctx = await _context(
        request,
        caller,
        db,
        **_form_context(caller, values, result.errors, idem),
        error="rf.conflict" if conflict else "rf.errors",
    )
    return page(request, "referral_form.html", ctx, status=409 if conflict else 422)


@get("/partner/referrals", include_in_schema=False, dependencies=_REFERRER)
async def my_referrals(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Template:
    ctx = await _context(
        request,
        caller,
        db,
        items=await referrer.referral_rows(db, caller),
        can_withdraw=referrer.is_partner(caller),
        refresh={"src": "/app/partner/referrals/fragment", "target": "referrals-body", "every": 3},
    )
    return page(request, "partner_referrals.html", ctx)


@get("/partner/referrals/fragment", include_in_schema=False, dependencies=_REFERRER)
async def my_referrals_fragment(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Template:
    ctx = await _context(
        request,
        caller,
        db,
        items=await referrer.referral_rows(db, caller),
        can_withdraw=referrer.is_partner(caller),
    )
    return page(request, "_partner_referrals_body.html", ctx)


@post("/partner/referrals/{referral_id:str}/withdraw", include_in_schema=False, dependencies=_REFERRER)
async def withdraw(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, referral_id: str
) -> Redirect:
    await checked_form(request, caller)
    _require_partner(caller)
    rid = uuid_or_404(referral_id)
    if await attempt(db, lambda conn: consent.withdraw(conn, caller, rid), refused=(404, 409)):
        return redirect("/app/partner/referrals", msg="pr.refused")
    return redirect("/app/partner/referrals", msg="pr.withdrawn")


# ----------------------------------------------------------------------------------------- webhooks


async def _webhooks_page(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, status: int = 200, **extra: Any
) -> Template:
    _require_partner(caller)
    items = await referrer.webhook_rows(db, caller)
    ctx = await _context(request, caller, db, **{"items": items, "secret": None, "url": "", **extra})
    return page(request, "partner_webhooks.html", ctx, status=status)


@get("/partner/webhooks", include_in_schema=False, dependencies=_REFERRER)
async def webhooks_page(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Template:
    return await _webhooks_page(request, caller, db)


@post("/partner/webhooks", include_in_schema=False, dependencies=_REFERRER, status_code=200)
async def webhooks_add(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Template:
    await checked_form(request, caller)
    _require_partner(caller)
    posted = await request.form()
    events = [v for v in posted.getall("events") if isinstance(v, str)] if "events" in posted else []
    url = str(posted.get("url", "")).strip()
    state = request.app.state
    try:
        data = forms.body(WebhookIn, {"url": url, "events": events})
        created = await webhooks.register(
            db, caller, data, state.pii_keys.ring, state.settings.environment, request_id(request.scope)
        )
    except Problem as exc:
        if exc.status_code not in (409, 422):
            raise
        return await _webhooks_page(request, caller, db, status=422, error="wh.refused", url=url)
    return await _webhooks_page(request, caller, db, flash="wh.created", secret=created.secret)


@post("/partner/webhooks/{endpoint_id:str}/delete", include_in_schema=False, dependencies=_REFERRER)
async def webhooks_delete(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, endpoint_id: str
) -> Redirect:
    await checked_form(request, caller)
    _require_partner(caller)
    eid = uuid_or_404(endpoint_id)
    if await attempt(db, lambda conn: webhooks.remove(conn, caller, eid), refused=(404, 409)):
        return redirect("/app/partner/webhooks", msg="pr.refused")
    return redirect("/app/partner/webhooks", msg="wh.deleted")


# ------------------------------------------------------------------------------------------ API keys


async def _keys_page(request: Request[Any, Any, Any], caller: Caller, db: CallerDb, **extra: Any) -> Template:
    _require_partner(caller)
    items = await referrer.keys(db, caller)
    ctx = await _context(request, caller, db, **{"items": items, "new_key": None, **extra})
    return page(request, "partner_api_keys.html", ctx)


@get("/partner/keys", include_in_schema=False, dependencies=_REFERRER)
async def keys_page(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Template:
    return await _keys_page(request, caller, db)


@post("/partner/keys", include_in_schema=False, dependencies=_REFERRER, status_code=200)
async def keys_create(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Template:
    fields = await checked_form(request, caller)
    _require_partner(caller)
    label = fields.get("label", "").strip()[:100]
    made = await referrer.create_key(db, caller, label)
    return await _keys_page(request, caller, db, new_key=made, flash=None)


@post("/partner/keys/{key_id:str}/revoke", include_in_schema=False, dependencies=_REFERRER)
async def keys_revoke(request: Request[Any, Any, Any], caller: Caller, db: CallerDb, key_id: str) -> Redirect:
    await checked_form(request, caller)
    _require_partner(caller)
    kid = uuid_or_404(key_id)

    async def revoke(conn: asyncpg.Connection) -> None:
        try:
            await apikeys.revoke_key(conn, caller.identity, kid, "revoked by the partner")
        except LookupError:
            raise Problem(404, "No such key.") from None

    if await attempt(db, revoke, refused=(404,)):
        return redirect("/app/partner/keys", msg="pr.refused")
    return redirect("/app/partner/keys", msg="pk.revoked")


ROUTES: list[Any] = [
    referral_form,
    referral_submit,
    my_referrals,
    my_referrals_fragment,
    withdraw,
    webhooks_page,
    webhooks_add,
    webhooks_delete,
    keys_page,
    keys_create,
    keys_revoke,
]
