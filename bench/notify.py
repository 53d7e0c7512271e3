"""`python -m bench.notify`: notification fan-out throughput and received→delivered latency (p50/p99)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from typing import Any

import asyncpg
import httpx

from bench._load import make_bodies
from bench._platform import BenchError, prepare_bench_database, run_on_platform
from bench._report import percentile
from bench._scratch import progress_to_stderr
from refnet_dev.embedded import free_port
from refnet_dev.platform import Platform
from shared.logging import configure_logging

__all__ = ["main"]


_progress = progress_to_stderr("bench.notify")


@dataclass
class Arrivals:
    """What reached the outside world, stamped on arrival (wall clock, same host as PostgreSQL)."""

    webhooks: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)  # webhook-id -> (t, body)
    duplicates: int = 0
    emails: dict[str, float] = field(default_factory=dict)  # delivery id (from Message-ID) -> t


class Receiver:
    """A keep-alive HTTP/1.1 webhook receiver answering 204 at once."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.time()
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                wid = headers.get("webhook-id", "")
                if wid in self.arrivals.webhooks:
                    self.arrivals.duplicates += 1
                else:
                    self.arrivals.webhooks[wid] = (now, json.loads(body))
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _SmtpHandler:
    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content)
        # The Message-ID is the delivery id: emails carry nothing else that could identify the referral.
        self.arrivals.emails[str(msg["Message-ID"]).strip("<>").split("@")[0]] = time.time()
        return "250 OK"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.notify",
        description="Notification fan-out: in-app, partner webhooks (real local receiver) and email (local "
        "SMTP server) for referrals submitted through intake. Reports latency from a referral's receipt to "
        "each channel's delivery at a steady rate, then fan-out throughput for a burst.",
    )
    p.add_argument("--quick", action="store_true", help="a short run (well under a minute)")
    p.add_argument("--rate", type=float, default=20.0, help="referrals/s in the latency phase (default 20)")
    p.add_argument("--referrals", type=int, help="referrals in the latency phase (default 400, quick 100)")
    p.add_argument("--burst", type=int, help="referrals in the throughput burst (default 1000, quick 300)")
    p.add_argument("--endpoints", type=int, default=2, help="webhook endpoints per partner (default 2)")
    p.add_argument("--no-email", action="store_true", help="leave email off")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    args = p.parse_args(argv)
    args.referrals = args.referrals or (100 if args.quick else 400)
    args.burst = args.burst or (300 if args.quick else 1000)
    if args.rate <= 0 or args.referrals < 1 or args.burst < 1 or args.endpoints < 0:
        p.error("--rate, --referrals and --burst must be positive, --endpoints not negative")
    return args


async def _post_all(
    base_url: str, keys: list[str], bodies: list[bytes], rate: float | None, concurrency: int = 32
) -> list[tuple[str, str]]:
    """Submit referrals (at ``rate`` per second, or as fast as ``concurrency`` allows); (id, partner key)."""
    sem = asyncio.Semaphore(concurrency)
    out: list[tuple[str, str]] = []
    async with httpx.AsyncClient(
        base_url=base_url,
        timeout=30,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    ) as client:

        async def one(i: int) -> None:
            key = keys[i % len(keys)]
            async with sem:
                r = await client.post(
                    "/v1/referrals",
                    content=bodies[i % len(bodies)],
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                )
            if r.status_code != 201:
                raise BenchError(f"intake answered {r.status_code}: {r.text[:200]}")
            out.append((r.json()["id"], key))

        start = time.perf_counter()
        tasks = []
        for i in range(len(bodies)):
            if rate:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return out


async def _drained(conn: asyncpg.Connection, ids: list[str], limit_s: float) -> float:
    """Wait until every referral is routed, notified in-app, and no delivery waits; seconds taken."""
    started = time.monotonic()
    while True:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE r.status = 'received') AS unrouted,"
            " count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM notifications n WHERE n.referral_id = r.id))"
            " AS unnotified FROM referrals r WHERE r.id = any($1::uuid[])",
            ids,
        )
        waiting = await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE state IN ('pending', 'failed')"
            " OR (referral_id = any($1::uuid[]) AND state <> 'delivered' AND state <> 'cancelled')",
            ids,
        )
        outbox = await conn.fetchval("SELECT count(*) FROM outbox")
        assert row is not None
        if row["unrouted"] == 0 and row["unnotified"] == 0 and waiting == 0 and outbox == 0:
            return time.monotonic() - started
        if time.monotonic() - started > limit_s:
            raise BenchError(
                f"not drained after {limit_s:.0f}s: unrouted={row['unrouted']} unnotified={row['unnotified']}"
                f" deliveries waiting={waiting} outbox={outbox}"
            )
        await asyncio.sleep(0.2)


