"""The routing engine on a real database: SQL candidate selection equals the pure policy, continuity,
decline/expiry re-routing, exhaustion to the queue and manual assignment, the queue draining when
capacity frees up, and roster import."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import asyncpg
import msgspec
import pytest

from services.intake.admin.explain import explain_automatic
from services.intake.staff import roster
from services.routing.engine import WALK_PLAN, decide, facts_for
from services.routing.manual import ManualAssignError, assign_manually
from services.routing.policy import SPECIALISMS, Candidate, choose, need_mask, specialism_mask
from services.routing.rules import Candidates, load_rules
from services.routing.worker import drain_queue, expire_offers, make_handler, return_from_away
from shared.codes import NEED_CODES
from shared.config import load_settings
from shared.db import Identity, create_pool, load_sql, service_dsn, transaction
from shared.decisions import DecisionRecord
from shared.events import AssignmentDeclined, ReferralReceived, decode_event
from shared.outbox import enqueue
from shared.regions import default_catalogue

SETTINGS = load_settings({}, secret_key="x", database_url="unused")
RULES = load_rules()


@pytest.fixture
async def app_pool(seeded_db: tuple[str, dict[str, Any]]) -> AsyncIterator[asyncpg.Pool]:
    """Connected as the services' role, so row-level security applies as in production."""
    p = await create_pool(service_dsn(seeded_db[0]), max_size=2)
    yield p
    await p.close()


@pytest.fixture
def creds(seeded_db: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return seeded_db[1]


def _south(creds: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in creds["case_managers"] if c["regions"] == ["south_la"]]


def _by_name(creds: dict[str, Any], name: str) -> str:
    return str(next(c["id"] for c in creds["case_managers"] if c["name"] == name))


async def _referral(
    pool: asyncpg.Pool,
    partner_id: str,
    *,
    region: str | None = "south_la",
    needs: tuple[str, ...] = ("housing",),
    language: str = "en",
    urgency: str = "routine",
    age: int = 16,
    youth_key: bytes | None = None,
    received_at: datetime | None = None,
    status: str = "received",
) -> str:
    rid = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years, youth_key,"
        " received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now()))",
        rid,
        partner_id,
        status,
        region,
        list(needs),
        language,
        urgency,
        age,
        youth_key,
        received_at,
    )
    return rid


async def _route(pool: asyncpg.Pool, rid: str, partner_id: str) -> None:
    await make_handler(pool, SETTINGS)(ReferralReceived(referral_id=rid, partner_id=partner_id))


async def _offer(pool: asyncpg.Pool, rid: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT id, case_manager_id FROM assignments WHERE referral_id = $1 AND state = 'offered'", rid
    )


async def _status(pool: asyncpg.Pool, rid: str) -> tuple[str, str | None]:
    row = await pool.fetchrow("SELECT status, unroutable_reason FROM referrals WHERE id = $1", rid)
    assert row is not None
    return row["status"], row["unroutable_reason"]


async def _decline(pool: asyncpg.Pool, rid: str) -> str:
    """What intake does when the offered case manager declines; returns who declined."""
    a = await _offer(pool, rid)
    assert a is not None
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE assignments SET state = 'declined', decline_reason = 'caseload full', responded_at = now()"
            " WHERE id = $1",
            a["id"],
        )
        await conn.execute(
            "UPDATE case_managers SET active_count = active_count - 1 WHERE staff_id = $1",
            a["case_manager_id"],
        )
        event = AssignmentDeclined(
            referral_id=rid, assignment_id=str(a["id"]), case_manager_id=str(a["case_manager_id"])
        )
        await enqueue(cast(asyncpg.Connection, conn), event)
    await make_handler(pool, SETTINGS)(event)
    return str(a["case_manager_id"])


async def test_sql_masks_match_the_policy(pool: asyncpg.Pool) -> None:
    rng = random.Random(7)
    samples = [list(NEED_CODES), []] + [rng.sample(NEED_CODES, rng.randint(1, 6)) for _ in range(20)]
    for needs in samples:
        assert await pool.fetchval("SELECT refnet_need_mask($1)", needs) == need_mask(needs)
    for specs in ([], list(SPECIALISMS), ["lgbtq"], ["minors_only", "boys_young_men"]):
        assert await pool.fetchval("SELECT refnet_specialism_mask($1)", specs) == specialism_mask(specs)


