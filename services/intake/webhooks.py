"""Partners' webhook endpoints: register (secret shown once), list, delete, rotate the secret, test, re-enable."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter
from msgspec import Meta

from services.intake.auth import require_partner, resolve_caller
from services.intake.problems import Problem
from services.intake.schemas import Input
from services.notify.store import enqueue_test, webhook_id
from shared import audit
from shared.crypto import KeyRing
from shared.db import transaction
from shared.webhook_signing import new_secret, seal_secret
from shared.webhook_urls import MAX_URL_LENGTH, UrlRefused, check_url, checked_addresses, system_resolver

__all__ = ["WebhookController"]

# Bounds one partner's fan-out per event.
MAX_ENDPOINTS_PER_PARTNER = 10
_RESOLVE_TIMEOUT_S = 5.0

WebhookEvent = Literal["referral.status_changed"]


class WebhookIn(Input):
    url: Annotated[str, Meta(min_length=1, max_length=MAX_URL_LENGTH)]
    events: Annotated[list[WebhookEvent], Meta(min_length=1, max_length=10)]


class WebhookView(msgspec.Struct, kw_only=True):
    id: str
    url: str
    events: list[str]
    state: str
    created_at: datetime
    verified_at: datetime | None = None
    last_success_at: datetime | None = None
    failing_since: datetime | None = None
    consecutive_failures: int = 0
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    previous_secret_expires_at: datetime | None = None


class WebhookCreated(msgspec.Struct, kw_only=True):
    id: str
    url: str
    events: list[str]
    # Shown here and on rotation only; refnet keeps it sealed and never displays it again.
    secret: str
    state: str
    created_at: datetime
    test_delivery_id: str


class WebhookPage(msgspec.Struct):
    items: list[WebhookView]


class SecretRotated(msgspec.Struct, kw_only=True):
    id: str
    secret: str
    previous_secret_expires_at: datetime | None


class TestQueued(msgspec.Struct):
    delivery_id: str


class DeliveryLogItem(msgspec.Struct, kw_only=True):
    id: str
    webhook_id: str
    type: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None


class DeliveryLogPage(msgspec.Struct):
    items: list[DeliveryLogItem]


_COLUMNS = (
    "id, url, events, state, created_at, verified_at, last_success_at, failing_since, consecutive_failures,"
    " disabled_at, disabled_reason,"
    " CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END AS previous_secret_expires_at"
)


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


async def _check_target(url: str, request: Request[Any, Any, Any]) -> str:
    """Refuse URLs the dispatcher would refuse: form, scheme and every resolved address. Returns the host."""
    environment = request.app.state.settings.environment
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


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]
    guards = [require_partner()]

    @post("/", status_code=201, summary="Register a webhook endpoint (the secret is shown once)")
    async def create(self, request: Request[Any, Any, Any], data: WebhookIn) -> Response[WebhookCreated]:
        caller = await resolve_caller(request)
        host = await _check_target(data.url, request)
        events: list[str] = list(dict.fromkeys(data.events))
        keyring: KeyRing = request.app.state.keyring
        endpoint_id = str(uuid.uuid4())
        secret = new_secret()
        async with transaction(request.app.state.pool, caller.identity) as conn:
            # Serialise one partner's registrations so the cap cannot be raced past.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('webhooks:' || $1))", caller.partner_id)
            count = await conn.fetchval(
                "SELECT count(*) FROM webhook_endpoints WHERE partner_id = $1 AND state <> 'deleted'",
                caller.partner_id,
            )
            if count >= MAX_ENDPOINTS_PER_PARTNER:
                raise Problem(
                    409,
                    f"A partner may register at most {MAX_ENDPOINTS_PER_PARTNER} webhook endpoints;"
                    " delete one first.",
                    slug="too-many-webhooks",
                )
            row = await conn.fetchrow(
                "INSERT INTO webhook_endpoints (id, partner_id, url, events, secret_sealed)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING id, state, created_at",
                endpoint_id,
                caller.partner_id,
                data.url,
                events,
                seal_secret(keyring, endpoint_id, secret),
            )
            # Verification: a signed test event goes out at once; its outcome shows as verified_at.
            test_id = await enqueue_test(conn, endpoint_id, caller.partner_id)
            await audit.record(
                conn,
                caller.identity,
                "webhook.create",
                "webhook_endpoint",
                endpoint_id,
                {"host": host, "events": events},
            )
        assert row is not None
        body = WebhookCreated(
            id=endpoint_id,
            url=data.url,
            events=events,
            secret=secret,
            state=row["state"],
            created_at=row["created_at"],
            test_delivery_id=test_id,
        )
        return Response(body, status_code=201, headers={"Location": f"/v1/webhooks/{endpoint_id}"})

    @get("/", summary="My webhook endpoints")
    async def list_(self, request: Request[Any, Any, Any]) -> WebhookPage:
        caller = await resolve_caller(request)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE partner_id = $1 AND state <> 'deleted'"
                " ORDER BY created_at, id",
                caller.partner_id,
            )
        return WebhookPage(items=[_view(r) for r in rows])

    @get("/{endpoint_id:str}", summary="One webhook endpoint and its health")
    async def read(self, request: Request[Any, Any, Any], endpoint_id: str) -> WebhookView:
        caller = await resolve_caller(request)
        eid = _endpoint_id(endpoint_id)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND partner_id = $2 AND state <> 'deleted'",
                eid,
                caller.partner_id,
            )
        if row is None:
            raise Problem(404, "No such webhook endpoint.")
        return _view(row)

    @delete(
        "/{endpoint_id:str}", status_code=204, summary="Delete a webhook endpoint; waiting deliveries stop"
    )
    async def remove(self, request: Request[Any, Any, Any], endpoint_id: str) -> None:
        caller = await resolve_caller(request)
        eid = _endpoint_id(endpoint_id)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            # The secrets go with it: a deleted endpoint keeps nothing that could sign.
            done = await conn.fetchval(
                "UPDATE webhook_endpoints SET state = 'deleted', deleted_at = now(), updated_at = now(),"
                " secret_sealed = '', previous_secret_sealed = NULL, previous_secret_expires_at = NULL"
                " WHERE id = $1 AND partner_id = $2 AND state <> 'deleted' RETURNING 1",
                eid,
                caller.partner_id,
            )
            if done is None:
                raise Problem(404, "No such webhook endpoint.")
            cancelled = await conn.fetchval(
                "WITH c AS (UPDATE deliveries SET state = 'cancelled', last_error = 'endpoint_deleted',"
                " updated_at = now() WHERE endpoint_id = $1 AND state IN ('pending', 'failed') RETURNING 1)"
                " SELECT count(*) FROM c",
                eid,
            )
            await audit.record(
                conn,
                caller.identity,
                "webhook.delete",
                "webhook_endpoint",
                eid,
                {"cancelled": int(cancelled)},
            )

    @post("/{endpoint_id:str}/rotate-secret", status_code=200, summary="Issue a new signing secret")
    async def rotate(
        self,
        request: Request[Any, Any, Any],
        endpoint_id: str,
        overlap_seconds: Annotated[
            int | None, Parameter(query="overlap_seconds", ge=0, le=7 * 24 * 3600)
        ] = None,
    ) -> SecretRotated:
        """The old secret keeps signing alongside the new one for ``overlap_seconds`` (default a day) so
        receivers can switch without dropping a delivery; 0 retires it at once (say, after a leak)."""
        caller = await resolve_caller(request)
        eid = _endpoint_id(endpoint_id)
        overlap = (
            request.app.state.settings.webhook_secret_overlap_seconds
            if overlap_seconds is None
            else overlap_seconds
        )
        keyring: KeyRing = request.app.state.keyring
        secret = new_secret()
        async with transaction(request.app.state.pool, caller.identity) as conn:
            row = await conn.fetchrow(
                "UPDATE webhook_endpoints SET previous_secret_sealed = CASE WHEN $4 > 0 THEN secret_sealed END,"
                " previous_secret_expires_at = CASE WHEN $4 > 0 THEN now() + make_interval(secs => $4) END,"
                " secret_sealed = $3, updated_at = now()"
                " WHERE id = $1 AND partner_id = $2 AND state <> 'deleted' RETURNING previous_secret_expires_at",
                eid,
                caller.partner_id,
                seal_secret(keyring, eid, secret),
                overlap,
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
        return SecretRotated(
            id=eid, secret=secret, previous_secret_expires_at=row["previous_secret_expires_at"]
        )

    @post("/{endpoint_id:str}/test", status_code=202, summary="Send a signed webhook.test event")
    async def test(self, request: Request[Any, Any, Any], endpoint_id: str) -> TestQueued:
        caller = await resolve_caller(request)
        eid = _endpoint_id(endpoint_id)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            state = await conn.fetchval(
                "SELECT state FROM webhook_endpoints WHERE id = $1 AND partner_id = $2 AND state <> 'deleted'",
                eid,
                caller.partner_id,
            )
            if state is None:
                raise Problem(404, "No such webhook endpoint.")
            if state != "active":
                raise Problem(409, "The endpoint is disabled; re-enable it first.", slug="webhook-disabled")
            delivery_id = await enqueue_test(conn, eid, caller.partner_id)
        return TestQueued(delivery_id=delivery_id)

    @post(
        "/{endpoint_id:str}/enable", status_code=200, summary="Re-enable a disabled endpoint (sends a test)"
    )
    async def enable(self, request: Request[Any, Any, Any], endpoint_id: str) -> WebhookView:
        caller = await resolve_caller(request)
        eid = _endpoint_id(endpoint_id)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            url = await conn.fetchval(
                "SELECT url FROM webhook_endpoints WHERE id = $1 AND partner_id = $2 AND state <> 'deleted'",
                eid,
                caller.partner_id,
            )
            if url is None:
                raise Problem(404, "No such webhook endpoint.")
        # The rules may have changed since registration (or DNS moved): check the target again.
        await _check_target(url, request)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            row = await conn.fetchrow(
                "UPDATE webhook_endpoints SET state = 'active', disabled_at = NULL, disabled_reason = NULL,"
                " consecutive_failures = 0, failing_since = NULL, throttled_until = NULL, updated_at = now()"
                f" WHERE id = $1 AND partner_id = $2 AND state = 'disabled' RETURNING {_COLUMNS}",
                eid,
                caller.partner_id,
            )
            if row is None:
                raise Problem(409, "The endpoint is not disabled.", slug="webhook-not-disabled")
            await enqueue_test(conn, eid, caller.partner_id)
            await audit.record(conn, caller.identity, "webhook.enable", "webhook_endpoint", eid)
        return _view(row)

    @get("/{endpoint_id:str}/deliveries", summary="Recent deliveries to this endpoint (newest first)")
    async def deliveries(
        self,
        request: Request[Any, Any, Any],
        endpoint_id: str,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> DeliveryLogPage:
        caller = await resolve_caller(request)
        eid = _endpoint_id(endpoint_id)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            owned = await conn.fetchval(
                "SELECT 1 FROM webhook_endpoints WHERE id = $1 AND partner_id = $2 AND state <> 'deleted'",
                eid,
                caller.partner_id,
            )
            if owned is None:
                raise Problem(404, "No such webhook endpoint.")
            rows = await conn.fetch(
                "SELECT id, kind, state, attempts, last_status, last_error, created_at, delivered_at,"
                " CASE WHEN state IN ('pending', 'failed') THEN next_attempt_at END AS next_attempt_at"
                " FROM deliveries WHERE endpoint_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                eid,
                limit,
            )
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
                for r in rows
            ]
        )
