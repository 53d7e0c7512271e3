"""End to end: a partner's referral reaches the right case manager's live SSE stream, through all three services."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import asyncpg
import httpx

from tests.support.platform import Platform, referral_body, wait_for


async def _sse_events(
    client: httpx.AsyncClient,
    url: str,
    token: str,
    want: int,
    timeout: float,
    last_event_id: str | None = None,
) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    async def read() -> None:
        async with client.stream("GET", url, headers=headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            async for line in resp.aiter_lines():
                if line == "":
                    if "data" in current:
                        events.append(dict(current))
                        if len(events) >= want:
                            return
                    current.clear()
                elif line.startswith(":"):
                    continue
                else:
                    key, _, value = line.partition(": ")
                    current[key] = value

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), timeout)
    return events


async def test_referral_reaches_case_manager_sse(platform: Platform) -> None:
    south = [c for c in platform.creds["case_managers"] if c["regions"] == ["south_la"]]
    tokens = {c["id"]: platform.staff_token(c) for c in south}
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
        # Open every South LA case manager's stream before the referral exists: the push must be live.
        streams = {
            cid: asyncio.create_task(_sse_events(client, "/v1/notifications/stream", tok, 1, 20))
            for cid, tok in tokens.items()
        }
        await asyncio.sleep(0.5)
        r = await client.post(
            "/v1/referrals",
            json=referral_body(),
            headers={"Authorization": f"Bearer {platform.partner_key(0)}"},
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        assert r.headers["location"] == f"/v1/referrals/{rid}"
        assert r.json()["region"] == "south_la"

        async def assigned() -> dict[str, Any] | None:
            v = (
                await client.get(
                    f"/v1/referrals/{rid}", headers={"Authorization": f"Bearer {platform.partner_key(0)}"}
                )
            ).json()
            return v if v["status"] == "assigned" else None

        view = await wait_for(assigned)
        assert view["assigned_at"] >= view["received_at"]

        conn = await asyncpg.connect(platform.dsn)
        try:
            cm_id = str(
                await conn.fetchval(
                    "SELECT case_manager_id FROM assignments WHERE referral_id = $1 AND state = 'offered'",
                    rid,
                )
            )
        finally:
            await conn.close()
        assert cm_id in tokens, "assigned outside the referral's region"
        got = await streams.pop(cm_id)
        for task in streams.values():
            task.cancel()
        assert len(got) == 1
        payload = json.loads(got[0]["data"])
        assert payload["referral_id"] == rid
        assert got[0]["event"] == "offer"
        assert got[0]["id"] == str(payload["id"])
        # No youth details travel in the notification.
        assert "Zyxwandra" not in got[0]["data"]
        assert "Quellmorrow" not in got[0]["data"]

        # The case manager sees the offer and accepts it; a second answer is a conflict.
        tok = tokens[cm_id]
        offers = (
            await client.get("/v1/assignments?state=offered", headers={"Authorization": f"Bearer {tok}"})
        ).json()
        offer = next(o for o in offers["items"] if o["referral_id"] == rid)
        r = await client.post(
            f"/v1/assignments/{offer['id']}/accept", headers={"Authorization": f"Bearer {tok}"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted"
        r = await client.post(
            f"/v1/assignments/{offer['id']}/accept", headers={"Authorization": f"Bearer {tok}"}
        )
        assert r.status_code == 409
        assert r.headers["content-type"] == "application/problem+json"

        # Last-Event-ID resumes after the given id: from 0 we get it again, from its own id nothing.
        again = await _sse_events(client, "/v1/notifications/stream", tok, 1, 3, last_event_id="0")
        assert [e["id"] for e in again] == [got[0]["id"]]
        none = await _sse_events(client, "/v1/notifications/stream", tok, 1, 2, last_event_id=got[0]["id"])
        assert none == []


async def test_no_pii_on_the_bus_in_logs_or_at_rest(platform: Platform) -> None:
    import nats

    from shared.crypto import KeyRing, Sealed

    body = referral_body()
    body["youth"].update(first_name="Oxelbritte", last_name="Vantravinsky", phone="818-555-0142")
    body["notes"] = "Disclosed trafficker name Brunhaldo at intake"
    secrets = ["Oxelbritte", "Vantravinsky", "818-555-0142", body["youth"]["date_of_birth"], "Brunhaldo"]
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
        r = await client.post(
            "/v1/referrals", json=body, headers={"Authorization": f"Bearer {platform.partner_key(3)}"}
        )
        assert r.status_code == 201
        rid = r.json()["id"]
        for s in secrets:
            assert s not in r.text

    conn = await asyncpg.connect(platform.dsn)
    try:

        async def notified() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM notifications WHERE referral_id = $1", rid))

        await wait_for(notified)
        # At rest: only ciphertext, and it opens with the master key and the referral id as associated data.
        row = await conn.fetchrow(
            "SELECT p.nonce, p.ciphertext, k.key_id, k.wrapped_key FROM referral_pii p"
            " JOIN referral_keys k USING (referral_id) WHERE p.referral_id = $1",
            rid,
        )
        assert row is not None
        dump = "".join(
            str(v) for r in await conn.fetch("SELECT * FROM referrals WHERE id = $1", rid) for v in r.values()
        )
        dump += bytes(row["ciphertext"]).decode("latin-1")
        for s in secrets:
            assert s not in dump
        ring = KeyRing({"k1": platform.env["REFNET_PII_MASTER_KEY"]}, "k1")
        sealed = Sealed(
            row["key_id"], bytes(row["wrapped_key"]), bytes(row["nonce"]), bytes(row["ciphertext"])
        )
        plain = json.loads(ring.open(sealed, rid.encode()))
        assert plain["youth"]["first_name"] == "Oxelbritte"
    finally:
        await conn.close()

    # On the bus: read back every message in the stream.
    nc = await nats.connect(platform.nats.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("REFNET")
        assert info.state.messages > 0
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg("REFNET", seq)
            text = (msg.data or b"").decode()
            for s in secrets:
                assert s not in text, f"PII on the bus in {msg.subject}"
    finally:
        await nc.close()

    logs = platform.logs()
    assert rid in logs  # the logs do talk about the referral, by id
    for s in secrets:
        assert s not in logs, "PII in a service log"