async def _random_roster(pool: asyncpg.Pool, rng: random.Random, count: int) -> None:
    staff, cms = [], []
    for i in range(count):
        sid = uuid.uuid4()
        staff.append((sid, f"roster{i}@test.invalid", f"Roster {i}", "case_manager", "south_la", "!"))
        cap = rng.randint(0, 6)
        status = rng.choice(("active", "active", "active", "away", "inactive"))
        cms.append(
            (
                sid,
                rng.sample(["south_la", "san_fernando_valley"], rng.randint(1, 2)),
                rng.sample(NEED_CODES, rng.randint(1, 5)),
                ["en"] + (["es"] if rng.random() < 0.4 else []) + (["ko"] if rng.random() < 0.1 else []),
                cap,
                rng.randint(0, cap),
                status,
                date(2099, 1, 1) if status == "away" else None,
                rng.sample(SPECIALISMS, rng.choice((0, 0, 0, 1))),
            )
        )
    await pool.copy_records_to_table(
        "staff", records=staff, columns=["id", "email", "display_name", "role", "region", "password_hash"]
    )
    await pool.copy_records_to_table(
        "case_managers",
        records=cms,
        columns=[
            "staff_id",
            "regions",
            "needs",
            "languages",
            "capacity",
            "active_count",
            "status",
            "away_until",
            "specialisms",
        ],
    )


async def test_sql_candidates_give_exactly_the_policys_choice(
    pool: asyncpg.Pool, creds: dict[str, Any]
) -> None:
    """The bounded SQL top list ranks like the pure policy over every case manager in the database."""
    rng = random.Random(11)
    await _random_roster(pool, rng, 1200)
    rules = msgspec.structs.replace(RULES, candidates=Candidates(limit=5, name_all_up_to=0))
    rows = await pool.fetch("SELECT * FROM case_managers")
    everyone = [
        Candidate(
            id=str(r["staff_id"]),
            regions=tuple(r["regions"]),
            needs=tuple(r["needs"]),
            languages=tuple(r["languages"]),
            capacity=r["capacity"],
            active_count=r["active_count"],
            status=r["status"],
            specialisms=tuple(r["specialisms"]),
        )
        for r in rows
    ]
    ids = [c.id for c in everyone]
    checked = stopped_early = 0
    for _ in range(40):
        rid = await _referral(
            pool,
            creds["partners"][0]["id"],
            region=rng.choice(("south_la", "san_fernando_valley")),
            needs=tuple(rng.sample(NEED_CODES, rng.randint(1, 4))),
            language=rng.choice(("en", "en", "es", "ko")),
            urgency=rng.choice(("routine", "urgent")),
            age=rng.randint(10, 24),
        )
        ref = await pool.fetchrow("SELECT * FROM referrals WHERE id = $1", rid)
        assert ref is not None
        facts = facts_for(ref, rules, datetime.now(UTC))
        facts = msgspec.structs.replace(facts, min_covered=rng.choice((0, 0, 1)))
        excluded = frozenset(rng.sample(ids, 3))
        async with transaction(pool) as conn:
            decision, gathered = await decide(conn, facts, excluded, None, rules)
        full = choose(facts, everyone, excluded, rules.weights)
        assert decision.ranked[:5] == full.ranked[:5]
        assert decision.chosen == full.chosen
        assert gathered.eligible_total in (None, len(full.ranked))
        checked += bool(full.ranked)
        stopped_early += gathered.eligible_total is None
    assert checked > 20, "the scenario should mostly have eligible case managers"
    assert stopped_early > 5, "the walk should often stop before reading everyone"


