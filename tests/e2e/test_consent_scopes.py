"""Consent scopes that mean something (contract v1.1), through the running services: a closed list (422),
`share_status_with_referrer` governing the partner's status view and status webhooks, `evaluation`
governing whether a youth appears in evaluation outputs, and a withdrawal removing the youth from every
export made afterwards."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.platform import Platform, referral_body, wait_for
from tests.support.receivers import WebhookReceiver

EVERY = ["case_management", "evaluation", "share_status_with_referrer"]
NO_SHARE = ["case_management", "evaluation"]
NO_EVALUATION = ["case_management", "share_status_with_referrer"]
# Partner indexes in the demo network (South LA partners, so a South LA case manager gets the offers).
FOLLOWS, EXPORTS = 0, 1


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = await WebhookReceiver().start()
    yield r
    await r.stop()


@pytest.fixture(scope="module")
async def env(platform: Platform) -> AsyncIterator[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
        db = await asyncpg.connect(platform.dsn)
        tokens: dict[str, str] = {}
        for person in (*platform.creds["case_managers"], platform.creds["evaluators"][0]):
            r = await client.post(
                "/v1/auth/token", json={"email": person["email"], "password": person["password"]}
            )
            tokens[person["email"]] = r.json()["access_token"]
        try:
            yield {"client": client, "db": db, "platform": platform, "tokens": tokens}
        finally:
            await db.close()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _refer(env: dict[str, Any], partner: int, scope: list[str]) -> str:
    body = referral_body()
    body["consent"]["scope"] = scope
    r = await env["client"].post(
        "/v1/referrals", json=body, headers=_auth(env["platform"].partner_key(partner))
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _take(env: dict[str, Any], rid: str) -> str:
    """The offered case manager accepts and records first contact; returns their token."""

    async def offered() -> tuple[str, str] | None:
        row = await env["db"].fetchrow(
            "SELECT a.id, s.email FROM assignments a JOIN staff s ON s.id = a.case_manager_id"
            " WHERE a.referral_id = $1 AND a.state = 'offered'",
            rid,
        )
        return (str(row["id"]), row["email"]) if row else None

    aid, email = await wait_for(offered, timeout=20)
    token: str = env["tokens"][email]
    client: httpx.AsyncClient = env["client"]
    assert (await client.post(f"/v1/assignments/{aid}/accept", headers=_auth(token))).status_code == 200
    r = await client.post(f"/v1/referrals/{rid}/contact", json={}, headers=_auth(token))
    assert r.status_code in (200, 201), r.text
    return token


async def _view(env: dict[str, Any], rid: str, partner: int = FOLLOWS) -> dict[str, Any]:
    r = await env["client"].get(f"/v1/referrals/{rid}", headers=_auth(env["platform"].partner_key(partner)))
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def _listed(env: dict[str, Any], status: str) -> set[str]:
    r = await env["client"].get(
        f"/v1/referrals?status={status}&limit=100", headers=_auth(env["platform"].partner_key(FOLLOWS))
    )
    assert r.status_code == 200, r.text
    return {item["id"] for item in r.json()["items"]}


async def _status_webhooks(receiver: WebhookReceiver, rid: str) -> list[str]:
    out = []
    for got in receiver.received.get("/follows", []):
        body = json.loads(got.body)
        if body["type"] == "referral.status_changed" and body["data"]["referral_id"] == rid:
            out.append(body["data"]["status"])
    return out


async def test_an_unknown_scope_is_refused_naming_each(env: dict[str, Any]) -> None:
    client: httpx.AsyncClient = env["client"]
    before = await env["db"].fetchval("SELECT count(*) FROM referrals")
    body = referral_body()
    body["consent"]["scope"] = ["case_management", "research", "evaluation", "marketing"]
    r = await client.post("/v1/referrals", json=body, headers=_auth(env["platform"].partner_key(FOLLOWS)))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    fields = [e["field"] for e in r.json()["errors"]]
    assert fields == ["consent.scope[1]", "consent.scope[3]"]
    # Without the required scope too: every offending field at once.
    body["consent"]["scope"] = ["share_status_with_referrer", "research"]
    r = await client.post("/v1/referrals", json=body, headers=_auth(env["platform"].partner_key(FOLLOWS)))
    assert r.status_code == 422, r.text
    assert {e["field"] for e in r.json()["errors"]} == {"consent.scope", "consent.scope[1]"}
    assert await env["db"].fetchval("SELECT count(*) FROM referrals") == before


async def test_the_referrer_follows_the_case_only_with_share_status(
    env: dict[str, Any], receiver: WebhookReceiver
) -> None:
    client: httpx.AsyncClient = env["client"]
    key = env["platform"].partner_key(FOLLOWS)
    r = await client.post(
        "/v1/webhooks",
        json={"url": receiver.script("/follows"), "events": ["referral.status_changed"]},
        headers=_auth(key),
    )
    assert r.status_code == 201, r.text
    # The youth who did not let the referrer follow the case goes first, so that by the time the other
    # youth's last webhook arrived, notify had long handled every change of the first.
    private = await _refer(env, FOLLOWS, NO_SHARE)
    await _take(env, private)
    shared = await _refer(env, FOLLOWS, EVERY)
    shared_cm = await _take(env, shared)

    async def all_three() -> list[str] | None:
        got = await _status_webhooks(receiver, shared)
        return got if len(got) >= 3 else None

    assert await wait_for(all_three, timeout=30) == ["assigned", "accepted", "engaged"]
    assert await _status_webhooks(receiver, private) == []
    assert not await env["db"].fetchval(
        "SELECT count(*) FROM deliveries WHERE referral_id = $1 AND channel = 'webhook'", private
    ), "no status webhook was even queued for the youth who did not consent to it"

    # The status view: the case as it stands with the scope, "received" and nothing more without it.
    followed = await _view(env, shared)
    assert followed["status"] == "engaged"
    assert followed["assigned_at"] and followed["accepted_at"] and followed["engaged_at"]
    hidden = await _view(env, private)
    assert hidden["status"] == "received"
    assert hidden["updated_at"] == hidden["received_at"]
    for name in ("assigned_at", "accepted_at", "engaged_at", "closed_at", "close_reason", "outcome"):
        assert hidden.get(name) is None, name
    # Lists and their status filter show the same: the filter never reveals what the view hides.
    assert private in await _listed(env, "received") and private not in await _listed(env, "engaged")
    assert shared in await _listed(env, "engaged") and shared not in await _listed(env, "received")
    # Staff see the case as it is.
    assert await env["db"].fetchval("SELECT status FROM referrals WHERE id = $1", private) == "engaged"

    # The youth withdraws consent mid-case: the case goes on without identifying data, the referrer is
    # told it was withdrawn and nothing more, and closing it sends no webhook.
    r = await client.post(f"/v1/referrals/{shared}/consent/withdraw", headers=_auth(key))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "withdrawn" and r.json().get("engaged_at") is None
    assert (await _view(env, shared))["status"] == "withdrawn"
    assert await env["db"].fetchval("SELECT status FROM referrals WHERE id = $1", shared) == "engaged"
    r = await client.post(
        f"/v1/referrals/{shared}/close", json={"reason": "goals_met"}, headers=_auth(shared_cm)
    )
    assert r.status_code == 200, r.text
    assert (await _view(env, shared))["status"] == "withdrawn"
    # A later referral's first webhook arrives after notify handled the close (published before it).
    sentinel = await _refer(env, FOLLOWS, EVERY)

    async def sentinel_assigned() -> list[str] | None:
        return await _status_webhooks(receiver, sentinel) or None

    await wait_for(sentinel_assigned, timeout=30)
    assert await _status_webhooks(receiver, shared) == ["assigned", "accepted", "engaged"]
    assert (
        await env["db"].fetchval(
            "SELECT count(*) FROM deliveries WHERE referral_id = $1 AND channel = 'webhook'", shared
        )
        == 3
    )


async def test_evaluation_outputs_follow_the_evaluation_scope(env: dict[str, Any]) -> None:
    client: httpx.AsyncClient = env["client"]
    evaluator = _auth(env["tokens"][env["platform"].creds["evaluators"][0]["email"]])

    async def exported() -> int:
        r = await client.get("/v1/evaluation/export?format=json", headers=evaluator)
        assert r.status_code == 200, r.text
        return len(r.json()["rows"])

    start = await exported()
    await _refer(env, EXPORTS, NO_EVALUATION)
    assert await exported() == start, "a youth who did not consent to evaluation is in no export"
    await _refer(env, EXPORTS, EVERY)
    leaving = await _refer(env, EXPORTS, NO_SHARE)
    assert await exported() == start + 2
    r = await client.post(
        f"/v1/referrals/{leaving}/consent/withdraw", headers=_auth(env["platform"].partner_key(EXPORTS))
    )
    assert r.status_code == 200, r.text
    assert await exported() == start + 1, "a withdrawn youth is in no export made afterwards"
    csv_rows = (await client.get("/v1/evaluation/export?format=csv", headers=evaluator)).text.splitlines()
    assert len(csv_rows) == 1 + start + 1
    report = await client.get("/v1/evaluation/report", headers=evaluator)
    assert report.status_code == 200, report.text
