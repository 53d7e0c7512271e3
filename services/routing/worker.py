"""Routing consumer and periodic duties: route received and declined referrals, expire offers, drain the queue."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog

from services.routing.engine import WALK_PLAN, Routed, route_batch, route_referral
from services.routing.rules import Rules, effective_rules
from shared import metrics
from shared.bus import CONSUMERS, ConsumerSpec, Handler, Poison
from shared.config import Settings
from shared.db import load_sql, retrying, transaction
from shared.events import (
    AnyEvent,
    AssignmentDeclined,
    AssignmentExpired,
    ReferralReceived,
    ReferralWithdrawn,
)
from shared.groupcommit import GroupCommit, ItemFailed
from shared.outbox import enqueue

__all__ = [
    "cancel_withdrawn",
    "drain_queue",
    "expire_offers",
    "maintain",
    "make_handler",
    "return_from_away",
    "route_stalled",
]

log = structlog.get_logger("refnet.routing")
CONSUMER = "routing"
_SQL = __package__
# Group commit bounds: events decided in one transaction, and such transactions open at once per
# process. Bigger batches amortise more but hold the candidates' rows longer against other workers.
BATCH_MAX = 64  # the default of REFNET_ROUTING_BATCH_MAX
# One batch in flight per process: what arrives while it commits forms the next, bigger batch. Two
# in flight per service (until stop 25) split the load into smaller batches whose statements and
# row locks competed: at 500 referrals/s, three interleaved pairs, 3.59 -> 3.41-3.49 ms of CPU and
# received -> notified p99 236-358 -> 183-215 ms (docs/performance.md, stop 25). More throughput
# comes from more processes, not more batches per process.
BATCHES_IN_FLIGHT = 1
UNBATCHED_IN_FLIGHT = 32
# Messages in hand at once: enough that the next batch fills while one commits and its acks go out
# (with 32, every message waited for the batch before it and throughput was 32 per commit cycle).
CONSUMER_CONCURRENCY = 4 * BATCH_MAX
# A referral still unrouted after this long has lost its event somewhere; route it from the table.
STALLED_AFTER_S = 120.0


async def cancel_withdrawn(conn: asyncpg.Connection, ref: asyncpg.Record) -> None:
    """Consent was withdrawn before engagement: close the live offer and free its capacity."""
    if ref["status"] != "withdrawn":
        return  # engaged cases continue (without PII); nothing to cancel
    live = await conn.fetchrow(load_sql(_SQL, "cancel_live_assignment"), ref["id"])
    if live is not None:
        await conn.execute(load_sql(_SQL, "release_capacity"), live["case_manager_id"])


_Routable = ReferralReceived | AssignmentDeclined | ReferralWithdrawn


def make_handler(pool: asyncpg.Pool, settings: Settings) -> Handler:
    rules = effective_rules(settings)
    # Events handled at the same moment share one transaction and one commit (shared.groupcommit),
    # decided set-based (route_batch): every referral of the batch is decided first, then the chosen case
    # managers' rows are locked in staff_id order in one statement, so batches of any number of routing
    # processes run at once without deadlocking. Each event is still claimed and recorded as alone, and
    # acked after that commit. The walk's planner settings ride on BEGIN, once per batch.
    batched = settings.routing_batch_max > 1

    async def together(conn: asyncpg.Connection, events: list[Any]) -> list[None]:
        routes: list[tuple[asyncpg.Record, str]] = []
        releases: list[str] = []
        ids = [(_uuid_or_none(e.event_id), _uuid_or_none(e.referral_id)) for e in events]
        for index, (event_id, referral_id) in enumerate(ids):
            if event_id is None or referral_id is None:
                raise ItemFailed(index)  # a malformed id: alone, the one-event path refuses it
        # Every event's claim and its referral's lock in one statement (referrals locked in id order).
        rows = await conn.fetch(
            load_sql(_SQL, "claim_and_lock_many"), CONSUMER, [e for e, _ in ids], [r for _, r in ids]
        )
        by_index: dict[int, asyncpg.Record] = {}
        seen: set[object] = set()
        for row in sorted(rows, key=lambda r: r["ord"]):
            if row["id"] in seen:
                # A second event of one referral: alone, after the others, it sees what the first did
                # (as one event after the other would).
                raise ItemFailed(row["ord"] - 1)
            seen.add(row["id"])
            by_index[row["ord"] - 1] = row
        for index, payload in enumerate(events):
            event: _Routable = payload
            ref = by_index.get(index)
            if ref is None:
                raise ItemFailed(index)  # no such referral: alone, it is Poison
            if not ref["claimed"] or not _to_route(event, ref, await _live(conn, event, ref)):
                if ref["claimed"] and isinstance(event, ReferralWithdrawn) and ref["status"] == "withdrawn":
                    live = await conn.fetchrow(load_sql(_SQL, "cancel_live_assignment"), ref["id"])
                    if live is not None:
                        releases.append(str(live["case_manager_id"]))
                continue
            routes.append((ref, event.trace_id))
        try:
            await route_batch(conn, routes, rules, releases)
        except asyncpg.LockNotAvailableError:
            # A later round's case manager is held by another batch right now: this batch must not
            # wait for it (see route_batch). Roll back; one event alone (free to wait), the rest again.
            raise ItemFailed(0) from None
        return [None] * len(events)

    group = GroupCommit(
        pool,
        setup=WALK_PLAN,
        together=together if batched else None,
        max_batch=settings.routing_batch_max,
        # Unbatched: each event alone, as many at once as before batching (no deadlock: one
        # case manager's place per transaction).
        max_inflight=BATCHES_IN_FLIGHT if batched else UNBATCHED_IN_FLIGHT,
    )

    async def handle(event: AnyEvent) -> None:
        if not isinstance(event, ReferralReceived | AssignmentDeclined | ReferralWithdrawn):
            return  # not ours (filtered subjects make this rare); ack and move on

        async def work(conn: asyncpg.Connection) -> None:
            ref = await conn.fetchrow(
                load_sql(_SQL, "claim_and_lock"), CONSUMER, event.event_id, event.referral_id
            )
            if ref is None:
                raise Poison(f"referral {event.referral_id} does not exist")
            if not ref["claimed"]:
                return  # an earlier delivery already committed its effect: ack
            if isinstance(event, ReferralWithdrawn):
                await cancel_withdrawn(conn, ref)
                return
            if _to_route(event, ref, await _live(conn, event, ref)):
                await route_referral(conn, ref, rules, event.trace_id)

        if isinstance(event, AssignmentDeclined):
            metrics.offers_declined()
        await retrying(lambda: group.run(work, payload=event))

    return handle


async def _live(conn: asyncpg.Connection, event: AnyEvent, ref: asyncpg.Record) -> bool:
    """Whether a declined referral already has a live offer or acceptance (read only for a decline)."""
    if not isinstance(event, AssignmentDeclined) or not ref["claimed"]:
        return False
    return bool(await conn.fetchval(load_sql(_SQL, "live_assignment_exists"), ref["id"]))


def _uuid_or_none(value: str) -> uuid.UUID | None:
    """An id from an event, or None when malformed."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _to_route(event: AnyEvent, ref: asyncpg.Record, live: bool) -> bool:
    """Whether a claimed event routes its referral: received and still so, or declined with no live
    offer while still assigned. A withdrawal never routes."""
    if isinstance(event, ReferralReceived):
        return bool(ref["status"] == "received")
    if isinstance(event, AssignmentDeclined):
        return not live and ref["status"] == "assigned"
    return False


