"""Delivery dispatcher: claims due webhooks and emails, sends them outside any transaction, records each attempt."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import structlog

from services.notify.channels import email as email_channel
from services.notify.channels import webhook as webhook_channel
from services.notify.metrics import bump
from services.notify.retry import AttemptResult, Verdict, decide, parse_schedule, should_disable
from services.notify.store import WAKE_CHANNEL, disable_endpoint
from services.notify.suppression import Suppressed, suppression
from shared import metrics
from shared.codes import SHARE_STATUS_SCOPE
from shared.config import Settings
from shared.crypto import KeyRing, Keys
from shared.db import load_sql, retrying, transaction
from shared.listen import Listener
from shared.webhook_signing import open_secret, webhook_headers, webhook_id
from shared.webhook_urls import Resolver, system_resolver

__all__ = ["Dispatcher"]

log = structlog.get_logger("refnet.notify")
_SQL = __package__

_STATE_AFTER = {
    "delivered": "delivered",
    "retry": "failed",
    "throttled": "failed",
    "dead": "dead",
    "gone": "dead",
}
_METRIC_AFTER = {
    "delivered": "delivered",
    "retry": "retried",
    "throttled": "retried",
    "dead": "dead_lettered",
    "gone": "dead_lettered",
}
# Rows that are due but claimed by another dispatcher (or locked a moment): look again soon, not hot.
_MIN_SLEEP_S = 0.02


_RECORD_BATCH = 200


@dataclass
class _Outcome:
    row: asyncpg.Record
    started_at: datetime
    result: AttemptResult
    verdict: Verdict
    done: asyncio.Future[None]


class Dispatcher:
    """One per notify process; any number may run against one database (SKIP LOCKED claims).

    A claim is one short transaction that counts the attempt and leases the row; the HTTP or SMTP
    exchange happens outside any transaction; a second short transaction records the outcome. A
    process that dies between the two leaves the row to be retried when its lease runs out, so a
    receiver may see a message twice (same ``webhook-id``) but never loses one.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        keyring: KeyRing | None = None,
        resolver: Resolver = system_resolver,
        rng: random.Random | None = None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._schedule = parse_schedule(settings.delivery_retry_schedule)
        # Re-read on change: a key rotation re-wraps the webhook secrets under a key made after we started.
        self._keys = (
            None
            if keyring is not None
            else Keys(settings.pii_keyring_file, settings.pii_master_key, settings.pii_master_key_id)
        )
        self._fixed_keyring = keyring
        self._client = webhook_channel.make_client(
            settings.environment,
            settings.webhook_timeout_seconds,
            resolver,
            max_connections=settings.delivery_concurrency,
        )
        self._rng = rng or random.Random()
        self._concurrency = settings.delivery_concurrency
        self._email = bool(settings.smtp_host)
        # Longer than any attempt can take, so a live attempt never loses its row to another worker.
        self._lease_s = max(settings.webhook_timeout_seconds, email_channel.total_timeout(settings)) + 30.0
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._outcomes: asyncio.Queue[_Outcome] = asyncio.Queue()
        self.sent = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, woken by NOTIFY, by finished attempts and by the clock."""
        # New and replayed deliveries NOTIFY (the insert trigger, store.wake_dispatcher); after a
        # reconnection, look at once for whatever became due meanwhile.
        listener = asyncio.create_task(
            Listener(
                self._settings.database_url,
                {WAKE_CHANNEL: lambda _payload: self._wake.set()},
                on_connect=self._wake.set,
                name="deliveries",
            ).run(stop),
            name="deliveries-listen",
        )
        recorder = asyncio.create_task(self._recorder(), name="deliveries-record")
        poll = self._settings.delivery_poll_seconds
        try:
            while not stop.is_set():
                # Cleared before looking, so a wake-up arriving while we look is not lost.
                self._wake.clear()
                free = self._concurrency - len(self._inflight)
                if free <= 0:
                    await self._wait({*self._inflight}, stop, poll)
                    continue
                try:
                    claimed = await self._claim(free)
                    if len(claimed) >= free:
                        continue  # possibly more due: claim again as soon as a slot frees
                    due_in = await self._next_due()
                except Exception as exc:
                    log.warning("dispatcher.claim_failed", error=type(exc).__name__, detail=str(exc)[:200])
                    await self._wait(set(), stop, min(5.0, poll * 2))
                    continue
                timeout = poll if due_in is None else min(poll, max(due_in, _MIN_SLEEP_S))
                await self._wait(set(), stop, timeout)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
            # Graceful stop: let attempts in flight finish and record (their lease covers a crash).
            if self._inflight:
                await asyncio.wait({*self._inflight}, timeout=self._lease_s)
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await recorder
            await self._client.aclose()

    async def _wait(self, tasks: set[asyncio.Task[None]], stop: asyncio.Event, seconds: float) -> None:
        waiters = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait([*waiters, *tasks], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _claim(self, limit: int) -> list[asyncpg.Record]:
        async with transaction(self._pool) as conn:
            rows = await conn.fetch(
                load_sql(_SQL, "claim_deliveries"), limit, self._lease_s, SHARE_STATUS_SCOPE
            )
        for row in rows:
            task = asyncio.create_task(self._deliver(row))
            self._inflight.add(task)
            task.add_done_callback(self._finished)
        return rows

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        # A retry may now be due sooner than the loop planned to look.
        self._wake.set()

    async def _next_due(self) -> float | None:
        async with transaction(self._pool) as conn:
            value = await conn.fetchval(load_sql(_SQL, "next_due"))
        return None if value is None else float(value)

    async def _deliver(self, row: asyncpg.Record) -> None:
        try:
            sup = suppression(
                channel=row["channel"],
                kind=row["kind"],
                referral_status=row["referral_status"],
                assignment_state=row["assignment_state"],
                endpoint_state=row["endpoint_state"],
                followup_recorded=row["followup_recorded"],
                status_shared=row["status_shared"],
            )
            if sup is not None:
                await retrying(lambda: self._suppress(row, sup))
                return
            started_at = datetime.now(UTC)
            if row["channel"] == "webhook":
                result = await self._send_webhook(row)
            else:
                result = await self._send_email(row)
            retries_done = row["attempts"] - row["round_start"] - 1
            verdict = decide(
                result, retries_done, self._schedule, self._settings.delivery_retry_jitter, self._rng
            )
            await self._record(row, started_at, result, verdict)
        except Exception as exc:
            # The lease brings the row back; this must never kill the dispatcher.
            log.error(
                "delivery.failed_to_record",
                delivery_id=str(row["id"]),
                error=type(exc).__name__,
                detail=str(exc)[:200],
            )

    async def _send_webhook(self, row: asyncpg.Record) -> AttemptResult:
        endpoint_id = str(row["endpoint_id"])
        if not row["secret_sealed"]:
            # Deleted (its secrets wiped) after this row was claimed: recording will find it cancelled.
            return AttemptResult(ok=False, error="endpoint_deleted", permanent=True)
        try:
            keyring = self._fixed_keyring or (self._keys.ring if self._keys is not None else None)
            assert keyring is not None
            secrets = [open_secret(keyring, endpoint_id, bytes(row["secret_sealed"]))]
            if row["previous_secret_sealed"]:
                secrets.append(open_secret(keyring, endpoint_id, bytes(row["previous_secret_sealed"])))
        except Exception as exc:
            log.error("webhook.secret_unavailable", endpoint_id=endpoint_id, error=type(exc).__name__)
            return AttemptResult(ok=False, error="secret_unavailable")
        body = msgspec.json.encode(row["payload"])
        msg_id = webhook_id(row["id"])
        headers = webhook_headers(secrets, msg_id, int(time.time()), body)
        return await webhook_channel.post(
            self._client,
            row["url"],
            body,
            headers,
            self._settings.environment,
            self._settings.webhook_timeout_seconds,
        )

    async def _send_email(self, row: asyncpg.Record) -> AttemptResult:
        if not self._email:
            return AttemptResult(ok=False, error="smtp_not_configured", permanent=True)
        if not row["email"]:
            return AttemptResult(ok=False, error="no_address", permanent=True)
        if row["kind"] not in email_channel.EMAIL_KINDS:
            return AttemptResult(ok=False, error="unknown_kind", permanent=True)
        message = email_channel.render(
            row["kind"],
            row["payload"],
            to=row["email"],
            sender=self._settings.email_from,
            base_url=self._settings.public_base_url,
            message_id=f"<{row['id']}@refnet.invalid>",
        )
        return await email_channel.send(message, self._settings)

    async def _suppress(self, row: asyncpg.Record, sup: Suppressed) -> None:
        async with transaction(self._pool) as conn:
            done = await conn.fetchval(
                load_sql(_SQL, "suppress_delivery"), row["id"], row["attempts"], sup.state, sup.reason
            )
            if done:
                await bump(
                    conn, row["channel"], "suppressed" if sup.state == "cancelled" else "dead_lettered"
                )
        log.info(
            "delivery.suppressed",
            delivery_id=str(row["id"]),
            channel=row["channel"],
            kind=row["kind"],
            referral_id=str(row["referral_id"]) if row["referral_id"] else None,
            reason=sup.reason,
        )

    async def _record(
        self, row: asyncpg.Record, started_at: datetime, result: AttemptResult, verdict: Verdict
    ) -> None:
        """Hand the outcome to the recorder and wait until it is committed (or failed to be)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._outcomes.put(_Outcome(row, started_at, result, verdict, done))
        await done

    async def _recorder(self) -> None:
        """Commit finished attempts in batches: one transaction (one WAL flush) for whatever finished
        while the previous batch was being written, instead of one per attempt."""
        while True:
            batch = [await self._outcomes.get()]
            while len(batch) < _RECORD_BATCH and not self._outcomes.empty():
                batch.append(self._outcomes.get_nowait())
            try:
                await retrying(functools.partial(self._record_batch, batch))
            except Exception as exc:
                for o in batch:
                    if not o.done.done():
                        o.done.set_exception(exc)
            else:
                for o in batch:
                    if not o.done.done():
                        o.done.set_result(None)
                for o in batch:
                    metrics.delivery_attempted(o.row["channel"], o.verdict.outcome)
                    self._log(o)

    async def _record_batch(self, batch: list[_Outcome]) -> None:
        webhooks = [o for o in batch if o.row["channel"] == "webhook"]
        async with transaction(self._pool) as conn:
            # Endpoints before deliveries, as everyone else locks them (see the SQL).
            endpoint_ids = sorted({str(o.row["endpoint_id"]) for o in webhooks if o.row["endpoint_id"]})
            if endpoint_ids:
                await conn.fetch(load_sql(_SQL, "lock_endpoints"), endpoint_ids)
            await conn.executemany(
                load_sql(_SQL, "insert_attempt"),
                [
                    (
                        o.row["id"],
                        o.row["attempts"],
                        o.started_at,
                        o.result.latency_ms,
                        o.result.status,
                        o.result.error,
                        o.verdict.outcome,
                        o.verdict.delay,
                    )
                    for o in batch
                ],
            )
            finished = {
                r["id"]
                for r in await conn.fetch(
                    load_sql(_SQL, "finish_deliveries"),
                    [o.row["id"] for o in batch],
                    [o.row["attempts"] for o in batch],
                    [_STATE_AFTER[o.verdict.outcome] for o in batch],
                    [o.verdict.delay for o in batch],
                    [o.result.status for o in batch],
                    [o.result.error for o in batch],
                )
            }
            counts: Counter[tuple[str, str]] = Counter()
            for o in batch:
                counts[o.row["channel"], "attempts"] += 1
                if o.row["id"] in finished:
                    counts[o.row["channel"], _METRIC_AFTER[o.verdict.outcome]] += 1
            for (channel, metric), n in sorted(counts.items()):
                await bump(conn, channel, metric, n)
            await self._endpoint_health(conn, webhooks)
        self.sent += len(batch)

    def _log(self, o: _Outcome) -> None:
        row, result, verdict = o.row, o.result, o.verdict
        fields: dict[str, Any] = {
            "delivery_id": str(row["id"]),
            "channel": row["channel"],
            "kind": row["kind"],
            "attempt": row["attempts"],
            "status": result.status,
            "error": result.error,
            "outcome": verdict.outcome,
            "retry_in_s": None if verdict.delay is None else round(verdict.delay, 3),
            "latency_ms": result.latency_ms,
            "endpoint_id": str(row["endpoint_id"]) if row["endpoint_id"] else None,
            "referral_id": str(row["referral_id"]) if row["referral_id"] else None,
        }
        if verdict.outcome == "delivered":
            log.info("delivery.delivered", **fields)
        elif verdict.outcome in ("dead", "gone"):
            log.warning("delivery.dead_lettered", **fields)
        else:
            log.info("delivery.retry", **fields)

    async def _endpoint_health(self, conn: asyncpg.Connection, outcomes: list[_Outcome]) -> None:
        """A success resets an endpoint's failure run; failures extend it, may throttle it (the receiver
        asked for a pause: 429/502/504 or Retry-After) and may disable it (410, or sustained failure)."""
        if not outcomes:
            return
        ok = {str(o.row["endpoint_id"]) for o in outcomes if o.result.ok}
        if ok:
            await conn.execute(load_sql(_SQL, "endpoints_succeeded"), sorted(ok))
        failed: dict[str, list[_Outcome]] = {}
        for o in outcomes:
            if not o.result.ok:
                failed.setdefault(str(o.row["endpoint_id"]), []).append(o)
        for endpoint_id, fails in sorted(failed.items()):
            pauses = [
                o.verdict.delay
                for o in fails
                if o.verdict.delay is not None and (o.verdict.outcome == "throttled" or o.result.retry_after)
            ]
            gone = any(o.verdict.outcome == "gone" for o in fails)
            if endpoint_id in ok and not gone:
                continue  # it answered too: alive, whatever else happened in this batch
            health = await conn.fetchrow(
                load_sql(_SQL, "endpoint_failed"), endpoint_id, len(fails), max(pauses) if pauses else None
            )
            if health is None:
                continue
            if gone:
                await disable_endpoint(conn, endpoint_id, "gone", email=self._email)
            elif health["state"] == "active" and should_disable(
                health["consecutive_failures"],
                health["failing_since"],
                health["now"],
                self._settings.webhook_disable_after_failures,
                self._settings.webhook_disable_after_seconds,
            ):
                await disable_endpoint(conn, endpoint_id, "failing", email=self._email)
