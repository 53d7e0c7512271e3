"""Fault injection (`refnet chaos` and tests/faults): load from nine simulated partners while processes
crash, pause and restart; afterwards, the invariants a referral network must keep, checked and printed.

Everything runs on loopback, on a platform the launcher (refnet_dev/platform.py) starts: an embedded
PostgreSQL, one nats-server or a three-node NATS cluster, and the services as real processes. The load is bounded in
count and time. Nothing here is imported by the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats

from refnet_dev.platform import Platform
from shared.bus import STREAM

__all__ = [
    "ChaosReport",
    "Check",
    "FaultResult",
    "PartnerLoad",
    "chaos_platform",
    "check_invariants",
    "default_schedule",
    "kill_nats_node",
    "prepare_chaos_database",
    "run_chaos",
    "run_cli",
    "started_chaos_platform",
]

DATABASE = "refnet"
# Every case manager but one gets room for the whole run; the one with little room fills up, so the
# capacity guard is exercised by two routing workers racing for her last slots.
LARGE_CAPACITY = 1_000_000
SMALL_CAPACITY = 15
SOUTH_LA_ZIPS = ("90011", "90044", "90003", "90001")
SFV_ZIPS = ("91402", "91331", "91605", "91342")
OUT_OF_AREA_ZIPS = ("10001", "60601")  # accepted, then unroutable (out_of_area)
NEEDS = ("housing", "mental_health", "medical", "legal", "education", "basic_needs", "family", "peer_support")


# --------------------------------------------------------------------------------------------
# The platform under test
# --------------------------------------------------------------------------------------------


def chaos_platform(
    workdir: Path,
    *,
    nats_nodes: int = 1,
    routing_workers: int = 2,
    ack_wait_s: float = 3.0,
    extra_env: dict[str, str] | None = None,
) -> Platform:
    """A platform for fault injection: an embedded PostgreSQL (fsync off, but synchronous_commit on,
    so a killed postgres keeps every commit), one nats-server or a three-node cluster, and the services,
    each addressable by a key ("intake", "routing", "routing-2", "notify") to kill, pause or restart."""
    return Platform(
        workdir,
        database=DATABASE,
        pg_fast=True,
        nats_nodes=nats_nodes,
        workers={"intake": 1, "routing": routing_workers, "notify": 1},
        env={
            "REFNET_LOG_LEVEL": "INFO",
            "REFNET_OUTBOX_POLL_SECONDS": "0.5",
            "REFNET_CONSUMER_ACK_WAIT_SECONDS": str(ack_wait_s),
            # Nine partners retrying through outages must not be throttled by the per-key limit.
            "REFNET_RATE_LIMIT_PER_MINUTE": "0",
            "REFNET_DB_POOL_MAX": "8",
            # Several workers share this host: no fixed metrics ports to fight over.
            "REFNET_ROUTING_METRICS_PORT": "0",
            "REFNET_NOTIFY_METRICS_PORT": "0",
            **(extra_env or {}),
        },
    )


async def prepare_chaos_database(plat: Platform) -> None:
    """Migrate and seed the demo network; every case manager has room for the whole run but one."""
    await plat.prepare_database(capacity=LARGE_CAPACITY)
    conn = await asyncpg.connect(plat.admin_dsn)
    try:
        small = plat.creds["case_managers"][0]["id"]
        await conn.execute(
            "UPDATE case_managers SET capacity = $1 WHERE staff_id = $2", SMALL_CAPACITY, small
        )
    finally:
        await conn.close()


def started_chaos_platform(workdir: Path, **kwargs: Any) -> Platform:
    """``chaos_platform`` with its servers started, database prepared and services at work."""
    plat = chaos_platform(workdir, **kwargs)
    try:
        plat.start_servers()
        asyncio.run(prepare_chaos_database(plat))
        plat.start_all()
    except BaseException:
        plat.close()
        raise
    return plat


# --------------------------------------------------------------------------------------------
# Load: nine partners, each submission with its own Idempotency-Key, retried as a partner would
# --------------------------------------------------------------------------------------------


def referral_body(rng: random.Random, now: datetime) -> bytes:
    roll = rng.random()
    zip_code = rng.choice(OUT_OF_AREA_ZIPS if roll < 0.05 else SOUTH_LA_ZIPS if roll < 0.53 else SFV_ZIPS)
    body = {
        "youth": {
            "first_name": rng.choice(("Ana", "Jordan", "Maria", "Deshawn", "Sofia", "Luz", "Imani")),
            "date_of_birth": (now - timedelta(days=rng.randint(13 * 365, 21 * 365))).date().isoformat(),
        },
        "location": {"zip": zip_code},
        "needs": rng.sample(NEEDS, rng.randint(1, 2)),
        "language": rng.choices(("en", "es"), weights=(65, 35))[0],
        "urgency": "urgent" if rng.random() < 0.1 else "routine",
        "consent": {
            "obtained_at": (now - timedelta(days=rng.randint(1, 30))).isoformat(),
            "expires_at": (now + timedelta(days=365)).isoformat(),
            "method": "written",
            "scope": ["case_management", "evaluation", "share_status_with_referrer"],
        },
    }
    return json.dumps(body).encode()


@dataclass
class Submission:
    key: str
    partner: int
    referral_id: str | None = None
    attempts: int = 0
    abandoned: bool = False


@dataclass
class PartnerLoad:
    """Partners post at ``rate`` referrals/s in total until ``max_referrals`` or ``max_seconds``.

    A submission is retried with the same Idempotency-Key on a connection error, 409 or 5xx
    (honouring Retry-After up to a second) for up to ``give_up_s``, as a careful partner would.
    """

    base_url: str
    api_keys: list[str]
    rate: float = 25.0
    max_referrals: int = 4000
    max_seconds: float = 150.0
    give_up_s: float = 90.0
    seed: int = 7
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    submissions: list[Submission] = field(default_factory=list)
    # (monotonic time, status): every attempt; status 0 is a transport error.
    attempts: list[tuple[float, int]] = field(default_factory=list)
    missing_retry_after: int = 0
    unexpected: Counter[int] = field(default_factory=Counter)
    started: float = 0.0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        self.started = time.monotonic()
        deadline = self.started + self.max_seconds
        rng = random.Random(self.seed)
        now = datetime.now(UTC)
        bodies = [referral_body(rng, now) for _ in range(256)]
        per_partner = self.rate / len(self.api_keys)
        clients = [
            httpx.AsyncClient(
                base_url=self.base_url,
                headers={"Authorization": f"Bearer {k}", "Content-Type": "application/json"},
                limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
                timeout=httpx.Timeout(15.0),
            )
            for k in self.api_keys
        ]
        try:
            await asyncio.gather(
                *(self._partner(i, c, bodies, per_partner, deadline) for i, c in enumerate(clients))
            )
        finally:
            await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)

    async def _partner(
        self, i: int, client: httpx.AsyncClient, bodies: list[bytes], rate: float, deadline: float
    ) -> None:
        n = 0
        next_at = time.monotonic() + random.random() / rate
        while not self._stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            # Checked and counted with no await in between: the partners never overshoot the bound.
            if len(self.submissions) >= self.max_referrals or self._stop.is_set():
                break
            n += 1
            sub = Submission(key=f"chaos-{self.run_id}-{i}-{n}", partner=i)
            self.submissions.append(sub)
            await self._submit(client, sub, bodies[(i * 31 + n) % len(bodies)])
            next_at = max(next_at + 1.0 / rate, time.monotonic())

    async def _submit(self, client: httpx.AsyncClient, sub: Submission, body: bytes) -> None:
        give_up = time.monotonic() + self.give_up_s
        while True:
            sub.attempts += 1
            retry_in = 0.25
            try:
                resp = await client.post("/v1/referrals", content=body, headers={"Idempotency-Key": sub.key})
                status = resp.status_code
            except httpx.HTTPError:
                status = 0
            self.attempts.append((time.monotonic(), status))
            if status in (200, 201):
                sub.referral_id = str(resp.json()["id"])
                return
            if status == 503:
                ra = resp.headers.get("retry-after")
                if ra is None:
                    self.missing_retry_after += 1
                else:
                    with contextlib.suppress(ValueError):
                        retry_in = min(float(ra), 1.0)
            elif status not in (0, 409):
                self.unexpected[status] += 1
                if status < 500:
                    sub.abandoned = True  # a 4xx will not change by retrying
                    return
            if time.monotonic() > give_up:
                sub.abandoned = True
                return
            await asyncio.sleep(retry_in)

    def count(self, start: float, end: float, statuses: Sequence[int]) -> int:
        return sum(1 for t, s in self.attempts if start <= t <= end and s in statuses)


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


@dataclass
class FaultResult:
    name: str
    at_s: float
    seconds: float
    detail: str
    ok: bool = True
    window: tuple[float, float] = (0.0, 0.0)  # monotonic (start, end) of the outage


@dataclass
class ChaosContext:
    platform: Platform
    load: PartnerLoad
    probe_keys: list[str] = field(default_factory=list)
    probe_partner: int = 0
    faults: list[FaultResult] = field(default_factory=list)
    extra_checks: list[Check] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)


Fault = Callable[[ChaosContext], FaultResult]


def kill_service(key: str) -> Fault:
    def fault(ctx: ChaosContext) -> FaultResult:
        plat = ctx.platform
        t = time.monotonic()
        plat.kill(key)
        back = plat.restart(key)
        down = time.monotonic() - t
        return FaultResult(
            f"kill -9 {key}, restart",
            t - ctx.t0,
            down,
            f"back at work {back:.1f}s after restart",
            True,
            (t, t + down),
        )

    return fault


def terminate_service(key: str, bound_s: float = 15.0) -> Fault:
    """SIGTERM under load: the process drains what it has in flight and exits 0 within the bound."""

    def fault(ctx: ChaosContext) -> FaultResult:
        plat = ctx.platform
        t = time.monotonic()
        code, took = plat.terminate(key, timeout=bound_s)
        back = plat.restart(key)
        ok = code == 0 and took <= bound_s
        return FaultResult(
            f"SIGTERM {key} mid-batch, restart",
            t - ctx.t0,
            time.monotonic() - t,
            f"exit {code} after {took:.1f}s (bound {bound_s:.0f}s); back at work {back:.1f}s later",
            ok,
            (t, time.monotonic()),
        )

    return fault


def pause_service(key: str, seconds: float) -> Fault:
    def fault(ctx: ChaosContext) -> FaultResult:
        plat = ctx.platform
        t = time.monotonic()
        plat.pause(key)
        try:
            time.sleep(seconds)
        finally:
            plat.resume(key)
        return FaultResult(
            f"SIGSTOP {key} {seconds:.0f}s, SIGCONT",
            t - ctx.t0,
            seconds,
            f"ack wait {plat.env['REFNET_CONSUMER_ACK_WAIT_SECONDS']}s",
            True,
            (t, t + seconds),
        )

    return fault


def restart_nats(graceful: bool, down_s: float = 2.0) -> Fault:
    def fault(ctx: ChaosContext) -> FaultResult:
        server = ctx.platform.nats
        t = time.monotonic()
        if graceful:
            server.stop()
        else:
            server.kill()
        time.sleep(down_s)
        server.start(timeout=30)
        end = time.monotonic()
        return FaultResult(
            "restart nats-server (SIGTERM)" if graceful else "kill -9 nats-server, restart",
            t - ctx.t0,
            end - t,
            f"down {end - t:.1f}s",
            True,
            (t, end),
        )

    return fault


def kill_nats_node(role: str = "leader", down_s: float = 8.0) -> Fault:
    """Three-node cluster: SIGKILL the REFNET stream's leader (or a follower), keep it down, restart it."""

    def fault(ctx: ChaosContext) -> FaultResult:
        plat = ctx.platform
        leader = asyncio.run(_stream_leader(plat.nats_url))
        names = plat.node_names
        if role == "leader":
            idx = names.index(leader) if leader in names else 0
        else:
            # The last follower: a different node from the leader killed just before, if any.
            idx = max(i for i, n in enumerate(names) if n != leader)
        server = plat.nats_servers[idx]
        t = time.monotonic()
        server.kill()
        time.sleep(down_s)
        server.start(timeout=30)
        end = time.monotonic()
        return FaultResult(
            f"kill -9 NATS node {names[idx]} (stream {role}), restart",
            t - ctx.t0,
            end - t,
            f"1 of 3 nodes down {end - t:.1f}s, stream R{plat.nats_nodes}",
            True,
            (t, end),
        )

    return fault


