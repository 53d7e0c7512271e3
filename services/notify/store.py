"""Writes to deliveries and webhook endpoints, shared by the notify service and intake's webhook/admin API."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import structlog

from services.notify.metrics import bump
from shared.crypto import KeyRing, Sealed
from shared.db import load_sql

# Moved to shared.webhook_signing; re-exported only until intake imports it from there.
from shared.webhook_signing import webhook_id as webhook_id

__all__ = [
    "TEST_EVENT",
    "WAKE_CHANNEL",
    "WEBHOOK_EVENTS",
    "NewDelivery",
    "ReplayRefused",
    "add_deliveries",
    "add_test_delivery",
    "cancel_for_referral",
    "disable_endpoint",
    "enqueue_test",
    "replay",
    "rewrap_secrets",
    "secret_key_ids",
    "wake_dispatcher",
    "webhook_body",
]

log = structlog.get_logger("refnet.notify")
_SQL = __package__

# Event types a partner may subscribe an endpoint to.
WEBHOOK_EVENTS: tuple[str, ...] = ("referral.status_changed", "task.updated")
TEST_EVENT = "webhook.test"
# NOTIFY channel that wakes the dispatchers (the deliveries insert trigger uses it too).
WAKE_CHANNEL = "refnet_deliveries"


class NewDelivery(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    kind: str
    channel: str
    recipient_id: str
    payload: dict[str, Any]
    endpoint_id: str | None = None
    staff_id: str | None = None
    partner_id: str | None = None
    referral_id: str | None = None
    assignment_id: str | None = None


def webhook_body(event_type: str, timestamp: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks payload shape: ids, codes and times only."""
    return {"type": event_type, "timestamp": timestamp.isoformat(), "data": data}


async def add_deliveries(conn: asyncpg.Connection, rows: Sequence[NewDelivery]) -> None:
    """Insert outbound messages in the caller's transaction; duplicates (same event, recipient, channel) are ignored."""
    if not rows:
        return
    await conn.executemany(
        load_sql(_SQL, "insert_delivery"),
        [
            (
                uuid.uuid4(),
                r.event_id,
                r.kind,
                r.channel,
                r.recipient_id,
                r.endpoint_id,
                r.staff_id,
                r.partner_id,
                r.referral_id,
                r.assignment_id,
                r.payload,
            )
            for r in rows
        ],
    )


async def enqueue_test(conn: asyncpg.Connection, endpoint_id: str, partner_id: str) -> str:
    """Queue a ``webhook.test`` delivery to one endpoint; returns the delivery id.

    Kept for intake's webhook API until it asks with a ``webhook.test_requested`` event instead
    (`add_test_delivery`, which notify's consumer calls)."""
    delivery_id = str(uuid.uuid4())
    await add_test_delivery(conn, delivery_id, str(uuid.uuid4()), endpoint_id, partner_id, datetime.now(UTC))
    return delivery_id


async def add_test_delivery(
    conn: asyncpg.Connection,
    delivery_id: str,
    event_id: str,
    endpoint_id: str,
    partner_id: str,
    requested_at: datetime,
) -> bool:
    """Insert a signed ``webhook.test`` delivery under ``delivery_id`` in the caller's transaction;
    False if the id (or this event's delivery) already exists."""
    body = webhook_body(TEST_EVENT, requested_at, {"endpoint_id": endpoint_id})
    row = await conn.fetchval(
        load_sql(_SQL, "insert_test_delivery"),
        delivery_id,
        event_id,
        TEST_EVENT,
        endpoint_id,
        partner_id,
        body,
    )
    return row is not None


async def wake_dispatcher(conn: asyncpg.Connection) -> None:
    await conn.execute(load_sql(_SQL, "wake_dispatchers"), WAKE_CHANNEL)


async def cancel_for_referral(conn: asyncpg.Connection, referral_id: str, reason: str) -> int:
    """Stop every waiting outbound message about a referral (consent withdrawn)."""
    rows = await conn.fetch(load_sql(_SQL, "cancel_for_referral"), referral_id, reason)
    for channel in {r["channel"] for r in rows}:
        await bump(conn, channel, "suppressed", sum(1 for r in rows if r["channel"] == channel))
    return len(rows)


