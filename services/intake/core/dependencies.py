"""Dependencies every handler may ask for: the caller, and transactions under the caller's identity.

- ``caller``: who is calling, authenticated once per request (the guards share the same lookup);
- ``conn``: one transaction under the caller's identity around the whole handler; it commits before the
  response is sent, and rolls back when the handler raises;
- ``db``: a ``CallerDb`` for handlers that must not hold a transaction the whole time (a DNS lookup,
  a retried insert, an event stream) and open their own, still under the caller's identity.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
from litestar import Request
from litestar.di import Provide

from services.intake.core.auth import Caller, resolve_caller
from services.intake.core.problems import Problem
from shared.db import Identity, transaction

__all__ = ["DEPENDENCIES", "CallerDb", "provide_caller", "provide_conn", "provide_db", "provide_staff"]


class CallerDb:
    """The pool, bound to one identity: every transaction opened here runs as that caller, so row-level
    security and the audit log see who acts."""

    __slots__ = ("identity", "pool")

    def __init__(self, pool: asyncpg.Pool, identity: Identity) -> None:
        self.pool = pool
        self.identity = identity

    def transaction(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return transaction(self.pool, self.identity)


async def provide_caller(request: Request[Any, Any, Any]) -> Caller:
    return await resolve_caller(request)


async def provide_staff(request: Request[Any, Any, Any]) -> Caller:
    """The caller of the web pages: signed in, and staff (partners use the API)."""
    caller = await resolve_caller(request)
    if caller.kind != "staff":
        raise Problem(403, "Pages are for staff.")
    return caller


async def provide_db(request: Request[Any, Any, Any], caller: Caller) -> CallerDb:
    return CallerDb(request.app.state.pool, caller.identity)


async def provide_conn(db: CallerDb) -> AsyncGenerator[asyncpg.Connection, None]:
    # Litestar throws the handler's exception in here: the transaction rolls back and it propagates.
    async with db.transaction() as conn:
        yield conn


DEPENDENCIES: dict[str, Provide] = {
    "caller": Provide(provide_caller),
    "db": Provide(provide_db),
    "conn": Provide(provide_conn),
}