async def _routed(conn: asyncpg.Connection, ids: list[str], limit_s: float) -> None:
    """Wait until routing has handled every referral and the outbox is empty (events are in JetStream)."""
    started = time.monotonic()
    while True:
        left = await conn.fetchval(
            "SELECT count(*) FROM referrals WHERE id = any($1::uuid[]) AND status = 'received'", ids
        )
        if left == 0 and await conn.fetchval("SELECT count(*) FROM outbox") == 0:
            return
        if time.monotonic() - started > limit_s:
            raise BenchError(f"routing did not finish within {limit_s:.0f}s ({left} left)")
        await asyncio.sleep(0.2)


def _stats(values: list[float]) -> dict[str, float | int | None]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    return {
        "n": len(values),
        "p50_ms": r(percentile(values, 50)),
        "p90_ms": r(percentile(values, 90)),
        "p99_ms": r(percentile(values, 99)),
        "max_ms": r(max(values)) if values else None,
    }


async def _latencies(conn: asyncpg.Connection, ids: list[str], arrivals: Arrivals) -> dict[str, Any]:
    received = {
        str(r["id"]): r["received_at"].timestamp()
        for r in await conn.fetch("SELECT id, received_at FROM referrals WHERE id = any($1::uuid[])", ids)
    }
    inapp = [
        (r["created_at"].timestamp() - received[str(r["referral_id"])]) * 1000
        for r in await conn.fetch(
            "SELECT referral_id, min(created_at) AS created_at FROM notifications"
            " WHERE referral_id = any($1::uuid[]) GROUP BY referral_id",
            ids,
        )
    ]
    webhook: dict[str, float] = {}
    for at, body in arrivals.webhooks.values():
        rid = body.get("data", {}).get("referral_id")
        if rid in received:
            # The first webhook about the referral: its routing outcome (assigned or unroutable).
            ms = (at - received[rid]) * 1000
            webhook[rid] = min(ms, webhook.get(rid, ms))
    email = []
    for r in await conn.fetch(
        "SELECT id, referral_id FROM deliveries WHERE channel = 'email' AND referral_id = any($1::uuid[])",
        ids,
    ):
        arrived = arrivals.emails.get(str(r["id"]))
        if arrived is not None:
            email.append((arrived - received[str(r["referral_id"])]) * 1000)
    return {"inapp": _stats(inapp), "webhook": _stats(list(webhook.values())), "email": _stats(email)}


async def _outputs(conn: asyncpg.Connection, ids: list[str], arrivals: Arrivals) -> dict[str, Any]:
    inapp = await conn.fetch("SELECT created_at FROM notifications WHERE referral_id = any($1::uuid[])", ids)
    idset = set(ids)
    hooks = [
        at for at, body in arrivals.webhooks.values() if body.get("data", {}).get("referral_id") in idset
    ]
    email_ids = {
        str(r["id"])
        for r in await conn.fetch(
            "SELECT id FROM deliveries WHERE channel = 'email' AND referral_id = any($1::uuid[])", ids
        )
    }
    mails = [at for did, at in arrivals.emails.items() if did in email_ids]
    times = [r["created_at"].timestamp() for r in inapp] + hooks + mails
    span = max(times) - min(times)
    total = len(inapp) + len(hooks) + len(mails)
    return {
        "referrals": len(ids),
        "inapp": len(inapp),
        "webhooks": len(hooks),
        "emails": len(mails),
        "outputs": total,
        "span_s": round(span, 3),
        "outputs_per_s": round(total / span, 1) if span > 0 else None,
        "webhooks_per_s": round(len(hooks) / (max(hooks) - min(hooks)), 1) if len(hooks) > 1 else None,
    }


