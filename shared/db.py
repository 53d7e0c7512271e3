"""asyncpg pool, SQL files loaded by name, and one transaction helper that sets the caller's identity."""

from __future__ import annotations

import asyncio
import functools
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar, cast

import asyncpg
import msgspec

__all__ = [
    "SERVICE_ROLE",
    "SYSTEM",
    "Identity",
    "create_pool",
    "load_sql",
    "retrying",
    "rls_bypassed",
    "service_dsn",
    "transaction",
]

# The login role the services use; migrations create it. It is subject to row-level security.
SERVICE_ROLE = "refnet_app"

T = TypeVar("T")


class Identity(msgspec.Struct, frozen=True):
    """Who is acting: written into transaction-local settings so row-level security and audit see it."""

    role: str
    actor_id: str = ""
    partner_id: str = ""
    region: str = ""


SYSTEM = Identity(role="system")


@functools.cache
def load_sql(package: str, name: str) -> str:
    """Return the text of ``<package>/sql/<name>.sql``; SQL lives in files so it can be read and reviewed."""
    return resources.files(package).joinpath("sql", f"{name}.sql").read_text()


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as plain Python values, encoded with msgspec (fast and strict).
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: msgspec.json.encode(v).decode(),
        decoder=msgspec.json.decode,
        schema="pg_catalog",
    )


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        server_settings={"application_name": "refnet"},
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def transaction(pool: asyncpg.Pool, identity: Identity = SYSTEM) -> AsyncIterator[asyncpg.Connection]:
    """A transaction whose ``app.*`` settings name the caller; they vanish at commit (set_config local)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT set_config('app.role', $1, true), set_config('app.actor_id', $2, true),"
            " set_config('app.partner_id', $3, true), set_config('app.region', $4, true)",
            identity.role,
            identity.actor_id,
            identity.partner_id,
            identity.region,
        )
        # A pool proxy behaves as a Connection; callers are typed against Connection.
        yield cast(asyncpg.Connection, conn)


async def retrying(fn: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Run ``fn`` again on serialization failures and deadlocks, which are safe to retry."""
    for attempt in range(attempts):
        try:
            return await fn()
        except asyncpg.TransactionRollbackError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")


def service_dsn(dsn: str, role: str = SERVICE_ROLE) -> str:
    """The same server and database as ``dsn`` (e.g. the migrating superuser's), logging in as ``role``.

    Used for the embedded server, whose local socket trusts any role; external deployments give
    REFNET_DATABASE_URL for the service role directly.
    """
    parts = urllib.parse.urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, f"{role}@{host}", parts.path, parts.query, parts.fragment))


async def rls_bypassed(pool: asyncpg.Pool) -> bool:
    """True when the pool's role ignores row-level security (superuser or BYPASSRLS)."""
    return bool(
        await pool.fetchval("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
    )


def records(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]
