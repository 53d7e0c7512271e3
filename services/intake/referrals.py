"""Referral endpoints: partners submit (validated, idempotent, outboxed) and callers read what they may."""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from msgspec import Meta

from services.intake.auth import Caller, any_caller, require_partner, resolve_caller
from services.intake.problems import Problem, invalid_body
from services.intake.schemas import ReferralIn, ReferralPage, ReferralView
from services.intake.validation import age_on, check_referral
from shared.codes import REFERRAL_STATUSES
from shared.db import load_sql, mark_outbox_written, transaction
from shared.events import ReferralReceived, encode_event, subject_for
from shared.youthkey import youth_key, youth_key_secret

__all__ = ["ReferralController", "referral_view"]

# Ages and "today" follow the agency's calendar, not UTC's.
_LOCAL_TZ = ZoneInfo("America/Los_Angeles")
_SQL = "services.intake"


def referral_view(row: asyncpg.Record) -> ReferralView:
    return ReferralView(
        id=str(row["id"]),
        status=row["status"],
        region=row["region"],
        needs=list(row["needs"]),
        urgency=row["urgency"],
        received_at=row["received_at"],
        updated_at=row["updated_at"],
        assigned_at=row["assigned_at"],
        accepted_at=row["accepted_at"],
        closed_at=row["closed_at"],
        outcome=row["outcome"],
        unroutable_reason=row["unroutable_reason"],
        engaged_at=row["engaged_at"],
        close_reason=row["close_reason"],
        do_not_contact=row["do_not_contact"],
    )


def _encode_cursor(row: asyncpg.Record) -> str:
    raw = msgspec.json.encode([row["received_at"].isoformat(), str(row["id"])])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, rid = msgspec.json.decode(raw, type=tuple[Annotated[datetime, Meta(tz=True)], uuid.UUID])
        # A forged timestamp such as year 1 at +14:00 only overflows once normalised to UTC, which
        # asyncpg does while binding: check here so it is the client's 422, not our 500.
        ts.astimezone(UTC)
    except (binascii.Error, ValueError, OverflowError, msgspec.DecodeError):
        raise Problem(
            422, "The cursor is not valid.", errors=[{"field": "cursor", "message": "invalid cursor"}]
        ) from None
    return ts, rid


def _visibility_args(caller: Caller) -> tuple[str, str | None, str | None, str | None]:
    return (
        caller.role,
        caller.partner_id or None,
        caller.id if caller.kind == "staff" else None,
        caller.region or None,
    )


