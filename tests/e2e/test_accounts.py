"""Accounts over real HTTP (issue 14, findings 4, 6 and 7): one-time passwords and the forced change,
deactivation that ends every token and web session at once (also through the roster's "inactive"),
password resets, partners created and deactivated, partner users scoped to their partner, sign-in that
answers alike for known and unknown emails and throttles per email and address, and a rate limit that
a fresh random credential per request does not escape.

Client addresses are set with X-Forwarded-For, which uvicorn honours from loopback (its default
FORWARDED_ALLOW_IPS), so one test can play an attacker elsewhere and the person at their desk.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.platform import Platform, referral_body

PROBLEM_JSON = "application/problem+json"
NEW_PASSWORD = "a-long-enough-new-password"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def at(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def email() -> str:
    return f"acct-{secrets.token_hex(5)}@staff.refnet.local"


@pytest.fixture(scope="module")
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
async def db(platform: Platform) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(platform.dsn)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
def admin(platform: Platform) -> dict[str, str]:
    return auth(platform.staff_token(platform.creds["admins"][0]))


async def sign_in(
    client: httpx.AsyncClient, who: str, password: str, address: str = "10.1.0.1"
) -> httpx.Response:
    return await client.post("/v1/auth/token", json={"email": who, "password": password}, headers=at(address))


async def create(client: httpx.AsyncClient, admin: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/admin/staff", json=body, headers=admin)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    assert made["active"] is True and len(made["password"]) >= 12
    return made


async def first_sign_in(client: httpx.AsyncClient, who: str, once: str) -> str:
    """Sign in with a one-time password, change it; return a token under the new one."""
    r = await sign_in(client, who, once)
    assert r.status_code == 200, r.text
    assert r.json()["password_change_required"] is True
    changed = await client.post(
        "/v1/auth/password",
        json={"current_password": once, "new_password": NEW_PASSWORD},
        headers=auth(r.json()["access_token"]),
    )
    assert changed.status_code == 204, changed.text
    r = await sign_in(client, who, NEW_PASSWORD)
    assert r.status_code == 200 and r.json()["password_change_required"] is False
    return str(r.json()["access_token"])


def same_answer(a: httpx.Response, b: httpx.Response) -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.content == b.content
    assert a.headers["content-type"] == b.headers["content-type"] == PROBLEM_JSON
    assert a.headers.get("www-authenticate") == b.headers.get("www-authenticate")


# --------------------------------------------------------------------------- one-time passwords


async def test_one_time_password_allows_only_the_change(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    who = email()
    made = await create(client, admin, email=who, name="Ona Tim", role="evaluator")
    r = await sign_in(client, who, made["password"])
    assert r.status_code == 200 and r.json()["password_change_required"] is True
    once_token = auth(r.json()["access_token"])
    refused = await client.get("/v1/notifications", headers=once_token)
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/password-change-required")
    # The web app sends the person to the password page instead.
    web = await client.get("/app/evaluation", headers=once_token)
    assert web.status_code == 303 and web.headers["location"].startswith("/app/password")
    short = await client.post(
        "/v1/auth/password",
        json={"current_password": made["password"], "new_password": "short-11chr"},
        headers=once_token,
    )
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "new_password"
    wrong = await client.post(
        "/v1/auth/password",
        json={"current_password": "not-the-one-time-one", "new_password": NEW_PASSWORD},
        headers=once_token,
    )
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "current_password"
    ok = await client.post(
        "/v1/auth/password",
        json={"current_password": made["password"], "new_password": NEW_PASSWORD},
        headers=once_token,
    )
    assert ok.status_code == 204, ok.text
    # The one-time token dies with the one-time password; the new password signs in normally.
    assert (await client.get("/v1/notifications", headers=once_token)).status_code == 401
    assert (await sign_in(client, who, made["password"])).status_code == 401
    token = await first_sign_in_done(client, who)
    assert (await client.get("/v1/notifications", headers=auth(token))).status_code == 200


async def first_sign_in_done(client: httpx.AsyncClient, who: str) -> str:
    r = await sign_in(client, who, NEW_PASSWORD)
    assert r.status_code == 200 and r.json()["password_change_required"] is False
    return str(r.json()["access_token"])


# --------------------------------------------------------------------------- deactivation (finding 4)


async def test_deactivation_ends_tokens_and_web_sessions_at_once(
    client: httpx.AsyncClient, admin: dict[str, str], db: asyncpg.Connection
) -> None:
    who = email()
    made = await create(
        client, admin, email=who, name="Dee Activated", role="case_manager", regions=["south_la"]
    )
    token = await first_sign_in(client, who, made["password"])
    assert (await client.get("/v1/assignments", headers=auth(token))).status_code == 200
    cookies = {"Cookie": f"refnet_session={token}"}
    assert (await client.get("/app/inbox", headers=cookies)).status_code == 200

    r = await client.patch(f"/v1/admin/staff/{made['id']}", json={"active": False}, headers=admin)
    assert r.status_code == 200 and r.json()["active"] is False
    assert (await client.get("/v1/assignments", headers=auth(token))).status_code == 401
    page = await client.get("/app/inbox", headers=cookies)
    assert page.status_code in (401, 303) and "Zzyzx" not in page.text
    # Signing in answers exactly as for a wrong password.
    right = await sign_in(client, who, NEW_PASSWORD, "10.1.0.2")
    wrong = await sign_in(client, who, "not-the-password", "10.1.0.3")
    same_answer(right, wrong)
    assert right.status_code == 401
    # A deactivated case manager leaves routing.
    assert await db.fetchval("SELECT status FROM case_managers WHERE staff_id = $1", made["id"]) == "inactive"

    r = await client.patch(f"/v1/admin/staff/{made['id']}", json={"active": True}, headers=admin)
    assert r.status_code == 200 and r.json()["active"] is True
    # Back at work with the same password; the tokens from before stay dead.
    assert (await sign_in(client, who, NEW_PASSWORD, "10.1.0.4")).status_code == 200
    assert (await client.get("/v1/assignments", headers=auth(token))).status_code == 401
    actions = [
        r["action"]
        for r in await db.fetch("SELECT action FROM audit_log WHERE target_id = $1 ORDER BY id", made["id"])
    ]
    assert {"staff.create", "staff.deactivate", "staff.reactivate", "auth.password_changed"} <= set(actions)


async def test_roster_inactive_is_deactivation(
    client: httpx.AsyncClient, platform: Platform, admin: dict[str, str]
) -> None:
    person = platform.creds["case_managers"][-1]
    token = platform.staff_token(person)
    assert (await client.get("/v1/assignments", headers=auth(token))).status_code == 200
    r = await client.patch(
        f"/v1/admin/case-managers/{person['id']}", json={"status": "inactive"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert (await client.get("/v1/assignments", headers=auth(token))).status_code == 401
    assert (await sign_in(client, person["email"], person["password"], "10.2.0.1")).status_code == 401
    listed = (await client.get("/v1/admin/staff", headers=admin)).json()["items"]
    assert next(a for a in listed if a["id"] == person["id"])["active"] is False
    r = await client.patch(
        f"/v1/admin/case-managers/{person['id']}", json={"status": "active"}, headers=admin
    )
    assert r.status_code == 200
    assert (await sign_in(client, person["email"], person["password"], "10.2.0.2")).status_code == 200


async def test_reset_password_is_one_time_and_ends_old_tokens(
    client: httpx.AsyncClient, platform: Platform, admin: dict[str, str]
) -> None:
    who = email()
    made = await create(client, admin, email=who, role="supervisor", regions=["san_fernando_valley"])
    token = await first_sign_in(client, who, made["password"])
    r = await client.post(f"/v1/admin/staff/{made['id']}/reset-password", headers=admin)
    assert r.status_code == 200, r.text
    once = r.json()["password"]
    assert (await client.get("/v1/notifications", headers=auth(token))).status_code == 401
    assert (await sign_in(client, who, NEW_PASSWORD, "10.3.0.1")).status_code == 401
    again = await sign_in(client, who, once, "10.3.0.2")
    assert again.status_code == 200 and again.json()["password_change_required"] is True
    missing = await client.post(f"/v1/admin/staff/{uuid.uuid4()}/reset-password", headers=admin)
    assert missing.status_code == 404


async def test_staff_admin_refuses_bad_bodies_and_non_admins(
    client: httpx.AsyncClient, platform: Platform, admin: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/admin/staff",
        json={"email": email(), "name": "X", "role": "partner_user", "regions": ["atlantis"]},
        headers=admin,
    )
    assert r.status_code == 422, r.text
    assert {e["field"] for e in r.json()["errors"]} >= {"regions", "partner_id"}
    r = await client.post("/v1/admin/staff", json={"email": "x", "role": "wizard"}, headers=admin)
    assert r.status_code == 422
    taken = platform.creds["admins"][0]["email"].upper()
    r = await client.post(
        "/v1/admin/staff", json={"email": taken, "name": "Dup", "role": "admin"}, headers=admin
    )
    assert r.status_code == 409
    supervisor = auth(platform.staff_token(platform.creds["supervisors"][0]))
    for call in (
        client.get("/v1/admin/staff", headers=supervisor),
        client.post(
            "/v1/admin/staff", json={"email": email(), "name": "Y", "role": "admin"}, headers=supervisor
        ),
        client.patch(
            f"/v1/admin/staff/{platform.creds['admins'][0]['id']}", json={"active": False}, headers=supervisor
        ),
        client.post("/v1/admin/partners", json={"name": "Nope"}, headers=supervisor),
    ):
        assert (await call).status_code == 403
    me = platform.creds["admins"][0]["id"]
    assert (
        await client.patch(f"/v1/admin/staff/{me}", json={"active": False}, headers=admin)
    ).status_code == 409


# --------------------------------------------------------------------------- partners and partner users


async def test_partner_lifecycle_and_partner_users(
    client: httpx.AsyncClient, platform: Platform, admin: dict[str, str], db: asyncpg.Connection
) -> None:
    name = f"Harbor Youth Collective {secrets.token_hex(3)}"
    r = await client.post("/v1/admin/partners", json={"name": name}, headers=admin)
    assert r.status_code == 201, r.text
    partner = r.json()
    key = auth(partner["api_key"])
    assert (await client.get("/v1/referrals", headers=key)).status_code == 200
    assert (await client.post("/v1/admin/partners", json={"name": name}, headers=admin)).status_code == 409

    who = email()
    made = await create(
        client, admin, email=who, name="Rita Referrer", role="partner_user", partner_id=partner["id"]
    )
    user = auth(await first_sign_in(client, who, made["password"]))
    sent = await client.post("/v1/referrals", json=referral_body(), headers=user)
    assert sent.status_code == 201, sent.text
    rid = sent.json()["id"]
    # Scoped to their partner: the key sees the user's referral, another partner's does not.
    assert (await client.get(f"/v1/referrals/{rid}", headers=key)).status_code == 200
    assert (await client.get(f"/v1/referrals/{rid}", headers=user)).status_code == 200
    assert (
        await client.get(f"/v1/referrals/{rid}", headers=auth(platform.partner_key(0)))
    ).status_code == 404
    other = await client.post("/v1/referrals", json=referral_body(), headers=auth(platform.partner_key(0)))
    assert (await client.get(f"/v1/referrals/{other.json()['id']}", headers=user)).status_code == 404
    listed = (await client.get("/v1/referrals", headers=user)).json()
    assert [i["id"] for i in listed["items"]] == [rid]
    # Staff endpoints stay closed to them.
    assert (await client.get("/v1/assignments", headers=user)).status_code == 403
    # The audit log names the person, not only the partner.
    actors = {
        r["actor_id"] for r in await db.fetch("SELECT actor_id FROM audit_log WHERE target_id = $1", rid)
    }
    assert made["id"] in actors

    r = await client.patch(f"/v1/admin/partners/{partner['id']}", json={"active": False}, headers=admin)
    assert r.status_code == 200 and r.json()["active"] is False
    assert (await client.get("/v1/referrals", headers=key)).status_code == 401
    assert (await client.get("/v1/referrals", headers=user)).status_code == 401
    assert (await sign_in(client, who, NEW_PASSWORD, "10.4.0.1")).status_code == 401
    # A deactivated partner gets no new users either.
    r = await client.post(
        "/v1/admin/staff",
        json={"email": email(), "role": "partner_user", "partner_id": partner["id"]},
        headers=admin,
    )
    assert r.status_code == 422
    r = await client.patch(f"/v1/admin/partners/{partner['id']}", json={"active": True}, headers=admin)
    assert r.status_code == 200 and r.json()["active"] is True
    assert (await client.get("/v1/referrals", headers=key)).status_code == 200
    audited = {
        r["action"]
        for r in await db.fetch("SELECT action FROM audit_log WHERE target_id = $1", partner["id"])
    }
    assert {"partner.create", "partner.deactivate", "partner.reactivate"} <= audited


# --------------------------------------------------------------------------- sign-in (finding 6)


async def test_sign_in_answers_and_throttles_alike_and_by_address(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    who = email()
    made = await create(client, admin, email=who, role="evaluator")
    await first_sign_in(client, who, made["password"])
    nobody = email()
    attacker = "203.0.113.66"
    known = [await sign_in(client, who, f"guess-{i}", attacker) for i in range(6)]
    unknown = [await sign_in(client, nobody, f"guess-{i}", attacker) for i in range(6)]
    # Status, body and headers alike at every step, for the real account and the made-up one.
    for k, u in zip(known, unknown, strict=True):
        same_answer(k, u)
    assert [r.status_code for r in known] == [401] * 5 + [429]
    assert known[-1].headers["retry-after"] == unknown[-1].headers["retry-after"]
    # Locked out from the attacker's address, even with the right password...
    assert (await sign_in(client, who, NEW_PASSWORD, attacker)).status_code == 429
    # ... but the person at their own desk signs in.
    assert (await sign_in(client, who, NEW_PASSWORD, "198.51.100.7")).status_code == 200


# --------------------------------------------------------------------------- rate limit (finding 7)


async def test_random_bearers_do_not_escape_the_rate_limit(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    """Each request with a fresh made-up credential used to get a bucket of its own (700 of 700 went
    through); now they all spend the client address's bucket (burst: half the per-minute limit)."""
    key = auth(platform.partner_key(1))
    assert (await client.get("/v1/referrals", headers={**key, **at("192.0.2.1")})).status_code == 200
    statuses = []
    for _ in range(700):
        r = await client.get(
            "/v1/referrals", headers={**auth("rnk_" + secrets.token_urlsafe(32)), **at("192.0.2.99")}
        )
        statuses.append(r.status_code)
    # The burst is 600 and the bucket refills while the loop runs: well over 50 of the 700 are refused.
    assert statuses.count(429) >= 50, statuses.count(429)
    # A partner (known to authentication) from the same address spends its own identity's bucket.
    assert (await client.get("/v1/referrals", headers={**key, **at("192.0.2.99")})).status_code == 200
