"""Staff-written text about a youth is sealed with the referral's data key (issue 14, finding 5): a decline's
words and a break-glass reason never sit in plaintext (assignments, audit log), the audit row names the
note by id, the words open with the referral's key, and they are gone with it after the shred."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from services.intake.cases import notes
from services.intake.core.keys import Keys
from tests.support.platform import TEST_SECRETS, Platform, referral_body, wait_for

MARK = "Zzyzxname"


@pytest.fixture
async def db(platform: Platform) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(platform.dsn)
    yield conn
    await conn.close()


def _keys() -> Keys:
    return Keys("", TEST_SECRETS["REFNET_PII_MASTER_KEY"], "k1")


async def _plaintext_anywhere(db: asyncpg.Connection) -> list[str]:
    """Rows that hold the marker in plaintext, in the tables staff text used to reach."""
    found = []
    if await db.fetchval("SELECT count(*) FROM assignments WHERE decline_reason LIKE $1", f"%{MARK}%"):
        found.append("assignments.decline_reason")
    if await db.fetchval("SELECT count(*) FROM audit_log WHERE detail::text LIKE $1", f"%{MARK}%"):
        found.append("audit_log.detail")
    if await db.fetchval("SELECT count(*) FROM routing_decisions WHERE reason LIKE $1", f"%{MARK}%"):
        found.append("routing_decisions.reason")
    if await db.fetchval(
        "SELECT count(*) FROM referral_notes WHERE position($1::bytea IN ciphertext) > 0", MARK.encode()
    ):
        found.append("referral_notes.ciphertext")
    return found


async def test_decline_words_and_break_glass_reason_are_sealed_and_shredded(
    platform: Platform, db: asyncpg.Connection
) -> None:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
        partner = {"Authorization": f"Bearer {platform.partner_key(0)}"}
        rid = (await client.post("/v1/referrals", json=referral_body(), headers=partner)).json()["id"]
        offer = await wait_for(
            lambda: db.fetchrow(
                "SELECT id, case_manager_id FROM assignments WHERE referral_id = $1 AND state = 'offered'",
                rid,
            ),
            timeout=20,
        )
        person = next(p for p in platform.creds["case_managers"] if p["id"] == str(offer["case_manager_id"]))
        cm = {"Authorization": f"Bearer {platform.staff_token(person)}"}
        words = f"I know {MARK}'s family personally"
        r = await client.post(
            f"/v1/assignments/{offer['id']}/decline", json={"reason": f"conflict: {words}"}, headers=cm
        )
        assert r.status_code == 200, r.text
        row = await db.fetchrow(
            "SELECT decline_reason, decline_note_id FROM assignments WHERE id = $1", offer["id"]
        )
        assert row is not None and row["decline_reason"] == "conflict" and row["decline_note_id"] is not None

        admin = {"Authorization": f"Bearer {platform.staff_token(platform.creds['admins'][0])}"}
        reason = f"Ticket 4411: {MARK} missing since Friday"
        r = await client.post(
            f"/v1/admin/referrals/{rid}/break-glass", json={"reason": reason}, headers=admin
        )
        assert r.status_code == 200, r.text
        audited = await db.fetchval(
            "SELECT detail->>'reason_note_id' FROM audit_log WHERE action = 'pii.break_glass' AND target_id = $1",
            rid,
        )
        assert audited is not None
        # A manual assignment's reason: sealed too; routing (and the bus) see only the note's id.
        other = next(
            p
            for p in platform.creds["case_managers"]
            if p["id"] != str(offer["case_manager_id"]) and "south_la" in p["regions"]
        )
        r = await client.post(
            f"/v1/admin/referrals/{rid}/assign",
            json={"case_manager_id": other["id"], "reason": f"{MARK} trusts her from the shelter"},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        explained = await client.get(f"/v1/referrals/{rid}/routing", headers=admin)
        assert f"{MARK} trusts her from the shelter" in explained.text
        assert await _plaintext_anywhere(db) == []

        # The words open with the referral's data key ...
        keys = _keys()
        async with db.transaction():
            await db.execute("SELECT set_config('app.role', 'system', true)")
            assert await notes.open_note(db, keys, str(row["decline_note_id"])) == words
            assert await notes.open_note(db, keys, audited) == reason

        # ... and are gone with it: the partner withdraws consent, the details are shredded.
        r = await client.post(f"/v1/referrals/{rid}/consent/withdraw", json={}, headers=partner)
        assert r.status_code in (200, 202, 204), r.text
        await wait_for(
            lambda: db.fetchval("SELECT pii_shredded_at IS NOT NULL FROM referrals WHERE id = $1", rid),
            timeout=20,
        )
        async with db.transaction():
            await db.execute("SELECT set_config('app.role', 'system', true)")
            assert await notes.open_note(db, keys, str(row["decline_note_id"])) is None
            assert await notes.open_note(db, keys, audited) is None
        explained = await client.get(f"/v1/referrals/{rid}/routing", headers=admin)
        assert explained.status_code == 200 and MARK not in explained.text
        assert "destroyed with the youth's details" in explained.text


def test_decline_reasons_split_into_code_and_words() -> None:
    assert notes.split_reason("conflict: I know the family") == ("conflict", "I know the family")
    assert notes.split_reason("capacity") == ("capacity", "")
    assert notes.split_reason("caseload full") == ("other", "caseload full")
    assert notes.split_reason("needsy: x") == ("other", "needsy: x")
