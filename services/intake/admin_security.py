"""Admin endpoints for partners' API keys and the audit log."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import Parameter
from msgspec import Meta

from services.intake import apikeys
from services.intake.auth import require_staff, resolve_caller
from services.intake.problems import Problem
from services.intake.schemas import Input
from shared.db import transaction

__all__ = ["AdminKeysController"]


class KeyCreateIn(Input):
    label: Annotated[str, Meta(max_length=100)] = ""


class KeyRevokeIn(Input):
    reason: Annotated[str, Meta(max_length=500)] = ""


class KeyRotateIn(Input):
    grace_seconds: Annotated[int, Meta(ge=0, le=30 * 24 * 3600)] = 24 * 3600


class PartnerView(msgspec.Struct):
    id: str
    name: str
    kind: str
    active_keys: int


class AuditEntry(msgspec.Struct, kw_only=True):
    seq: int | None
    id: int
    at: str
    actor_role: str
    actor_id: str
    action: str
    target_type: str
    target_id: str
    detail: dict[str, Any]


def _uuid_or_404(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(404, f"No such {what}.") from None


class AdminKeysController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    guards = [require_staff("admin")]

    @get("/partners", summary="Partners and their active key counts")
    async def partners(self, request: Request[Any, Any, Any]) -> list[PartnerView]:
        caller = await resolve_caller(request)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = await conn.fetch(
                "SELECT p.id, p.name, p.kind, count(k.id) FILTER (WHERE k.revoked_at IS NULL"
                " AND (k.expires_at IS NULL OR k.expires_at > now())) AS active"
                " FROM partners p LEFT JOIN api_keys k ON k.partner_id = p.id GROUP BY p.id ORDER BY p.name"
            )
        return [PartnerView(str(r["id"]), r["name"], r["kind"], r["active"]) for r in rows]

    @get("/partners/{partner_id:str}/keys", summary="A partner's API keys (never the keys themselves)")
    async def keys(self, request: Request[Any, Any, Any], partner_id: str) -> list[apikeys.ApiKeyInfo]:
        caller = await resolve_caller(request)
        pid = _uuid_or_404(partner_id, "partner")
        async with transaction(request.app.state.pool, caller.identity) as conn:
            if await conn.fetchval("SELECT 1 FROM partners WHERE id = $1", pid) is None:
                raise Problem(404, "No such partner.")
            return await apikeys.list_keys(conn, pid)

    @post("/partners/{partner_id:str}/keys", status_code=201, summary="Issue a new API key (shown once)")
    async def create(
        self, request: Request[Any, Any, Any], partner_id: str, data: KeyCreateIn | None = None
    ) -> apikeys.NewApiKey:
        caller = await resolve_caller(request)
        pid = _uuid_or_404(partner_id, "partner")
        async with transaction(request.app.state.pool, caller.identity) as conn:
            try:
                return await apikeys.create_key(conn, caller.identity, pid, data.label if data else "")
            except LookupError:
                raise Problem(404, "No such partner.") from None

    @post("/keys/{key_id:str}/revoke", status_code=200, summary="Revoke an API key now")
    async def revoke(
        self, request: Request[Any, Any, Any], key_id: str, data: KeyRevokeIn | None = None
    ) -> apikeys.ApiKeyInfo:
        caller = await resolve_caller(request)
        kid = _uuid_or_404(key_id, "key")
        async with transaction(request.app.state.pool, caller.identity) as conn:
            try:
                return await apikeys.revoke_key(conn, caller.identity, kid, data.reason if data else "")
            except LookupError:
                raise Problem(404, "No such key.") from None

    @post(
        "/keys/{key_id:str}/rotate",
        status_code=201,
        summary="Replace an API key; the old one works for a grace period",
    )
    async def rotate(
        self, request: Request[Any, Any, Any], key_id: str, data: KeyRotateIn | None = None
    ) -> apikeys.NewApiKey:
        caller = await resolve_caller(request)
        kid = _uuid_or_404(key_id, "key")
        grace = data.grace_seconds if data else KeyRotateIn().grace_seconds
        async with transaction(request.app.state.pool, caller.identity) as conn:
            try:
                return await apikeys.rotate_key(conn, caller.identity, kid, grace)
            except LookupError:
                raise Problem(404, "No such active key.") from None

    @get("/audit", summary="Audit log entries, newest first (ids and codes, no PII)")
    async def audit_log(
        self,
        request: Request[Any, Any, Any],
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
        action: str | None = None,
    ) -> list[AuditEntry]:
        caller = await resolve_caller(request)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = await conn.fetch(
                "SELECT seq, id, at, actor_role, actor_id, action, target_type, target_id, detail FROM audit_log"
                " WHERE ($2::text IS NULL OR action = $2) ORDER BY id DESC LIMIT $1",
                limit,
                action,
            )
        return [
            AuditEntry(
                seq=r["seq"],
                id=r["id"],
                at=r["at"].isoformat(),
                actor_role=r["actor_role"],
                actor_id=r["actor_id"],
                action=r["action"],
                target_type=r["target_type"],
                target_id=r["target_id"],
                detail=r["detail"],
            )
            for r in rows
        ]