async def _stream_leader(url: str) -> str:
    nc = await nats.connect(servers=url.split(","), connect_timeout=3, max_reconnect_attempts=2)
    try:
        info = await nc.jetstream(timeout=5).stream_info(STREAM)
        return str(info.cluster.leader) if info.cluster and info.cluster.leader else ""
    finally:
        await nc.close()


def restart_postgres(down_s: float = 5.0, probes: int = 5) -> Fault:
    """SIGKILL the postmaster; while it is down, intake must answer 503 with Retry-After and write nothing."""

    def fault(ctx: ChaosContext) -> FaultResult:
        plat = ctx.platform
        assert plat.pg is not None
        pid = plat.pg.pid
        assert pid is not None
        t = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while plat.pg.is_running():
            time.sleep(0.02)
        time.sleep(0.5)  # let intake's pool notice
        partner = ctx.probe_partner
        key = plat.creds["partners"][partner]["api_key"]
        body = referral_body(random.Random(99), datetime.now(UTC))
        answers: list[tuple[int, str | None]] = []
        with httpx.Client(base_url=plat.base_url, timeout=10) as client:
            for _ in range(probes):
                probe_key = f"probe-{uuid.uuid4()}"
                ctx.probe_keys.append(probe_key)
                try:
                    r = client.post(
                        "/v1/referrals",
                        content=body,
                        headers={
                            "Authorization": f"Bearer {key}",
                            "Content-Type": "application/json",
                            "Idempotency-Key": probe_key,
                        },
                    )
                    answers.append((r.status_code, r.headers.get("retry-after")))
                except httpx.HTTPError:
                    answers.append((0, None))
                time.sleep(0.2)
            ready = client.get("/readyz").status_code
        time.sleep(max(0.0, down_s - (time.monotonic() - t)))
        plat.pg.start()
        end = time.monotonic()
        good = sum(1 for s, ra in answers if s == 503 and ra)
        ok = good == len(answers) and ready == 503
        ctx.extra_checks.append(
            Check(
                "PostgreSQL down: intake answers 503 + Retry-After",
                ok,
                f"{good}/{len(answers)} probes 503 with Retry-After; /readyz {ready}; answers {answers}",
            )
        )
        return FaultResult(
            "kill -9 PostgreSQL, restart", t - ctx.t0, end - t, f"down {end - t:.1f}s", ok, (t, end)
        )

    return fault


