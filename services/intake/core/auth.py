"""Who is calling: partner API keys (hashed), signed short-lived staff tokens or OIDC tokens; role guards."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection
from typing import Any, Literal

import asyncpg
import jwt
import msgspec
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from services.intake.core.problems import Problem
from services.intake.core.ratelimit import remember_credential
from shared.coalesce import Coalesced
from shared.credentials import API_KEY_PREFIX, hash_api_key
from shared.db import SYSTEM, Identity, load_sql, transaction

__all__ = [
    "PASSWORD_CHANGE_PATHS",
    "Caller",
    "account_caller",
    "any_caller",
    "api_key_lookup",
    "issue_token",
    "refresh_token",
    "require_partner",
    "require_role",
    "require_staff",
    "resolve_caller",
    "scope_region",
    "token_role",
]

_ISSUER = "refnet"
_AUTHENTICATE_API_KEYS = load_sql("services.intake.core", "authenticate_api_keys")
_AUTHENTICATE_STAFF = load_sql("services.intake.core", "authenticate_staff")
_STAFF_BY_EMAIL = load_sql("services.intake.core", "staff_by_email")
# What a token whose password must change may still call (the change itself, and leaving).
PASSWORD_CHANGE_PATHS = frozenset({"/v1/auth/password", "/app/password", "/app/logout"})


class Caller(msgspec.Struct, frozen=True):
    kind: Literal["partner", "staff"]
    id: str
    role: str
    partner_id: str = ""
    region: str = ""

    @property
    def identity(self) -> Identity:
        return Identity(role=self.role, actor_id=self.id, partner_id=self.partner_id, region=self.region)


def issue_token(secret: str, staff_id: str, role: str, region: str | None, ttl: int, version: int = 0) -> str:
    now = int(time.time())
    claims = {
        "iss": _ISSUER,
        "sub": staff_id,
        "role": role,
        "region": region or "",
        "iat": now,
        "exp": now + ttl,
        # The account's token version: a reset, deactivation or password change bumps it (migration 0060).
        "ver": version,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def refresh_token(secret: str, token: str, ttl: int) -> str | None:
    """The same token with a new lifetime (a sliding web session), or None if it is not a valid one of ours.
    Keeps the account's token version, so a session renewed after a reset still stops working."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=_ISSUER)
    except jwt.PyJWTError:
        return None
    now = int(time.time())
    return jwt.encode({**claims, "iat": now, "exp": now + ttl}, secret, algorithm="HS256")


def token_role(secret: str, token: str) -> str:
    """The role a token of ours names, or "" if it is not one (for choosing a page, never for access)."""
    try:
        return str(jwt.decode(token, secret, algorithms=["HS256"], issuer=_ISSUER).get("role", ""))
    except jwt.PyJWTError:
        return ""


def _decode_token(secret: str, token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], issuer=_ISSUER, options={"require": ["exp", "sub", "iat"]}
        )
    except jwt.PyJWTError:
        raise Problem(
            401, "The access token is invalid or has expired.", headers={"WWW-Authenticate": "Bearer"}
        ) from None
    return claims


def _algorithm(token: str) -> str:
    try:
        return str(jwt.get_unverified_header(token).get("alg", ""))
    except jwt.PyJWTError:
        return ""


_jwks_clients: dict[str, jwt.PyJWKClient] = {}