class ReferralController(Controller):
    path = "/v1/referrals"
    tags = ["referrals"]

    @post(
        "/",
        guards=[require_partner()],
        status_code=201,
        summary="Submit a referral",
        description="Partners submit a referral. `Idempotency-Key` makes retries safe.",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: ReferralIn,
        idempotency_key: Annotated[str | None, Parameter(header="Idempotency-Key", required=False)] = None,
    ) -> Response[ReferralView]:
        caller = await resolve_caller(request)
        # Litestar converted the body leniently (strict=False: "34.0" → 34.0, "true" → True, a number →
        # a datetime). The contract types are exact, so decode the same bytes strictly and use that.
        try:
            data = msgspec.json.decode(await request.body(), type=ReferralIn)
        except msgspec.DecodeError as exc:
            raise invalid_body(exc) from None
        state = request.app.state
        pool: asyncpg.Pool = state.pool
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise Problem(
                422,
                "Idempotency-Key must be 1-255 characters.",
                errors=[{"field": "Idempotency-Key", "message": "length must be 1-255"}],
            )
        # Same key + same body → same response; the hash is over the canonical re-encoding so
        # whitespace or key order do not count as a different body.
        request_hash = hashlib.sha256(msgspec.json.encode(data)).digest()
        if idempotency_key is not None:
            replay = await _replay(pool, caller, idempotency_key, request_hash)
            if replay is not None:
                return replay

        now = datetime.now(UTC)
        today = now.astimezone(_LOCAL_TZ).date()
        errors = check_referral(data, now, today)
        if errors:
            raise Problem(
                422,
                "; ".join(e.message for e in errors),
                errors=[{"field": e.field, "message": e.message} for e in errors],
            )

        referral_id = str(uuid.uuid4())
        region = state.regions.resolve(data.location.zip, data.location.lat, data.location.lon)
        intake_attrs = msgspec.to_builtins(data.intake) if data.intake is not None else {}
        pii = msgspec.json.encode({"youth": data.youth, "location": data.location, "notes": data.notes})
        sealed = state.keyring.seal(pii, referral_id.encode())
        # Lets routing prefer a case manager who served this youth before, without reading PII.
        key = youth_key(
            youth_key_secret(state.settings.youth_key_secret, state.settings.secret_key),
            data.youth.first_name,
            data.youth.last_name,
            data.youth.date_of_birth,
        )
        event = ReferralReceived(
            referral_id=referral_id,
            partner_id=caller.partner_id,
            urgency=data.urgency,
            trace_id=request.scope.get("state", {}).get("request_id", ""),
        )
        view = ReferralView(
            id=referral_id,
            status="received",
            region=region,
            needs=list(data.needs),
            urgency=data.urgency,
            received_at=now,
            updated_at=now,
            do_not_contact=data.youth.do_not_contact is True,
        )
        body = msgspec.json.encode(view)
        try:
            async with transaction(pool, caller.identity) as conn:
                await conn.execute(
                    load_sql(_SQL, "create_referral"),
                    referral_id,
                    caller.partner_id,
                    region,
                    list(data.needs),
                    data.language,
                    data.urgency,
                    age_on(data.youth.date_of_birth, today),
                    intake_attrs,
                    now,
                    sealed.key_id,
                    sealed.wrapped_key,
                    sealed.nonce,
                    sealed.ciphertext,
                    data.consent.method,
                    list(data.consent.scope),
                    data.consent.obtained_at,
                    data.consent.expires_at,
                    event.event_id,
                    subject_for(event),
                    encode_event(event),
                    idempotency_key,
                    request_hash,
                    body,
                    key,
                )
                mark_outbox_written()  # the statement above wrote referral.received into the outbox
                if data.youth.do_not_contact is True:
                    # Rare, so a second statement rather than another parameter on the hot insert.
                    await conn.execute(
                        "UPDATE referrals SET do_not_contact = true WHERE id = $1", referral_id
                    )
        except asyncpg.UniqueViolationError:
            # A concurrent request with the same Idempotency-Key won the race.
            if idempotency_key is not None:
                replay = await _replay(pool, caller, idempotency_key, request_hash)
                if replay is not None:
                    return replay
            raise Problem(409, "A conflicting request was processed at the same time; retry.") from None
        return Response(
            content=view,
            status_code=201,
            media_type="application/json",
            headers={"Location": f"/v1/referrals/{referral_id}"},
        )

    @get("/{referral_id:str}", guards=[any_caller()], summary="A referral's status view")
    async def read(self, request: Request[Any, Any, Any], referral_id: str) -> ReferralView:
        caller = await resolve_caller(request)
        try:
            rid = uuid.UUID(referral_id)
        except ValueError:
            raise Problem(404, "No such referral.") from None
        _deny_evaluator(caller)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = await conn.fetch(
                load_sql(_SQL, "visible_referrals"), rid, *_visibility_args(caller), None, None, None, 1
            )
        if not rows:
            raise Problem(404, "No such referral.")
        return referral_view(rows[0])

    @get("/", guards=[any_caller()], summary="Referrals visible to the caller, newest first")
    async def list_(
        self,
        request: Request[Any, Any, Any],
        status: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: str | None = None,
    ) -> ReferralPage:
        caller = await resolve_caller(request)
        _deny_evaluator(caller)
        if status is not None and status not in REFERRAL_STATUSES:
            raise Problem(
                422,
                f"Unknown status {status!r}.",
                errors=[{"field": "status", "message": f"must be one of {', '.join(REFERRAL_STATUSES)}"}],
            )
        after_ts, after_id = _decode_cursor(cursor) if cursor else (None, None)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = await conn.fetch(
                load_sql(_SQL, "visible_referrals"),
                None,
                *_visibility_args(caller),
                status,
                after_ts,
                after_id,
                limit + 1,
            )
        items = [referral_view(r) for r in rows[:limit]]
        next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return ReferralPage(items=items, next_cursor=next_cursor)


def _deny_evaluator(caller: Caller) -> None:
    if caller.role == "evaluator":
        raise Problem(403, "Evaluators read de-identified exports, not referral records.")


async def _replay(
    pool: asyncpg.Pool, caller: Caller, key: str, request_hash: bytes
) -> Response[ReferralView] | None:
    async with transaction(pool, caller.identity) as conn:
        row = await conn.fetchrow(
            "SELECT request_hash, status_code, response_body, referral_id FROM idempotency_keys"
            " WHERE partner_id = $1 AND key = $2",
            caller.partner_id,
            key,
        )
    if row is None:
        return None
    if bytes(row["request_hash"]) != request_hash:
        raise Problem(
            409,
            "This Idempotency-Key was already used with a different request body.",
            slug="idempotency-conflict",
        )
    # The stored bytes are the original response; decoding them keeps the documented response type.
    return Response(
        content=msgspec.json.decode(bytes(row["response_body"]), type=ReferralView),
        status_code=row["status_code"],
        media_type="application/json",
        headers={"Location": f"/v1/referrals/{row['referral_id']}", "Idempotent-Replayed": "true"},
    )
