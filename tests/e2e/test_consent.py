"""Consent withdrawal and expiry: PII becomes unrecoverable, the referral stops, nothing leaks afterwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from shared.crypto import KeyRing, Sealed
from tests.support.platform import Platform, referral_body, wait_for


async def _post(client: httpx.AsyncClient, key: str, body: dict[str, Any] | None = None) -> str:
    r = await client.post(
        "/v1/referrals", json=body or referral_body(), headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _status(conn: asyncpg.Connection, rid: str) -> str:
    return str(await conn.fetchval("SELECT status FROM referrals WHERE id = $1", rid))


@pytest.fixture
async def conn(platform: Platform) -> Any:
    c = await asyncpg.connect(platform.dsn)
    yield c
    await c.close()


async def test_partner_withdrawal_shreds_pii_and_cancels_the_offer(
    platform: Platform, conn: asyncpg.Connection
) -> None:
    key = platform.partner_key(4)
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
        rid = await _post(client, key)
        await wait_for(lambda: _is(conn, rid, "assigned"))
        offer = await conn.fetchrow("SELECT id, case_manager_id FROM assignments WHERE referral_id = $1", rid)
        assert offer is not None
        load_before = await conn.fetchval(
            "SELECT active_count FROM case_managers WHERE staff_id = $1", offer["case_manager_id"]
        )
        sealed_row = await conn.fetchrow(
            "SELECT p.nonce, p.ciphertext, k.key_id, k.wrapped_key FROM referral_pii p JOIN referral_keys k"
            " USING (referral_id) WHERE referral_id = $1",
            rid,
        )
        assert sealed_row is not None
        # The keyed hash of name and date of birth that links a youth's referrals (routing continuity).
        assert await conn.fetchval("SELECT youth_key IS NOT NULL FROM referrals WHERE id = $1", rid)

        # Another partner cannot withdraw it (and learns nothing about it).
        other = await client.post(
            f"/v1/referrals/{rid}/consent/withdraw",
            headers={"Authorization": f"Bearer {platform.partner_key(5)}"},
        )
        assert other.status_code == 404
        r = await client.post(
            f"/v1/referrals/{rid}/consent/withdraw", headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "withdrawn"
        again = await client.post(
            f"/v1/referrals/{rid}/consent/withdraw", headers={"Authorization": f"Bearer {key}"}
        )
        assert again.status_code == 409

    # The ciphertext remains but the data key is gone: no key in the system can open it any more.
    assert await conn.fetchval("SELECT count(*) FROM referral_keys WHERE referral_id = $1", rid) == 0
    assert await conn.fetchval("SELECT count(*) FROM referral_pii WHERE referral_id = $1", rid) == 1
    assert await conn.fetchval("SELECT pii_shredded_at IS NOT NULL FROM referrals WHERE id = $1", rid)
    # Nothing derived from the PII survives it: a later referral of this youth cannot be linked to this one.
    assert await conn.fetchval("SELECT youth_key FROM referrals WHERE id = $1", rid) is None
    ring = KeyRing({"k1": platform.env["REFNET_PII_MASTER_KEY"]}, "k1")
    sealed = Sealed(
        sealed_row["key_id"],
        bytes(sealed_row["wrapped_key"]),
        bytes(sealed_row["nonce"]),
        bytes(sealed_row["ciphertext"]),
    )
    assert ring.open(sealed, rid.encode())  # it opened before, with the key row that is now deleted
    # Routing cancels the live offer and frees the case manager's capacity.
    await wait_for(lambda: _offer_state(conn, offer["id"], "cancelled"))
    assert (
        await conn.fetchval(
            "SELECT active_count FROM case_managers WHERE staff_id = $1", offer["case_manager_id"]
        )
        == load_before - 1
    )
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'pii.shred' AND target_id = $1", rid
        )
        == 1
    )
    # Withdrawn referrals never go back to routing.
    assert await _status(conn, rid) == "withdrawn"


async def test_case_manager_withdrawal_and_details_afterwards(
    platform: Platform, conn: asyncpg.Connection
) -> None:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
        rid = await _post(client, platform.partner_key(6))
        await wait_for(lambda: _is(conn, rid, "assigned"))
        cm_id = str(
            await conn.fetchval("SELECT case_manager_id FROM assignments WHERE referral_id = $1", rid)
        )
        cm = next(c for c in platform.creds["case_managers"] if c["id"] == cm_id)
        auth = {"Authorization": f"Bearer {platform.staff_token(cm)}"}
        details = await client.get(f"/v1/referrals/{rid}/details", headers=auth)
        assert details.status_code == 200
        assert details.json()["youth"]["first_name"] == referral_body()["youth"]["first_name"]
        r = await client.post(f"/v1/referrals/{rid}/consent/withdraw", headers=auth)
        assert r.status_code == 200, r.text
        gone = await client.get(f"/v1/referrals/{rid}/details", headers=auth)
        assert gone.status_code in (404, 410)
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'pii.read' AND target_id = $1", rid
        )
        == 1
    )


async def test_expired_consent_is_treated_as_withdrawn(platform: Platform, conn: asyncpg.Connection) -> None:
    body = referral_body()
    body["consent"]["expires_at"] = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
        rid = await _post(client, platform.partner_key(7), body)
    await wait_for(lambda: _is(conn, rid, "withdrawn"), timeout=20)
    assert await conn.fetchval("SELECT count(*) FROM referral_keys WHERE referral_id = $1", rid) == 0
    assert await conn.fetchval("SELECT withdrawn_by FROM consents WHERE referral_id = $1", rid) == "expiry"
    assert await conn.fetchval("SELECT youth_key FROM referrals WHERE id = $1", rid) is None


async def _is(conn: asyncpg.Connection, rid: str, status: str) -> bool:
    return await _status(conn, rid) == status


async def _offer_state(conn: asyncpg.Connection, aid: Any, state: str) -> bool:
    return bool(await conn.fetchval("SELECT state FROM assignments WHERE id = $1", aid) == state)