def default_schedule(routing_workers: int = 2) -> list[tuple[str, Fault]]:
    """The faults `refnet chaos` and the fault suite inject, in order, with load running throughout."""
    second = "routing-2" if routing_workers > 1 else "routing"
    return [
        ("kill_intake", kill_service("intake")),
        ("kill_routing_1", kill_service("routing")),
        ("kill_routing_2", kill_service(second)),
        ("kill_notify", kill_service("notify")),
        ("restart_nats", restart_nats(graceful=True)),
        ("kill_nats", restart_nats(graceful=False)),
        ("kill_postgres", restart_postgres()),
        ("pause_routing", pause_service(second, 8.0)),
        ("pause_notify", pause_service("notify", 8.0)),
        ("sigterm_routing", terminate_service("routing")),
        ("sigterm_notify", terminate_service("notify")),
        ("sigterm_intake", terminate_service("intake")),
    ]


# --------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


async def _consumer_state(url: str) -> dict[str, tuple[int, int]]:
    nc = await nats.connect(servers=url.split(","), connect_timeout=3, max_reconnect_attempts=3)
    try:
        js = nc.jetstream(timeout=5)
        out = {}
        for name in ("routing", "notify"):
            ci = await js.consumer_info(STREAM, name)
            out[name] = (int(ci.num_pending or 0), int(ci.num_ack_pending or 0))
        return out
    finally:
        await nc.close()


