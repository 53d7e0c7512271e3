"""asyncpg pool, SQL files loaded by name, and one transaction helper that sets the caller's identity."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from importlib import resources
from typing import Any, TypeVar, cast

import asyncpg
import msgspec

__all__ = [
    "SERVICE_APPLICATION",
    "SERVICE_ROLE",
    "SYSTEM",
    "ForeignSqlError",
    "Identity",
    "create_pool",
    "enter_batch_item",
    "identity_sql",
    "load_sql",
    "local_setup_applied",
    "mark_local_setup",
    "mark_outbox_written",
    "on_outbox_commit",
    "outbox_written_in",
    "retrying",
    "rls_bypassed",
    "service_dsn",
    "switch_identity",
    "transaction",
    "without_comments",
]

# The login role the services use; migrations create it. It is subject to row-level security.
SERVICE_ROLE = "refnet_app"

T = TypeVar("T")


class Identity(msgspec.Struct, frozen=True, order=True):
    """Who is acting: written into transaction-local settings so row-level security and audit see it.
    Ordered (field by field) so a batch can put each caller's works side by side."""

    role: str
    actor_id: str = ""
    partner_id: str = ""
    region: str = ""


SYSTEM = Identity(role="system")


# Packages that only inspect the services' statements and never ship in production (EXPLAIN in the
# benchmarks, lock-order tests): they may read any package's SQL. Everything else reads its own.
_INSPECTORS = ("tests", "bench")


class ForeignSqlError(PermissionError):
    """A module asked for SQL of a package it does not belong to: services meet through the database
    and NATS, never through each other's statements."""


def load_sql(package: str | None, name: str) -> str:
    """Return the text of ``<package>/sql/<name>.sql``, read once; call it as ``load_sql(__package__, name)``.

    Only modules of ``package`` itself (or of its subpackages) may read its SQL: the caller is taken
    from the calling frame, not from an argument, so intake cannot read routing's queue query by
    naming it (``ForeignSqlError``).
    """
    if not package:
        raise ForeignSqlError("load_sql needs the calling package (__package__)")
    frame = inspect.currentframe()
    caller = str(frame.f_back.f_globals.get("__name__", "")) if frame and frame.f_back else ""
    del frame  # a frame kept in a local makes a reference cycle
    if caller != package and not caller.startswith(package + ".") and caller.split(".")[0] not in _INSPECTORS:
        raise ForeignSqlError(f"{caller} may not read the SQL of {package}")
    return _read_sql(package, name)


@functools.cache
def _read_sql(package: str, name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not an SQL file name: {name!r}")
    return resources.files(package).joinpath("sql", f"{name}.sql").read_text()


async def _init_connection(conn: asyncpg.Connection) -> None:
    # transaction() writes the identity as quoted literals; that quoting is only right with
    # standard_conforming_strings on (the default since PostgreSQL 9.1).
    if conn.get_settings().standard_conforming_strings != "on":
        raise RuntimeError("refnet needs standard_conforming_strings = on")
    # jsonb in and out as plain Python values, encoded with msgspec (fast and strict).
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: msgspec.json.encode(v).decode(),
        decoder=msgspec.json.decode,
        schema="pg_catalog",
    )


class _PoolConnection(asyncpg.Connection):
    """A pooled connection released without asyncpg's reset query.

    The default reset (advisory unlock, CLOSE ALL, UNLISTEN *, RESET ALL) is one more round trip on
    every release, about one in six of all the statements a referral costs. Nothing here leaves session
    state behind: the identity is set transaction-locally (set_config(..., true)), advisory locks are
    transaction-scoped, LISTEN runs on dedicated connections, and an open transaction is still rolled
    back on release by asyncpg itself.
    """

    def get_reset_query(self) -> str:
        return ""


# application_name of the services' own pools. The outbox trigger's NOTIFY carries the writer's
# application_name: rows a service wrote are relayed by that service (woken in-process after the
# commit), so the other services' relays need not wake for them.
SERVICE_APPLICATION = "refnet-service"


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, application_name: str = "refnet"
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        server_settings={"application_name": application_name},
        connection_class=_PoolConnection,
    )
    assert pool is not None
    return pool


# Set by anything that inserts outbox rows inside `transaction()`; after the commit the relays of this
# process are woken directly, without waiting for a NOTIFY round trip or the next poll.
_outbox_written: ContextVar[bool] = ContextVar("refnet_outbox_written", default=False)
# The identity the current `transaction()` runs as (its `app.*` settings), so a switch to the same one
# costs nothing (`switch_identity`).
_identity: ContextVar[Identity | None] = ContextVar("refnet_identity", default=None)
# Transaction-local settings (SET LOCAL ...) already applied in the current `transaction()`.
_local_setup: ContextVar[frozenset[str]] = ContextVar("refnet_local_setup", default=frozenset())
_outbox_hooks: list[Callable[[], None]] = []


