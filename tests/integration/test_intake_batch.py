"""Intake's set-based group commit on a real database, as the service role: a batch of referrals stored
together writes exactly what the same referrals stored one at a time write, row-level security still
checks each caller's rows, and a failing referral is named to the group commit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from services.intake.core.auth import Caller
from services.intake.referrals.matches import BlindRows
from services.intake.referrals.schemas import ReferralIn
from services.intake.referrals.service import NewReferral, prepare, store_many, store_one
from shared.crypto import KeyRing
from shared.db import SYSTEM, create_pool, service_dsn, transaction
from shared.groupcommit import ItemFailed
from shared.regions import Catalogue
from tests.support.platform import referral_body

pytestmark = pytest.mark.asyncio

_KEYRING = KeyRing({"k1": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}, "k1")
_SECRET = b"s" * 32
_REGIONS = Catalogue.load()
# The tables a new referral writes, each as rows that do not depend on generated ids or times.
_DUMP = {
    "referrals": "SELECT id AS rid, status, region, needs, language, urgency, age_years, intake::text, "
    "youth_key, do_not_contact, contact_channel, contact_voicemail_ok FROM referrals",
    "referral_keys": "SELECT referral_id AS rid, partner_id, key_id FROM referral_keys",
    "referral_pii": "SELECT referral_id AS rid, partner_id, length(ciphertext) AS n FROM referral_pii",
    "consents": "SELECT referral_id AS rid, partner_id, method, scope FROM consents",
    "idempotency_keys": "SELECT referral_id AS rid, partner_id, status_code FROM idempotency_keys",
    "protocol_steps": "SELECT referral_id AS rid, partner_id, protocol_version, code, position, roles, "
    "clock_from, clock_minutes, reference_required, outcomes, escalate_to FROM protocol_steps",
    "outbox": "SELECT (regexp_match(encode(payload, 'escape'), '[0-9a-f-]{36}'))[1]::uuid AS rid, subject "
    "FROM outbox WHERE subject = 'refnet.referral.received'",
    "audit_log": "SELECT target_id::uuid AS rid, actor_role, actor_id, partner_id, action FROM audit_log "
    "WHERE action = 'pii.write'",
    "youth_blind": "SELECT referral_id AS rid, dob, exact, phone, first, last,"
    " (SELECT array_agg(t ORDER BY t) FROM unnest(first_tri) AS t) AS first_tri FROM youth_blind",
    "youth_matches": "SELECT referral_id AS rid, other_referral_id AS other, score, reasons FROM youth_matches",
}


@pytest.fixture
async def app_pool(seeded_db: tuple[str, dict[str, Any]]) -> AsyncIterator[asyncpg.Pool]:
    """The service role: row-level security applies to everything these tests store."""
    p = await create_pool(service_dsn(seeded_db[0]), max_size=2)
    yield p
    await p.close()


def _callers(seeded_db: tuple[str, dict[str, Any]]) -> list[Caller]:
    partners = seeded_db[1]["partners"]
    return [Caller(kind="partner", id=p["id"], role="partner", partner_id=p["id"]) for p in partners[:3]]


def _submissions(callers: list[Caller]) -> list[tuple[Caller, ReferralIn, str | None]]:
    """A mixed batch: three partners, minors (protocol steps) and adults, do-not-contact, contact
    preferences, idempotency keys, and one youth referred three times (matches within the batch)."""
    today = datetime.now(UTC).date()
    out: list[tuple[Caller, ReferralIn, str | None]] = []
    for i in range(9):
        body = referral_body()
        body["youth"]["first_name"] = "Twice" if i in (1, 4, 7) else f"Youth{i}"
        body["youth"]["last_name"] = "Samename" if i in (1, 4, 7) else f"Last{i}"
        body["youth"]["phone"] = f"323-555-01{(i if i not in (1, 4, 7) else 99):02d}"
        age = 15 if i % 2 else 19
        body["youth"]["date_of_birth"] = (today - timedelta(days=age * 365 + 30)).isoformat()
        if i == 2:
            body["youth"]["do_not_contact"] = True
        if i == 3:
            body["contact"] = {"safe_channel": "sms", "voicemail_ok": False, "safe_times": "after 6pm"}
        if i == 5:
            body["needs"] = ["legal"]
        ref = msgspec.convert(body, ReferralIn, strict=False)
        out.append((callers[i % 3], ref, f"idem-{uuid.uuid4()}" if i % 4 == 0 else None))
    return out


def _prepared(
    subs: list[tuple[Caller, ReferralIn, str | None]], now: datetime, run: str = ""
) -> list[NewReferral]:
    return [
        prepare(
            caller,
            caller.identity,
            data,
            now,
            regions=_REGIONS,
            keyring=_KEYRING,
            youth_secret=_SECRET,
            idempotency_key=idem and idem + run,
            request_hash=b"h" * 32,
        )[0]
        for caller, data, idem in subs
    ]


def _grouped(news: list[NewReferral]) -> list[NewReferral]:
    """The order a batch stores in: by caller (stable), as store_many does."""
    return sorted(news, key=lambda n: n.identity)


async def _dump(pool: asyncpg.Pool, order: list[NewReferral]) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows with referral ids replaced by their place in `order`."""
    place = {uuid.UUID(n.referral_id): i for i, n in enumerate(order)}
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with pool.acquire() as conn:
        for table, sql in _DUMP.items():
            rows = []
            for r in await conn.fetch(sql):
                if r["rid"] not in place:
                    continue
                row = dict(r)
                row["rid"] = place[row.pop("rid")]
                if "other" in row:
                    row["other"] = place[row["other"]]
                rows.append(tuple(sorted((k, str(v)) for k, v in row.items())))
            out[table] = sorted(rows)
    return out


