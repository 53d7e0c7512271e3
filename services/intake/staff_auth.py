"""POST /v1/auth/token: staff exchange email and password for a short-lived bearer token."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from litestar import Request, post

from services.intake.auth import issue_token, verify_password
from services.intake.problems import Problem
from services.intake.schemas import TokenRequest, TokenResponse
from shared import audit
from shared.db import SYSTEM, Identity, transaction

__all__ = ["token"]

log = structlog.get_logger("refnet.intake")

_MAX_FAILURES = 5


@post(
    "/v1/auth/token", status_code=200, tags=["auth"], summary="Exchange staff credentials for a bearer token"
)
async def token(request: Request[Any, Any, Any], data: TokenRequest) -> TokenResponse:
    state = request.app.state
    pool: asyncpg.Pool = state.pool
    # Authentication acts as the system: there is no caller yet.
    async with transaction(pool, SYSTEM) as conn:
        row = await conn.fetchrow(
            "SELECT id, role, region, password_hash, failed_logins, locked_until,"
            " greatest(0, extract(epoch FROM locked_until - now()))::int AS locked_for"
            " FROM staff WHERE lower(email) = lower($1)",
            data.email.strip(),
        )
    # Verify outside the transaction: argon2 is deliberately slow and must not hold a connection.
    ok = row is not None and row["locked_for"] == 0 and verify_password(row["password_hash"], data.password)
    if row is None or not ok:
        if row is None:
            verify_password(None, data.password)  # same cost for unknown emails: no account probing
        async with transaction(pool, SYSTEM) as conn:
            if row is not None and row["locked_for"] == 0:
                # Back off exponentially after repeated failures: 1, 2, 4 ... up to 15 minutes.
                await conn.execute(
                    "UPDATE staff SET failed_logins = failed_logins + 1,"
                    " locked_until = CASE WHEN failed_logins + 1 >= $2"
                    "   THEN now() + least(interval '15 minutes', interval '1 minute' * 2 ^ (failed_logins + 1 - $2))"
                    "   ELSE locked_until END WHERE id = $1",
                    row["id"],
                    _MAX_FAILURES,
                )
            target = str(row["id"]) if row is not None else None
            await audit.record(conn, SYSTEM, "auth.login_failed", "staff", target)
        log.info("auth.login_failed")
        if row is not None and row["locked_for"] > 0:
            raise Problem(
                429,
                "Too many failed sign-in attempts; try again later.",
                headers={"Retry-After": str(row["locked_for"])},
            )
        raise Problem(401, "The email or password is not correct.", headers={"WWW-Authenticate": "Bearer"})
    staff_id = str(row["id"])
    async with transaction(pool, SYSTEM) as conn:
        if row["failed_logins"]:
            await conn.execute(
                "UPDATE staff SET failed_logins = 0, locked_until = NULL WHERE id = $1", row["id"]
            )
        await audit.record(
            conn,
            Identity(role=row["role"], actor_id=staff_id, region=row["region"] or ""),
            "auth.login",
            "staff",
            staff_id,
        )
    ttl = state.settings.token_ttl_seconds
    log.info("auth.login", staff_id=staff_id, role=row["role"])
    return TokenResponse(
        access_token=issue_token(state.settings.secret_key, staff_id, row["role"], row["region"], ttl),
        expires_in=ttl,
    )
