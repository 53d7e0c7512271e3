"""Intake's lock on a referral it changes: other writers of the referral wait, foreign-key checks do not."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from shared.db import load_sql, transaction
from tests.integration.test_routing_engine import _referral


async def test_a_referral_being_changed_still_takes_rows_that_name_it(
    pool: asyncpg.Pool, seeded_db: tuple[str, dict[str, Any]]
) -> None:
    rid = uuid.UUID(await _referral(pool, str(seeded_db[1]["partners"][0]["id"])))
    async with transaction(pool) as conn:
        assert await conn.fetchrow(load_sql("services.intake.cases", "lock_referral"), rid) is not None
        async with transaction(pool) as other:
            # A foreign-key check (KEY SHARE: a notification, a delivery, a routing decision naming the
            # referral) goes on at once: FOR UPDATE made it wait for the whole request.
            assert (
                await other.fetchval("SELECT id FROM referrals WHERE id = $1 FOR KEY SHARE NOWAIT", rid)
                == rid
            )
            # Another change of the same referral still waits.
            with pytest.raises(asyncpg.LockNotAvailableError):
                await other.fetchval("SELECT id FROM referrals WHERE id = $1 FOR NO KEY UPDATE NOWAIT", rid)