async def test_a_batch_writes_what_the_same_referrals_write_one_at_a_time(
    pool: asyncpg.Pool, app_pool: asyncpg.Pool, seeded_db: tuple[str, dict[str, Any]]
) -> None:
    subs = _submissions(_callers(seeded_db))
    now = datetime.now(UTC)
    together = _prepared(subs, now)
    async with transaction(app_pool, SYSTEM) as conn:
        assert await store_many(conn, together) == [None] * len(together)
    batch = await _dump(pool, _grouped(together))

    # The same submissions again (new ids; the same youth), each in its own transaction as its caller.
    # Earlier referrals are there now, so the second run also matches the first: compare only what the
    # second run wrote among its own referrals.
    await _forget_first_run(pool, together)
    alone = _prepared(subs, now, run="-again")
    for new in _grouped(alone):
        async with transaction(app_pool, new.identity) as conn:
            await store_one(conn, new)
    single = await _dump(pool, _grouped(alone))

    assert batch == single
    # The batch exercised what it claims to: steps, matches within the batch, idempotency, contact.
    assert len(batch["referrals"]) == 9
    assert len(batch["protocol_steps"]) > 0
    assert len(batch["youth_matches"]) >= 2
    assert len(batch["idempotency_keys"]) == 3
    assert len(batch["outbox"]) == len(batch["audit_log"]) == 9


async def _forget_first_run(pool: asyncpg.Pool, news: list[NewReferral]) -> None:
    """Take the first run's youth out of matching (as if another youth): tokens only, as superuser."""
    async with pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM youth_blind WHERE referral_id = ANY($1::uuid[])", [n.referral_id for n in news]
        )


async def test_row_level_security_still_checks_each_callers_rows(
    app_pool: asyncpg.Pool, seeded_db: tuple[str, dict[str, Any]]
) -> None:
    callers = _callers(seeded_db)
    news = _prepared(_submissions(callers)[:4], datetime.now(UTC))
    # A referral whose row names another partner than its caller: the database refuses it.
    forged = msgspec.structs.replace(news[2], identity=callers[1].identity)
    assert forged.row[1] == callers[2].partner_id
    async with transaction(app_pool, SYSTEM) as conn:
        with pytest.raises(ItemFailed) as failed:
            await store_many(conn, [news[0], news[1], forged, news[3]])
    # Named by its place in the batch: the first of the statement that failed (callers[1]'s group).
    assert failed.value.index == 1
    assert isinstance(failed.value.__cause__, asyncpg.InsufficientPrivilegeError)