async def _stream_subjects(url: str) -> dict[str, int]:
    nc = await nats.connect(servers=url.split(","), connect_timeout=3, max_reconnect_attempts=3)
    try:
        info = await nc.jetstream(timeout=10).stream_info(STREAM, subjects_filter="refnet.>")
        return {str(k): int(v) for k, v in (info.state.subjects or {}).items()}
    finally:
        await nc.close()


async def wait_converged(dsn: str, nats_url: str, limit_s: float = 120.0) -> float:
    """Wait until nothing is in flight: no referral in `received`, outbox empty, consumers drained,
    every assignment notified. Returns the seconds it took (the timeout if it never converged)."""
    t0 = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        while time.monotonic() - t0 < limit_s:
            busy = await conn.fetchval(
                "SELECT (SELECT count(*) FROM referrals WHERE status = 'received')"
                " + (SELECT count(*) FROM outbox)"
                " + (SELECT count(*) FROM assignments a WHERE NOT EXISTS (SELECT 1 FROM notifications n"
                "    WHERE n.assignment_id = a.id AND n.channel = 'inapp'))"
            )
            if busy == 0:
                with contextlib.suppress(Exception):
                    state = await _consumer_state(nats_url)
                    if all(p == 0 and a == 0 for p, a in state.values()):
                        return time.monotonic() - t0
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    return limit_s


