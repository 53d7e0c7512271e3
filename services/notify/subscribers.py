"""Whether a partner has a webhook subscriber for status changes, asked for many events in one statement."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from shared.bus import Poison
from shared.db import load_sql

__all__ = ["SubscriberChecks"]

_HAS_SUBSCRIBER = load_sql(__package__, "has_subscriber")


class SubscriberChecks:
    """Every status change asks whether its partner has an active endpoint subscribed to status changes
    or FHIR Task changes. The questions asked at the same moment share one statement: the first starts
    a query at once (no added wait when idle), those arriving while it runs go together in the next.
    Each answer comes from a statement that began after the question was asked, as when asked alone.

    Hand-written, not GroupCommit: that shares a transaction between works that each run their own
    statements; here the point is one statement for many questions, outside any transaction.
    """

    def __init__(self, pool: asyncpg.Pool, event_types: tuple[str, str]) -> None:
        self._pool = pool
        self._event_types = event_types
        self._waiting: dict[uuid.UUID, list[asyncio.Future[bool]]] = {}
        self._running: asyncio.Task[None] | None = None

    async def __call__(self, partner_id: str) -> bool:
        try:
            partner = uuid.UUID(partner_id)
        except ValueError:
            # One malformed id must not fail the other questions of its statement.
            raise Poison("referral.status_changed with a malformed partner id") from None
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(partner, []).append(answer)
        if self._running is None:
            self._running = asyncio.create_task(self._ask())
        return await answer

    async def _ask(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    rows = await self._pool.fetch(_HAS_SUBSCRIBER, list(batch), *self._event_types)
                except Exception as exc:
                    # Everyone in this statement gets its error (their events are redelivered); the
                    # questions asked meanwhile get a statement of their own.
                    _settle(batch, exc)
                    continue
                except BaseException:
                    _settle(batch, asyncio.CancelledError())
                    raise
                subscribed = {r["p"] for r in rows}
                for partner, answers in batch.items():
                    for answer in answers:
                        if not answer.done():
                            answer.set_result(partner in subscribed)
        finally:
            # Cancelled (shutdown): nobody may wait for an answer that will never come.
            _settle(self._waiting, asyncio.CancelledError())
            self._waiting = {}
            self._running = None


def _settle(batch: dict[uuid.UUID, list[asyncio.Future[bool]]], error: BaseException) -> None:
    for answers in batch.values():
        for answer in answers:
            if not answer.done():
                answer.set_exception(error)