async def test_continuity_prefers_who_served_the_youth_before(
    pool: asyncpg.Pool, creds: dict[str, Any]
) -> None:
    partner = creds["partners"][0]["id"]
    key = b"k" * 32
    marcus = _by_name(creds, "Marcus Hill")
    # Marcus accepted this youth's earlier referral and is the busiest; continuity still wins.
    earlier = await _referral(pool, partner, needs=("mental_health",), youth_key=key, status="accepted")
    await pool.execute(
        "INSERT INTO assignments (id, referral_id, case_manager_id, state, respond_by)"
        " VALUES ($1, $2, $3, 'accepted', now())",
        uuid.uuid4(),
        earlier,
        marcus,
    )
    await pool.execute("UPDATE case_managers SET active_count = 9 WHERE staff_id = $1", marcus)
    rid = await _referral(pool, partner, needs=("mental_health",), youth_key=key)
    await _route(pool, rid, partner)
    offer = await _offer(pool, rid)
    assert offer is not None and str(offer["case_manager_id"]) == marcus
    detail = await pool.fetchval("SELECT detail FROM routing_decisions WHERE referral_id = $1", rid)
    record = msgspec.convert(detail, DecisionRecord)
    assert record.inputs.continuity == (marcus,)
    assert "worked with this youth before" in record.candidates[0].reasons
    # Another youth (another key) with the same needs goes to someone with more room.
    other = await _referral(pool, partner, needs=("mental_health",), youth_key=b"o" * 32)
    await _route(pool, other, partner)
    offer = await _offer(pool, other)
    assert offer is not None and str(offer["case_manager_id"]) != marcus


async def test_decline_and_expiry_reroute_to_someone_else(pool: asyncpg.Pool, creds: dict[str, Any]) -> None:
    partner = creds["partners"][0]["id"]
    rid = await _referral(pool, partner)
    await _route(pool, rid, partner)
    first = await _decline(pool, rid)
    second = await _offer(pool, rid)
    assert second is not None and str(second["case_manager_id"]) != first
    # The second offer runs out: expiry frees the place and offers it to a third case manager.
    await pool.execute(
        "UPDATE assignments SET respond_by = now() - interval '1 second' WHERE id = $1", second["id"]
    )
    assert await expire_offers(pool, SETTINGS) == 1
    third = await _offer(pool, rid)
    assert third is not None
    assert str(third["case_manager_id"]) not in {first, str(second["case_manager_id"])}
    assert await _status(pool, rid) == ("assigned", None)
    states = [
        r["state"]
        for r in await pool.fetch(
            "SELECT state FROM assignments WHERE referral_id = $1 ORDER BY offered_at", rid
        )
    ]
    assert states == ["declined", "expired", "offered"]
    # Each case manager's count is exactly their live offers.
    mismatched = await pool.fetchval(
        "SELECT count(*) FROM case_managers c WHERE c.active_count <> (SELECT count(*) FROM assignments a"
        " WHERE a.case_manager_id = c.staff_id AND a.state IN ('offered', 'accepted'))"
    )
    assert mismatched == 0
    last = await pool.fetchval(
        "SELECT detail FROM routing_decisions WHERE referral_id = $1 ORDER BY decided_at DESC LIMIT 1", rid
    )
    record = msgspec.convert(last, DecisionRecord)
    assert set(record.inputs.excluded) == {first, str(second["case_manager_id"])}
    assert record.policy_version == RULES.version
    subjects = [r["subject"] for r in await pool.fetch("SELECT subject FROM outbox ORDER BY id")]
    assert subjects.count("refnet.referral.assigned") == 3
    assert "refnet.assignment.expired" in subjects