async def check_invariants(
    dsn: str, nats_url: str, load: PartnerLoad, probe_keys: Sequence[str] = ()
) -> list[Check]:
    checks: list[Check] = []

    def add(name: str, ok: bool, detail: str) -> None:
        checks.append(Check(name, bool(ok), detail))

    accepted = [s for s in load.submissions if s.referral_id is not None]
    ids = [s.referral_id for s in accepted]
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetchval("SELECT count(*) FROM referrals WHERE id = any($1::uuid[])", ids)
        keyed = {
            r["key"]: str(r["referral_id"])
            for r in await conn.fetch(
                "SELECT key, referral_id FROM idempotency_keys WHERE key = any($1::text[])",
                [s.key for s in load.submissions],
            )
        }
        mismatched = sum(1 for s in accepted if keyed.get(s.key) != s.referral_id)
        total = await conn.fetchval("SELECT count(*) FROM referrals")
        orphans = await conn.fetchval(
            "SELECT count(*) FROM referrals r WHERE NOT EXISTS"
            " (SELECT 1 FROM idempotency_keys i WHERE i.referral_id = r.id)"
        )
        abandoned = sum(1 for s in load.submissions if s.abandoned)
        add(
            "every 2xx referral exists exactly once",
            found == len(set(ids)) == len(ids) and mismatched == 0 and orphans == 0,
            f"{len(ids)} answered 2xx, {found} found; {total} referrals in all, each from one "
            f"Idempotency-Key ({orphans} without one, {mismatched} key/id mismatches, {abandoned} abandoned)",
        )
        received = await conn.fetchval("SELECT count(*) FROM referrals WHERE status = 'received'")
        by_status: dict[str, int] = {
            r["status"]: r["count"]
            for r in await conn.fetch("SELECT status, count(*) FROM referrals GROUP BY 1 ORDER BY 1")
        }
        add(
            "no referral stuck in 'received'",
            received == 0,
            ", ".join(f"{k} {v}" for k, v in by_status.items()),
        )
        bad_assigned = await conn.fetchval(
            "SELECT count(*) FROM referrals r WHERE r.status IN ('assigned', 'accepted', 'engaged') AND"
            " (SELECT count(*) FROM assignments a WHERE a.referral_id = r.id AND a.state IN ('offered', 'accepted')) <> 1"
        )
        bad_queued = await conn.fetchval(
            "SELECT count(*) FROM referrals r WHERE r.status = 'unroutable' AND EXISTS"
            " (SELECT 1 FROM assignments a WHERE a.referral_id = r.id AND a.state IN ('offered', 'accepted'))"
        )
        other = sum(v for k, v in by_status.items() if k not in ("assigned", "unroutable"))
        add(
            "each referral: exactly one live assignment, or queued",
            bad_assigned == 0 and bad_queued == 0 and other == 0,
            f"{bad_assigned} assigned without exactly one live offer, {bad_queued} queued with one,"
            f" {other} in another status",
        )
        reoffered = await conn.fetchval(
            "SELECT count(*) FROM (SELECT referral_id FROM assignments GROUP BY referral_id"
            " HAVING count(*) > 1 AND bool_and(state IN ('offered', 'accepted'))) d"
        )
        assignments = await conn.fetchval("SELECT count(*) FROM assignments")
        add("no referral offered twice", reoffered == 0, f"{assignments} assignments, {reoffered} doubled")
        over = await conn.fetchval("SELECT count(*) FROM case_managers WHERE active_count > capacity")
        drift = await conn.fetchval(
            "SELECT count(*) FROM case_managers c WHERE c.active_count <> (SELECT count(*) FROM assignments a"
            " WHERE a.case_manager_id = c.staff_id AND a.state IN ('offered', 'accepted'))"
        )
        small = await conn.fetchrow(
            "SELECT active_count, capacity FROM case_managers WHERE capacity < $1 ORDER BY capacity LIMIT 1",
            LARGE_CAPACITY,
        )
        add(
            "no case manager over capacity",
            over == 0 and drift == 0,
            f"{over} over, {drift} counters off"
            + (f"; small one holds {small['active_count']}/{small['capacity']}" if small else ""),
        )
        unnotified = await conn.fetchval(
            "SELECT count(*) FROM assignments a WHERE NOT EXISTS (SELECT 1 FROM notifications n"
            " WHERE n.assignment_id = a.id AND n.recipient_id = a.case_manager_id AND n.channel = 'inapp')"
        )
        doubled = await conn.fetchval(
            "SELECT count(*) FROM (SELECT assignment_id, recipient_id, channel, kind FROM notifications"
            " WHERE assignment_id IS NOT NULL GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d"
        )
        add(
            "each assignment notified: >= 1 in-app, <= 1 per channel",
            unnotified == 0 and doubled == 0,
            f"{unnotified} without in-app notification, {doubled} duplicated",
        )
        outbox = await conn.fetchval("SELECT count(*) FROM outbox")
        add("outbox empty", outbox == 0, f"{outbox} rows")
        dead = await conn.fetchval("SELECT count(*) FROM dead_letters")
        add("no dead letters", dead == 0, f"{dead} dead letters")
        if probe_keys:
            leaked = await conn.fetchval(
                "SELECT count(*) FROM idempotency_keys WHERE key = any($1::text[])", list(probe_keys)
            )
            add(
                "503 answers wrote nothing",
                leaked == 0,
                f"{len(probe_keys)} requests answered while PostgreSQL was down, {leaked} rows",
            )
        stream_counts = await _stream_subjects(nats_url)
        published = stream_counts.get("refnet.referral.received", 0)
        assigned_events = stream_counts.get("refnet.referral.assigned", 0)
        add(
            "each event in the stream once",
            published == total and assigned_events == assignments,
            f"referral.received {published} for {total} referrals, referral.assigned {assigned_events}"
            f" for {assignments} assignments",
        )
    finally:
        await conn.close()
    state = await _consumer_state(nats_url)
    add(
        "no JetStream message pending or unacked",
        all(p == 0 and a == 0 for p, a in state.values()),
        ", ".join(f"{k}: {p} pending, {a} unacked" for k, (p, a) in state.items()),
    )
    errors = sum(load.unexpected.values())
    add(
        "intake answered only 2xx/503 (or refused connections)",
        errors == 0 and load.missing_retry_after == 0,
        f"unexpected {dict(load.unexpected) or 'none'}; {load.missing_retry_after} 503 without Retry-After",
    )
    return checks


