"""Graceful shutdown: SIGTERM drains in-flight messages and HTTP requests and exits 0 in time, and no
message is ever acked before its effect committed (also checked across a kill -9 mid-batch).

"Acked" is read from JetStream: messages of the routing consumer that are neither pending nor awaiting
an ack. "Committed" is routing's processed_messages rows. Acked <= committed must hold at every stop.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import httpx
import nats
import pytest

from refnet_dev.chaos import PartnerLoad, check_invariants, referral_body, wait_converged
from refnet_dev.platform import Platform
from shared.bus import STREAM
from tests.faults._support import chaos_platform

pytestmark = pytest.mark.faults

BACKLOG = 400


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    with chaos_platform("refnet-shutdown-", routing_workers=1, ack_wait_s=3.0) as plat:
        yield plat


async def _routing_state(plat: Platform) -> tuple[int, int, int]:
    """(messages in the stream for routing, not yet delivered, delivered but unacked)."""
    nc = await nats.connect(servers=plat.nats_url.split(","))
    try:
        js = nc.jetstream(timeout=5)
        info = await js.stream_info(STREAM, subjects_filter="refnet.referral.received")
        total = int((info.state.subjects or {}).get("refnet.referral.received", 0))
        ci = await js.consumer_info(STREAM, "routing")
        return total, int(ci.num_pending or 0), int(ci.num_ack_pending or 0)
    finally:
        await nc.close()


async def _committed(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM processed_messages WHERE consumer = 'routing'"))


async def _build_backlog(plat: Platform, load: PartnerLoad) -> None:
    code, _ = await asyncio.to_thread(plat.terminate, "routing", 15.0)
    assert code == 0, plat.log_tail("routing")
    await load.run()
    assert sum(1 for s in load.submissions if s.referral_id) == load.max_referrals


async def _stop_mid_batch(
    plat: Platform, conn: asyncpg.Connection, how: str
) -> tuple[int | None, float, int]:
    """Start routing on the backlog, stop it (SIGTERM or SIGKILL) once it is well into it."""
    before = await _committed(conn)
    plat.start("routing")
    deadline = time.monotonic() + 60
    while await _committed(conn) < before + 40:
        assert time.monotonic() < deadline, plat.log_tail("routing")
        await asyncio.sleep(0.01)
    if how == "term":
        code, took = await asyncio.to_thread(plat.terminate, "routing", 15.0)
    else:
        t = time.monotonic()
        await asyncio.to_thread(plat.kill, "routing")
        code, took = None, time.monotonic() - t
    return code, took, await _committed(conn) - before


async def test_sigterm_and_kill_mid_batch_never_ack_before_commit(platform: Platform) -> None:
    keys = [p["api_key"] for p in platform.creds["partners"]]
    conn = await asyncpg.connect(platform.admin_dsn)
    try:
        load = PartnerLoad(platform.base_url, keys, rate=200.0, max_referrals=BACKLOG, max_seconds=60)
        await _build_backlog(platform, load)

        code, took, done = await _stop_mid_batch(platform, conn, "term")
        total, pending, unacked = await _routing_state(platform)
        committed = await _committed(conn)
        assert code == 0 and took < 15, platform.log_tail("routing")
        assert 0 < done < BACKLOG, "SIGTERM should land mid-backlog"
        # Drained: nothing it had fetched is left unacked, and everything acked had committed.
        assert unacked == 0, platform.log_tail("routing")
        assert total - pending - unacked <= committed

        code, _, done = await _stop_mid_batch(platform, conn, "kill")
        total, pending, unacked = await _routing_state(platform)
        committed = await _committed(conn)
        assert done > 0
        assert total - pending - unacked <= committed  # a kill may lose acks, never effects

        platform.start("routing")
        assert await wait_converged(platform.admin_dsn, platform.nats_url, 90) < 90
        checks = await check_invariants(platform.admin_dsn, platform.nats_url, load)
        assert all(c.ok for c in checks), "\n".join(f"{c.name}: {c.ok} {c.detail}" for c in checks)
    finally:
        await conn.close()


async def test_intake_sigterm_drains_in_flight_requests(platform: Platform) -> None:
    key = platform.creds["partners"][3]["api_key"]
    body = referral_body(random.Random(5), datetime.now(UTC))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    keys = [f"drain-{uuid.uuid4()}" for _ in range(100)]
    finished: dict[str, tuple[int, float]] = {}
    errors: dict[str, str] = {}

    async def post(client: httpx.AsyncClient, idem: str) -> None:
        try:
            r = await client.post("/v1/referrals", content=body, headers={**headers, "Idempotency-Key": idem})
            finished[idem] = (r.status_code, time.monotonic())
        except httpx.HTTPError as exc:
            finished[idem] = (0, time.monotonic())
            errors[idem] = type(exc).__name__

    # A fresh connection per request. A request intake has started on is answered (the drain); one
    # still in the listen backlog or not yet read when the listener closes sees its connection closed
    # (ReadError) or refused, which is safe to retry with the same Idempotency-Key.
    async with httpx.AsyncClient(
        base_url=platform.base_url, timeout=20, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        posts = [asyncio.create_task(post(client, k)) for k in keys]
        # SIGTERM once intake is busy with them: the first answers are back, most are in its hands.
        while sum(1 for st, _ in finished.values() if st == 201) < 5:
            assert len(finished) < len(keys), f"requests failed before the signal: {errors}"
            await asyncio.sleep(0.001)
        sent_at = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(platform.terminate, "intake", 15.0))
        await asyncio.gather(*posts)
        code, took = await stopping
    assert code == 0 and took < 15, platform.log_tail("intake")
    statuses = [s for s, _ in finished.values()]
    assert all(s in (0, 201) for s in statuses), statuses
    summary = {
        "201 before SIGTERM": sum(1 for s, t in finished.values() if s == 201 and t <= sent_at),
        "201 during the drain": sum(1 for s, t in finished.values() if s == 201 and t > sent_at),
        "errors": sorted(errors.values()),
    }
    assert summary["201 during the drain"], f"no request finished during the drain: {summary}"

    platform.start("intake")
    await asyncio.to_thread(platform.wait_intake, 30)
    # A partner retries what failed with the same key: one referral per key, whatever happened.
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=20) as client:
        for idem in keys:
            r = await client.post("/v1/referrals", content=body, headers={**headers, "Idempotency-Key": idem})
            assert r.status_code == 201
    conn = await asyncpg.connect(platform.admin_dsn)
    try:
        rows = await conn.fetch(
            "SELECT key, referral_id FROM idempotency_keys WHERE key = any($1::text[])", keys
        )
        assert len(rows) == len(keys)
        assert len({r["referral_id"] for r in rows}) == len(keys)
    finally:
        await conn.close()


def test_healthcheck_probes(platform: Platform) -> None:
    """`refnet healthcheck`, the workers' exec probe: 0 when ready, 1 with a one-line reason when not."""
    for service in ("intake", "routing", "notify"):
        # As the service's own process has it: its NATS user too.
        env = {**platform.env, **platform.nats_credentials_env(service)}
        done = subprocess.run(
            [sys.executable, "-m", "refnet.cli", "healthcheck", service],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{service} ok"
    broken = {**env, "REFNET_DATABASE_URL": "postgresql://refnet_app@/nowhere?host=/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-m", "refnet.cli", "healthcheck", "routing"],
        env=broken,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("routing unhealthy: database:")
    assert len(done.stderr.strip().splitlines()) == 1
