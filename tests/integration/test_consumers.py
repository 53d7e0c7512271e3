"""Routing and notify handlers on a real database: exactly-once effects, re-routing, expiry, capacity."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import asyncpg
import msgspec
import pytest

from services.notify.worker import make_handler as notify_handler
from services.routing.worker import expire_offers
from services.routing.worker import make_handler as routing_handler
from shared.config import load_settings
from shared.events import AssignmentDeclined, ReferralReceived, decode_event
from shared.outbox import enqueue

SETTINGS = load_settings({}, secret_key="x", pii_master_key="", database_url="unused")


@pytest.fixture
def creds(seeded_db: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return seeded_db[1]


async def _referral(
    pool: asyncpg.Pool,
    partner_id: str,
    region: str | None = "south_la",
    needs: tuple[str, ...] = ("housing",),
) -> str:
    rid = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years)"
        " VALUES ($1, $2, 'received', $3, $4, 'en', 'routine', 16)",
        rid,
        partner_id,
        region,
        list(needs),
    )
    return rid


async def _outbox(pool: asyncpg.Pool, subject: str) -> list[Any]:
    rows = await pool.fetch("SELECT payload FROM outbox WHERE subject = $1 ORDER BY id", subject)
    return [decode_event(bytes(r["payload"])) for r in rows]


async def test_redelivered_received_event_assigns_once(pool: asyncpg.Pool, creds: dict[str, Any]) -> None:
    handle = routing_handler(pool, SETTINGS)
    rid = await _referral(pool, creds["partners"][0]["id"])
    event = ReferralReceived(referral_id=rid, partner_id=creds["partners"][0]["id"])
    for _ in range(3):  # JetStream redelivers: the effect must happen once
        await handle(event)
    rows = await pool.fetch("SELECT case_manager_id, state FROM assignments WHERE referral_id = $1", rid)
    assert len(rows) == 1
    assert rows[0]["state"] == "offered"
    south = {c["id"] for c in creds["case_managers"] if "south_la" in c["regions"]}
    assert str(rows[0]["case_manager_id"]) in south
    assert await pool.fetchval("SELECT status FROM referrals WHERE id = $1", rid) == "assigned"
    assert await pool.fetchval("SELECT sum(active_count) FROM case_managers") == 1
    assigned = await _outbox(pool, "refnet.referral.assigned")
    assert len(assigned) == 1
    assert assigned[0].referral_id == rid
    decision = await pool.fetchrow(
        "SELECT outcome, chosen_id, detail FROM routing_decisions WHERE referral_id = $1", rid
    )
    assert decision is not None
    assert decision["outcome"] == "assigned"
    assert decision["chosen_id"] == rows[0]["case_manager_id"]


async def test_redelivered_assigned_event_notifies_once(pool: asyncpg.Pool, creds: dict[str, Any]) -> None:
    rid = await _referral(pool, creds["partners"][0]["id"])
    await routing_handler(pool, SETTINGS)(
        ReferralReceived(referral_id=rid, partner_id=creds["partners"][0]["id"])
    )
    (assigned,) = await _outbox(pool, "refnet.referral.assigned")
    handle = notify_handler(pool, SETTINGS)
    await handle(assigned)
    await handle(assigned)
    rows = await pool.fetch("SELECT recipient_id, kind FROM notifications WHERE referral_id = $1", rid)
    assert [(str(r["recipient_id"]), r["kind"]) for r in rows] == [(assigned.case_manager_id, "offer")]


async def test_an_assigned_event_claimed_before_writes_no_notification(
    pool: asyncpg.Pool, creds: dict[str, Any]
) -> None:
    """The offer's claim rides on its notification insert (claim_and_notify_many.sql): a claim an earlier
    delivery committed means nothing is written, and the unclaimed event writes exactly one."""
    rid = await _referral(pool, creds["partners"][0]["id"])
    await routing_handler(pool, SETTINGS)(
        ReferralReceived(referral_id=rid, partner_id=creds["partners"][0]["id"])
    )
    (assigned,) = await _outbox(pool, "refnet.referral.assigned")
    await pool.execute(
        "INSERT INTO processed_messages (consumer, event_id) VALUES ('notify', $1)", assigned.event_id
    )
    handle = notify_handler(pool, SETTINGS)
    await handle(assigned)
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE referral_id = $1", rid) == 0
    await pool.execute(
        "DELETE FROM processed_messages WHERE consumer = 'notify' AND event_id = $1", assigned.event_id
    )
    await handle(assigned)
    rows = await pool.fetch("SELECT recipient_id, kind, data FROM notifications WHERE referral_id = $1", rid)
    assert [(str(r["recipient_id"]), r["kind"]) for r in rows] == [(assigned.case_manager_id, "offer")]
    assert rows[0]["data"]["urgency"] == assigned.urgency
    claimed = "SELECT count(*) FROM processed_messages WHERE consumer = 'notify' AND event_id = $1"
    assert await pool.fetchval(claimed, assigned.event_id) == 1


async def test_out_of_area_becomes_unroutable(pool: asyncpg.Pool, creds: dict[str, Any]) -> None:
    rid = await _referral(pool, creds["partners"][0]["id"], region=None)
    await routing_handler(pool, SETTINGS)(
        ReferralReceived(referral_id=rid, partner_id=creds["partners"][0]["id"])
    )
    row = await pool.fetchrow("SELECT status, unroutable_reason FROM referrals WHERE id = $1", rid)
    assert row is not None
    assert (row["status"], row["unroutable_reason"]) == ("unroutable", "out_of_area")
    assert len(await _outbox(pool, "refnet.referral.unroutable")) == 1
    assert await pool.fetchval("SELECT count(*) FROM assignments") == 0


async def test_decline_reroutes_to_someone_else_then_exhausts(
    pool: asyncpg.Pool, creds: dict[str, Any]
) -> None:
    route = routing_handler(pool, SETTINGS)
    rid = await _referral(pool, creds["partners"][0]["id"])
    await route(ReferralReceived(referral_id=rid, partner_id=creds["partners"][0]["id"]))
    seen = []
    for _ in range(3):
        a = await pool.fetchrow(
            "SELECT id, case_manager_id FROM assignments WHERE referral_id = $1 AND state = 'offered'", rid
        )
        assert a is not None
        seen.append(a["case_manager_id"])
        # What intake does on decline: close the offer, free the capacity, outbox the event.
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE assignments SET state = 'declined', decline_reason = 'full' WHERE id = $1", a["id"]
            )
            await conn.execute(
                "UPDATE case_managers SET active_count = active_count - 1 WHERE staff_id = $1",
                a["case_manager_id"],
            )
            event = AssignmentDeclined(
                referral_id=rid, assignment_id=str(a["id"]), case_manager_id=str(a["case_manager_id"])
            )
            await enqueue(cast(asyncpg.Connection, conn), event)
        await route(event)
        await route(event)  # redelivery changes nothing
    assert len(set(seen)) == 3, "a case manager who declined was offered the referral again"
    row = await pool.fetchrow("SELECT status, unroutable_reason FROM referrals WHERE id = $1", rid)
    assert row is not None
    assert (row["status"], row["unroutable_reason"]) == ("unroutable", "offers_exhausted")
    assert await pool.fetchval("SELECT sum(active_count) FROM case_managers") == 0


async def test_expired_offer_is_rerouted(pool: asyncpg.Pool, creds: dict[str, Any]) -> None:
    rid = await _referral(pool, creds["partners"][0]["id"])
    await routing_handler(pool, SETTINGS)(
        ReferralReceived(referral_id=rid, partner_id=creds["partners"][0]["id"])
    )
    first = await pool.fetchval("SELECT case_manager_id FROM assignments WHERE referral_id = $1", rid)
    await pool.execute(
        "UPDATE assignments SET respond_by = now() - interval '1 second' WHERE referral_id = $1", rid
    )
    assert await expire_offers(pool, SETTINGS) == 1
    rows = await pool.fetch(
        "SELECT case_manager_id, state FROM assignments WHERE referral_id = $1 ORDER BY offered_at", rid
    )
    assert [r["state"] for r in rows] == ["expired", "offered"]
    assert rows[1]["case_manager_id"] != first
    assert await pool.fetchval("SELECT sum(active_count) FROM case_managers") == 1
    assert await expire_offers(pool, SETTINGS) == 0


async def test_capacity_is_never_exceeded(pool: asyncpg.Pool, creds: dict[str, Any]) -> None:
    await pool.execute("UPDATE case_managers SET capacity = 1")
    route = routing_handler(pool, SETTINGS)
    south = [c for c in creds["case_managers"] if "south_la" in c["regions"]]
    ids = [await _referral(pool, creds["partners"][0]["id"]) for _ in range(len(south) + 3)]

    await asyncio.gather(
        *(route(ReferralReceived(referral_id=r, partner_id=creds["partners"][0]["id"])) for r in ids)
    )
    assert await pool.fetchval("SELECT max(active_count) FROM case_managers") == 1
    statuses = [r["status"] for r in await pool.fetch("SELECT status FROM referrals")]
    assert statuses.count("assigned") == len(south)
    assert statuses.count("unroutable") == 3
    assert await pool.fetchval("SELECT count(*) FROM assignments") == len(south)


async def test_stalled_referral_is_routed_by_the_sweep(pool: asyncpg.Pool, creds: dict[str, Any]) -> None:
    from services.routing.worker import route_stalled

    fresh = await _referral(pool, creds["partners"][0]["id"])
    old = await _referral(pool, creds["partners"][0]["id"])
    await pool.execute("UPDATE referrals SET received_at = now() - interval '1 hour' WHERE id = $1", old)
    assert await route_stalled(pool, SETTINGS) == 1
    assert await pool.fetchval("SELECT status FROM referrals WHERE id = $1", old) == "assigned"
    assert await pool.fetchval("SELECT status FROM referrals WHERE id = $1", fresh) == "received"
    # The late event, if it ever arrives, changes nothing.
    await routing_handler(pool, SETTINGS)(
        ReferralReceived(referral_id=old, partner_id=creds["partners"][0]["id"])
    )
    assert await pool.fetchval("SELECT count(*) FROM assignments WHERE referral_id = $1", old) == 1


async def test_a_batch_of_events_is_fanned_out_as_each_would_be_alone(
    pool: asyncpg.Pool, creds: dict[str, Any]
) -> None:
    """Events handled at the same moment go through notify's batch path (one read of their referrals,
    each run of offers claimed with its notifications in one statement) with the outcome each has
    alone: a redelivery inside the batch, one claimed before and a forged one write nothing."""
    partner = creds["partners"][0]["id"]
    route = routing_handler(pool, SETTINGS)
    rids = [await _referral(pool, partner) for _ in range(6)]
    for rid in rids:
        await route(ReferralReceived(referral_id=rid, partner_id=partner))
    out_of_area = await _referral(pool, partner, region=None)
    await route(ReferralReceived(referral_id=out_of_area, partner_id=partner))
    offers = {
        e.referral_id: e for e in await _outbox(pool, "refnet.referral.assigned") if e.referral_id in rids
    }
    (unroutable,) = [
        e for e in await _outbox(pool, "refnet.referral.unroutable") if e.referral_id == out_of_area
    ]
    a = [offers[rid] for rid in rids]
    someone_else = next(c["id"] for c in creds["case_managers"] if c["id"] != a[2].case_manager_id)
    forged = msgspec.structs.replace(a[2], case_manager_id=someone_else)
    await pool.execute(
        "INSERT INTO processed_messages (consumer, event_id) VALUES ('notify', $1)", a[3].event_id
    )
    handle = notify_handler(pool, SETTINGS)
    await asyncio.gather(*(handle(e) for e in (a[0], a[1], a[1], forged, a[3], unroutable, a[4], a[5])))

    rows = await pool.fetch(
        "SELECT referral_id, recipient_id, kind FROM notifications WHERE referral_id = ANY ($1::uuid[])",
        [*rids, out_of_area],
    )
    got = sorted((str(r["referral_id"]), str(r["recipient_id"]), r["kind"]) for r in rows)
    supervisors = await pool.fetch(
        "SELECT id FROM staff WHERE role = 'supervisor' AND deactivated_at IS NULL"
    )
    assert got == sorted(
        [(rids[i], a[i].case_manager_id, "offer") for i in (0, 1, 4, 5)]
        + [(out_of_area, str(s["id"]), "unroutable") for s in supervisors]
    )
    claims = await pool.fetch(
        "SELECT event_id, cmin FROM processed_messages WHERE consumer = 'notify' AND event_id = ANY ($1::uuid[])",
        [e.event_id for e in (*a, unroutable)],
    )
    assert len(claims) == 7  # each once, the forged offer's too (dropped, never tried again)
    # The offers before the unroutable event were claimed by one statement, those after it by another.
    cmin = {str(r["event_id"]): r["cmin"] for r in claims}
    assert cmin[a[0].event_id] == cmin[a[1].event_id] == cmin[a[2].event_id]
    assert cmin[a[4].event_id] == cmin[a[5].event_id] != cmin[a[0].event_id]
