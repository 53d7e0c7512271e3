"""The database side of issue 5: the status-change trigger (every pair), row-level security on the case
tables, and the evaluation read under an evaluator's identity."""

from __future__ import annotations

import base64
import itertools
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest

from services.intake.cases.consent import shred
from services.intake.evaluation.cohort import load_cohort
from services.intake.evaluation.report import build_report, csv_header, export_csv, export_rows
from shared import lifecycle
from shared.codes import REFERRAL_STATUSES
from shared.db import SYSTEM, Identity, create_pool, service_dsn, transaction

PAIRS = list(itertools.product(REFERRAL_STATUSES, REFERRAL_STATUSES))
CASE_TABLES = ("referral_transitions", "interventions", "followups", "outcomes")
PII_TABLES = ("referral_pii", "referral_keys", "consents", "idempotency_keys")


async def _as(
    conn: asyncpg.Connection, role: str, actor: str = "", partner: str = "", region: str = ""
) -> None:
    await conn.execute(
        "SELECT set_config('app.role', $1, true), set_config('app.actor_id', $2, true),"
        " set_config('app.partner_id', $3, true), set_config('app.region', $4, true)",
        role,
        actor,
        partner,
        region,
    )


async def _referral(
    admin: asyncpg.Connection,
    partner: str,
    status: str = "received",
    region: str = "south_la",
    scope: tuple[str, ...] | None = ("case_management", "evaluation"),
) -> str:
    """A referral written as the operator, with a consent of ``scope`` (None: no consent row)."""
    rid = str(uuid.uuid4())
    await admin.execute(
        "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years, intake,"
        " close_reason, unroutable_reason)"
        " VALUES ($1, $2, $3, $4, '{housing}', 'en', 'routine', 16, '{\"referral_setting\": \"school\"}', $5, $6)",
        rid,
        partner,
        status,
        region,
        "other" if status == "closed" else None,
        "no_eligible_case_manager" if status == "unroutable" else None,
    )
    if scope is not None:
        await admin.execute(
            "INSERT INTO consents (referral_id, partner_id, method, scope, obtained_at, expires_at)"
            " VALUES ($1, $2, 'written', $3, now() - interval '1 day', now() + interval '1 year')",
            rid,
            partner,
            list(scope),
        )
    return rid


