"""Open-loop load generator: a separate process offering referrals at a fixed rate over raw HTTP/1.1.

Open loop means the schedule does not wait for answers: request i is due at ``start + i / rate`` whatever
happened to request i-1, and its latency is measured from that due time, not from when a connection
became free. A slow server therefore shows up as latency instead of silently lowering the offered rate
(coordinated omission). Keep-alive connections are reused; a new one is opened whenever all are busy,
up to ``max_connections``.

The client is a few lines over asyncio streams instead of httpx: at 1,000 requests/s httpx alone would
take most of a core of the same two-core machine the services run on.

Run by the benchmark as ``python -m bench._openloop RESULT_FILE`` with a JSON job on stdin; writes a JSON
result into RESULT_FILE (see `Job` and `Result`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import deque
from pathlib import Path

import msgspec
import uvloop

from bench._load import make_bodies

__all__ = ["Job", "Result", "run_job"]

_MAX_IDLE_S = 2.0


class Job(msgspec.Struct, forbid_unknown_fields=True):
    host: str
    port: int
    api_keys: list[str]
    rate: float
    warmup_s: float
    duration_s: float
    seed: int = 1
    distinct_bodies: int = 20_000
    max_connections: int = 512
    timeout_s: float = 30.0


class Result(msgspec.Struct):
    # Wall-clock (epoch seconds) of the measured window: the referrals whose due time falls inside it.
    window_start: float
    window_end: float
    # One row per request: [due offset from window start (s), latency from due time (s), status].
    # Status 0 is a transport error or timeout.
    samples: list[tuple[float, float, int]]
    # Requests that were due but could not be sent before the deadline (generator saturated).
    unsent: int
    # 201s over the whole run, warm-up included (CPU per referral divides by this).
    accepted_total: int
    connections: int
    first_error: str
    cpu_s: float


def _requests(job: Job) -> list[bytes]:
    # Enough distinct youths that repeat referrals of one youth stay realistic (a few each, not hundreds:
    # routing's continuity lookup reads every earlier referral of the same youth).
    bodies = make_bodies(job.distinct_bodies, seed=job.seed)
    out = []
    for i, body in enumerate(bodies):
        key = job.api_keys[i % len(job.api_keys)]
        head = (
            f"POST /v1/referrals HTTP/1.1\r\nHost: {job.host}:{job.port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep_alive) of one response; the body is read and discarded."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    keep_alive = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            keep_alive = False
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, keep_alive


class _Client:
    def __init__(self, job: Job) -> None:
        self.job = job
        # (reader, writer, idle since): the most recently used first, so a few stay hot.
        self.idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = deque()
        self.open = 0
        self.opened = 0
        self.free = asyncio.Condition()
        self.first_error = ""

    async def _acquire(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while True:
            while self.idle:
                reader, writer, since = self.idle.pop()
                if time.monotonic() - since < _MAX_IDLE_S:
                    return reader, writer
                # The server may be closing it right now (uvicorn's keep-alive timeout is 5 s): a
                # request written into that race fails without having been read. Never reuse one.
                writer.close()
                self.open -= 1
            if self.open < self.job.max_connections:
                self.open += 1
                self.opened += 1
                try:
                    return await asyncio.open_connection(self.job.host, self.job.port)
                except BaseException:
                    self.open -= 1
                    raise
            async with self.free:
                await self.free.wait()

    async def _release(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        if conn is None:
            self.open -= 1
        else:
            self.idle.append((conn[0], conn[1], time.monotonic()))
        async with self.free:
            self.free.notify()

    async def send(self, payload: bytes) -> int:
        conn = await self._acquire()
        try:
            conn[1].write(payload)
            status, keep_alive = await asyncio.wait_for(_read_response(conn[0]), self.job.timeout_s)
        except BaseException as exc:
            conn[1].close()
            await self._release(None)
            if isinstance(exc, Exception):
                if not self.first_error:
                    self.first_error = f"{type(exc).__name__}: {exc}"[:200]
                return 0
            raise
        if keep_alive:
            await self._release(conn)
        else:
            conn[1].close()
            await self._release(None)
        return status

    async def close(self) -> None:
        while self.idle:
            _, writer, _since = self.idle.pop()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def run_job(job: Job) -> Result:
    """Offer `rate` referrals/s for warmup + duration seconds; wait for every answer."""
    cpu0 = time.process_time()
    payloads = _requests(job)
    client = _Client(job)
    samples: list[tuple[float, float, int]] = []
    tasks: set[asyncio.Task[None]] = set()
    total = round(job.rate * (job.warmup_s + job.duration_s))
    interval = 1.0 / job.rate
    start = time.perf_counter() + 0.2
    wall_start = time.time() + 0.2
    measured_from = start + job.warmup_s
    measured_to = measured_from + job.duration_s

    accepted_total = 0

    async def one(due: float, payload: bytes) -> None:
        nonlocal accepted_total
        try:
            status = await client.send(payload)
        except Exception:  # connection refused and the like: counted, never raised
            status = 0
        accepted_total += status == 201
        if measured_from <= due < measured_to:
            samples.append((due - measured_from, time.perf_counter() - due, status))

    unsent = 0
    for i in range(total):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -job.timeout_s:
            unsent += 1
            continue
        task = asyncio.create_task(one(due, payloads[i % len(payloads)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    await client.close()
    return Result(
        window_start=wall_start + job.warmup_s,
        window_end=wall_start + job.warmup_s + job.duration_s,
        samples=samples,
        unsent=unsent,
        accepted_total=accepted_total,
        connections=client.opened,
        first_error=client.first_error,
        cpu_s=time.process_time() - cpu0,
    )


def main() -> None:
    job = msgspec.json.decode(sys.stdin.buffer.read(), type=Job)
    # uvloop (a dependency of the services) keeps the generator's own CPU per request low.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run_job(job))
    # Into the file named on the command line, not stdout: a result of several MB written to the pipe
    # now and then reached the benchmark cut short ("Input data was truncated").
    Path(sys.argv[1]).write_bytes(msgspec.json.encode(result))


if __name__ == "__main__":
    main()