async def _measure(
    args: argparse.Namespace, plat: Platform, arrivals: Arrivals, smtp_port: int
) -> dict[str, Any]:
    receiver = Receiver(arrivals)
    await receiver.start()
    conn = await asyncpg.connect(plat.admin_dsn)
    try:
        if smtp_port:
            await conn.execute("UPDATE staff SET email_notifications = true")
        keys = [p["api_key"] for p in plat.creds["partners"]]
        async with httpx.AsyncClient(base_url=plat.base_url, timeout=10) as client:
            for key in keys:
                for i in range(args.endpoints):
                    r = await client.post(
                        "/v1/webhooks",
                        json={
                            "url": f"http://127.0.0.1:{receiver.port}/p/{i}",
                            "events": ["referral.status_changed"],
                        },
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    if r.status_code != 201:
                        raise BenchError(f"webhook registration failed: {r.status_code} {r.text[:200]}")
        _progress(f"{len(keys) * args.endpoints} webhook endpoints registered")

        bodies = make_bodies(args.referrals + args.burst, seed=7)
        _progress(f"latency phase: {args.referrals} referrals at {args.rate:g}/s")
        steady = await _post_all(plat.base_url, keys, bodies[: args.referrals], args.rate)
        steady_ids = [rid for rid, _ in steady]
        drain1 = await _drained(conn, steady_ids, 60)
        latency = await _latencies(conn, steady_ids, arrivals)

        # Throughput of notify alone: its events pile up in JetStream while it is stopped, then it
        # drains them; the clock runs from its first output to its last.
        _progress(f"throughput phase: {args.burst} referrals queued while notify is stopped")
        await asyncio.to_thread(plat.terminate, "notify", 30.0)
        posted_at = time.perf_counter()
        burst = await _post_all(plat.base_url, keys, bodies[args.referrals :], None)
        post_s = time.perf_counter() - posted_at
        burst_ids = [rid for rid, _ in burst]
        await _routed(conn, burst_ids, 120)
        plat.start("notify")
        drain2 = await _drained(conn, burst_ids, 180)
        throughput = await _outputs(conn, burst_ids, arrivals)
        throughput["intake_accept_per_s"] = round(len(burst_ids) / post_s, 1)
        throughput["drain_after_restart_s"] = round(drain2, 2)
        counters = {
            f"{r['channel']}.{r['metric']}": int(r["v"])
            for r in await conn.fetch(
                "SELECT channel, metric, sum(value) AS v FROM delivery_counters GROUP BY 1, 2 ORDER BY 1, 2"
            )
        }
    finally:
        await conn.close()
        await receiver.stop()
    return {
        "endpoints_per_partner": args.endpoints,
        "email": bool(smtp_port),
        "latency_phase": {
            "referrals": len(steady_ids),
            "rate": args.rate,
            "drain_s": round(drain1, 2),
            **latency,
        },
        "throughput_phase": throughput,
        "duplicate_webhooks": arrivals.duplicates,
        "counters": counters,
    }


def _table(result: dict[str, Any]) -> str:
    lat = result["latency_phase"]
    thr = result["throughput_phase"]
    rows = [
        (
            "setup",
            f"{result['endpoints_per_partner']} webhook endpoints/partner, email {'on' if result['email'] else 'off'}",
        ),
        ("latency phase", f"{lat['referrals']} referrals at {lat['rate']:g}/s"),
    ]
    for ch in ("inapp", "webhook", "email"):
        s = lat[ch]
        if s["n"]:
            rows.append(
                (f"received→{ch} p50 / p99", f"{s['p50_ms']} ms / {s['p99_ms']} ms (n={s['n']} messages)")
            )
    rows += [
        ("burst", f"{thr['referrals']} referrals queued for notify, then drained"),
        (
            "fan-out outputs",
            f"{thr['outputs']} ({thr['inapp']} in-app, {thr['webhooks']} webhooks, {thr['emails']} emails)",
        ),
        ("fan-out throughput", f"{thr['outputs_per_s']} outputs/s (first to last output, {thr['span_s']} s)"),
        ("webhook delivery rate", f"{thr['webhooks_per_s']} webhooks/s"),
        ("duplicate webhooks", str(result["duplicate_webhooks"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(["| metric | value |", "|---|---|"] + [f"| {k.ljust(width)} | {v} |" for k, v in rows])


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    configure_logging("console", "WARNING", service="bench")

    def measure(plat: Platform) -> dict[str, Any]:
        arrivals = Arrivals()
        smtp: Any = None
        smtp_port = 0
        if not args.no_email:
            try:
                from aiosmtpd.controller import Controller
            except ImportError:
                _progress("aiosmtpd is not installed (test extra): email is left out")
            else:
                smtp_port = free_port()
                smtp = Controller(_SmtpHandler(arrivals), hostname="127.0.0.1", port=smtp_port)
                smtp.start()
                # Before the first start: every service process shares one environment.
                plat.overrides |= {
                    "REFNET_SMTP_HOST": "127.0.0.1",
                    "REFNET_SMTP_PORT": str(smtp_port),
                    "REFNET_SMTP_STARTTLS": "false",
                }
        try:
            _progress(f"starting PostgreSQL, NATS and the services in {plat.workdir}")
            plat.start_servers()
            asyncio.run(prepare_bench_database(plat))
            plat.start_all(timeout=90)
            result = {
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "quick": args.quick,
                **asyncio.run(_measure(args, plat, arrivals, smtp_port)),
            }
            plat.check_alive()
            return result
        finally:
            if smtp is not None:
                with contextlib.suppress(Exception):
                    smtp.stop()

    return run_on_platform(
        "bench.notify",
        args,
        measure,
        _table,
        env={"REFNET_DELIVERY_POLL_SECONDS": "0.5"},
        progress=_progress,
    )


if __name__ == "__main__":
    sys.exit(main())