async def test_exhaustion_queues_then_a_supervisor_assigns_by_hand(
    pool: asyncpg.Pool, app_pool: asyncpg.Pool, creds: dict[str, Any]
) -> None:
    partner = creds["partners"][0]["id"]
    rid = await _referral(pool, partner, urgency="urgent")
    await _route(pool, rid, partner)
    decliners = [await _decline(pool, rid) for _ in range(RULES.offers.max_offers)]
    assert len(set(decliners)) == RULES.offers.max_offers
    assert await _status(pool, rid) == ("unroutable", "offers_exhausted")
    assert await pool.fetchval("SELECT queued_at IS NOT NULL FROM referrals WHERE id = $1", rid)
    # The queue drain leaves exhausted referrals to people.
    assert await drain_queue(pool, SETTINGS) == 0

    ana = _by_name(creds, "Ana Reyes")
    await pool.execute("UPDATE case_managers SET active_count = capacity WHERE staff_id = $1", ana)
    south_sup = next(s for s in creds["supervisors"] if s["region"] == "south_la")
    valley_sup = next(s for s in creds["supervisors"] if s["region"] == "san_fernando_valley")
    supervisor = Identity(role="supervisor", actor_id=south_sup["id"], region="south_la")
    stranger = Identity(role="supervisor", actor_id=valley_sup["id"], region="san_fernando_valley")
    with pytest.raises(ManualAssignError) as refused:
        async with transaction(app_pool, stranger) as conn:
            await assign_manually(conn, stranger, uuid.UUID(rid), uuid.UUID(ana), "mine now", RULES)
    assert refused.value.status == 404

    async with transaction(app_pool, supervisor) as conn:
        done = await assign_manually(
            conn, supervisor, uuid.UUID(rid), uuid.UUID(ana), "Knows the family from an earlier case.", RULES
        )
    assert done.over_capacity and done.active_count == done.capacity + 1
    assert done.respond_by - datetime.now(UTC) <= timedelta(seconds=RULES.offers.urgent_ttl_seconds)
    assert await _status(pool, rid) == ("assigned", None)
    offer = await _offer(pool, rid)
    assert offer is not None and str(offer["case_manager_id"]) == ana
    manual = await pool.fetchrow(
        "SELECT kind, actor_id, reason, chosen_id FROM routing_decisions WHERE referral_id = $1 AND kind = 'manual'",
        rid,
    )
    assert manual is not None
    assert (str(manual["actor_id"]), manual["reason"], str(manual["chosen_id"])) == (
        south_sup["id"],
        "Knows the family from an earlier case.",
        ana,
    )
    audited = await pool.fetchrow(
        "SELECT actor_role, actor_id, detail FROM audit_log WHERE action = 'routing.manual_assign' AND target_id = $1",
        rid,
    )
    assert audited is not None
    assert audited["actor_role"] == "supervisor" and audited["detail"]["over_capacity"] is True
    assert "family" not in str(audited["detail"]), "the free-text reason stays out of the audit detail"
    events = [
        decode_event(bytes(r["payload"])) for r in await pool.fetch("SELECT payload FROM outbox ORDER BY id")
    ]
    assigned = [e for e in events if e.event_id and getattr(e, "assignment_id", None) == done.assignment_id]
    assert assigned and assigned[0].case_manager_id == ana  # type: ignore[union-attr]
    # Assigning again to the same person is a conflict; to an away case manager too.
    with pytest.raises(ManualAssignError) as again:
        async with transaction(app_pool, supervisor) as conn:
            await assign_manually(conn, supervisor, uuid.UUID(rid), uuid.UUID(ana), "again", RULES)
    assert again.value.status == 409
    denise = _by_name(creds, "Denise Carter")
    await pool.execute(
        "UPDATE case_managers SET status = 'away', away_until = '2099-01-01' WHERE staff_id = $1", denise
    )
    with pytest.raises(ManualAssignError, match="away until 2099-01-01"):
        async with transaction(app_pool, supervisor) as conn:
            await assign_manually(conn, supervisor, uuid.UUID(rid), uuid.UUID(denise), "cover", RULES)


async def test_the_queue_drains_when_capacity_frees_up(pool: asyncpg.Pool, creds: dict[str, Any]) -> None:
    partner = creds["partners"][0]["id"]
    south = [c["id"] for c in _south(creds)]
    await pool.execute("UPDATE case_managers SET capacity = 0 WHERE staff_id = ANY ($1::uuid[])", south)
    now = datetime.now(UTC)
    routine = await _referral(pool, partner, received_at=now - timedelta(hours=2))
    urgent = await _referral(pool, partner, urgency="urgent", received_at=now - timedelta(minutes=5))
    for rid in (routine, urgent):
        await _route(pool, rid, partner)
        assert await _status(pool, rid) == ("unroutable", "no_eligible_case_manager")
    first = await pool.fetchval("SELECT detail FROM routing_decisions WHERE referral_id = $1", routine)
    record = msgspec.convert(first, DecisionRecord)
    assert record.named_all and record.eligible_total == 0
    words = explain_automatic(record, {}, "South Los Angeles")
    assert words.summary.startswith("No case manager in South Los Angeles could take this referral")
    assert "has no capacity left" in " ".join(words.details)

    # Nothing freed: the drain tries, writes nothing and sends nothing.
    before = await pool.fetchval(
        "SELECT (SELECT count(*) FROM routing_decisions) + (SELECT count(*) FROM outbox)"
    )
    assert await drain_queue(pool, SETTINGS) == 0
    assert (
        await pool.fetchval("SELECT (SELECT count(*) FROM routing_decisions) + (SELECT count(*) FROM outbox)")
        == before
    )

    # One place frees up: the urgent referral gets it, though the routine one has waited longer.
    denise = _by_name(creds, "Denise Carter")
    await pool.execute("UPDATE case_managers SET capacity = 1 WHERE staff_id = $1", denise)
    assert await drain_queue(pool, SETTINGS) == 1
    assert await _status(pool, urgent) == ("assigned", None)
    assert await _status(pool, routine) == ("unroutable", "no_eligible_case_manager")

    # A case manager back from leave takes the other.
    ana = _by_name(creds, "Ana Reyes")
    await pool.execute(
        "UPDATE case_managers SET capacity = 5, status = 'away', away_until = current_date - 1 WHERE staff_id = $1",
        ana,
    )
    assert await drain_queue(pool, SETTINGS) == 0
    assert await return_from_away(pool) == 1
    assert await drain_queue(pool, SETTINGS) == 1
    offer = await _offer(pool, routine)
    assert offer is not None and str(offer["case_manager_id"]) == ana
    changes = [
        decode_event(bytes(r["payload"]))
        for r in await pool.fetch(
            "SELECT payload FROM outbox WHERE subject = 'refnet.referral.status_changed'"
        )
    ]
    assert [(e.status, e.previous_status) for e in changes if e.referral_id == routine] == [  # type: ignore[union-attr]
        ("unroutable", "received"),
        ("assigned", "unroutable"),
    ]


