"""The case page's child-protection protocol panel (steps, live countdowns, completing one) and the
inbox's next protocol step: through the same service as the API (row-level security, audit)."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from litestar import Request, post
from litestar.response import Redirect

from services.intake.core.auth import Caller, require_staff
from services.intake.core.dependencies import CallerDb
from services.intake.core.keys import Keys
from services.intake.core.problems import Problem
from services.intake.protocol import service as protocol
from services.intake.protocol.schemas import CompleteIn
from services.intake.web.referral_form import local_instant
from services.intake.web.render import checked_form, plain, redirect, uuid_or_404
from services.intake.web.service import attempt

__all__ = ["ROUTES", "annotate_next", "protocol_panel"]


async def protocol_panel(
    conn: asyncpg.Connection, caller: Caller, keys: Keys, referral_id: str
) -> dict[str, Any]:
    """The referral's steps for the case page (no steps: an empty panel the page leaves out)."""
    try:
        view = await protocol.read(conn, caller, keys, referral_id)
    except Problem as exc:
        if exc.status_code == 404:
            return {"steps": []}
        raise
    doc: dict[str, Any] = plain(view)
    return doc


async def annotate_next(conn: asyncpg.Connection, items: list[dict[str, Any]]) -> None:
    """Add each inbox item's next protocol step with a deadline (``protocol_next``), if it has one."""
    upcoming = await protocol.next_due(conn, [i["referral_id"] for i in items])
    for item in items:
        item["protocol_next"] = upcoming.get(str(item["referral_id"]))


def _complete_body(fields: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    when = local_instant(fields.get("completed_at", ""))
    if when is not None:
        body["completed_at"] = when
    for name in ("reference", "note", "outcome"):
        value = fields.get(name, "").strip()
        if value:
            body[name] = value
    return body


@post(
    "/cases/{referral_id:str}/protocol/{code:str}",
    include_in_schema=False,
    guards=[require_staff("case_manager", "supervisor", "admin")],
)
async def complete_step(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, referral_id: str, code: str
) -> Redirect:
    fields = await checked_form(request, caller)
    rid = uuid_or_404(referral_id)
    # Back where the form was: the case page (case managers) or the referral's queue page (supervisors).
    back = f"/app/cases/{rid}" if caller.role == "case_manager" else f"/app/queue/{rid}"
    try:
        data = msgspec.convert(_complete_body(fields), CompleteIn, strict=False)
    except msgspec.ValidationError:
        return redirect(back, msg="pr.refused")
    keys: Keys = request.app.state.pii_keys
    refused = await attempt(
        db,
        lambda conn: protocol.complete(conn, caller, keys, rid, code, data),
        refused=(403, 404, 409, 410, 422),
    )
    return redirect(back, msg="pr.refused" if refused else "pr.saved")


ROUTES: list[Any] = [complete_step]
