"""The embedded NATS lets no client in without credentials, and each service's user may publish only its own
events and consume only its own consumer."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS

from refnet_dev.embedded import EmbeddedNats
from shared.bus import CONSUMERS, PUBLISHES, STREAM, connect, ensure_stream
from shared.events import ReferralAssigned, encode_event, subject_for


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    srv = EmbeddedNats(tmp_path / "nats")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


async def _quiet(_exc: Exception) -> None:
    return None


async def _try_connect(url: str, **kwargs: str) -> NATS:
    return await nats.connect(
        url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3, error_cb=_quiet, **kwargs
    )


# nats-py leaves the refused connection's socket for the garbage collector; collected here, not in the
# next test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_a_client_without_credentials_is_refused(server: EmbeddedNats) -> None:
    with pytest.raises((nats.errors.NoServersError, nats.errors.Error, OSError)):
        await _try_connect(server.plain_url)
    with pytest.raises((nats.errors.NoServersError, nats.errors.Error, OSError)):
        await _try_connect(server.plain_url, user="intake", password="guessed")
    nc = await _try_connect(server.plain_url, user="intake", password=server.credentials("intake")[1])
    assert nc.is_connected
    await nc.close()
    gc.collect()


async def _stream_count(admin: NATS) -> int:
    info = await admin.jetstream().stream_info(STREAM)
    return int(info.state.messages)


async def test_a_service_cannot_publish_another_services_event(server: EmbeddedNats) -> None:
    admin = await nats.connect(server.url)
    js_admin = admin.jetstream()
    await ensure_stream(js_admin, consumers=list(CONSUMERS.values()))
    forged = ReferralAssigned(
        referral_id="00000000-0000-0000-0000-000000000001",
        assignment_id="00000000-0000-0000-0000-000000000002",
        case_manager_id="00000000-0000-0000-0000-000000000003",
        region="south_la",
        urgency="urgent",
        respond_by=datetime(2030, 1, 1, tzinfo=UTC),
    )
    assert subject_for(forged) in PUBLISHES["routing"] and subject_for(forged) not in PUBLISHES["intake"]
    clients = {}
    try:
        for user in ("intake", "notify", "routing"):
            clients[user] = await connect(server.plain_url, f"test-{user}", *server.credentials(user))
        before = await _stream_count(admin)
        for user in ("intake", "notify"):
            with pytest.raises((nats.errors.TimeoutError, nats.errors.Error)):
                await clients[user].jetstream().publish(subject_for(forged), encode_event(forged), timeout=1)
        assert await _stream_count(admin) == before  # nothing got in
        # Its owner may: the permission is per subject, not a closed bus.
        await clients["routing"].jetstream().publish(subject_for(forged), encode_event(forged), timeout=5)
        assert await _stream_count(admin) == before + 1

        # Nor may intake take messages from notify's consumer (it would ack them away unseen).
        with pytest.raises((nats.errors.TimeoutError, nats.errors.Error)):
            sub = await clients["intake"].jetstream().pull_subscribe_bind(durable="notify", stream=STREAM)
            await sub.fetch(1, timeout=1)
        info = await js_admin.consumer_info(STREAM, "notify")
        assert info.num_pending >= 1 and info.num_ack_pending == 0
        # ... nor delete the stream.
        with pytest.raises((nats.errors.TimeoutError, nats.errors.Error)):
            await clients["notify"].jetstream().delete_stream(STREAM)
        assert await _stream_count(admin) == before + 1
    finally:
        for nc in clients.values():
            await nc.close()
        await admin.close()
    await asyncio.sleep(0)