async def disable_endpoint(conn: asyncpg.Connection, endpoint_id: str, reason: str, *, email: bool) -> bool:
    """Disable an endpoint, dead-letter what waits for it (an admin can replay once it works again),
    and tell the partner's contact (email) and the admins (in-app). False if it was not active."""
    row = await conn.fetchrow(load_sql(_SQL, "disable_endpoint"), endpoint_id, reason)
    if row is None:
        return False
    moved = await conn.fetchval(load_sql(_SQL, "dead_letter_endpoint_deliveries"), endpoint_id)
    await bump(conn, "webhook", "dead_lettered", int(moved))
    partner_id = str(row["partner_id"])
    event_id = str(uuid.uuid4())
    facts = {"endpoint_id": endpoint_id, "partner_id": partner_id, "reason": reason}
    contact = await conn.fetchval(load_sql(_SQL, "partner_contact"), partner_id)
    if email and contact:
        await add_deliveries(
            conn,
            [
                NewDelivery(
                    event_id=event_id,
                    kind="webhook_disabled",
                    channel="email",
                    recipient_id=partner_id,
                    partner_id=partner_id,
                    payload=facts,
                )
            ],
        )
    await conn.execute(load_sql(_SQL, "notify_admins"), "webhook_disabled", event_id, facts)
    log.warning(
        "webhook.endpoint_disabled",
        endpoint_id=endpoint_id,
        partner_id=partner_id,
        reason=reason,
        dead_lettered=int(moved),
        contact_notified=bool(email and contact),
    )
    return True


class ReplayRefused(Exception):
    """The delivery cannot be replayed now; the message says why (shown to the admin)."""


async def replay(conn: asyncpg.Connection, delivery_id: str) -> asyncpg.Record:
    """Put a dead delivery back in the queue for a fresh round of attempts (same webhook-id)."""
    row = await conn.fetchrow(load_sql(_SQL, "lock_delivery_for_replay"), delivery_id)
    if row is None:
        raise LookupError(delivery_id)
    if row["state"] != "dead":
        raise ReplayRefused(f"Only dead deliveries can be replayed (this one is {row['state']}).")
    if row["referral_status"] == "withdrawn":
        raise ReplayRefused("Consent for this referral was withdrawn; nothing more is sent about it.")
    if row["channel"] == "webhook" and row["endpoint_state"] != "active":
        raise ReplayRefused(
            f"The webhook endpoint is {row['endpoint_state']}; the partner must re-enable it first."
        )
    updated = await conn.fetchrow(load_sql(_SQL, "requeue_delivery"), delivery_id)
    assert updated is not None  # locked above
    await wake_dispatcher(conn)
    return updated


_sealed_decoder = msgspec.msgpack.Decoder(Sealed)
_sealed_encoder = msgspec.msgpack.Encoder()


async def secret_key_ids(conn: asyncpg.Connection) -> set[str]:
    """Master key ids that sealed webhook secrets still need (a key must not be retired while listed)."""
    ids: set[str] = set()
    for r in await conn.fetch(load_sql(_SQL, "sealed_secrets")):
        for blob in (r["secret_sealed"], r["previous_secret_sealed"]):
            if blob:
                ids.add(_sealed_decoder.decode(bytes(blob)).key_id)
    return ids


async def rewrap_secrets(conn: asyncpg.Connection, keyring: KeyRing) -> int:
    """Re-wrap every sealed webhook secret's data key under the keyring's current master key."""
    done = 0
    rows = await conn.fetch(load_sql(_SQL, "lock_sealed_secrets"))
    for r in rows:
        aad = str(r["id"]).encode()
        new: list[bytes | None] = []
        for blob in (r["secret_sealed"], r["previous_secret_sealed"]):
            if not blob:
                new.append(None)
                continue
            sealed = _sealed_decoder.decode(bytes(blob))
            key_id, wrapped = keyring.rewrap(sealed.key_id, sealed.wrapped_key, aad)
            new.append(_sealed_encoder.encode(Sealed(key_id, wrapped, sealed.nonce, sealed.ciphertext)))
        await conn.execute(load_sql(_SQL, "store_sealed_secrets"), r["id"], new[0], new[1])
        done += 1
    return done