async def test_out_of_area_and_language_go_to_the_queue(pool: asyncpg.Pool, creds: dict[str, Any]) -> None:
    partner = creds["partners"][0]["id"]
    away = await _referral(pool, partner, region=None)
    korean = await _referral(pool, partner, language="ko")  # no South LA case manager speaks Korean
    for rid in (away, korean):
        await _route(pool, rid, partner)
    assert await _status(pool, away) == ("unroutable", "out_of_area")
    assert await _status(pool, korean) == ("unroutable", "no_eligible_case_manager")
    detail = await pool.fetchval("SELECT detail FROM routing_decisions WHERE referral_id = $1", korean)
    reasons = {s.id: s.reasons for s in msgspec.convert(detail, DecisionRecord).candidates}
    assert all("does not speak the youth's language" in r for r in reasons.values())
    assert set(reasons) == {c["id"] for c in _south(creds)}


ROSTER = """email,name,regions,needs,languages,capacity,status,away_until,specialisms
new.one@example.org,New One,south_la,housing;legal,en;es,8,active,,lgbtq
ana.reyes@demo.refnet.local,Ana Reyes,south_la;san_fernando_valley,housing;family,en;es,15,active,,
"""


async def test_roster_import_creates_updates_and_refuses_as_a_whole(
    pool: asyncpg.Pool, creds: dict[str, Any]
) -> None:
    codes = default_catalogue().codes
    today = date.today()
    bad = (
        "email,name,regions,needs,capacity,status,away_until\n"
        "a@x.org,A,mars,housing,5,active,\n"
        "b@x.org,B,south_la,flying,5,active,\n"
        "c@x.org,C,south_la,housing,5,away,\n"
        "a@x.org,A again,south_la,housing,5,active,\n"
        "d@x.org,D,south_la,housing,lots,active,\n"
    )
    profiles, errors = roster.parse_roster(bad, codes, today)
    found = {(e.line, e.field) for e in errors}
    assert {(2, "regions"), (3, "needs"), (4, "away_until"), (5, "email"), (6, "capacity")} <= found
    _, header = roster.parse_roster("email,name\nx@y.org,X\n", codes, today)
    assert "missing column(s): regions, needs, capacity" in header[0].message

    profiles, errors = roster.parse_roster(ROSTER, codes, today)
    assert not errors
    async with transaction(pool, roster.OPERATOR) as conn:
        result = await roster.import_roster(conn, roster.OPERATOR, profiles, lambda p: "hash:" + p)
    assert result.created == ["new.one@example.org"] and result.updated == ["ana.reyes@demo.refnet.local"]
    assert set(result.passwords) == {"new.one@example.org"}
    ana = await pool.fetchrow(
        "SELECT c.regions, c.capacity, c.active_count FROM case_managers c JOIN staff s ON s.id = c.staff_id"
        " WHERE s.email = 'ana.reyes@demo.refnet.local'"
    )
    assert ana is not None
    assert (list(ana["regions"]), ana["capacity"]) == (["south_la", "san_fernando_valley"], 15)
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'roster.%'") == 2

    # A roster naming a supervisor's email is refused whole: the other row is not written either.
    clash = ROSTER.replace("new.one@example.org,New One", "new.two@example.org,New Two") + (
        f"{creds['supervisors'][0]['email']},Sup,south_la,housing,en,3,active,,\n"
    )
    profiles, errors = roster.parse_roster(clash, codes, today)
    assert not errors
    with pytest.raises(roster.RosterError, match="belongs to a supervisor"):
        async with transaction(pool, roster.OPERATOR) as conn:
            await roster.import_roster(conn, roster.OPERATOR, profiles, lambda p: "hash:" + p)
    assert await pool.fetchval("SELECT count(*) FROM staff WHERE email = 'new.two@example.org'") == 0


