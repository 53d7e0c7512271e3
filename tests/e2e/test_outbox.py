"""The outbox keeps intake accepting while NATS is down; events flow, once, when it is back."""

from __future__ import annotations

import asyncpg
import httpx

from tests.support.platform import Platform, referral_body, wait_for


async def test_intake_accepts_while_nats_down_and_routes_after(platform: Platform) -> None:
    auth = {"Authorization": f"Bearer {platform.partner_key(1)}"}
    conn = await asyncpg.connect(platform.dsn)
    try:
        async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
            # Warm path first: the platform routes normally.
            r = await client.post("/v1/referrals", json=referral_body(), headers=auth)
            assert r.status_code == 201

            platform.nats.stop()
            ids = []
            for _ in range(5):
                r = await client.post("/v1/referrals", json=referral_body(), headers=auth)
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            # The events wait in the outbox, committed with their referrals.
            waiting = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE subject = 'refnet.referral.received'"
            )
            assert waiting >= 5
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM referrals WHERE id = any($1::uuid[]) AND status = 'received'", ids
                )
                == 5
            )
            # readyz reports the missing bus.
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.headers["content-type"] == "application/problem+json"

            platform.nats.start()

            async def all_assigned() -> bool:
                n = await conn.fetchval(
                    "SELECT count(*) FROM referrals WHERE id = any($1::uuid[]) AND status = 'assigned'", ids
                )
                return bool(n == 5)

            await wait_for(all_assigned, timeout=40)
            await wait_for(lambda: _count(conn, "SELECT count(*) = 0 FROM outbox"), timeout=20)
            # Exactly one assignment and one notification per referral, despite retries.
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM assignments WHERE referral_id = any($1::uuid[])", ids
                )
                == 5
            )

            async def notified() -> bool:
                n = await conn.fetchval(
                    "SELECT count(*) FROM notifications WHERE referral_id = any($1::uuid[])", ids
                )
                return bool(n == 5)

            await wait_for(notified, timeout=20)
            dupes = await conn.fetchval(
                "SELECT count(*) FROM (SELECT referral_id FROM notifications GROUP BY referral_id, recipient_id,"
                " channel HAVING count(*) > 1) d"
            )
            assert dupes == 0
            await wait_for(lambda: _ready(client), timeout=20)
    finally:
        await conn.close()


async def _count(conn: asyncpg.Connection, sql: str) -> bool:
    return bool(await conn.fetchval(sql))


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200
