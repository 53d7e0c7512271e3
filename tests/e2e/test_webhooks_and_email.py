"""End to end, the three services as processes: partners' webhooks (registration, signing, rotation,
deletion, dead letters and admin replay) against a real HTTP receiver, and email through a real SMTP server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from refnet_dev.embedded import EmbeddedPostgres
from tests.conftest import SEEDED_TEMPLATE, clone_database
from tests.support.platform import Platform, referral_body, running_platform, wait_for
from tests.support.receivers import Reply, SmtpSink, WebhookReceiver, verify_standard_webhook

# Partner indexes in the demo network, one per test so their endpoints do not see each other's events.
REGISTER, FLOW, ROTATE, DELETE, DEAD, GONE = 5, 0, 1, 2, 3, 4
PII = ("Zyxwandra", "Quellmorrow", "323-555-0199", "90011", "Vermont Ave", "prefers text")


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = await WebhookReceiver().start()
    yield r
    await r.stop()


@pytest.fixture(scope="module")
def plat(
    pg_server: EmbeddedPostgres,
    seeded_template: dict[str, Any],
    smtp: SmtpSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    dsn = asyncio.run(clone_database(pg_server, "w", SEEDED_TEMPLATE))
    env = {
        "REFNET_SMTP_HOST": "127.0.0.1",
        "REFNET_SMTP_PORT": str(smtp.port),
        "REFNET_SMTP_STARTTLS": "false",
        "REFNET_DELIVERY_RETRY_SCHEDULE": "0.2,0.3,0.3",
        "REFNET_DELIVERY_RETRY_JITTER": "0",
        "REFNET_DELIVERY_POLL_SECONDS": "0.3",
        "REFNET_WEBHOOK_TIMEOUT_SECONDS": "5",
        "REFNET_BASE_URL": "https://refnet.example",
    }
    with running_platform(dsn, tmp_path_factory.mktemp("webhooks"), seeded_template, extra_env=env) as p:
        yield p


async def _token(plat: Platform, person: dict[str, Any]) -> str:
    # Platform.staff_token blocks; off the event loop, where the webhook receiver must keep answering.
    return await asyncio.to_thread(plat.staff_token, person)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def client(plat: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=plat.base_url, timeout=10) as c:
        yield c


async def _register(client: httpx.AsyncClient, key: str, url: str) -> dict[str, Any]:
    r = await client.post(
        "/v1/webhooks", json={"url": url, "events": ["referral.status_changed"]}, headers=_auth(key)
    )
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    assert r.headers["location"] == f"/v1/webhooks/{doc['id']}"
    return doc


async def _arrivals(receiver: WebhookReceiver, path: str, n: int) -> list[Any]:
    async def enough() -> list[Any] | None:
        got = receiver.received.get(path, [])
        return list(got) if len(got) >= n else None

    result: list[Any] = await wait_for(enough, timeout=20)
    return result


async def test_registration_verifies_with_a_signed_test_event(
    plat: Platform, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    key = plat.partner_key(REGISTER)
    hook = await _register(client, key, receiver.script("/register"))
    assert hook["secret"].startswith("whsec_")
    assert hook["events"] == ["referral.status_changed"]
    (test,) = await _arrivals(receiver, "/register", 1)
    assert verify_standard_webhook(hook["secret"], test.headers, test.body)
    body = json.loads(test.body)
    assert body["type"] == "webhook.test"
    assert body["data"] == {"endpoint_id": hook["id"]}

    async def verified() -> dict[str, Any] | None:
        doc: dict[str, Any] = (await client.get(f"/v1/webhooks/{hook['id']}", headers=_auth(key))).json()
        return doc if doc["verified_at"] else None

    view = await wait_for(verified)
    assert "secret" not in view, "the secret is shown once"
    listing = (await client.get("/v1/webhooks", headers=_auth(key))).json()
    assert [h["id"] for h in listing["items"]] == [hook["id"]]
    assert all("secret" not in h for h in listing["items"])
    log = (await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=_auth(key))).json()
    assert [(d["type"], d["state"], d["webhook_id"]) for d in log["items"]] == [
        ("webhook.test", "delivered", test.headers["webhook-id"])
    ]

    # Another partner cannot see it; staff cannot use partner endpoints.
    assert (
        await client.get(f"/v1/webhooks/{hook['id']}", headers=_auth(plat.partner_key(8)))
    ).status_code == 404
    admin = await _token(plat, plat.creds["admins"][0])
    assert (await client.get("/v1/webhooks", headers=_auth(admin))).status_code == 403
    assert (await client.get("/v1/webhooks")).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://10.1.2.3/hook", "events": ["referral.status_changed"]}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data/", "events": ["referral.status_changed"]}, "url"),
        ({"url": "http://[::ffff:192.168.0.1]/", "events": ["referral.status_changed"]}, "url"),
        ({"url": "http://0.0.0.0:8000/", "events": ["referral.status_changed"]}, "url"),
        ({"url": "ftp://example.com/", "events": ["referral.status_changed"]}, "url"),
        ({"url": "https://u:p@example.com/", "events": ["referral.status_changed"]}, "url"),
        ({"url": "https://no-such-host.invalid/", "events": ["referral.status_changed"]}, "url"),
        ({"url": "http://127.0.0.1:9/", "events": ["referral.received"]}, "events[0]"),
        ({"url": "http://127.0.0.1:9/", "events": []}, "events"),
        ({"url": "http://127.0.0.1:9/", "events": ["referral.status_changed"], "secret": "mine"}, "secret"),
    ],
)
async def test_refused_registrations(
    plat: Platform, client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    r = await client.post("/v1/webhooks", json=body, headers=_auth(plat.partner_key(REGISTER)))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json()["errors"]]


async def test_status_changes_reach_the_partner_signed_and_the_case_manager_by_email(
    plat: Platform, client: httpx.AsyncClient, receiver: WebhookReceiver, smtp: SmtpSink
) -> None:
    conn = await asyncpg.connect(plat.dsn)
    try:
        await conn.execute("UPDATE staff SET email_notifications = true WHERE role = 'case_manager'")
        key = plat.partner_key(FLOW)
        hook = await _register(client, key, receiver.script("/flow"))
        await _arrivals(receiver, "/flow", 1)  # the test event
        r = await client.post("/v1/referrals", json=referral_body(), headers=_auth(key))
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        got = await _arrivals(receiver, "/flow", 2)
        assigned = json.loads(got[1].body)
        assert verify_standard_webhook(hook["secret"], got[1].headers, got[1].body)
        assert assigned["type"] == "referral.status_changed"
        assert assigned["data"] == {"referral_id": rid, "status": "assigned", "previous_status": "received"}

        # The case manager it went to gets an email: a link, a deadline, nothing about the youth.
        cm_id = str(
            await conn.fetchval("SELECT case_manager_id FROM assignments WHERE referral_id = $1", rid)
        )
        cm = next(c for c in plat.creds["case_managers"] if c["id"] == cm_id)
        mails = await wait_for(lambda: _mails(smtp, cm["email"]), timeout=20)
        (mail,) = mails
        raw = mail.as_string()
        assert "https://refnet.example/app/inbox" in mail.get_content()
        for word in (*PII, rid, "mental_health", "housing", "south_la"):
            assert word not in raw, f"{word!r} leaked into an email"

        # The case manager accepts: the partner hears of it.
        tok = await _token(plat, cm)
        offers = (await client.get("/v1/assignments?state=offered", headers=_auth(tok))).json()
        offer = next(o for o in offers["items"] if o["referral_id"] == rid)
        r = await client.post(f"/v1/assignments/{offer['id']}/accept", headers=_auth(tok))
        assert r.status_code == 200, r.text
        got = await _arrivals(receiver, "/flow", 3)
        accepted = json.loads(got[2].body)
        assert accepted["data"] == {"referral_id": rid, "status": "accepted", "previous_status": "assigned"}
        assert len({g.headers["webhook-id"] for g in got}) == 3
        for g in got:
            for word in PII:
                assert word.encode() not in g.body
    finally:
        await conn.close()


async def _mails(smtp: SmtpSink, address: str) -> list[Any]:
    return smtp.to(address)


async def test_secret_rotation_signs_with_both_during_the_overlap(
    plat: Platform, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    key = plat.partner_key(ROTATE)
    hook = await _register(client, key, receiver.script("/rotate"))
    await _arrivals(receiver, "/rotate", 1)
    r = await client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=_auth(key))
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["secret"] != hook["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    assert (await client.post(f"/v1/webhooks/{hook['id']}/test", headers=_auth(key))).status_code == 202
    (_, during) = await _arrivals(receiver, "/rotate", 2)
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verify_standard_webhook(rotated["secret"], during.headers, during.body)
    assert verify_standard_webhook(hook["secret"], during.headers, during.body)

    # Rotating with no overlap (a leaked secret) retires the old one at once.
    r = await client.post(f"/v1/webhooks/{hook['id']}/rotate-secret?overlap_seconds=0", headers=_auth(key))
    newest = r.json()["secret"]
    assert (await client.post(f"/v1/webhooks/{hook['id']}/test", headers=_auth(key))).status_code == 202
    after = (await _arrivals(receiver, "/rotate", 3))[2]
    assert verify_standard_webhook(newest, after.headers, after.body)
    assert not verify_standard_webhook(rotated["secret"], after.headers, after.body)
    assert not verify_standard_webhook(hook["secret"], after.headers, after.body)


async def test_deleted_endpoint_receives_nothing_more(
    plat: Platform, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    key = plat.partner_key(DELETE)
    hook = await _register(client, key, receiver.script("/deleted"))
    await _arrivals(receiver, "/deleted", 1)
    assert (await client.delete(f"/v1/webhooks/{hook['id']}", headers=_auth(key))).status_code == 204
    assert (await client.get(f"/v1/webhooks/{hook['id']}", headers=_auth(key))).status_code == 404
    assert (await client.delete(f"/v1/webhooks/{hook['id']}", headers=_auth(key))).status_code == 404
    assert (await client.get("/v1/webhooks", headers=_auth(key))).json()["items"] == []
    r = await client.post("/v1/referrals", json=referral_body(), headers=_auth(key))
    rid = r.json()["id"]

    async def routed() -> bool:
        v = (await client.get(f"/v1/referrals/{rid}", headers=_auth(key))).json()
        return bool(v["status"] in ("assigned", "unroutable"))

    await wait_for(routed)
    await asyncio.sleep(1.0)  # room for a (wrong) webhook to arrive
    assert len(receiver.received["/deleted"]) == 1


async def test_dead_letters_are_listed_and_replayed_by_an_admin(
    plat: Platform, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    key = plat.partner_key(DEAD)
    url = receiver.script("/dead", *[Reply(500)] * 4)
    hook = await _register(client, key, url)
    admin = _auth(await _token(plat, plat.creds["admins"][0]))

    async def dead() -> list[dict[str, Any]] | None:
        r = await client.get(f"/v1/admin/deliveries?state=dead&endpoint_id={hook['id']}", headers=admin)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items or None

    (item,) = await wait_for(dead, timeout=20)
    assert (item["kind"], item["attempts"], item["last_status"]) == ("webhook.test", 4, 500)
    detail = (await client.get(f"/v1/admin/deliveries/{item['id']}", headers=admin)).json()
    assert [a["outcome"] for a in detail["attempts"]] == ["retry", "retry", "retry", "dead"]
    assert all(a["status_code"] == 500 for a in detail["attempts"])
    stats = (await client.get("/v1/admin/deliveries/stats", headers=admin)).json()
    assert stats["webhook"]["dead_lettered"] >= 1
    assert stats["webhook"]["retried"] >= 3

    # Neither partners nor case managers reach the admin API.
    assert (await client.get("/v1/admin/deliveries", headers=_auth(key))).status_code == 403
    cm = _auth(await _token(plat, plat.creds["case_managers"][0]))
    assert (await client.post(f"/v1/admin/deliveries/{item['id']}/replay", headers=cm)).status_code == 403

    r = await client.post(f"/v1/admin/deliveries/{item['id']}/replay", headers=admin)
    assert r.status_code == 202, r.text
    got = await _arrivals(receiver, "/dead", 5)
    assert got[4].headers["webhook-id"] == got[0].headers["webhook-id"] == item["webhook_id"]
    assert verify_standard_webhook(hook["secret"], got[4].headers, got[4].body)

    async def delivered() -> bool:
        d = (await client.get(f"/v1/admin/deliveries/{item['id']}", headers=admin)).json()
        return bool(d["delivery"]["state"] == "delivered")

    await wait_for(delivered)
    again = await client.post(f"/v1/admin/deliveries/{item['id']}/replay", headers=admin)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    missing = await client.post(
        "/v1/admin/deliveries/00000000-0000-0000-0000-000000000000/replay", headers=admin
    )
    assert missing.status_code == 404

    conn = await asyncpg.connect(plat.dsn)
    try:
        actions = {
            r["action"]
            for r in await conn.fetch(
                "SELECT action FROM audit_log WHERE target_id = any($1::text[])", [hook["id"], item["id"]]
            )
        }
    finally:
        await conn.close()
    assert {"webhook.create", "delivery.replay"} <= actions


async def test_gone_endpoint_is_disabled_the_contact_told_and_it_can_be_re_enabled(
    plat: Platform, client: httpx.AsyncClient, receiver: WebhookReceiver, smtp: SmtpSink
) -> None:
    key = plat.partner_key(GONE)
    hook = await _register(client, key, receiver.script("/gone", Reply(410)))

    async def disabled() -> dict[str, Any] | None:
        doc: dict[str, Any] = (await client.get(f"/v1/webhooks/{hook['id']}", headers=_auth(key))).json()
        return doc if doc["state"] == "disabled" else None

    view = await wait_for(disabled, timeout=20)
    assert view["disabled_reason"] == "gone"
    conn = await asyncpg.connect(plat.dsn)
    try:
        contact = await conn.fetchval(
            "SELECT contact_email FROM partners WHERE id = $1", plat.creds["partners"][GONE]["id"]
        )
    finally:
        await conn.close()
    (notice,) = await wait_for(lambda: _mails(smtp, contact), timeout=20)
    assert hook["id"] in notice.get_content()
    assert (await client.post(f"/v1/webhooks/{hook['id']}/test", headers=_auth(key))).status_code == 409

    # Fixed (the receiver answers 200 now): the partner turns it back on and it verifies again.
    r = await client.post(f"/v1/webhooks/{hook['id']}/enable", headers=_auth(key))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active"
    (_, again) = await _arrivals(receiver, "/gone", 2)
    assert verify_standard_webhook(hook["secret"], again.headers, again.body)
    assert (await client.post(f"/v1/webhooks/{hook['id']}/enable", headers=_auth(key))).status_code == 409


async def test_an_overdue_protocol_step_is_emailed_once_to_whoever_asked(
    plat: Platform, client: httpx.AsyncClient, smtp: SmtpSink
) -> None:
    """Issue 18: the case manager and the region's supervisor (email enabled) get one email each for an
    overdue child-protection step: the step and its deadline, a link, nothing about the youth."""
    conn = await asyncpg.connect(plat.dsn)
    try:
        await conn.execute(
            "UPDATE staff SET email_notifications = true WHERE role IN ('case_manager', 'supervisor')"
        )
        r = await client.post("/v1/referrals", json=referral_body(), headers=_auth(plat.partner_key(6)))
        assert r.status_code == 201, r.text
        rid = r.json()["id"]

        async def offered_to() -> Any:
            return await conn.fetchval(
                "SELECT case_manager_id FROM assignments WHERE referral_id = $1 AND state = 'offered'", rid
            )

        cm_id = str(await wait_for(offered_to, timeout=20))
        cm = next(c for c in plat.creds["case_managers"] if c["id"] == cm_id)
        supervisor = next(s for s in plat.creds["supervisors"] if s["region"] == "south_la")
        await conn.execute(
            "UPDATE protocol_steps SET due_at = due_at - interval '2 hours'"
            " WHERE referral_id = $1 AND code = 'advocate_response'",
            rid,
        )

        def overdue_mails(address: str) -> list[Any]:
            return [m for m in smtp.to(address) if "child-protection step is overdue" in str(m["Subject"])]

        async def both() -> bool:
            return bool(overdue_mails(cm["email"]) and overdue_mails(supervisor["email"]))

        await wait_for(both, timeout=30)
        await asyncio.sleep(3)  # more sweeps: still one each
        for person in (cm, supervisor):
            (mail,) = overdue_mails(person["email"])
            text = mail.get_content()
            assert "Step: advocate_response." in text and f"https://refnet.example/app/cases/{rid}" in text
            for word in (*PII, "mental_health", "housing", "south_la"):
                assert word not in mail.as_string(), f"{word!r} leaked into an email"
    finally:
        await conn.close()
