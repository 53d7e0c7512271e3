"""Admin view of outbound deliveries: the dead-letter list, one delivery's attempt log, replay, counters."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, get, post
from litestar.params import Parameter

from services.intake.auth import require_staff, resolve_caller
from services.intake.problems import Problem
from services.notify import store
from services.notify.metrics import delivery_counts
from services.notify.store import webhook_id
from shared import audit
from shared.db import transaction

__all__ = ["AdminDeliveriesController"]

DeliveryState = Literal["pending", "failed", "delivered", "dead", "cancelled"]
Channel = Literal["webhook", "email"]


class DeliveryView(msgspec.Struct, kw_only=True):
    """Ids, codes and outcomes only: no payload, no URL, no email address."""

    id: str
    webhook_id: str | None
    channel: str
    kind: str
    event_id: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    endpoint_id: str | None
    partner_id: str | None
    staff_id: str | None
    referral_id: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None


class AttemptView(msgspec.Struct, kw_only=True):
    attempt: int
    started_at: datetime
    latency_ms: float
    status_code: int | None
    error: str | None
    outcome: str
    next_attempt_at: datetime | None


class DeliveryDetail(msgspec.Struct, kw_only=True):
    delivery: DeliveryView
    attempts: list[AttemptView]


class DeliveryPage(msgspec.Struct):
    items: list[DeliveryView]
    next_cursor: str | None


_COLUMNS = (
    "id, channel, kind, event_id, state, attempts, last_status, last_error, endpoint_id, partner_id, staff_id,"
    " referral_id, created_at, updated_at, delivered_at,"
    " CASE WHEN state IN ('pending', 'failed') THEN next_attempt_at END AS next_attempt_at"
)


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _view(r: asyncpg.Record) -> DeliveryView:
    return DeliveryView(
        id=str(r["id"]),
        webhook_id=webhook_id(r["id"]) if r["channel"] == "webhook" else None,
        channel=r["channel"],
        kind=r["kind"],
        event_id=str(r["event_id"]),
        state=r["state"],
        attempts=r["attempts"],
        last_status=r["last_status"],
        last_error=r["last_error"],
        endpoint_id=_opt(r["endpoint_id"]),
        partner_id=_opt(r["partner_id"]),
        staff_id=_opt(r["staff_id"]),
        referral_id=_opt(r["referral_id"]),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        delivered_at=r["delivered_at"],
        next_attempt_at=r["next_attempt_at"],
    )


def _delivery_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, "No such delivery.") from None


def _encode_cursor(r: asyncpg.Record) -> str:
    raw = f"{r['created_at'].isoformat()}|{r['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, rid = raw.partition("|")
        return datetime.fromisoformat(at), uuid.UUID(rid)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Problem(
            422, "The cursor is not valid.", errors=[{"field": "cursor", "message": "not a cursor"}]
        ) from None


class AdminDeliveriesController(Controller):
    path = "/v1/admin/deliveries"
    tags = ["admin"]
    guards = [require_staff("admin")]

    @get("/", summary="Outbound deliveries, newest first (state=dead is the dead-letter list)")
    async def list_(
        self,
        request: Request[Any, Any, Any],
        state_filter: Annotated[DeliveryState | None, Parameter(query="state", required=False)] = None,
        channel: Channel | None = None,
        endpoint_id: Annotated[uuid.UUID | None, Parameter(query="endpoint_id", required=False)] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: str | None = None,
    ) -> DeliveryPage:
        caller = await resolve_caller(request)
        after = _decode_cursor(cursor) if cursor else None
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM deliveries"
                " WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR channel = $2)"
                " AND ($3::uuid IS NULL OR endpoint_id = $3)"
                " AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))"
                " ORDER BY created_at DESC, id DESC LIMIT $6",
                state_filter,
                channel,
                endpoint_id,
                after[0] if after else None,
                after[1] if after else None,
                limit + 1,
            )
        more = len(rows) > limit
        rows = rows[:limit]
        return DeliveryPage(
            items=[_view(r) for r in rows], next_cursor=_encode_cursor(rows[-1]) if more and rows else None
        )

    @get("/stats", summary="Delivery counters and queue sizes per channel")
    async def stats(self, request: Request[Any, Any, Any]) -> dict[str, dict[str, int]]:
        caller = await resolve_caller(request)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            return await delivery_counts(conn)

    @get("/{delivery_id:str}", summary="One delivery and every attempt made")
    async def read(self, request: Request[Any, Any, Any], delivery_id: str) -> DeliveryDetail:
        caller = await resolve_caller(request)
        did = _delivery_id(delivery_id)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM deliveries WHERE id = $1", did)
            if row is None:
                raise Problem(404, "No such delivery.")
            attempts = await conn.fetch(
                "SELECT attempt, started_at, latency_ms, status_code, error, outcome, next_attempt_at"
                " FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
                did,
            )
        return DeliveryDetail(
            delivery=_view(row),
            attempts=[
                AttemptView(
                    attempt=a["attempt"],
                    started_at=a["started_at"],
                    latency_ms=a["latency_ms"],
                    status_code=a["status_code"],
                    error=a["error"],
                    outcome=a["outcome"],
                    next_attempt_at=a["next_attempt_at"],
                )
                for a in attempts
            ],
        )

    @post(
        "/{delivery_id:str}/replay", status_code=202, summary="Send a dead delivery again (same webhook-id)"
    )
    async def replay(self, request: Request[Any, Any, Any], delivery_id: str) -> DeliveryView:
        caller = await resolve_caller(request)
        did = _delivery_id(delivery_id)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            try:
                await store.replay(conn, str(did))
            except LookupError:
                raise Problem(404, "No such delivery.") from None
            except store.ReplayRefused as exc:
                raise Problem(409, str(exc), slug="replay-refused") from None
            await audit.record(conn, caller.identity, "delivery.replay", "delivery", str(did))
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM deliveries WHERE id = $1", did)
        assert row is not None
        return _view(row)
