"""A three-node NATS JetStream cluster on loopback (configs from refnet_dev.embedded, as in deploy/nats/cluster-local):
the stream replicated R3, the services given all three URLs; kill -9 the stream leader during load,
then a follower: no loss, no doubles, the services reconnect."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import nats
import pytest

from refnet_dev.chaos import kill_nats_node, run_chaos
from refnet_dev.platform import Platform
from shared.bus import STREAM
from tests.faults._support import chaos_platform, explain, show

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def cluster() -> Iterator[Platform]:
    with chaos_platform("refnet-cluster-", nats_nodes=3, routing_workers=2, ack_wait_s=3.0) as plat:
        yield plat


async def test_stream_is_replicated_on_three_nodes(cluster: Platform) -> None:
    assert cluster.nats_url.count(",") == 2
    nc = await nats.connect(servers=cluster.nats_url.split(","))
    try:
        js = nc.jetstream(timeout=5)
        info = await js.stream_info(STREAM)
        for _ in range(100):
            if info.cluster is not None and info.cluster.leader is not None:
                break
            await asyncio.sleep(0.2)
            info = await js.stream_info(STREAM)
        assert info.config.num_replicas == 3
        assert info.cluster is not None and info.cluster.leader in cluster.node_names
        assert len(info.cluster.replicas or []) == 2
        for name in ("routing", "notify"):
            # A consumer's raft group elects its leader after the stream's; on a loaded machine that can
            # take seconds, during which all three peers are listed as replicas and the leader is None.
            ci = await js.consumer_info(STREAM, name)
            for _ in range(100):
                if ci.cluster is not None and ci.cluster.leader is not None:
                    break
                await asyncio.sleep(0.2)
                ci = await js.consumer_info(STREAM, name)
            assert ci.cluster is not None and ci.cluster.leader in cluster.node_names, ci.cluster
            assert len(ci.cluster.replicas or []) == 2, ci.cluster
    finally:
        await nc.close()


async def test_losing_a_node_under_load_loses_nothing(
    cluster: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await run_chaos(
        cluster,
        [("kill_nats_leader", kill_nats_node("leader")), ("kill_nats_follower", kill_nats_node("follower"))],
        rate=20.0,
        max_referrals=2000,
        warmup_s=4.0,
        settle_s=5.0,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
    )
    show(capsys, "three-node NATS cluster: faults injected and invariants", report.table())
    assert report.accepted >= 300, explain(report, cluster)
    assert report.ok, explain(report, cluster)
    # Every service is still up and connected (intake's /readyz covers its NATS link).
    cluster.check_alive()
    cluster.wait_ready(timeout=20)
    # No assertion on "nats.reconnected" log lines: a service whose connection was on a surviving node
    # never needs to reconnect, so their count depends on which node each client picked at random.