async def _due(pool: asyncpg.Pool, version: str = RULES.version) -> set[str]:
    rows = await pool.fetch(load_sql("services.routing", "queue_to_drain"), None, 500, version)
    return {str(r["id"]) for r in rows}


async def test_the_queue_retries_a_referral_only_after_what_it_was_tried_against_changed(
    pool: asyncpg.Pool, app_pool: asyncpg.Pool, creds: dict[str, Any]
) -> None:
    partner = creds["partners"][0]["id"]
    # Nobody speaks Armenian: the region has free places, but nobody is eligible.
    rid = await _referral(pool, partner, language="hy")
    await _route(pool, rid, partner)
    assert await _status(pool, rid) == ("unroutable", "no_eligible_case_manager")
    assert rid in await _due(pool)  # never tried by the drain yet

    # The services' role (row-level security on) tries it once, and remembers what it tried against.
    assert await drain_queue(app_pool, SETTINGS) == 0
    assert await pool.fetchval("SELECT count(*) FROM queue_tries WHERE referral_id = $1", rid) == 1
    assert rid not in await _due(pool)
    tried_at = await pool.fetchval("SELECT tried_at FROM queue_tries WHERE referral_id = $1", rid)
    assert await drain_queue(app_pool, SETTINGS) == 0
    assert await pool.fetchval("SELECT tried_at FROM queue_tries WHERE referral_id = $1", rid) == tried_at

    south = [c["id"] for c in _south(creds)]
    valley = [c["id"] for c in creds["case_managers"] if c["regions"] == ["san_fernando_valley"]]
    # A place taken in its region, or anything in another region: still nothing to try again for.
    await pool.execute(
        "UPDATE case_managers SET active_count = active_count + 1 WHERE staff_id = $1", south[0]
    )
    await pool.execute("UPDATE case_managers SET capacity = capacity + 3 WHERE staff_id = $1", valley[0])
    await pool.execute("UPDATE case_managers SET away_until = '2099-01-01' WHERE staff_id = $1", south[1])
    assert rid not in await _due(pool)
    # A place freed in its region, new rules, or a change to the referral itself: tried again.
    await pool.execute(
        "UPDATE case_managers SET active_count = active_count - 1 WHERE staff_id = $1", south[0]
    )
    assert rid in await _due(pool)
    assert await drain_queue(app_pool, SETTINGS) == 0
    assert rid not in await _due(pool)
    assert rid in await _due(pool, version="another-policy")
    await pool.execute("UPDATE referrals SET updated_at = now() WHERE id = $1", rid)
    assert rid in await _due(pool)
    assert await drain_queue(app_pool, SETTINGS) == 0
    assert rid not in await _due(pool)

    # The change that makes it eligible commits after the try began reading, in a transaction that
    # began before: the try cannot see it, so the referral is tried again once it commits.
    ana = _by_name(creds, "Ana Reyes")
    async with pool.acquire() as other:
        tx = other.transaction()
        await tx.start()
        await other.execute(
            "UPDATE case_managers SET languages = languages || '{hy}', capacity = 50 WHERE staff_id = $1", ana
        )
        await pool.execute("UPDATE referrals SET updated_at = now() WHERE id = $1", rid)
        assert await drain_queue(app_pool, SETTINGS) == 0  # Ana's Armenian is not committed yet
        assert rid not in await _due(pool)
        await tx.commit()
    assert rid in await _due(pool)
    assert await drain_queue(app_pool, SETTINGS) == 1
    offer = await _offer(pool, rid)
    assert offer is not None and str(offer["case_manager_id"]) == ana


