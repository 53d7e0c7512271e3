"""Crash, pause and restart everything under load from nine partners; then every invariant must hold.

Faults, in order, with the load running throughout (see refnet_dev.chaos.default_schedule): kill -9 and
restart intake, each of two routing workers and notify; restart nats-server gracefully and after
kill -9; kill -9 PostgreSQL (probing intake for 503 + Retry-After meanwhile); SIGSTOP a routing worker
and notify past the ack wait; SIGTERM routing, notify and intake mid-batch (exit 0 within a bound).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from refnet_dev.chaos import default_schedule, run_chaos
from refnet_dev.platform import Platform
from tests.faults._support import chaos_platform, explain, show

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    with chaos_platform("refnet-faults-", routing_workers=2, ack_wait_s=3.0) as plat:
        yield plat


async def test_faults_under_load_keep_every_invariant(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await run_chaos(
        platform,
        default_schedule(routing_workers=2),
        rate=30.0,
        max_referrals=4000,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
    )
    show(capsys, "fault suite: faults injected and invariants", report.table())
    assert report.accepted >= 1500, explain(report, platform)
    assert report.ok, explain(report, platform)