async def test_a_repeated_idempotency_key_fails_its_statement(
    pool: asyncpg.Pool, app_pool: asyncpg.Pool, seeded_db: tuple[str, dict[str, Any]]
) -> None:
    caller = _callers(seeded_db)[0]
    subs = _submissions([caller] * 3)[:3]
    key = f"idem-{uuid.uuid4()}"
    subs = [(c, d, key if i != 1 else None) for i, (c, d, _) in enumerate(subs)]
    news = _prepared(subs, datetime.now(UTC))
    async with transaction(app_pool, SYSTEM) as conn:
        with pytest.raises(ItemFailed) as failed:
            await store_many(conn, news)
    assert failed.value.index == 0
    assert isinstance(failed.value.__cause__, asyncpg.UniqueViolationError)
    # Rolled back with the batch: nothing of it stayed.
    async with pool.acquire() as conn:
        ids = [n.referral_id for n in news]
        assert await conn.fetchval("SELECT count(*) FROM referrals WHERE id = ANY($1::uuid[])", ids) == 0
    # Alone (what the group commit does next), the first commits, the second too, the third fails.
    async with transaction(app_pool, caller.identity) as conn:
        await store_one(conn, news[0])
    async with transaction(app_pool, caller.identity) as conn:
        await store_one(conn, news[1])
    with pytest.raises(asyncpg.UniqueViolationError):
        async with transaction(app_pool, caller.identity) as conn:
            await store_one(conn, news[2])


async def test_candidates_only_for_the_callers_own_referrals(
    app_pool: asyncpg.Pool, seeded_db: tuple[str, dict[str, Any]]
) -> None:
    # Two referrals of the same youth by different partners; the second's candidates name the first,
    # but only when asked by the second's own partner.
    callers = _callers(seeded_db)
    subs = _submissions(callers)
    first, second = _prepared([subs[1], (callers[0], subs[4][1], None)], datetime.now(UTC))
    assert first.identity != second.identity
    for new in (first, second):
        async with transaction(app_pool, new.identity) as conn:
            await store_one(conn, new)
    args = BlindRows.of([(second.referral_id, second.tokens)]).args()
    sql = (
        "SELECT i, other FROM refnet_youth_candidates_many($1::uuid[], $2::bytea[], $3::bytea[], $4::bytea[],"
        " $5::bytea[], $6::bytea[], $7::int[], $8::bytea[])"
    )
    async with transaction(app_pool, second.identity) as conn:
        own = await conn.fetch(sql, *args)
    async with transaction(app_pool, first.identity) as conn:
        other = await conn.fetch(sql, *args)
    assert [(r["i"], str(r["other"])) for r in own] == [(1, first.referral_id)]
    assert other == []
    # Within a call too: an earlier referral in it that is not the caller's (here one that does not
    # exist) is no candidate, however alike its tokens.
    ghost = str(uuid.uuid4())
    both = BlindRows.of([(ghost, second.tokens), (second.referral_id, second.tokens)]).args()
    async with transaction(app_pool, second.identity) as conn:
        rows = await conn.fetch(sql, *both)
    assert ghost not in {str(r["other"]) for r in rows}
    assert {(r["i"], str(r["other"])) for r in rows} == {(2, first.referral_id)}


async def test_the_youth_lookup_reads_the_blocking_indexes(
    pool: asyncpg.Pool, app_pool: asyncpg.Pool, seeded_db: tuple[str, dict[str, Any]]
) -> None:
    # Candidates are found by a blocking token (0100: an index per kind, two of them partial): the lookup
    # must use them, never read youth_blind whole for every referral.
    callers = _callers(seeded_db)
    news = _prepared(_submissions(callers), datetime.now(UTC))
    for new in news[:-1]:
        async with transaction(app_pool, new.identity) as conn:
            await store_one(conn, new)
    stats = (
        "SELECT s.seq_scan, sum(i.idx_scan) FILTER (WHERE i.indexrelname <> 'youth_blind_pkey') AS idx_scan"
        " FROM pg_stat_user_tables s JOIN pg_stat_user_indexes i ON i.relid = s.relid"
        " WHERE s.relname = 'youth_blind' GROUP BY s.seq_scan"
    )
    async with pool.acquire() as conn:
        before = await conn.fetchrow(stats)
    assert before is not None
    async with transaction(app_pool, news[-1].identity) as conn:
        await store_one(conn, news[-1])
        await conn.execute("SELECT pg_stat_force_next_flush()")
    async with pool.acquire() as conn:
        after = await conn.fetchrow(stats)
    assert after is not None
    assert after["seq_scan"] == before["seq_scan"]
    assert after["idx_scan"] > before["idx_scan"]