async def _continuity(app_pool: asyncpg.Pool, rid: str, key: bytes) -> tuple[set[str], set[str]]:
    """The 'continuity' rows of candidates.sql and of candidates_many.sql (the batch's read-ahead),
    as the routing transaction runs them (system identity, its planner settings)."""
    one_args: tuple[Any, ...] = ("south_la", [], key, uuid.UUID(rid), 0, 0, "en", 0, [], 0, 0)
    many_args = (["south_la"], ["en"], [0], [""], [0], [0], [0], [key], [uuid.UUID(rid)], 1)
    async with transaction(app_pool, setup=WALK_PLAN) as conn:
        one = await conn.fetch(load_sql("services.routing", "candidates"), *one_args)
        many = await conn.fetch(load_sql("services.routing", "candidates_many"), *many_args)
    return (
        {str(r["staff_id"]) for r in one if r["source"] == "continuity"},
        {str(r["staff_id"]) for r in many if r["source"] == "continuity"},
    )


async def test_continuity_finds_earlier_referrals_by_key_and_by_link_in_both_statements(
    pool: asyncpg.Pool, app_pool: asyncpg.Pool, creds: dict[str, Any]
) -> None:
    partner = creds["partners"][0]["id"]
    key = b"c" * 32
    cms = [str(c["id"]) for c in creds["case_managers"]][:7]
    rid = await _referral(pool, partner, youth_key=key)

    async def served(case_manager: str, *, state: str = "accepted", youth_key: bytes | None = None) -> str:
        earlier = await _referral(pool, partner, youth_key=youth_key, status="accepted")
        await pool.execute(
            "INSERT INTO assignments (id, referral_id, case_manager_id, state, respond_by)"
            " VALUES ($1, $2, $3, $4, now())",
            uuid.uuid4(),
            earlier,
            case_manager,
            state,
        )
        return earlier

    async def link(a: str, b: str, status: str = "linked") -> None:
        await pool.execute(
            "INSERT INTO youth_matches (id, referral_id, other_referral_id, score, reasons, status)"
            " VALUES ($1, $2, $3, 0.9, '{dob}', $4)",
            uuid.uuid4(),
            a,
            b,
            status,
        )

    await served(cms[0], youth_key=key)  # same key, accepted: in
    shredded = await served(cms[1], youth_key=key)  # same key, PII destroyed: out
    await pool.execute("UPDATE referrals SET pii_shredded_at = now() WHERE id = $1", shredded)
    await served(cms[2], youth_key=key, state="declined")  # same key, never accepted: out
    await link(rid, await served(cms[3]))  # linked, this referral first: in
    await link(await served(cms[4]), rid, status="suggested")  # linked the other way round: in
    await link(rid, await served(cms[5]), status="dismissed")  # dismissed by staff: out
    await served(cms[6], youth_key=b"x" * 32)  # another youth: out
    one, many = await _continuity(app_pool, rid, key)
    assert one == many == {cms[0], cms[3], cms[4]}


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(s for child in node.get("Plans", []) for s in _scans(child))]


@pytest.mark.parametrize("statement", ["candidates", "candidates_many"])
async def test_continuity_reads_assignments_by_referral_only(
    pool: asyncpg.Pool, app_pool: asyncpg.Pool, creds: dict[str, Any], statement: str
) -> None:
    # The generic plan routing uses (force_generic_plan): a plan that starts from assignments reads
    # every live assignment for every referral routed (seen at 400 referrals/s: 468 ms a batch). Such a
    # plan is what the planner makes with many referrals and no assignment yet (a benchmark's start).
    partner = creds["partners"][0]["id"]
    await pool.execute(
        "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years, youth_key)"
        " SELECT gen_random_uuid(), $1, 'assigned', 'south_la', '{housing}', 'en', 'routine', 16,"
        " sha256(g::text::bytea) FROM generate_series(1, 20000) AS g",
        partner,
    )
    sql = load_sql("services.routing", statement)
    nulls = ", ".join(["NULL"] * (11 if statement == "candidates" else 10))
    async with transaction(app_pool, setup=WALK_PLAN) as conn:
        await conn.execute(f"PREPARE probe AS {sql}")
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE probe({nulls})")
    scans = [n for n in _scans(json.loads(plan)[0]["Plan"]) if n.get("Relation Name") == "assignments"]
    assert scans
    for scan in scans:
        assert "referral_id" in scan.get("Index Cond", ""), scan
