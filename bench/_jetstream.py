"""The message-bus ceiling: a raw JetStream publish/consume loop on the same server, no database, no HTTP.

Publishes as the outbox relay does (pipelined, each with a `Nats-Msg-Id` so the duplicate window
works) into a file-backed stream, then drains it as the consumers do (a durable pull consumer,
batched fetches, explicit ack per message). Python's nats client is in the loop on purpose: it is
the client the services use.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import msgspec
import nats
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

__all__ = ["JetStreamCeiling", "jetstream_ceiling"]

_STREAM = "BENCH_CEILING"
_SUBJECT = "benchceiling.event"
_WINDOW = 256  # publishes in flight at once, like a relay batch


class JetStreamCeiling(msgspec.Struct):
    published: int
    publish_per_s: float
    consumed: int
    consume_per_s: float
    payload_bytes: int


async def jetstream_ceiling(url: str, seconds: float = 3.0, payload_bytes: int = 400) -> JetStreamCeiling:
    """Publish for `seconds`, then consume everything published; messages per second each way."""
    nc = await nats.connect(url, name="bench-ceiling")
    try:
        js = nc.jetstream(timeout=10)
        await js.add_stream(
            StreamConfig(
                name=_STREAM,
                subjects=[_SUBJECT],
                storage=StorageType.FILE,
                duplicate_window=120.0,
            )
        )
        payload = os.urandom(payload_bytes)
        published = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await asyncio.gather(
                *(
                    js.publish(_SUBJECT, payload, headers={"Nats-Msg-Id": str(uuid.uuid4())})
                    for _ in range(_WINDOW)
                )
            )
            published += _WINDOW
        publish_s = time.perf_counter() - t0

        sub = await js.pull_subscribe(
            _SUBJECT, durable="bench", stream=_STREAM, config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT)
        )
        consumed = 0
        t0 = time.perf_counter()
        while consumed < published:
            msgs = await sub.fetch(_WINDOW, timeout=5)
            # ack_sync, as the services do: the ack is confirmed before the message counts as handled.
            await asyncio.gather(*(m.ack_sync(timeout=5) for m in msgs))
            consumed += len(msgs)
        consume_s = time.perf_counter() - t0
        await js.delete_stream(_STREAM)
    finally:
        await nc.close()
    return JetStreamCeiling(
        published=published,
        publish_per_s=round(published / publish_s, 1),
        consumed=consumed,
        consume_per_s=round(consumed / consume_s, 1),
        payload_bytes=payload_bytes,
    )