def _rules(arg: Settings | Rules) -> Rules:
    return arg if isinstance(arg, Rules) else effective_rules(arg)


async def expire_offers(pool: asyncpg.Pool, settings: Settings | Rules, batch: int = 100) -> int:
    """Expire offers past ``respond_by`` and re-route their referrals, one transaction per offer.

    SKIP LOCKED lets several routing workers sweep at once without waiting on each other, and one
    offer per transaction keeps a worker from holding many case managers' rows at once.
    """
    rules = _rules(settings)

    async def once() -> bool:
        async with transaction(pool) as conn:
            row = await conn.fetchrow(load_sql(_SQL, "lock_expired_offer"))
            if row is None:
                return False
            await conn.execute(load_sql(_SQL, "expire_offer"), row["id"])
            await conn.execute(load_sql(_SQL, "release_capacity"), row["case_manager_id"])
            await enqueue(
                conn,
                AssignmentExpired(
                    referral_id=str(row["referral_id"]),
                    assignment_id=str(row["id"]),
                    case_manager_id=str(row["case_manager_id"]),
                ),
            )
            ref = await conn.fetchrow(load_sql(_SQL, "lock_referral"), row["referral_id"])
            if ref is not None and ref["status"] == "assigned":
                await route_referral(conn, ref, rules)
            return True

    count = 0
    while count < batch and await retrying(once):
        count += 1
    if count:
        log.info("routing.offers_expired", count=count)
        metrics.offers_expired(count)
    return count


