"""Whether a partner has a webhook subscriber for status changes, asked for many events in one statement."""

from __future__ import annotations

import uuid

import asyncpg

from shared.bus import Poison
from shared.coalesce import Coalesced
from shared.db import load_sql

__all__ = ["SubscriberChecks"]

_HAS_SUBSCRIBER = load_sql(__package__, "has_subscriber")


class SubscriberChecks:
    """Every status change asks whether its partner has an active endpoint subscribed to status changes
    or FHIR Task changes; the questions asked at the same moment share one statement (shared.coalesce)."""

    def __init__(self, pool: asyncpg.Pool, event_types: tuple[str, str]) -> None:
        async def subscribed(partners: list[uuid.UUID]) -> dict[uuid.UUID, bool]:
            rows = await pool.fetch(_HAS_SUBSCRIBER, partners, *event_types)
            return {r["p"]: True for r in rows}

        self._ask: Coalesced[uuid.UUID, bool] = Coalesced(subscribed, default=False)

    async def __call__(self, partner_id: str) -> bool:
        try:
            partner = uuid.UUID(partner_id)
        except ValueError:
            # Checked before it joins a statement: one malformed id must not fail its neighbours.
            raise Poison("referral.status_changed with a malformed partner id") from None
        return await self._ask(partner)
