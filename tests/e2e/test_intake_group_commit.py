"""A burst of concurrent referral submissions (group commit in intake): every request gets its own
answer, idempotency stays exact per key, and a request that fails at the database fails alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.e2e.test_api import IDEM, MAIN, OTHER, body, post_referral
from tests.support.platform import Platform

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30, limits=limits) as c:
        yield c


async def test_a_burst_keeps_each_answer_and_each_idempotency_key(
    platform: Platform, client: httpx.AsyncClient
) -> None:
    keys = {i: platform.partner_key(i) for i in (MAIN, OTHER, IDEM)}
    fresh = [(keys[(MAIN, OTHER, IDEM)[i % 3]], body(), None) for i in range(24)]
    same = [(keys[IDEM], body(), f"same-{uuid.uuid4()}") for _ in range(6)]
    # The same key with another body, sent at the same moment: one wins (201), the other is a
    # conflict (409) — a failure at the database (the key's unique index) that must stay its own.
    clash = [(keys[MAIN], body(), f"clash-{uuid.uuid4()}") for _ in range(6)]
    requests = (
        fresh
        + [r for s in same for r in (s, s)]
        + [r for c in clash for r in (c, (c[0], body(urgency="urgent"), c[2]))]
    )
    conn = await asyncpg.connect(platform.dsn)
    try:
        before = int(await conn.fetchval("SELECT count(*) FROM referrals"))
        answers = await asyncio.gather(
            *(
                post_referral(client, key, payload, {"Idempotency-Key": idem} if idem else None)
                for key, payload, idem in requests
            )
        )
        after = int(await conn.fetchval("SELECT count(*) FROM referrals"))
    finally:
        await conn.close()

    fresh_answers = answers[: len(fresh)]
    assert [a.status_code for a in fresh_answers] == [201] * len(fresh), [a.text for a in fresh_answers]
    assert len({a.json()["id"] for a in fresh_answers}) == len(fresh)
    offset = len(fresh)
    for i in range(len(same)):
        a, b = answers[offset + 2 * i], answers[offset + 2 * i + 1]
        assert a.status_code == b.status_code == 201, (a.text, b.text)
        assert a.json()["id"] == b.json()["id"]
    offset += 2 * len(same)
    for i in range(len(clash)):
        pair = answers[offset + 2 * i], answers[offset + 2 * i + 1]
        assert sorted(r.status_code for r in pair) == [201, 409], [r.text for r in pair]
    # One referral per fresh request, per repeated key and per contested key; nothing else.
    assert after - before == len(fresh) + len(same) + len(clash)