async def return_from_away(pool: asyncpg.Pool) -> int:
    """Case managers whose away-until date has come (agency calendar) are active again."""
    async with transaction(pool) as conn:
        rows = await conn.fetch(load_sql(_SQL, "return_from_away"))
    if rows:
        log.info("routing.case_managers_returned", count=len(rows))
    return len(rows)


async def _route_one(
    pool: asyncpg.Pool, referral_id: uuid.UUID, rules: Rules, *, queued: bool
) -> Routed | None:
    """Lock one referral, if still in the state its caller found it in, and route it: one waiting in
    the queue (``queued``, the drain) or one still ``received`` (route_stalled). A waiting one that still
    finds nobody stays as it is, and what it was tried against is remembered (queue_tried.sql) so the
    drain leaves it until that changes (queue_to_drain.sql, migration 0104)."""
    lock = "lock_queued_referral" if queued else "lock_received_referral"

    async def once() -> Routed | None:
        async with transaction(pool) as conn:
            # Before anything is read: every change this snapshot sees, the routing below sees too.
            snapshot = await conn.fetchval(load_sql(_SQL, "current_snapshot")) if queued else None
            ref = await conn.fetchrow(load_sql(_SQL, lock), referral_id)
            if ref is None:
                return None  # changed meanwhile, or another worker has it right now
            routed = await route_referral(conn, ref, rules, quiet=queued)
            if routed.status == "unchanged":  # quiet only: a waiting referral left as it was
                await conn.execute(load_sql(_SQL, "queue_tried"), referral_id, snapshot, rules.version)
            return routed

    return await retrying(once)


async def drain_queue(
    pool: asyncpg.Pool, settings: Settings | Rules, *, regions: Sequence[str] | None = None, batch: int = 500
) -> int:
    """Route waiting referrals (no eligible case manager, not exhausted) where some capacity is free.

    Most urgent, then longest waiting, first: when one place frees up, the referral that has waited
    longest for it gets it. One that still finds nobody stays as it is, with nothing written.
    """
    rules = _rules(settings)
    async with transaction(pool) as conn:
        ids = await conn.fetch(
            load_sql(_SQL, "queue_to_drain"), list(regions) if regions else None, batch, rules.version
        )
    assigned = 0
    for row in ids:
        routed = await _route_one(pool, row["id"], rules, queued=True)
        if routed is not None and routed.status == "assigned":
            assigned += 1
    if assigned:
        log.info("routing.queue_drained", assigned=assigned, tried=len(ids))
    return assigned


async def route_stalled(pool: asyncpg.Pool, settings: Settings | Rules, batch: int = 100) -> int:
    """Safety net: route referrals still ``received`` long after intake, whatever happened to their event
    (e.g. it exhausted its deliveries during a long database outage). The event handler skips a referral
    that is no longer ``received``, so this and a late event never both route it."""
    rules = _rules(settings)
    async with transaction(pool) as conn:
        ids = await conn.fetch(load_sql(_SQL, "stalled_referrals"), STALLED_AFTER_S, batch)
    routed = 0
    for row in ids:
        if await _route_one(pool, row["id"], rules, queued=False) is not None:
            routed += 1
    if routed:
        log.warning("routing.stalled_referrals_routed", count=routed)
    return routed


async def maintain(pool: asyncpg.Pool, settings: Settings) -> None:
    """The routing worker's periodic duties: expiry first (it frees capacity), then returns, the queue."""
    rules = effective_rules(settings)
    await expire_offers(pool, rules)
    await return_from_away(pool)
    await drain_queue(pool, rules)
    await route_stalled(pool, rules)


def consumer_spec() -> ConsumerSpec:
    return CONSUMERS[CONSUMER]