# --------------------------------------------------------------------------------------------
# The run and its report
# --------------------------------------------------------------------------------------------


@dataclass
class ChaosReport:
    faults: list[FaultResult]
    checks: list[Check]
    submitted: int = 0
    accepted: int = 0
    attempts: int = 0
    load_seconds: float = 0.0
    converge_seconds: float = 0.0
    total_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.faults) and all(c.ok for c in self.checks)

    def table(self) -> str:
        lines = [
            f"refnet chaos: {self.accepted} referrals accepted (2xx) of {self.submitted} submitted"
            f" in {self.attempts} requests over {self.load_seconds:.0f}s;"
            f" converged {self.converge_seconds:.1f}s after load; {self.total_seconds:.0f}s in all",
            "",
            f"{'#':>2}  {'at':>6}  {'fault injected':<48} {'outage':>7}  {'ok':<4} detail",
        ]
        for i, f in enumerate(self.faults, 1):
            lines.append(
                f"{i:>2}  {f.at_s:>5.1f}s  {f.name:<48} {f.seconds:>6.1f}s  {'yes' if f.ok else 'NO':<4} {f.detail}"
            )
        width = max([56, *(len(c.name) for c in self.checks)])
        lines += ["", f"{'invariant':<{width}} {'held':<5} detail"]
        for c in self.checks:
            lines.append(f"{c.name:<{width}} {'yes' if c.ok else 'NO':<5} {c.detail}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "submitted": self.submitted,
            "accepted": self.accepted,
            "attempts": self.attempts,
            "load_seconds": round(self.load_seconds, 1),
            "converge_seconds": round(self.converge_seconds, 1),
            "faults": [
                {
                    "name": f.name,
                    "at_s": round(f.at_s, 1),
                    "seconds": round(f.seconds, 1),
                    "ok": f.ok,
                    "detail": f.detail,
                }
                for f in self.faults
            ],
            "invariants": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


async def run_chaos(
    platform: Platform,
    schedule: Sequence[tuple[str, Fault]],
    *,
    rate: float = 25.0,
    max_referrals: int = 4000,
    warmup_s: float = 5.0,
    settle_s: float = 5.0,
    tail_s: float = 5.0,
    converge_timeout_s: float = 120.0,
    progress: Callable[[str], None] | None = None,
) -> ChaosReport:
    """Drive load on a started platform, inject ``schedule`` one fault after another (each in a thread,
    so the load keeps flowing), stop the load, wait for convergence, then check the invariants."""
    say = progress or (lambda _msg: None)
    t_start = time.monotonic()
    keys = [p["api_key"] for p in platform.creds["partners"]]
    max_seconds = warmup_s + len(schedule) * (settle_s + 12.0) + tail_s + 60.0
    load = PartnerLoad(
        platform.base_url, keys, rate=rate, max_referrals=max_referrals, max_seconds=max_seconds
    )
    ctx = ChaosContext(platform, load)
    load_task = asyncio.create_task(load.run(), name="chaos-load")
    try:
        await asyncio.sleep(warmup_s)
        for name, fault in schedule:
            if load_task.done():
                break
            say(f"fault {name} ({len(load.submissions)} submitted so far)")
            try:
                result = await asyncio.to_thread(fault, ctx)
            except Exception as exc:
                result = FaultResult(
                    name, time.monotonic() - ctx.t0, 0.0, f"{type(exc).__name__}: {exc}", False
                )
            ctx.faults.append(result)
            await asyncio.sleep(settle_s)
        await asyncio.sleep(tail_s)
    finally:
        load.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(load_task, timeout=120)
    load_seconds = time.monotonic() - load.started
    say(f"load stopped: {len(load.submissions)} submitted; waiting for convergence")
    platform.check_alive()
    converge = await wait_converged(platform.admin_dsn, platform.nats_url, converge_timeout_s)
    checks = list(ctx.extra_checks)
    checks += await check_invariants(platform.admin_dsn, platform.nats_url, load, ctx.probe_keys)
    for f in ctx.faults:
        if f.name.startswith(("restart nats", "kill -9 nats", "kill -9 NATS")):
            start, end = f.window
            ok = load.count(start, end, (200, 201))
            checks.append(
                Check(
                    f"intake kept accepting: {f.name.split(',')[0]}",
                    ok > 0,
                    f"{ok} referrals answered 2xx meanwhile",
                )
            )
    checks.append(
        Check(
            "converged after the load",
            converge < converge_timeout_s,
            f"{converge:.1f}s (limit {converge_timeout_s:.0f}s)",
        )
    )
    stalled = platform.logs().count('"routing.stalled_referrals_routed"')
    checks.append(Check("no referral needed the stalled-referral sweep", stalled == 0, f"{stalled} sweeps"))
    return ChaosReport(
        faults=ctx.faults,
        checks=checks,
        submitted=len(load.submissions),
        accepted=sum(1 for s in load.submissions if s.referral_id),
        attempts=len(load.attempts),
        load_seconds=load_seconds,
        converge_seconds=converge,
        total_seconds=time.monotonic() - t_start,
    )


async def run_cli(rate: float, max_referrals: int, cluster: bool, keep: bool, json_out: str | None) -> int:
    """`refnet chaos`: the default fault schedule on fresh embedded servers in a temp dir."""
    workdir = Path(tempfile.mkdtemp(prefix="refnet-chaos-"))
    platform = chaos_platform(workdir, nats_nodes=3 if cluster else 1)
    try:
        await asyncio.to_thread(platform.start_servers)
        await prepare_chaos_database(platform)
        await asyncio.to_thread(platform.start_all)
        schedule = (
            [
                ("kill_nats_leader", kill_nats_node("leader")),
                ("kill_nats_follower", kill_nats_node("follower")),
            ]
            if cluster
            else default_schedule()
        )
        report = await run_chaos(
            platform,
            schedule,
            rate=rate,
            max_referrals=max_referrals,
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
    finally:
        await asyncio.to_thread(platform.close)
        if keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report.table())
    if json_out:
        await asyncio.to_thread(Path(json_out).write_text, json.dumps(report.to_json(), indent=2))
    return 0 if report.ok else 1