async def _oidc_caller(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> Caller:
    """Verify an OIDC provider's JWT (signature by JWKS, issuer, audience, expiry) and map it to our
    roster by email: the provider proves who it is; our roster says what they may do."""
    settings = connection.app.state.settings
    client = _jwks_clients.get(settings.oidc_jwks_url)
    if client is None:
        client = _jwks_clients[settings.oidc_jwks_url] = jwt.PyJWKClient(
            settings.oidc_jwks_url, cache_keys=True
        )
    unauthorized = Problem(
        401, "The access token is invalid or has expired.", headers={"WWW-Authenticate": "Bearer"}
    )
    try:
        # PyJWKClient fetches with urllib (blocking); keys are cached, so this rarely leaves the process.
        key = await asyncio.to_thread(client.get_signing_key_from_jwt, token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=["RS256", "ES256", "PS256"],
            issuer=settings.oidc_issuer or None,
            audience=settings.oidc_audience or None,
            options={"require": ["exp", "iat", "sub"]},
        )
    except (jwt.PyJWTError, OSError):
        raise unauthorized from None
    email = claims.get(settings.oidc_email_claim)
    if not isinstance(email, str) or not email:
        raise unauthorized
    async with transaction(connection.app.state.pool, SYSTEM) as conn:
        row = await conn.fetchrow(_STAFF_BY_EMAIL, email)
    if row is None:
        raise Problem(403, "This account is not on the refnet staff roster.")
    if not row["active"]:
        raise unauthorized  # deactivated (or its partner is): as if the token were not valid
    return account_caller(str(row["id"]), row["role"], row["region"], row["partner_id"])


def account_caller(staff_id: str, role: str, region: str | None, partner_id: Any) -> Caller:
    """The caller a person's account makes: a partner user acts as their partner (row-level security,
    guards and scoping as for its API key) while the audit log names the person (actor id)."""
    if role == "partner_user":
        return Caller("partner", staff_id, "partner", partner_id=str(partner_id))
    return Caller("staff", staff_id, role, region=region or "")


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401,
            "Send credentials as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def api_key_lookup(pool: asyncpg.Pool) -> Coalesced[bytes, str | None]:
    """The partner an API key (by its hash) belongs to, None when it is not a valid key. The keys of
    the requests arriving at one moment are looked up in one statement, each answer from a statement
    begun after its request arrived (a revoked key fails the next request, as before)."""

    async def partners(hashes: list[bytes]) -> dict[bytes, str | None]:
        return {r["h"]: str(r["partner_id"]) for r in await pool.fetch(_AUTHENTICATE_API_KEYS, hashes)}

    return Coalesced(partners, default=None)


async def resolve_caller(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """Authenticate the request; cached on the connection so guards and handlers share one lookup."""
    cached = connection.scope.get("state", {}).get("refnet_caller")
    if isinstance(cached, Caller):
        return cached
    token = _bearer(connection)
    state = connection.app.state
    if token.startswith(API_KEY_PREFIX):
        lookup: Coalesced[bytes, str | None] = state.api_keys
        partner = await lookup(hash_api_key(token))
        if partner is None:
            raise Problem(401, "The API key is not valid.", headers={"WWW-Authenticate": "Bearer"})
        caller = Caller("partner", partner, "partner", partner_id=partner)
        remember_credential(token, f"partner:{partner}")
    elif _algorithm(token) != "HS256" and state.settings.oidc_jwks_url:
        caller = await _oidc_caller(connection, token)
        remember_credential(token, f"staff:{caller.id}")
    else:
        claims = _decode_token(state.settings.secret_key, token)
        try:
            staff_id = str(uuid.UUID(str(claims["sub"])))
        except ValueError:
            raise Problem(
                401, "The access token is invalid.", headers={"WWW-Authenticate": "Bearer"}
            ) from None
        caller = await _account(connection, staff_id, claims)
    connection.scope.setdefault("state", {})["refnet_caller"] = caller
    return caller


async def _account(
    connection: ASGIConnection[Any, Any, Any, Any], staff_id: str, claims: dict[str, Any]
) -> Caller:
    """Re-read the account on every request, so deactivation, a deactivated partner or a reset takes
    effect at once (the token's role and region are never trusted: the roster says what they may do)."""
    version = claims.get("ver", 0)
    row = None
    if isinstance(version, int) and not isinstance(version, bool) and -(2**31) <= version < 2**31:
        pool: asyncpg.Pool = connection.app.state.pool
        row = await pool.fetchrow(_AUTHENTICATE_STAFF, staff_id, version)
    if row is None:
        raise Problem(
            401, "The access token is invalid or has expired.", headers={"WWW-Authenticate": "Bearer"}
        )
    if row["password_change_required"] and connection.scope.get("path", "") not in PASSWORD_CHANGE_PATHS:
        raise Problem(
            403,
            "Choose a new password first: POST /v1/auth/password with current_password and new_password.",
            slug="password-change-required",
        )
    return account_caller(staff_id, row["role"], row["region"], row["partner_id"])


def _guard(
    kinds: set[str], roles: set[str] | None, detail: str = "Your role may not use this endpoint."
) -> Any:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        caller = await resolve_caller(connection)
        if caller.kind not in kinds or (roles is not None and caller.role not in roles):
            raise Problem(403, detail)

    return guard


def require_partner() -> Any:
    return _guard({"partner"}, None)


def require_staff(*roles: str) -> Any:
    return _guard({"staff"}, set(roles) if roles else None)


def any_caller() -> Any:
    return _guard({"partner", "staff"}, None)


def scope_region(caller: Caller, region: str | None, region_codes: Collection[str]) -> str | None:
    """The region a listing covers: supervisors see their own region only; admins any (or all, when none
    is asked for). An unknown region is the client's 422; another region, a supervisor's 403."""
    if region is not None and region not in region_codes:
        raise Problem(
            422,
            "Unknown region.",
            errors=[{"field": "region", "message": f"must be one of {', '.join(region_codes)}"}],
        )
    if caller.role == "supervisor":
        if region is not None and region != caller.region:
            raise Problem(403, "Supervisors see their own region only.")
        return caller.region
    return region


def require_role(*roles: str, detail: str) -> Any:
    """Partners or staff with one of ``roles`` (a partner's role is "partner"); 403 with ``detail``."""
    return _guard({"partner", "staff"}, set(roles), detail)
