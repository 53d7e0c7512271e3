"""Row-level security as the second wall: the service role sees only the caller's rows, whatever the query."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from shared.db import service_dsn

PII_TABLES = ("referrals", "referral_pii", "referral_keys", "consents", "idempotency_keys")
ALL_TABLES = (
    *PII_TABLES,
    "assignments",
    "routing_decisions",
    "notifications",
    "api_keys",
    "outbox",
    "audit_log",
)


async def _referral(conn: asyncpg.Connection, partner_id: str, region: str | None = "south_la") -> str:
    rid = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years)"
        " VALUES ($1, $2, 'received', $3, '{housing}', 'en', 'routine', 16)",
        rid,
        partner_id,
        region,
    )
    await conn.execute(
        "INSERT INTO referral_keys (referral_id, partner_id, key_id, wrapped_key) VALUES ($1, $2, 'k1', 'x')",
        rid,
        partner_id,
    )
    await conn.execute(
        "INSERT INTO referral_pii (referral_id, partner_id, nonce, ciphertext) VALUES ($1, $2, 'n', 'c')",
        rid,
        partner_id,
    )
    await conn.execute(
        "INSERT INTO consents (referral_id, partner_id, method, scope, obtained_at, expires_at)"
        " VALUES ($1, $2, 'written', '{case_management}', now() - interval '1 day', now() + interval '1 year')",
        rid,
        partner_id,
    )
    await conn.execute(
        "INSERT INTO idempotency_keys (partner_id, key, request_hash, status_code, response_body, referral_id)"
        " VALUES ($1, $2, 'h', 201, 'b', $3)",
        partner_id,
        f"k-{rid}",
        rid,
    )
    return rid


@pytest.fixture
async def world(seeded_db: tuple[str, dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    dsn, creds = seeded_db
    admin = await asyncpg.connect(dsn)
    a, b = creds["partners"][0]["id"], creds["partners"][1]["id"]
    cm = next(c for c in creds["case_managers"] if "south_la" in c["regions"])
    ids = {"a": [await _referral(admin, a), await _referral(admin, a)], "b": [await _referral(admin, b)]}
    aid = uuid.uuid4()
    await admin.execute(
        "INSERT INTO assignments (id, referral_id, case_manager_id, state, respond_by)"
        " VALUES ($1, $2, $3, 'offered', now() + interval '1 hour')",
        aid,
        ids["a"][0],
        cm["id"],
    )
    app = await asyncpg.connect(service_dsn(dsn))
    yield {"app": app, "a": a, "b": b, "ids": ids, "cm": cm, "creds": creds, "dsn": dsn}
    await app.close()
    await admin.close()


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


async def test_service_role_is_not_exempt(world: dict[str, Any]) -> None:
    row = await world["app"].fetchrow(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    )
    assert (row["rolsuper"], row["rolbypassrls"]) == (False, False)


@pytest.mark.parametrize("table", PII_TABLES)
async def test_partner_select_star_returns_only_its_rows(world: dict[str, Any], table: str) -> None:
    conn: asyncpg.Connection = world["app"]
    async with conn.transaction():
        await _as(conn, "partner", partner=world["a"])
        rows = await conn.fetch(f"SELECT * FROM {table}")  # no WHERE clause on purpose
    col = "id" if table == "referrals" else "referral_id"
    assert sorted(str(r[col]) for r in rows) == sorted(world["ids"]["a"])
    assert all(str(r["partner_id"]) == world["a"] for r in rows)


@pytest.mark.parametrize("table", ALL_TABLES)
async def test_no_identity_sees_nothing(world: dict[str, Any], table: str) -> None:
    conn: asyncpg.Connection = world["app"]
    assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_partner_cannot_write_for_another_partner(world: dict[str, Any]) -> None:
    conn: asyncpg.Connection = world["app"]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with conn.transaction():
            await _as(conn, "partner", partner=world["a"])
            await _referral(conn, world["b"])
    async with conn.transaction():
        await _as(conn, "partner", partner=world["a"])
        # Updates of others' rows silently touch nothing.
        done = await conn.execute(
            "UPDATE referrals SET urgency = 'urgent' WHERE id = $1", world["ids"]["b"][0]
        )
    assert done == "UPDATE 0"


async def test_case_manager_sees_only_the_referral_offered_to_them(world: dict[str, Any]) -> None:
    conn: asyncpg.Connection = world["app"]
    async with conn.transaction():
        await _as(conn, "case_manager", actor=world["cm"]["id"], region="south_la")
        refs = [str(r["id"]) for r in await conn.fetch("SELECT * FROM referrals")]
        pii = [str(r["referral_id"]) for r in await conn.fetch("SELECT * FROM referral_pii")]
        keys = await conn.fetch("SELECT * FROM idempotency_keys")
    assert refs == [world["ids"]["a"][0]]
    assert pii == [world["ids"]["a"][0]]
    assert keys == []


@pytest.mark.parametrize("role", ["supervisor", "evaluator", "admin"])
async def test_pii_is_closed_to_supervisors_evaluators_and_admins(world: dict[str, Any], role: str) -> None:
    conn: asyncpg.Connection = world["app"]
    async with conn.transaction():
        await _as(conn, role, actor=str(uuid.uuid4()), region="south_la")
        assert await conn.fetchval("SELECT count(*) FROM referral_pii") == 0
        assert await conn.fetchval("SELECT count(*) FROM referral_keys") == 0
        if role == "admin":
            # Only an explicit break-glass opens it, for this transaction alone.
            await conn.execute("SELECT set_config('app.break_glass', 'on', true)")
            assert await conn.fetchval("SELECT count(*) FROM referral_pii") == 3


async def test_supervisor_sees_their_region_only(world: dict[str, Any]) -> None:
    conn: asyncpg.Connection = world["app"]
    async with conn.transaction():
        await _as(conn, "supervisor", actor=str(uuid.uuid4()), region="san_fernando_valley")
        assert await conn.fetchval("SELECT count(*) FROM referrals") == 0
    async with conn.transaction():
        await _as(conn, "supervisor", actor=str(uuid.uuid4()), region="south_la")
        assert await conn.fetchval("SELECT count(*) FROM referrals") == 3


class _Undo(Exception):
    """Raised to roll a transaction back on purpose."""


async def test_every_supervisor_sees_out_of_area_referrals_and_their_offers(world: dict[str, Any]) -> None:
    # Out of area (no region): no region owns it, so each supervisor sees it (routing facts, the offers
    # and the routing record, never PII) and may write its offer; partners other than its own do not.
    conn: asyncpg.Connection = world["app"]
    admin = await asyncpg.connect(world["dsn"])
    try:
        rid = await _referral(admin, world["b"], region=None)
    finally:
        await admin.close()
    for region in ("south_la", "san_fernando_valley"):
        with pytest.raises(_Undo):
            async with conn.transaction():
                await _as(conn, "supervisor", actor=str(uuid.uuid4()), region=region)
                seen = {str(r["id"]) for r in await conn.fetch("SELECT id FROM referrals")}
                assert rid in seen
                assert await conn.fetchval("SELECT count(*) FROM referral_pii") == 0
                done = await conn.execute("UPDATE referrals SET urgency = 'urgent' WHERE id = $1", rid)
                assert done == "UPDATE 1"
                await conn.execute(
                    "INSERT INTO assignments (id, referral_id, case_manager_id, state, respond_by)"
                    " VALUES ($1, $2, $3, 'offered', now() + interval '1 hour')",
                    uuid.uuid4(),
                    rid,
                    world["cm"]["id"],
                )
                assert (
                    await conn.fetchval("SELECT count(*) FROM assignments WHERE referral_id = $1", rid) == 1
                )
                raise _Undo  # the next region's supervisor finds it as it was
    async with conn.transaction():
        await _as(conn, "partner", partner=world["a"])
        assert await conn.fetchval("SELECT count(*) FROM referrals WHERE id = $1", rid) == 0


async def test_audit_log_is_append_only_for_the_service_role(world: dict[str, Any]) -> None:
    conn: asyncpg.Connection = world["app"]
    async with conn.transaction():
        await _as(conn, "system")
        await conn.execute("INSERT INTO audit_log (actor_role, action) VALUES ('system', 'test')")
    for sql in ("UPDATE audit_log SET action = 'forged'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await _as(conn, "system")
                await conn.execute(sql)
