"""Offers: a case manager lists theirs and accepts or declines them; each answer is outboxed for routing."""

from __future__ import annotations

import uuid
from typing import NoReturn

import asyncpg

from services.intake.cases import notes
from services.intake.cases.schemas import AssignmentPage, AssignmentView
from services.intake.core.auth import Caller
from services.intake.core.keys import Keys
from services.intake.core.problems import Problem
from services.intake.referrals.schemas import ReferralView
from services.intake.referrals.service import referral_view
from shared.codes import ASSIGNMENT_STATES
from shared.db import load_sql
from shared.events import AssignmentAccepted, AssignmentDeclined, ReferralStatusChanged
from shared.outbox import enqueue

__all__ = ["accept", "decline", "my_assignments"]

_PKG = "services.intake.cases"
_MY_ASSIGNMENTS = load_sql(_PKG, "my_assignments")
_ANSWER_OFFER = load_sql(_PKG, "answer_offer")
_ACCEPT_REFERRAL = load_sql(_PKG, "accept_referral")
_RELEASE_OFFER_CAPACITY = load_sql(_PKG, "release_offer_capacity")
_ASSIGNMENT = load_sql(_PKG, "assignment")
_OFFER_STATE = load_sql(_PKG, "offer_state")
_OFFER_DATA_KEY = load_sql(_PKG, "offer_data_key")


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, "No such assignment.") from None


async def my_assignments(conn: asyncpg.Connection, caller: Caller, state: str | None) -> AssignmentPage:
    if state is not None and state not in ASSIGNMENT_STATES:
        raise Problem(
            422,
            f"Unknown state {state!r}.",
            errors=[{"field": "state", "message": f"must be one of {', '.join(ASSIGNMENT_STATES)}"}],
        )
    rows = await conn.fetch(_MY_ASSIGNMENTS, caller.id, state)
    return AssignmentPage(
        items=[
            AssignmentView(
                id=str(r["id"]),
                referral_id=str(r["referral_id"]),
                state=r["state"],
                offered_at=r["offered_at"],
                respond_by=r["respond_by"],
                responded_at=r["responded_at"],
                region=r["region"],
                needs=list(r["needs"]),
                urgency=r["urgency"],
            )
            for r in rows
        ]
    )


async def accept(conn: asyncpg.Connection, caller: Caller, assignment_id: str) -> ReferralView:
    """The case manager takes the offer: the referral becomes accepted and the partner is told."""
    aid = _uuid(assignment_id)
    row = await conn.fetchrow(_ANSWER_OFFER, aid, caller.id, "accepted", None, None)
    if row is None:
        await _explain_missing(conn, aid, caller)
    ref = await conn.fetchrow(_ACCEPT_REFERRAL, row["referral_id"])
    if ref is None:
        raise Problem(409, "The referral is no longer waiting for an answer.")
    await enqueue(
        conn,
        AssignmentAccepted(referral_id=str(ref["id"]), assignment_id=str(aid), case_manager_id=caller.id),
        ReferralStatusChanged(
            referral_id=str(ref["id"]),
            partner_id=str(ref["partner_id"]),
            status="accepted",
            previous_status="assigned",
        ),
    )
    return referral_view(ref)


async def decline(
    conn: asyncpg.Connection, caller: Caller, assignment_id: str, reason: str, keys: Keys
) -> AssignmentView:
    """The case manager declines, with a reason (routing offers it elsewhere): its code is kept readable,
    their own words are sealed with the referral's data key (shredded with the youth's details)."""
    aid = _uuid(assignment_id)
    code, words = notes.split_reason(reason)
    note_id = None
    key = await conn.fetchrow(_OFFER_DATA_KEY, aid, caller.id)
    if words and key is not None:
        note_id = await notes.seal_note(
            conn,
            keys,
            caller,
            str(key["referral_id"]),
            key["key_id"],
            bytes(key["wrapped_key"]),
            "decline_reason",
            words,
        )
    # No data key (the details were already shredded): the words are dropped, the code kept.
    row = await conn.fetchrow(_ANSWER_OFFER, aid, caller.id, "declined", code, note_id)
    if row is None:
        await _explain_missing(conn, aid, caller)
    await conn.execute(_RELEASE_OFFER_CAPACITY, caller.id)
    await enqueue(
        conn,
        AssignmentDeclined(
            referral_id=str(row["referral_id"]), assignment_id=str(aid), case_manager_id=caller.id
        ),
    )
    a = await conn.fetchrow(_ASSIGNMENT, aid)
    assert a is not None  # updated in this very transaction
    return AssignmentView(
        id=str(a["id"]),
        referral_id=str(a["referral_id"]),
        state=a["state"],
        offered_at=a["offered_at"],
        respond_by=a["respond_by"],
        responded_at=a["responded_at"],
    )


async def _explain_missing(conn: asyncpg.Connection, aid: uuid.UUID, caller: Caller) -> NoReturn:
    state = await conn.fetchval(_OFFER_STATE, aid, caller.id)
    if state is None:
        raise Problem(404, "No such assignment.")
    raise Problem(
        409,
        f"This offer was already answered or withdrawn (state: {state}).",
        extra_fields={"state": state},
        slug="offer-closed",
    )
