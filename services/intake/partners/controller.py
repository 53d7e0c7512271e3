"""Partner endpoints: admins manage partners' API keys; partners manage their own webhook endpoints."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import Parameter

from services.intake.core.auth import Caller, require_partner, require_staff
from services.intake.core.dependencies import CallerDb
from services.intake.core.middleware import request_id
from services.intake.partners import apikeys, service, webhooks
from services.intake.partners.schemas import (
    DeliveryLogPage,
    KeyCreateIn,
    KeyRevokeIn,
    KeyRotateIn,
    PartnerCreated,
    PartnerIn,
    PartnerPatch,
    PartnerView,
    SecretRotated,
    TestQueued,
    WebhookCreated,
    WebhookIn,
    WebhookPage,
    WebhookView,
)

__all__ = ["ROUTES", "AdminKeysController", "WebhookController"]


class AdminKeysController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    guards = [require_staff("admin")]

    @get("/partners", summary="Partners and their active key counts")
    async def partners(self, conn: asyncpg.Connection) -> list[PartnerView]:
        return await service.list_partners(conn)

    @post("/partners", status_code=201, summary="Create a partner and its first API key (shown once)")
    async def create_partner(
        self, caller: Caller, conn: asyncpg.Connection, data: PartnerIn
    ) -> PartnerCreated:
        return await service.create_partner(conn, caller.identity, data.name)

    @patch(
        "/partners/{partner_id:str}", summary="Deactivate (its keys and users get 401 at once) or reactivate"
    )
    async def update_partner(
        self, caller: Caller, conn: asyncpg.Connection, partner_id: str, data: PartnerPatch
    ) -> PartnerView:
        return await service.set_partner_active(conn, caller.identity, partner_id, data.active)

    @get("/partners/{partner_id:str}/keys", summary="A partner's API keys (never the keys themselves)")
    async def keys(self, conn: asyncpg.Connection, partner_id: str) -> list[apikeys.ApiKeyInfo]:
        return await service.partner_keys(conn, partner_id)

    @post("/partners/{partner_id:str}/keys", status_code=201, summary="Issue a new API key (shown once)")
    async def create(
        self, caller: Caller, conn: asyncpg.Connection, partner_id: str, data: KeyCreateIn | None = None
    ) -> apikeys.NewApiKey:
        return await service.create_key(conn, caller, partner_id, data.label if data else "")

    @post("/keys/{key_id:str}/revoke", status_code=200, summary="Revoke an API key now")
    async def revoke(
        self, caller: Caller, conn: asyncpg.Connection, key_id: str, data: KeyRevokeIn | None = None
    ) -> apikeys.ApiKeyInfo:
        return await service.revoke_key(conn, caller, key_id, data.reason if data else "")

    @post(
        "/keys/{key_id:str}/rotate",
        status_code=201,
        summary="Replace an API key; the old one works for a grace period",
    )
    async def rotate(
        self, caller: Caller, conn: asyncpg.Connection, key_id: str, data: KeyRotateIn | None = None
    ) -> apikeys.NewApiKey:
        grace = (data or KeyRotateIn()).grace_seconds
        return await service.rotate_key(conn, caller, key_id, grace)


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]
    guards = [require_partner()]

    @post("/", status_code=201, summary="Register a webhook endpoint (the secret is shown once)")
    async def create(
        self, request: Request[Any, Any, Any], caller: Caller, db: CallerDb, data: WebhookIn
    ) -> Response[WebhookCreated]:
        state = request.app.state
        body = await webhooks.register(
            db, caller, data, state.pii_keys.ring, state.settings.environment, request_id(request.scope)
        )
        return Response(body, status_code=201, headers={"Location": f"/v1/webhooks/{body.id}"})

    @get("/", summary="My webhook endpoints")
    async def list_(self, caller: Caller, conn: asyncpg.Connection) -> WebhookPage:
        return await webhooks.list_endpoints(conn, caller)

    @get("/{endpoint_id:str}", summary="One webhook endpoint and its health")
    async def read(self, caller: Caller, conn: asyncpg.Connection, endpoint_id: str) -> WebhookView:
        return await webhooks.read(conn, caller, endpoint_id)

    @delete(
        "/{endpoint_id:str}", status_code=204, summary="Delete a webhook endpoint; waiting deliveries stop"
    )
    async def remove(self, caller: Caller, conn: asyncpg.Connection, endpoint_id: str) -> None:
        await webhooks.remove(conn, caller, endpoint_id)

    @post("/{endpoint_id:str}/rotate-secret", status_code=200, summary="Issue a new signing secret")
    async def rotate(
        self,
        request: Request[Any, Any, Any],
        caller: Caller,
        conn: asyncpg.Connection,
        endpoint_id: str,
        overlap_seconds: Annotated[
            int | None, Parameter(query="overlap_seconds", ge=0, le=7 * 24 * 3600)
        ] = None,
    ) -> SecretRotated:
        """The old secret keeps signing alongside the new one for ``overlap_seconds`` (default a day) so
        receivers can switch without dropping a delivery; 0 retires it at once (say, after a leak)."""
        state = request.app.state
        overlap = (
            state.settings.webhook_secret_overlap_seconds if overlap_seconds is None else overlap_seconds
        )
        return await webhooks.rotate_secret(conn, caller, endpoint_id, state.pii_keys.ring, overlap)

    @post("/{endpoint_id:str}/test", status_code=202, summary="Send a signed webhook.test event")
    async def test(
        self, request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, endpoint_id: str
    ) -> TestQueued:
        return TestQueued(await webhooks.send_test(conn, caller, endpoint_id, request_id(request.scope)))

    @post(
        "/{endpoint_id:str}/enable", status_code=200, summary="Re-enable a disabled endpoint (sends a test)"
    )
    async def enable(
        self, request: Request[Any, Any, Any], caller: Caller, db: CallerDb, endpoint_id: str
    ) -> WebhookView:
        environment = request.app.state.settings.environment
        return await webhooks.enable(db, caller, endpoint_id, environment, request_id(request.scope))

    @get("/{endpoint_id:str}/deliveries", summary="Recent deliveries to this endpoint (newest first)")
    async def deliveries(
        self,
        caller: Caller,
        conn: asyncpg.Connection,
        endpoint_id: str,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> DeliveryLogPage:
        return await webhooks.deliveries(conn, caller, endpoint_id, limit)


ROUTES: list[Any] = [AdminKeysController, WebhookController]