@pytest.fixture
async def world(seeded_db: tuple[str, dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    dsn, creds = seeded_db
    admin = await asyncpg.connect(dsn)
    app = await asyncpg.connect(service_dsn(dsn))
    south = [c for c in creds["case_managers"] if c["regions"] == ["south_la"]]
    yield {
        "dsn": dsn,
        "admin": admin,
        "app": app,
        "creds": creds,
        "partner": creds["partners"][0]["id"],
        "cm": south[0],
        "other_cm": south[1],
    }
    await app.close()
    await admin.close()


async def test_every_status_pair_through_the_trigger(world: dict[str, Any]) -> None:
    """Legal changes are recorded with actor and reason; illegal ones are refused by the database."""
    admin, app = world["admin"], world["app"]
    for source, target in PAIRS:
        if source == target:
            continue
        rid = await _referral(admin, world["partner"], source)
        update = (
            "UPDATE referrals SET status = $2, close_reason = CASE WHEN $2 = 'closed' THEN 'goals_met'"
            " ELSE close_reason END, unroutable_reason = CASE WHEN $2 = 'unroutable' THEN 'out_of_area'"
            " ELSE unroutable_reason END WHERE id = $1"
        )
        if lifecycle.is_legal(source, target):
            async with app.transaction():
                await _as(app, "system", actor="worker-1")
                await app.execute("SELECT set_config('app.transition_reason', 'test_reason', true)")
                assert await app.execute(update, rid, target) == "UPDATE 1"
            row = await admin.fetchrow("SELECT * FROM referral_transitions WHERE referral_id = $1", rid)
            assert (row["from_status"], row["to_status"]) == (source, target)
            assert (row["actor_role"], row["actor_id"]) == ("system", "worker-1")
            expected = {"closed": "goals_met", "unroutable": "out_of_area"}.get(target, "test_reason")
            assert row["reason"] == expected, (source, target)
        else:
            with pytest.raises(asyncpg.CheckViolationError, match="illegal referral status transition"):
                async with app.transaction():
                    await _as(app, "system")
                    await app.execute(update, rid, target)
            assert await admin.fetchval("SELECT status FROM referrals WHERE id = $1", rid) == source
    legal = sum(1 for s, t in PAIRS if lifecycle.is_legal(s, t))
    assert await admin.fetchval("SELECT count(*) FROM referral_transitions") == legal


async def test_unchanged_status_records_nothing(world: dict[str, Any]) -> None:
    rid = await _referral(world["admin"], world["partner"], "engaged")
    app = world["app"]
    async with app.transaction():
        await _as(app, "system")
        await app.execute("UPDATE referrals SET status = 'engaged', updated_at = now() WHERE id = $1", rid)
    assert await world["admin"].fetchval("SELECT count(*) FROM referral_transitions") == 0


async def test_one_statement_over_many_referrals_records_each_change(world: dict[str, Any]) -> None:
    # Routing changes a batch's statuses in one UPDATE; the statement trigger (0102) records one row
    # per changed referral, none for an unchanged one, and one illegal change refuses them all.
    admin, app = world["admin"], world["app"]
    moved = [await _referral(admin, world["partner"], "received") for _ in range(3)]
    still = await _referral(admin, world["partner"], "assigned")
    update = "UPDATE referrals SET status = 'assigned', updated_at = now() WHERE id = ANY ($1::uuid[])"
    async with app.transaction():
        await _as(app, "system", actor="router-1")
        await app.execute("SELECT set_config('app.transition_reason', 'batch', true)")
        assert await app.execute(update, [*moved, still]) == "UPDATE 4"
    rows = await admin.fetch(
        "SELECT referral_id::text AS rid, from_status, to_status, actor_id, reason FROM referral_transitions"
    )
    assert sorted(
        (r["rid"], r["from_status"], r["to_status"], r["actor_id"], r["reason"]) for r in rows
    ) == sorted((str(rid), "received", "assigned", "router-1", "batch") for rid in moved)
    closed = await _referral(admin, world["partner"], "closed")
    fresh = await _referral(admin, world["partner"], "received")
    with pytest.raises(
        asyncpg.CheckViolationError, match=f"illegal referral status transition closed -> assigned .*{closed}"
    ):
        async with app.transaction():
            await _as(app, "system")
            await app.execute(update, [fresh, closed])
    assert await admin.fetchval("SELECT status FROM referrals WHERE id = $1", fresh) == "received"
    assert await admin.fetchval("SELECT count(*) FROM referral_transitions") == len(moved)


async def test_history_cannot_be_written_by_the_service_role(world: dict[str, Any]) -> None:
    rid = await _referral(world["admin"], world["partner"], "received")
    app = world["app"]
    for sql in (
        f"INSERT INTO referral_transitions (referral_id, from_status, to_status, actor_role)"
        f" VALUES ('{rid}', 'received', 'closed', 'system')",
        "UPDATE referral_transitions SET reason = 'forged'",
        "DELETE FROM referral_transitions",
        "INSERT INTO referral_status_transitions VALUES ('closed', 'received')",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with app.transaction():
                await _as(app, "system")
                await app.execute(sql)


async def _case(
    world: dict[str, Any], cm: dict[str, Any], state: str = "accepted", scope: tuple[str, ...] | None = None
) -> str:
    admin = world["admin"]
    rid = await _referral(
        admin, world["partner"], "engaged" if state == "accepted" else "assigned", scope=scope
    )
    await admin.execute(
        "INSERT INTO assignments (id, referral_id, case_manager_id, state, respond_by)"
        " VALUES ($1, $2, $3, $4, now() + interval '1 hour')",
        uuid.uuid4(),
        rid,
        cm["id"],
        state,
    )
    return rid


async def _add_records(conn: asyncpg.Connection, rid: str, cm_id: str) -> None:
    await conn.execute(
        "INSERT INTO interventions (id, referral_id, type, delivered_on, recorded_by)"
        " VALUES ($1, $2, 'therapy', current_date, $3)",
        uuid.uuid4(),
        rid,
        cm_id,
    )
    await conn.execute(
        "INSERT INTO followups (referral_id, point, due_on) VALUES ($1, 'intake', current_date)", rid
    )
    await conn.execute(
        "INSERT INTO outcomes (id, referral_id, point, measure, value, observed_on, source, recorded_by)"
        " VALUES ($1, $2, 'intake', 'safety', 'safe', current_date, 'youth_self_report', $3)",
        uuid.uuid4(),
        rid,
        cm_id,
    )


async def test_case_tables_rls(world: dict[str, Any]) -> None:
    app, cm, other = world["app"], world["cm"], world["other_cm"]
    mine = await _case(world, cm)
    offered = await _case(world, other, state="offered")
    async with app.transaction():
        await _as(app, "case_manager", actor=cm["id"], region="south_la")
        await _add_records(app, mine, cm["id"])
    # A case manager who only holds an offer cannot write case records.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with app.transaction():
            await _as(app, "case_manager", actor=other["id"], region="south_la")
            await _add_records(app, offered, other["id"])
    # ... nor for someone else's case.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with app.transaction():
            await _as(app, "case_manager", actor=other["id"], region="south_la")
            await _add_records(app, mine, other["id"])

    async def visible(role: str, actor: str = "", partner: str = "", region: str = "") -> dict[str, int]:
        async with app.transaction():
            await _as(app, role, actor, partner, region)
            return {
                t: await app.fetchval(f"SELECT count(*) FROM {t}") for t in (*CASE_TABLES[1:], *PII_TABLES)
            }

    assert await visible("case_manager", cm["id"], region="south_la") == {
        "interventions": 1,
        "followups": 1,
        "outcomes": 1,
        "referral_pii": 0,
        "referral_keys": 0,
        "consents": 0,
        "idempotency_keys": 0,
    }
    assert set((await visible("case_manager", other["id"], region="south_la")).values()) == {0}
    assert set((await visible("partner", partner=world["partner"])).values()) == {0}, (
        "partners never see case records"
    )
    assert set((await visible("supervisor", str(uuid.uuid4()), region="san_fernando_valley")).values()) == {0}
    sup = await visible("supervisor", str(uuid.uuid4()), region="south_la")
    assert (sup["interventions"], sup["outcomes"], sup["referral_pii"]) == (1, 1, 0)
    for role in ("evaluator", "admin"):
        seen = await visible(role, str(uuid.uuid4()))
        assert (seen["interventions"], seen["followups"], seen["outcomes"]) == (1, 1, 1), role
        assert seen["referral_pii"] == seen["referral_keys"] == seen["consents"] == 0, role
    assert set((await visible("none")).values()) == {0}


async def test_evaluator_reads_the_cohort_through_rls(world: dict[str, Any]) -> None:
    mine = await _case(world, world["cm"], scope=("case_management", "evaluation"))
    await _add_records(world["admin"], mine, world["cm"]["id"])
    await world["admin"].execute(
        "UPDATE referrals SET engaged_at = received_at + interval '2 days' WHERE id = $1", mine
    )
    pool = await create_pool(service_dsn(world["dsn"]), max_size=1)
    try:
        async with transaction(pool, Identity(role="evaluator", actor_id=str(uuid.uuid4()))) as conn:
            records = await load_cohort(conn)
        async with transaction(
            pool, Identity(role="partner", partner_id=world["creds"]["partners"][5]["id"])
        ) as conn:
            assert await load_cohort(conn) == []
    finally:
        await pool.close()
    [rec] = [r for r in records if r.referral_id == mine]
    assert rec.interventions == {"therapy": 1}
    assert rec.outcomes == {"intake": {"safety": "safe"}}
    assert rec.intake == {"referral_setting": "school"}
    # The days the analysis times things by, and the referring partner organisation by name.
    today = await world["admin"].fetchval("SELECT current_date")
    assert rec.intervention_dates == {"therapy": today}
    assert rec.outcome_dates == {"intake": {"safety": today}}
    assert rec.partner == world["creds"]["partners"][0]["name"]
    report = build_report(records, datetime.now(UTC))
    assert report.referrals == "suppressed"  # one referral: far below the threshold


async def test_exports_never_carry_the_youth_key(world: dict[str, Any]) -> None:
    """The youth key links a youth's referrals inside one export (through a per-export pseudonym) and
    appears in no export column or field; once shredded it links nothing at all."""
    admin = world["admin"]
    twice, once = secrets.token_bytes(32), secrets.token_bytes(32)
    first, second, other = [await _referral(admin, world["partner"]) for _ in range(3)]
    for rid, key in ((first, twice), (second, twice), (other, once)):
        await admin.execute("UPDATE referrals SET youth_key = $2 WHERE id = $1", rid, key)
    pool = await create_pool(service_dsn(world["dsn"]), max_size=1)
    evaluator = Identity(role="evaluator", actor_id=str(uuid.uuid4()))
    try:
        async with transaction(pool, evaluator) as conn:
            records = await load_cohort(conn)
        now = datetime.now(UTC)
        rows = export_rows(records, secrets.token_bytes(32), now)
        published = (
            msgspec.json.encode(rows).decode()
            + export_csv(rows)
            + msgspec.json.encode(build_report(records, now)).decode()
        )
        for key in (twice, once):
            for form in (key.hex(), base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode()):
                assert form not in published
        assert not any("youth_key" in name for name in (*csv_header(), *msgspec.structs.asdict(rows[0])))
        # One pseudonym per youth: the two referrals of the first youth are its episodes 1 and 2.
        assert len({r.pid for r in rows}) == len(rows) - 1
        assert sorted(r.episode for r in rows) == [1] * (len(rows) - 1) + [2]

        # Shredding the second referral's PII takes its youth key too: it no longer links to the first.
        async with transaction(pool, SYSTEM) as conn:
            ref = await conn.fetchrow("SELECT * FROM referrals WHERE id = $1 FOR UPDATE", second)
            assert ref is not None
            await shred(conn, ref, SYSTEM, "retention", withdraw_status=False)
        assert await admin.fetchval("SELECT youth_key FROM referrals WHERE id = $1", second) is None
        async with transaction(pool, evaluator) as conn:
            rows = export_rows(await load_cohort(conn), secrets.token_bytes(32), now)
        assert len({r.pid for r in rows}) == len(rows)
    finally:
        await pool.close()


async def test_the_cohort_holds_only_youth_whose_consent_covers_evaluation(world: dict[str, Any]) -> None:
    """Consent scope `evaluation` (contract v1.1): a youth who did not give it is in no report or export;
    one who withdrew it (or let it expire unrenewed) is in none made afterwards; the evaluator, who never
    reads the consents table, is filtered all the same."""
    admin, partner = world["admin"], world["partner"]
    given = await _referral(admin, partner, "engaged", scope=("case_management", "evaluation"))
    everything = await _referral(
        admin, partner, "engaged", scope=("case_management", "evaluation", "share_status_with_referrer")
    )
    not_given = await _referral(admin, partner, "engaged", scope=("case_management",))
    withdrawn = await _referral(admin, partner, "engaged", scope=("case_management", "evaluation"))
    expired = await _referral(admin, partner, "engaged", scope=("case_management", "evaluation"))
    no_consent_row = await _referral(admin, partner, "engaged", scope=None)
    for rid in (given, not_given, withdrawn):
        await _add_records(admin, rid, world["cm"]["id"])
    pool = await create_pool(service_dsn(world["dsn"]), max_size=1)
    evaluator = Identity(role="evaluator", actor_id=str(uuid.uuid4()))

    async def cohort(identity: Identity) -> set[str]:
        async with transaction(pool, identity) as conn:
            return {r.referral_id for r in await load_cohort(conn)}

    try:
        assert await cohort(evaluator) == {given, everything, withdrawn, expired}
        # The youth withdraws (recorded as the withdrawal endpoint does it), another consent expires.
        async with transaction(pool, Identity(role="partner", partner_id=partner)) as conn:
            assert await conn.fetchval(
                "UPDATE consents SET withdrawn_at = now(), withdrawn_by = 'partner' WHERE referral_id = $1"
                " RETURNING referral_id",
                uuid.UUID(withdrawn),
            )
        await admin.execute(
            "UPDATE consents SET withdrawn_at = now(), withdrawn_by = 'expiry' WHERE referral_id = $1",
            expired,
        )
        later = await cohort(evaluator)
        assert later == {given, everything}
        assert await cohort(Identity(role="admin", actor_id=str(uuid.uuid4()))) == later
        async with transaction(pool, evaluator) as conn:
            records = await load_cohort(conn)
            # Their case records do not come along either.
            assert {r.referral_id for r in records if r.interventions} == {given}
            # The evaluator's own view of the consents table is still empty (the function reads it).
            assert await conn.fetchval("SELECT count(*) FROM consents") == 0
            assert await conn.fetchval("SELECT current_setting('app.role')") == "evaluator"
        rows = export_rows(records, secrets.token_bytes(32), datetime.now(UTC))
        assert len(rows) == 2
        assert no_consent_row not in later and not_given not in later
    finally:
        await pool.close()


async def test_new_consents_name_known_scopes_only(world: dict[str, Any]) -> None:
    """The database keeps the closed list too (a second wall behind intake's 422)."""
    with pytest.raises(asyncpg.CheckViolationError, match="consents_scope_known"):
        await _referral(world["admin"], world["partner"], scope=("case_management", "research"))
