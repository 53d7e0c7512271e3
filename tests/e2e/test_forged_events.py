"""End to end: events forged on the bus with valid credentials (a compromised service) change nothing a
partner or a case manager sees, because notify re-reads the referral, assignment and history first."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from shared.bus import connect
from shared.events import Event, ReferralAssigned, ReferralStatusChanged, encode_event, subject_for
from tests.support.platform import Platform, referral_body, wait_for
from tests.support.receivers import WebhookReceiver

OWNER, VICTIM = 0, 1


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = await WebhookReceiver().start()
    yield r
    await r.stop()


async def _publish_as(platform: Platform, user: str, *events: Event) -> None:
    nc = await connect(platform.services_nats_url, f"forger-{user}", *platform.nats.credentials(user))
    try:
        js = nc.jetstream()
        for event in events:
            # Accepted by the stream: the credentials are valid and the subject is this user's.
            ack = await js.publish(subject_for(event), encode_event(event), timeout=5)
            assert ack.seq > 0
    finally:
        await nc.close()


async def test_forged_events_reach_nobody(platform: Platform, receiver: WebhookReceiver) -> None:
    victim_key = platform.partner_key(VICTIM)
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
        # Both partners listen for status changes, so each forged one gets as far as notify's check.
        for key, path in ((victim_key, "/victim"), (platform.partner_key(OWNER), "/owner")):
            hook = await client.post(
                "/v1/webhooks",
                json={"url": receiver.url(path), "events": ["referral.status_changed"]},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert hook.status_code == 201, hook.text
        made = await client.post(
            "/v1/referrals",
            json=referral_body(),
            headers={"Authorization": f"Bearer {platform.partner_key(OWNER)}"},
        )
        assert made.status_code in (200, 201, 202), made.text
        rid = made.json()["id"]

    conn = await asyncpg.connect(platform.dsn)
    try:
        offer = await wait_for(
            lambda: conn.fetchrow(
                "SELECT id, case_manager_id FROM assignments WHERE referral_id = $1 AND state = 'offered'",
                rid,
            ),
            timeout=30,
        )
        outsider = next(
            c["id"] for c in platform.creds["case_managers"] if c["id"] != str(offer["case_manager_id"])
        )
        status_to_victim = ReferralStatusChanged(
            referral_id=rid,
            partner_id=platform.creds["partners"][VICTIM]["id"],
            status="closed",
            previous_status="engaged",
            close_reason="services_completed",
        )
        never_reached = ReferralStatusChanged(
            referral_id=rid,
            partner_id=platform.creds["partners"][OWNER]["id"],
            status="closed",
            previous_status="engaged",
            close_reason="services_completed",
        )
        # A real offer, named as if it were another case manager's; and an offer that does not exist.
        stolen_offer = ReferralAssigned(
            referral_id=rid,
            assignment_id=str(offer["id"]),
            case_manager_id=outsider,
            region="south_la",
            respond_by=datetime.now(UTC) + timedelta(hours=1),
            urgency="urgent",
        )
        invented_offer = ReferralAssigned(
            referral_id=rid,
            assignment_id=str(uuid.uuid4()),
            case_manager_id=outsider,
            region="south_la",
            respond_by=datetime.now(UTC) + timedelta(hours=1),
            urgency="urgent",
        )
        forged = [status_to_victim, never_reached, stolen_offer, invented_offer]
        await _publish_as(platform, "routing", *forged)

        # notify drops each one, naming only the event id (and why).
        for event in forged:
            await wait_for(lambda e=event: _dropped(platform, e.event_id), timeout=30)
        ids = [e.event_id for e in forged]
        assert (
            await conn.fetchval("SELECT count(*) FROM notifications WHERE event_id = ANY($1::uuid[])", ids)
            == 0
        )
        assert (
            await conn.fetchval("SELECT count(*) FROM deliveries WHERE event_id = ANY($1::uuid[])", ids) == 0
        )
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE recipient_id = $1 AND referral_id = $2",
                outsider,
                rid,
            )
            == 0
        )
        await asyncio.sleep(0.5)  # a delivery, had one been queued, would have been sent by now
        # The victim hears of nobody's referral; the owner hears of real changes only (never "closed").
        assert all(b"status_changed" not in m.body for m in receiver.received["/victim"])
        assert all(b'"closed"' not in m.body for m in receiver.received["/owner"])
    finally:
        await conn.close()


async def _dropped(platform: Platform, event_id: str) -> bool:
    return any('"notify.event_dropped"' in line and event_id in line for line in platform.logs().splitlines())
