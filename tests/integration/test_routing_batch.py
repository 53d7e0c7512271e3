"""Set-based routing batches on a real database: a batch chooses exactly as the same referrals routed one
after the other, counts its own reservations, never overruns capacity, and two batches at once over
the same case managers neither deadlock nor overrun."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest

from services.routing.engine import (
    WALK_PLAN,
    ReadAhead,
    Routed,
    decide,
    facts_for,
    gather,
    read_ahead,
    route_batch,
    route_referral,
)
from services.routing.policy import excluding_specialisms, matching_specialisms, need_mask, specialism_mask
from services.routing.rules import Candidates, load_rules
from shared.codes import NEED_CODES
from shared.db import load_sql, transaction
from shared.events import ReferralAssigned, decode_event
from tests.integration.test_routing_engine import _random_roster, _referral

pytestmark = pytest.mark.asyncio
RULES = load_rules()


@pytest.fixture
def partner(seeded_db: tuple[str, dict[str, Any]]) -> str:
    return str(seeded_db[1]["partners"][0]["id"])


async def _referrals(pool: asyncpg.Pool, partner: str, rng: random.Random, n: int) -> list[str]:
    return [
        await _referral(pool, partner, region="south_la", needs=tuple(rng.sample(["housing", "legal"], 1)))
        for _ in range(n)
    ]


async def _locked(conn: asyncpg.Connection, ids: list[str]) -> list[asyncpg.Record]:
    rows = [await conn.fetchrow("SELECT * FROM referrals WHERE id = $1 FOR UPDATE", rid) for rid in ids]
    assert all(r is not None for r in rows)
    return rows  # type: ignore[return-value]


async def _counts(pool: asyncpg.Pool) -> dict[str, tuple[int, int]]:
    rows = await pool.fetch("SELECT staff_id, active_count, capacity FROM case_managers")
    return {str(r["staff_id"]): (r["active_count"], r["capacity"]) for r in rows}


async def _scarce(pool: asyncpg.Pool, rng: random.Random) -> None:
    """A large region (walks stop early) where most case managers have one place or none left."""
    await _random_roster(pool, rng, 400)
    # Seeded on the connection that runs the update: an unseeded random() left enough places now and
    # then for the scenario not to run out (a flaky "and run out of places").
    async with pool.acquire() as conn:
        await conn.execute("SELECT setseed($1::float8)", rng.random() - 0.5)
        await conn.execute(
            "UPDATE case_managers SET capacity = greatest(capacity, 1),"
            " active_count = greatest(capacity, 1) - CASE WHEN random() < 0.3 THEN 1 ELSE 0 END"
        )


async def test_a_batch_chooses_as_one_referral_after_the_other(pool: asyncpg.Pool, partner: str) -> None:
    rng = random.Random(5)
    await _scarce(pool, rng)
    rules = msgspec.structs.replace(RULES, candidates=Candidates(limit=3, name_all_up_to=0))
    ids = await _referrals(pool, partner, rng, 60)
    before = await _counts(pool)

    async def run(batched: bool) -> list[Routed]:
        conn: asyncpg.Connection
        async with transaction(pool) as conn:
            refs = await _locked(conn, ids)
            if batched:
                routed = await route_batch(conn, [(r, "") for r in refs], rules)
            else:
                routed = [await route_referral(conn, r, rules) for r in refs]
            raise _Rollback(routed, await _written(conn, ids))

    results = []
    written = []
    for batched in (False, True):
        with pytest.raises(_Rollback) as undone:
            await run(batched)
        results.append(undone.value.routed)
        written.append(undone.value.written)
    one_by_one, batch = results
    assert [r.case_manager_id for r in batch] == [r.case_manager_id for r in one_by_one]
    # And the same rows: statuses, queue reasons, decisions, transitions and events, the queued ones
    # written by one statement for the batch (decide_and_queue_many.sql) as the offers are.
    assert written[1] == written[0]
    offered = Counter(r.case_manager_id for r in batch if r.case_manager_id)
    assert sum(offered.values()) > 10, "the scenario should offer many"
    assert any(r.status == "unroutable" for r in batch), "and run out of places"
    # Every place taken fits: reservations counted within the batch, nobody over capacity.
    assert all(before[cid][0] + n <= before[cid][1] for cid, n in offered.items())
    assert await _counts(pool) == before  # both rolled back


async def test_two_batches_at_once_neither_deadlock_nor_overrun(pool: asyncpg.Pool, partner: str) -> None:
    rng = random.Random(8)
    await _scarce(pool, rng)
    rules = msgspec.structs.replace(RULES, candidates=Candidates(limit=3, name_all_up_to=0))
    before = await _counts(pool)
    batches = [await _referrals(pool, partner, rng, 40) for _ in range(2)]
    busy = 0

    async def run(ids: list[str]) -> list[Routed]:
        nonlocal busy
        for _ in range(20):
            try:
                conn: asyncpg.Connection
                async with transaction(pool) as conn:
                    return await route_batch(conn, [(r, "") for r in await _locked(conn, ids)], rules)
            except asyncpg.LockNotAvailableError:
                busy += 1  # a later round met the other batch's rows: roll back and go again
        raise AssertionError("never got through")

    routed = await asyncio.gather(*(run(ids) for ids in batches))
    after = await _counts(pool)
    offers = await pool.fetch(
        "SELECT referral_id, case_manager_id FROM assignments WHERE referral_id = ANY ($1::uuid[])",
        [uuid.UUID(r) for ids in batches for r in ids],
    )
    # One offer per referral at most, each one place, nobody over capacity.
    assert len({o["referral_id"] for o in offers}) == len(offers)
    assert sum(r.status == "assigned" for rs in routed for r in rs) == len(offers) > 10
    taken = Counter(str(o["case_manager_id"]) for o in offers)
    for cid, (count, capacity) in after.items():
        assert count == before[cid][0] + taken[cid]
        assert count <= max(capacity, before[cid][0])
    # Each offer's event is in the outbox, naming its offer (written for the whole batch at once).
    events = [decode_event(r["payload"]) for r in await pool.fetch("SELECT payload FROM outbox")]
    assigned = {(e.referral_id, e.case_manager_id) for e in events if isinstance(e, ReferralAssigned)}
    assert assigned == {(str(o["referral_id"]), str(o["case_manager_id"])) for o in offers}
    # The batches decided at the same time: the later one found places gone and decided those again.
    again = await pool.fetchval(
        "SELECT count(*) FROM routing_decisions WHERE jsonb_array_length(detail->'taken_meanwhile') > 0"
    )
    assert again > 0


class _Rollback(Exception):
    def __init__(self, routed: list[Routed], written: dict[str, list[tuple[Any, ...]]] | None = None) -> None:
        self.routed = routed
        self.written = written


async def _written(conn: asyncpg.Connection, ids: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """What routing wrote about the referrals, without its fresh ids and clocks (and without the
    decision records' explanations, which count a batch's reservations as they were made)."""
    queries = {
        "referrals": "SELECT id, status, unroutable_reason, queued_at IS NOT NULL FROM referrals WHERE id = ANY ($1::uuid[])",
        "decisions": "SELECT referral_id, outcome, chosen_id, policy_version FROM routing_decisions"
        " WHERE referral_id = ANY ($1::uuid[])",
        "transitions": "SELECT referral_id, from_status, to_status, actor_role, reason FROM referral_transitions"
        " WHERE referral_id = ANY ($1::uuid[])",
        "assignments": "SELECT referral_id, case_manager_id, state, attempt FROM assignments WHERE referral_id = ANY ($1::uuid[])",
        "events": "SELECT subject, (regexp_match(encode(payload, 'escape'), '\"referral_id\":\"([0-9a-f-]{36})'))[1] FROM outbox"
        " WHERE (regexp_match(encode(payload, 'escape'), '\"referral_id\":\"([0-9a-f-]{36})'))[1]::uuid = ANY ($1::uuid[])",
    }
    out = {}
    for name, sql in queries.items():
        rows = await conn.fetch(sql, ids)
        out[name] = sorted(tuple(str(v) for v in r.values()) for r in rows)
    return out


async def test_a_later_round_never_waits_for_a_row_held_elsewhere(pool: asyncpg.Pool, partner: str) -> None:
    """The first choice's last place goes while the batch waits for its row; the second choice's row is
    held by another transaction: the batch fails at once (NOWAIT) instead of waiting out of order."""
    rid = await _referral(pool, partner, region="south_la")
    async with transaction(pool) as conn:
        ref = await conn.fetchrow("SELECT * FROM referrals WHERE id = $1", rid)
        assert ref is not None
        decision, _ = await decide(conn, facts_for(ref, RULES, datetime.now(UTC)), frozenset(), None, RULES)
    first, second = decision.ranked[:2]
    filler, holder = await pool.acquire(), await pool.acquire()
    try:
        filling, holding = filler.transaction(), holder.transaction()
        await filling.start()
        await holding.start()
        await filler.execute("UPDATE case_managers SET active_count = capacity WHERE staff_id = $1", first)
        await holder.execute("SELECT 1 FROM case_managers WHERE staff_id = $1 FOR UPDATE", second)

        async def batch() -> list[Routed]:
            conn: asyncpg.Connection
            async with transaction(pool) as conn:
                refs = await _locked(conn, [rid])
                return await route_batch(conn, [(r, "") for r in refs], RULES)

        routing = asyncio.create_task(batch())
        # Until the batch, having decided for `first`, waits for its row.
        while not await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'"
        ):
            assert not routing.done()
            await asyncio.sleep(0.01)
        await filling.commit()
        with pytest.raises(asyncpg.LockNotAvailableError):
            await routing
        await holding.rollback()
        routed = await batch()  # nothing held any more: the second choice
        assert routed[0].case_manager_id == second
    finally:
        await pool.release(filler)
        await pool.release(holder)


async def test_a_batch_claims_and_locks_its_events_in_one_statement(pool: asyncpg.Pool, partner: str) -> None:
    # claim_and_lock_many.sql, as the routing worker's batch uses it: one row per event whose referral
    # exists (its position in `ord`), a referral named twice comes back twice, referrals locked in id
    # order, and a second delivery of the same events finds them claimed.
    a, b = sorted(await _referrals(pool, partner, random.Random(7), 2))
    events = [uuid.uuid4() for _ in range(4)]
    referrals = [uuid.UUID(b), uuid.UUID(a), uuid.uuid4(), uuid.UUID(a)]
    sql = load_sql("services.routing", "claim_and_lock_many")
    async with transaction(pool) as conn:
        rows = await conn.fetch(sql, "routing-test", events, referrals)
    assert [(str(r["id"]), r["ord"], r["claimed"]) for r in rows] == [
        (a, 2, True),
        (a, 4, True),
        (b, 1, True),
    ]
    assert all(r["previous_offers"] == [] for r in rows)
    async with transaction(pool) as conn:
        again = await conn.fetch(sql, "routing-test", events, referrals)
        # The locks leave intake's foreign-key checks on these referrals (KEY SHARE, e.g. a youth
        # match naming one) free to go on while the batch is routed.
        async with transaction(pool) as other:
            locked = await other.fetchval(
                "SELECT id FROM referrals WHERE id = $1 FOR KEY SHARE NOWAIT", uuid.UUID(a)
            )
            assert str(locked) == a
    assert [r["claimed"] for r in again] == [False, False, False]


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(scan for child in node.get("Plans", []) for scan in _scans(child))]


async def test_a_batch_looks_its_referrals_up_by_key_whatever_the_statistics(pool: asyncpg.Pool) -> None:
    # The flat join this statement used to be let a planner that thought referrals nearly empty walk
    # the whole primary key in order for every batch; each referral must be one probe by its id.
    sql = load_sql("services.routing", "claim_and_lock_many")
    async with transaction(pool) as conn:
        # What a sort looks like to a planner that expects a few rows of referrals and many events:
        # dearer than reading the primary key in order (the plan the old statement got in the bench).
        await conn.execute("SET LOCAL enable_sort = off")
        plan = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) {sql}", "routing-test", [uuid.uuid4()], [uuid.uuid4()]
        )
    scans = [n for n in _scans(json.loads(plan)[0]["Plan"]) if n.get("Relation Name") == "referrals"]
    assert scans and all("Index Cond" in n and "referral_id" in n["Index Cond"] for n in scans), scans


async def _read_ahead_matches_alone(pool: asyncpg.Pool, partner: str, rng: random.Random) -> list[ReadAhead]:
    """read_ahead for a batch of varied referrals gives each the first pages (rows and order) that
    walk_first.sql gives it alone, and gather with it the same candidates as gather alone."""
    key = rng.randbytes(32)
    earlier = await _referral(pool, partner, youth_key=key, status="accepted")
    someone = await pool.fetchval("SELECT staff_id FROM case_managers WHERE status = 'active' LIMIT 1")
    await pool.execute(
        "INSERT INTO assignments (id, referral_id, case_manager_id, state, respond_by)"
        " VALUES ($1, $2, $3, 'accepted', now())",
        uuid.uuid4(),
        earlier,
        someone,
    )
    ids = [
        await _referral(
            pool,
            partner,
            region=rng.choice(("south_la", "san_fernando_valley")),
            needs=tuple(rng.sample(NEED_CODES, rng.randint(1, 3))),
            language=rng.choice(("en", "es", "ko")),
            age=rng.choice((12, 16, 19, 23)),
            # Some the same youth as an earlier referral: continuity is read ahead too.
            youth_key=key if n % 5 == 0 else None,
        )
        for n in range(24)
    ]
    conn: asyncpg.Connection
    async with transaction(pool) as conn:
        refs = await _locked(conn, ids)
        assignable = await conn.fetch("SELECT staff_id FROM case_managers WHERE status = 'active'")
        asked = [
            # Some exclude case managers (earlier offers), one of them several.
            (
                facts_for(r, RULES, datetime.now(UTC)),
                frozenset(str(a["staff_id"]) for a in rng.sample(assignable, k)),
                r["youth_key"],
            )
            for r, k in zip(refs, [0, 1, 0, 3] * 6, strict=True)
        ]
        ahead = await read_ahead(conn, asked, RULES)
        page, small = max(4 * RULES.candidates.limit, 64), max(4 * RULES.candidates.limit, 16)
        for (facts, excluded, youth_key), known in zip(asked, ahead, strict=True):
            alone = await conn.fetch(
                load_sql("services.routing", "walk_first"),
                facts.region,
                facts.language,
                specialism_mask(excluding_specialisms(facts)),
                list(excluded),
                need_mask(facts.needs),
                facts.min_covered,
                specialism_mask(matching_specialisms(facts)),
                page,
                small,
            )
            assert [(r["walk"], r["staff_id"]) for r in known.first] == [
                (r["walk"], r["staff_id"]) for r in sorted(alone, key=lambda r: r["walk"])
            ]
            with_known = await gather(conn, facts, excluded, youth_key, RULES, known=known)
            by_itself = await gather(conn, facts, excluded, youth_key, RULES)
            assert sorted(with_known.candidates, key=lambda c: c.id) == sorted(
                by_itself.candidates, key=lambda c: c.id
            )
            assert msgspec.structs.replace(with_known, candidates=()) == msgspec.structs.replace(
                by_itself, candidates=()
            )
        assert any(g.continuity for g in [await gather(conn, *a, RULES) for a in asked])
    return ahead


async def test_a_batch_reads_ahead_for_a_small_roster_as_each_would_alone(
    pool: asyncpg.Pool, partner: str
) -> None:
    # The demo network: regions small enough to name everyone, so gather needs no statement of its own.
    ahead = await _read_ahead_matches_alone(pool, partner, random.Random(17))
    assert all(0 < len(k.members) <= RULES.candidates.name_all_up_to for k in ahead)


async def test_a_batch_reads_ahead_for_a_large_roster_as_each_would_alone(
    pool: asyncpg.Pool, partner: str
) -> None:
    # Too many to name everyone: the walks' best are read by gather itself, the rest still ahead.
    rng = random.Random(13)
    await _random_roster(pool, rng, 300)
    ahead = await _read_ahead_matches_alone(pool, partner, rng)
    assert all(len(k.members) == RULES.candidates.name_all_up_to + 1 for k in ahead)
    assert sum(len(k.first) for k in ahead) > 100, "the scenario should read many"


async def test_the_walk_plan_settings_last_for_the_routing_transaction_only(pool: asyncpg.Pool) -> None:
    settings = ("plan_cache_mode", "enable_seqscan", "enable_bitmapscan", "enable_sort")
    async with transaction(pool, setup=WALK_PLAN) as conn:
        assert [await conn.fetchval(f"SHOW {s}") for s in settings] == [
            "force_generic_plan",
            "off",
            "off",
            "off",
        ]
    async with pool.acquire() as other:
        assert [await other.fetchval(f"SHOW {s}") for s in settings] == ["auto", "on", "on", "on"]