def mark_outbox_written() -> None:
    """Record that the current transaction wrote outbox rows (call it inside `transaction()`)."""
    _outbox_written.set(True)


def on_outbox_commit(hook: Callable[[], None]) -> Callable[[], None]:
    """Call `hook` after every commit that wrote outbox rows in this process; returns the unregister."""
    _outbox_hooks.append(hook)
    return lambda: _outbox_hooks.remove(hook) if hook in _outbox_hooks else None


def enter_batch_item(setup: str, identity: Identity) -> None:
    """In a fresh context copy for one work of a shared transaction (shared.groupcommit): the
    transaction's setup counts as applied, it runs as `identity`, and no outbox row is written yet."""
    _local_setup.set(frozenset({setup}) if setup else frozenset())
    _identity.set(identity)
    _outbox_written.set(False)


def outbox_written_in() -> bool:
    """Whether the current context wrote outbox rows (see `enter_batch_item`)."""
    return _outbox_written.get()


def identity_sql(identity: Identity) -> str:
    """The statement that switches a running transaction's ``app.*`` settings to `identity`."""
    begin = _begin_as().format(
        role=_literal(identity.role),
        actor=_literal(identity.actor_id),
        partner=_literal(identity.partner_id),
        region=_literal(identity.region),
    )
    # begin_as.sql is "BEGIN; SELECT set_config(...)": the settings without the BEGIN.
    return begin.split(";", 1)[1].strip()


async def switch_identity(conn: asyncpg.Connection, identity: Identity) -> bool:
    """Make `identity` the running transaction's (one statement), unless it already is; whether it
    switched. Inside `transaction()` (or a group commit's work), which knows who it runs as."""
    if _identity.get() == identity:
        return False
    await conn.execute(identity_sql(identity))
    _identity.set(identity)
    return True


def local_setup_applied(statement: str) -> bool:
    """Whether `statement` (a SET LOCAL ...) already ran in the current transaction."""
    return statement in _local_setup.get()


def mark_local_setup(statement: str) -> None:
    """Record that `statement` ran in the current transaction (it lasts until the transaction ends)."""
    _local_setup.set(_local_setup.get() | {statement})


def without_comments(sql: str) -> str:
    """The statement without its whole-line ``--`` comments, for text sent on every transaction as a
    simple query (no prepared statement remembers it): the explanation stays in the file."""
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--")).strip()


@functools.cache
def _begin_as() -> str:
    return without_comments(load_sql("shared", "begin_as"))


def _literal(value: str) -> str:
    # standard_conforming_strings is checked on (see _init_connection): only quotes need doubling.
    if "\x00" in value:
        raise ValueError("identity values cannot contain NUL")
    return "'" + value.replace("'", "''") + "'"


@asynccontextmanager
async def transaction(
    pool: asyncpg.Pool, identity: Identity = SYSTEM, *, setup: str = ""
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction whose ``app.*`` settings name the caller; they vanish at commit (set_config local).

    BEGIN and the identity go to the server as one simple query: one round trip instead of two, on
    every transaction the services run. (Connection.transaction() inside it raises rather than nest.)
    `setup` (trusted SQL such as SET LOCAL statements, never input) rides on the same round trip; see
    `local_setup_applied`.
    """
    async with pool.acquire() as conn:
        token = _outbox_written.set(False)
        setup_token = _local_setup.set(frozenset({setup}) if setup else frozenset())
        identity_token = _identity.set(identity)
        try:
            role, actor = _literal(identity.role), _literal(identity.actor_id)
            partner, region = _literal(identity.partner_id), _literal(identity.region)
            begin = _begin_as().format(role=role, actor=actor, partner=partner, region=region)
            await conn.execute(begin + (f"; {setup}" if setup else ""))
            try:
                # A pool proxy behaves as a Connection; callers are typed against Connection.
                yield cast(asyncpg.Connection, conn)
            except BaseException:
                if not conn.is_closed():
                    # If even this fails the pool's release rolls the transaction back.
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
            if _outbox_written.get():
                for hook in list(_outbox_hooks):
                    hook()
        finally:
            _identity.reset(identity_token)
            _local_setup.reset(setup_token)
            _outbox_written.reset(token)


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
    return bool(await pool.fetchval(load_sql("shared", "rls_bypassed")))


def records(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]
