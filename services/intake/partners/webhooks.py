"""A partner's webhook endpoints: register (secret shown once), list, delete, rotate, test, re-enable.

Test deliveries are notify's to make and send: intake chooses the delivery id and announces
``webhook.test_requested`` through the outbox, in the same transaction as the change that asked for it.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from services.intake.core.auth import Caller
from services.intake.core.dependencies import CallerDb
from services.intake.core.problems import Problem
from services.intake.partners.schemas import (
    DeliveryLogItem,
    DeliveryLogPage,
    SecretRotated,
    WebhookCreated,
    WebhookIn,
    WebhookPage,
    WebhookView,
)
from shared import audit
from shared.crypto import KeyRing
from shared.db import load_sql
from shared.events import WebhookTestRequested
from shared.outbox import enqueue
from shared.webhook_signing import new_secret, seal_secret, webhook_id
from shared.webhook_urls import Environment, UrlRefused, check_url, checked_addresses, system_resolver

__all__ = [
    "MAX_ENDPOINTS_PER_PARTNER",
    "check_target",
    "deliveries",
    "enable",
    "list_endpoints",
    "read",
    "register",
    "remove",
    "rotate_secret",
    "send_test",
]

# Bounds one partner's fan-out per event.
MAX_ENDPOINTS_PER_PARTNER = 10
_RESOLVE_TIMEOUT_S = 5.0

_PKG = "services.intake.partners"
_LOCK_PARTNER_WEBHOOKS = load_sql(_PKG, "lock_partner_webhooks")
_COUNT_WEBHOOKS = load_sql(_PKG, "count_webhooks")
_INSERT_WEBHOOK = load_sql(_PKG, "insert_webhook")
_WEBHOOKS = load_sql(_PKG, "webhooks")
_WEBHOOK = load_sql(_PKG, "webhook")
_DELETE_WEBHOOK = load_sql(_PKG, "delete_webhook")
_CANCEL_ENDPOINT_DELIVERIES = load_sql(_PKG, "cancel_endpoint_deliveries")
_ROTATE_WEBHOOK_SECRET = load_sql(_PKG, "rotate_webhook_secret")
_WEBHOOK_STATE = load_sql(_PKG, "webhook_state")
_WEBHOOK_URL = load_sql(_PKG, "webhook_url")
_ENABLE_WEBHOOK = load_sql(_PKG, "enable_webhook")
_ENDPOINT_DELIVERIES = load_sql(_PKG, "endpoint_deliveries")


def _view(r: asyncpg.Record) -> WebhookView:
    return WebhookView(
        id=str(r["id"]),
        url=r["url"],
        events=list(r["events"]),
        state=r["state"],
        created_at=r["created_at"],
        verified_at=r["verified_at"],
        last_success_at=r["last_success_at"],
        failing_since=r["failing_since"],
        consecutive_failures=r["consecutive_failures"],
        disabled_at=r["disabled_at"],
        disabled_reason=r["disabled_reason"],
        previous_secret_expires_at=r["previous_secret_expires_at"],
    )


def _endpoint_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(404, "No such webhook endpoint.") from None


async def check_target(url: str, environment: Environment) -> str:
    """Refuse URLs the dispatcher would refuse: form, scheme and every resolved address. Returns the host."""
    try:
        target = check_url(url, environment)
        async with asyncio.timeout(_RESOLVE_TIMEOUT_S):
            await checked_addresses(target.host, target.port, environment, system_resolver)
    except UrlRefused as exc:
        raise Problem(
            422,
            f"This URL cannot receive webhooks: {exc}",
            errors=[{"field": "url", "message": str(exc)}],
            extra_fields={"reason": exc.reason},
        ) from None
    except TimeoutError:
        raise Problem(
            422,
            "The URL's host could not be resolved in time.",
            errors=[{"field": "url", "message": "host did not resolve"}],
        ) from None
    return target.host


async def _request_test(conn: asyncpg.Connection, endpoint_id: str, partner_id: str, trace_id: str) -> str:
    """Ask notify for a signed ``webhook.test`` delivery to the endpoint; returns its delivery id."""
    delivery_id = str(uuid.uuid4())
    await enqueue(
        conn,
        WebhookTestRequested(
            endpoint_id=endpoint_id, partner_id=partner_id, delivery_id=delivery_id, trace_id=trace_id
        ),
    )
    return delivery_id


async def register(
    db: CallerDb,
    caller: Caller,
    data: WebhookIn,
    keyring: KeyRing,
    environment: Environment,
    trace_id: str = "",
) -> WebhookCreated:
    """Register an endpoint; a signed test event goes out at once (its outcome shows as verified_at)."""
    # Checked before the transaction: resolving the host may take seconds and must not hold a connection.
    host = await check_target(data.url, environment)
    events: list[str] = list(dict.fromkeys(data.events))
    endpoint_id = str(uuid.uuid4())
    secret = new_secret()
    async with db.transaction() as conn:
        await conn.execute(_LOCK_PARTNER_WEBHOOKS, caller.partner_id)
        if await conn.fetchval(_COUNT_WEBHOOKS, caller.partner_id) >= MAX_ENDPOINTS_PER_PARTNER:
            raise Problem(
                409,
                f"A partner may register at most {MAX_ENDPOINTS_PER_PARTNER} webhook endpoints;"
                " delete one first.",
                slug="too-many-webhooks",
            )
        row = await conn.fetchrow(
            _INSERT_WEBHOOK,
            endpoint_id,
            caller.partner_id,
            data.url,
            events,
            seal_secret(keyring, endpoint_id, secret),
        )
        test_id = await _request_test(conn, endpoint_id, caller.partner_id, trace_id)
        await audit.record(
            conn,
            caller.identity,
            "webhook.create",
            "webhook_endpoint",
            endpoint_id,
            {"host": host, "events": events},
        )
    assert row is not None
    return WebhookCreated(
        id=endpoint_id,
        url=data.url,
        events=events,
        secret=secret,
        state=row["state"],
        created_at=row["created_at"],
        test_delivery_id=test_id,
    )


async def list_endpoints(conn: asyncpg.Connection, caller: Caller) -> WebhookPage:
    return WebhookPage(items=[_view(r) for r in await conn.fetch(_WEBHOOKS, caller.partner_id)])


async def read(conn: asyncpg.Connection, caller: Caller, endpoint_id: str) -> WebhookView:
    row = await conn.fetchrow(_WEBHOOK, _endpoint_id(endpoint_id), caller.partner_id)
    if row is None:
        raise Problem(404, "No such webhook endpoint.")
    return _view(row)


async def remove(conn: asyncpg.Connection, caller: Caller, endpoint_id: str) -> None:
    """Delete the endpoint; its waiting deliveries stop."""
    eid = _endpoint_id(endpoint_id)
    if await conn.fetchval(_DELETE_WEBHOOK, eid, caller.partner_id) is None:
        raise Problem(404, "No such webhook endpoint.")
    cancelled = await conn.fetchval(_CANCEL_ENDPOINT_DELIVERIES, eid)
    await audit.record(
        conn, caller.identity, "webhook.delete", "webhook_endpoint", eid, {"cancelled": int(cancelled)}
    )


async def rotate_secret(
    conn: asyncpg.Connection, caller: Caller, endpoint_id: str, keyring: KeyRing, overlap: int
) -> SecretRotated:
    """A new signing secret; the old one keeps signing alongside it for ``overlap`` seconds."""
    eid = _endpoint_id(endpoint_id)
    secret = new_secret()
    row = await conn.fetchrow(
        _ROTATE_WEBHOOK_SECRET, eid, caller.partner_id, seal_secret(keyring, eid, secret), overlap
    )
    if row is None:
        raise Problem(404, "No such webhook endpoint.")
    await audit.record(
        conn,
        caller.identity,
        "webhook.rotate_secret",
        "webhook_endpoint",
        eid,
        {"overlap_seconds": overlap},
    )
    return SecretRotated(id=eid, secret=secret, previous_secret_expires_at=row["previous_secret_expires_at"])


async def send_test(conn: asyncpg.Connection, caller: Caller, endpoint_id: str, trace_id: str = "") -> str:
    """Ask for a signed ``webhook.test`` delivery to an active endpoint; returns its delivery id."""
    eid = _endpoint_id(endpoint_id)
    state = await conn.fetchval(_WEBHOOK_STATE, eid, caller.partner_id)
    if state is None:
        raise Problem(404, "No such webhook endpoint.")
    if state != "active":
        raise Problem(409, "The endpoint is disabled; re-enable it first.", slug="webhook-disabled")
    return await _request_test(conn, eid, caller.partner_id, trace_id)


async def enable(
    db: CallerDb, caller: Caller, endpoint_id: str, environment: Environment, trace_id: str = ""
) -> WebhookView:
    """Re-enable a disabled endpoint (its URL checked again) and send it a test."""
    eid = _endpoint_id(endpoint_id)
    async with db.transaction() as conn:
        url = await conn.fetchval(_WEBHOOK_URL, eid, caller.partner_id)
    if url is None:
        raise Problem(404, "No such webhook endpoint.")
    # The rules may have changed since registration (or DNS moved): check the target again.
    await check_target(url, environment)
    async with db.transaction() as conn:
        row = await conn.fetchrow(_ENABLE_WEBHOOK, eid, caller.partner_id)
        if row is None:
            raise Problem(409, "The endpoint is not disabled.", slug="webhook-not-disabled")
        await _request_test(conn, eid, caller.partner_id, trace_id)
        await audit.record(conn, caller.identity, "webhook.enable", "webhook_endpoint", eid)
    return _view(row)


async def deliveries(
    conn: asyncpg.Connection, caller: Caller, endpoint_id: str, limit: int
) -> DeliveryLogPage:
    """The newest deliveries to one of the partner's endpoints."""
    eid = _endpoint_id(endpoint_id)
    if await conn.fetchval(_WEBHOOK_STATE, eid, caller.partner_id) is None:
        raise Problem(404, "No such webhook endpoint.")
    return DeliveryLogPage(
        items=[
            DeliveryLogItem(
                id=str(r["id"]),
                webhook_id=webhook_id(r["id"]),
                type=r["kind"],
                state=r["state"],
                attempts=r["attempts"],
                last_status=r["last_status"],
                last_error=r["last_error"],
                created_at=r["created_at"],
                delivered_at=r["delivered_at"],
                next_attempt_at=r["next_attempt_at"],
            )
            for r in await conn.fetch(_ENDPOINT_DELIVERIES, eid, limit)
        ]
    )
