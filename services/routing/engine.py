"""Route one locked referral: gather candidates in SQL, choose with the pure policy, take capacity, record."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple

import asyncpg
import msgspec
import structlog

from services.routing.policy import (
    Candidate,
    Decision,
    ReferralFacts,
    Scored,
    balance_weight,
    base_score,
    bucket_scores,
    choose,
    excluding_specialisms,
    matching_specialisms,
    need_mask,
    need_minimum,
    place_grants,
    specialism_mask,
)
from services.routing.rules import Rules
from shared import metrics
from shared.db import load_sql, local_setup_applied, mark_local_setup, mark_outbox_written, without_comments
from shared.decisions import Census, DecisionRecord, Inputs
from shared.events import (
    Event,
    ReferralAssigned,
    ReferralStatusChanged,
    ReferralUnroutable,
    encode_event,
    subject_for,
)
from shared.outbox import enqueue

__all__ = [
    "Gathered",
    "Routed",
    "decide",
    "facts_for",
    "gather",
    "previous_offers",
    "route_batch",
    "route_referral",
]

log = structlog.get_logger("refnet.routing")
_SQL = __package__
# Another worker may take the last place of every ranked candidate between our read and our update;
# then read again (the next statement sees their commit), a few times at most.
_TAKE_ROUNDS = 10
# Candidates kept per decision beyond the exact ones: the runners-up a supervisor reads about.
_KEEP = 4
WALK_PLAN = without_comments(load_sql(_SQL, "walk_plan"))
_NONE_RESERVED: Mapping[str, int] = MappingProxyType({})


class Gathered(msgspec.Struct, frozen=True):
    candidates: tuple[Candidate, ...]
    continuity: frozenset[str]
    # How many case managers pass every hard filter, when the walk saw them all (else None: many).
    eligible_total: int | None
    # Every case manager of the region is among the candidates, so each can be explained by name.
    named_all: bool
    # Rows the walk read, for the benchmark and the curious.
    walked: int = 0


class Routed(msgspec.Struct, frozen=True):
    """What route_referral did: ``assigned``, ``unroutable`` or ``unchanged`` (still waiting, nothing written)."""

    status: str
    reason: str
    case_manager_id: str | None = None
    assignment_id: str | None = None


async def previous_offers(conn: asyncpg.Connection, referral_id: uuid.UUID) -> tuple[frozenset[str], int]:
    """Case managers who declined or let an offer of this referral expire, and how many such offers."""
    rows = await conn.fetch(load_sql(_SQL, "previous_offers"), referral_id)
    return frozenset(str(r["case_manager_id"]) for r in rows), len(rows)


def facts_for(ref: asyncpg.Record, rules: Rules, now: datetime) -> ReferralFacts:
    waited = (now - ref["received_at"]).total_seconds()
    return ReferralFacts(
        id=str(ref["id"]),
        region=ref["region"],
        needs=tuple(ref["needs"]),
        language=ref["language"],
        urgency=ref["urgency"],
        age_years=ref["age_years"],
        min_covered=need_minimum(rules.need_match, ref["urgency"], waited),
    )


def _candidate(r: asyncpg.Record, reserved: Mapping[str, int]) -> Candidate:
    return Candidate(
        id=str(r["staff_id"]),
        regions=tuple(r["regions"]),
        needs=tuple(r["needs"]),
        languages=tuple(r["languages"]),
        capacity=r["capacity"],
        active_count=r["active_count"] + reserved.get(str(r["staff_id"]), 0),
        status=r["status"],
        specialisms=tuple(r["specialisms"]),
    )


class _Walk(msgspec.Struct, frozen=True):
    # (-score, id) over every walk so far, best first, at most ``keep``; the first ``limit`` are exact.
    best: list[tuple[float, str]]
    read: int
    exhausted: bool
    first_page: bool


async def _walk(
    conn: asyncpg.Connection,
    sql: str,
    args: tuple[object, ...],
    first_rows: list[asyncpg.Record],
    page: int,
    best_so_far: list[tuple[float, str]],
    *,
    buckets: tuple[float, ...],
    balance: float,
    mask: int,
    fits: int,
    ceiling: float,
    limit: int,
    keep: int,
    reserved: Mapping[str, int],
) -> _Walk:
    """Read one group of case managers least loaded first, in growing pages (the first already read),
    until the ``limit``-th best of everyone read so far (this walk and earlier ones) scores strictly above
    ``ceiling`` + balance x the free share of the last one read. Within a bucket the score only falls as
    the load rises, so nobody in this group not yet read can enter the top ``limit`` any more. The best
    ``keep`` (>= limit) of those read are kept: beyond ``limit`` they are the best of those compared.

    ``reserved``: places this transaction's batch has already planned to take (not yet written), per case
    manager; they count as load. Reservations only lower scores, so the stopping bound (from the
    database's load of the last row read) still bounds everyone unread."""
    rows, size = first_rows, page
    while True:
        free = [(r, r["active_count"] + reserved.get(str(r["staff_id"]), 0)) for r in rows]
        free = [(r, load) for r, load in free if load < r["capacity"]]
        best = sorted(
            [
                *best_so_far,
                *(
                    (
                        -base_score(
                            buckets,
                            balance,
                            (r["need_mask"] & mask).bit_count(),
                            bool(r["specialism_mask"] & fits),
                            load,
                            r["capacity"],
                        ),
                        str(r["staff_id"]),
                    )
                    for r, load in free
                ),
            ]
        )[:keep]
        if len(rows) < size:
            return _Walk(best, len(free), True, size == page)
        last = rows[-1]
        if len(best) >= limit:
            # Anyone unread scores at most `bound`. With a balance weight, only an unread one with exactly
            # the last one's load can reach it, and that one has a higher id (the index order), so on an
            # equal score the tie-break already goes our way. Without one, anyone unread (any load, any
            # id) can reach it: then only a strictly higher score may stop the walk.
            score, cid = -best[limit - 1][0], best[limit - 1][1]
            bound = ceiling + balance * (1.0 - last["active_count"] / last["capacity"])
            tie_ok = balance > 0 and cid <= str(last["staff_id"])
            if score > bound or (score == bound and tie_ok):
                return _Walk(best, len(free), False, False)
        size *= 4
        rows = await conn.fetch(load_sql(_SQL, sql), *args, size)


def _filters(facts: ReferralFacts, excluded: frozenset[str]) -> tuple[Any, ...]:
    """The walks' filters ($1-$7 of walk.sql): region, language, excluding specialisms, excluded case
    managers, need mask, needs to cover, fitting specialisms."""
    return (
        facts.region,
        facts.language,
        specialism_mask(excluding_specialisms(facts)),
        list(excluded),
        need_mask(facts.needs),
        facts.min_covered,
        specialism_mask(matching_specialisms(facts)),
    )


def _pages(rules: Rules) -> tuple[int, int]:
    """First pages: the main walk's, and a smaller one for the two walks over few people."""
    limit = rules.candidates.limit
    return max(4 * limit, 64), max(4 * limit, 16)


async def _steer(conn: asyncpg.Connection) -> None:
    # Row-level security's policy expressions make the planner expect almost no matching rows, so it
    # reads the whole region and sorts rather than walk an index in order and stop at the limit; and
    # it re-plans these statements every time (milliseconds under RLS). Steer it. SET LOCAL lasts until
    # the routing transaction ends; what follows in it are primary-key lookups and inserts. The worker
    # passes it to transaction(setup=...), which saves this round trip.
    if not local_setup_applied(WALK_PLAN):
        await conn.execute(WALK_PLAN)
        mark_local_setup(WALK_PLAN)


class ReadAhead(msgspec.Struct, frozen=True):
    """What a batch read for one of its referrals before any walk (read_ahead), for gather(known=)."""

    # The first page of every walk (walk_first.sql's rows).
    first: list[asyncpg.Record]
    # candidates.sql's 'multi' and 'continuity' rows for this referral.
    multi: list[asyncpg.Record]
    continuity: list[asyncpg.Record]
    # Up to name_all_up_to + 1 of the referral's region's case managers, by id ('member').
    members: list[asyncpg.Record]


async def read_ahead(
    conn: asyncpg.Connection,
    wanted: Sequence[tuple[ReferralFacts, frozenset[str], bytes | None]],
    rules: Rules,
) -> list[ReadAhead]:
    """For several referrals (facts, excluded, youth key), in two statements for all of them, what
    gather reads for each before and after its walks, except the walks' best when a region is too big
    to name everyone: walk_first_many.sql and candidates_many.sql. Read before the batch writes
    anything, so each is what gather would have read for itself at that moment."""
    await _steer(conn)
    columns = list(zip(*(_filters(facts, excluded) for facts, excluded, _ in wanted), strict=True))
    # Arrays of arrays must be rectangular: each referral's excluded ids as one comma-joined text.
    columns[3] = tuple(",".join(ids) for ids in columns[3])
    arrays = [list(c) for c in columns]
    rows = await conn.fetch(load_sql(_SQL, "walk_first_many"), *arrays, *_pages(rules))
    ahead = [ReadAhead([], [], [], []) for _ in wanted]
    for r in rows:
        ahead[r["i"] - 1].first.append(r)
    rows = await conn.fetch(
        load_sql(_SQL, "candidates_many"),
        *arrays,
        [youth_key for _, _, youth_key in wanted],
        [uuid.UUID(facts.id) for facts, _, _ in wanted],
        rules.candidates.name_all_up_to + 1,
    )
    members: dict[str, list[asyncpg.Record]] = {}
    for r in rows:
        if r["source"] == "member":
            members.setdefault(r["region"], []).append(r)
        else:
            getattr(ahead[r["i"] - 1], r["source"]).append(r)
    for (facts, _, _), known in zip(wanted, ahead, strict=True):
        known.members.extend(members.get(facts.region or "", []))
    return ahead


async def gather(
    conn: asyncpg.Connection,
    facts: ReferralFacts,
    excluded: frozenset[str],
    youth_key: bytes | None,
    rules: Rules,
    reserved: Mapping[str, int] = _NONE_RESERVED,
    known: ReadAhead | None = None,
) -> Gathered:
    """The bounded candidate set, which holds the policy's exact best ``limit`` case managers.

    Walks (see _walk) over the region's eligible case managers in three disjoint groups, each with its
    own index and ceiling: single-region ones without a specialism that fits the referral (best possible
    constant: full coverage), single-region specialists who fit (full coverage plus the specialism
    weight), and those serving several regions without one. The few serving several regions with a
    specialism that fits, and those who served the youth before, are read whole. The policy then scores
    the best of the walks and them.
    """
    limit = rules.candidates.limit
    buckets = bucket_scores(facts, rules.weights)
    balance = balance_weight(facts, rules.weights)
    filters = _filters(facts, excluded)
    mask, fits = filters[4], filters[6]
    full = len(facts.needs) * 2
    await _steer(conn)
    page, small_page = _pages(rules)
    # The first pages: read with the batch's (read_ahead), or now.
    if known is not None:
        first = known.first
    else:
        first = await conn.fetch(load_sql(_SQL, "walk_first"), *filters, page, small_page)
    walks: list[_Walk] = []
    groups = [("plain", "walk", buckets[full], page)]
    if fits:
        groups.append(("specialist", "walk_specialists", buckets[full + 1], small_page))
    groups.append(("multi", "walk_multi", buckets[full], small_page))
    for tag, sql, ceiling, size in groups:
        walks.append(
            await _walk(
                conn,
                sql,
                filters,
                [r for r in first if r["walk"] == tag],
                size,
                walks[-1].best if walks else [],
                buckets=buckets,
                balance=balance,
                mask=mask,
                fits=fits,
                ceiling=ceiling,
                limit=limit,
                keep=max(limit, _KEEP),
                reserved=reserved,
            )
        )
    small = all(w.first_page for w in walks)
    members = rules.candidates.name_all_up_to + 1 if small else 0
    top = [cid for _, cid in walks[-1].best]
    rows: list[tuple[str, asyncpg.Record]] | None = None
    if known is not None and small and len(known.members) <= rules.candidates.name_all_up_to:
        # The whole region was read ahead, and the walks' best are among it (every walk reads case
        # managers of this region): candidates.sql's rows without a statement of our own.
        by_id = {str(r["staff_id"]): r for r in known.members}
        if all(cid in by_id for cid in top):
            rows = [
                *(("top", by_id[cid]) for cid in top),
                *(("multi", r) for r in known.multi),
                *(("continuity", r) for r in known.continuity),
                *(("member", r) for r in known.members),
            ]
    if rows is None:
        fetched = await conn.fetch(
            load_sql(_SQL, "candidates"),
            facts.region,
            top,
            youth_key,
            facts.id,
            members,
            fits,
            facts.language,
            filters[2],
            list(excluded),
            mask,
            facts.min_covered,
        )
        rows = [(r["source"], r) for r in fetched]
    seen: dict[str, Candidate] = {}
    continuity: set[str] = set()
    multi = 0
    named_all = small and sum(source == "member" for source, _ in rows) <= rules.candidates.name_all_up_to
    for source, r in rows:
        cid = str(r["staff_id"])
        if source == "continuity":
            continuity.add(cid)
        elif source == "multi":
            multi += 1
        elif source == "member" and not named_all:
            continue
        seen.setdefault(cid, _candidate(r, reserved))
    total = sum(w.read for w in walks) + multi if all(w.exhausted for w in walks) else None
    return Gathered(
        tuple(seen.values()), frozenset(continuity), total, named_all, walked=sum(w.read for w in walks)
    )


async def _census(conn: asyncpg.Connection, facts: ReferralFacts, excluded: frozenset[str]) -> Census:
    row = await conn.fetchrow(
        load_sql(_SQL, "census"),
        facts.region,
        facts.language,
        specialism_mask(excluding_specialisms(facts)),
        list(excluded),
        need_mask(facts.needs),
        facts.min_covered,
    )
    assert row is not None  # an aggregate always returns a row
    return Census(**dict(row))


def _ordered(decision: Decision) -> tuple[Scored, ...]:
    """Eligible best first, then the ineligible in the order they were read."""
    by_id = {s.id: s for s in decision.scored}
    return tuple(by_id[i] for i in decision.ranked) + tuple(s for s in decision.scored if not s.eligible)


async def decide(
    conn: asyncpg.Connection,
    facts: ReferralFacts,
    excluded: frozenset[str],
    youth_key: bytes | None,
    rules: Rules,
    reserved: Mapping[str, int] = _NONE_RESERVED,
    known: ReadAhead | None = None,
) -> tuple[Decision, Gathered]:
    """Read the candidates and let the policy choose (no writes): the routing decision proper.
    ``reserved``: places already planned in this transaction, counted as load (see _walk); ``known``:
    what the batch read ahead for this referral (read_ahead)."""
    gathered = await gather(conn, facts, excluded, youth_key, rules, reserved, known)
    facts = msgspec.structs.replace(facts, previous_case_managers=gathered.continuity)
    return choose(facts, gathered.candidates, excluded, rules.weights), gathered


class _Plan(msgspec.Struct, frozen=True):
    """What routing one locked referral starts from: its facts, whom to exclude, the record's inputs."""

    ref: asyncpg.Record
    now: datetime
    excluded: frozenset[str]
    offers_so_far: int
    facts: ReferralFacts
    inputs: Inputs
    trace_id: str
    # The decision needs no candidates: out of area, or its offers are used up.
    settled: DecisionRecord | None


async def _plan(
    conn: asyncpg.Connection, ref: asyncpg.Record, rules: Rules, now: datetime, trace_id: str
) -> _Plan:
    if "previous_offers" in ref:  # Record: a key test
        # Read with the lock (claim_and_lock.sql), under the same row lock: no second statement.
        excluded = frozenset(str(c) for c in ref["previous_offers"])
        offers_so_far = len(ref["previous_offers"])
    else:
        excluded, offers_so_far = await previous_offers(conn, ref["id"])
    facts = facts_for(ref, rules, now)
    inputs = Inputs(
        region=facts.region,
        needs=facts.needs,
        language=facts.language,
        urgency=facts.urgency,
        age_years=facts.age_years,
        min_covered=facts.min_covered,
        excluded=tuple(sorted(excluded)),
        offers_so_far=offers_so_far,
        max_offers=rules.offers.max_offers,
    )
    settled = None
    if facts.region is None:
        settled = DecisionRecord(policy_version=rules.version, inputs=inputs, outcome="out_of_area")
    elif offers_so_far >= rules.offers.max_offers:
        settled = DecisionRecord(policy_version=rules.version, inputs=inputs, outcome="offers_exhausted")
    return _Plan(ref, now, excluded, offers_so_far, facts, inputs, trace_id, settled)


def _record(
    plan: _Plan,
    rules: Rules,
    decision: Decision,
    gathered: Gathered,
    chosen: str | None,
    taken: Sequence[str],
) -> DecisionRecord:
    return DecisionRecord(
        policy_version=rules.version,
        inputs=msgspec.structs.replace(plan.inputs, continuity=tuple(sorted(gathered.continuity))),
        outcome="assigned" if chosen else "no_eligible_case_manager",
        chosen=chosen,
        candidates=_ordered(decision),
        eligible_total=gathered.eligible_total,
        named_all=gathered.named_all,
        taken_meanwhile=tuple(taken),
    )


@metrics.timed_decision
async def route_referral(
    conn: asyncpg.Connection,
    ref: asyncpg.Record,
    rules: Rules,
    trace_id: str = "",
    *,
    quiet: bool = False,
) -> Routed:
    """Offer ``ref`` (locked FOR UPDATE by the caller) to the best eligible case manager, or queue it.

    ``quiet``: the referral already waits in the queue; if it would stay there for the same reason,
    write nothing (the queue drain retries often and must not flood decisions and events).
    """
    plan = await _plan(conn, ref, rules, datetime.now(UTC), trace_id)
    chosen: str | None = None
    record = plan.settled
    if record is None:
        taken: list[str] = []
        for _ in range(_TAKE_ROUNDS):
            decision, gathered = await decide(conn, plan.facts, plan.excluded, ref["youth_key"], rules)
            if decision.chosen is None:
                break
            if await conn.fetchval(load_sql(_SQL, "take_capacity"), decision.chosen) is not None:
                chosen = decision.chosen
                break
            # Another worker took their last place after we read (the conditional UPDATE waited for
            # its commit): read again, which no longer offers them, so the choice stays the best.
            taken.append(decision.chosen)
        record = _record(plan, rules, decision, gathered, chosen, taken)
    if (
        chosen is None
        and quiet
        and ref["status"] == "unroutable"
        and ref["unroutable_reason"] == record.outcome
    ):
        return Routed("unchanged", record.outcome)
    return await _write(conn, plan, rules, record, chosen)


async def route_batch(
    conn: asyncpg.Connection,
    refs: Sequence[tuple[asyncpg.Record, str]],
    rules: Rules,
    releases: Sequence[str] = (),
) -> list[Routed]:
    """Route several locked referrals (with their trace ids) in one transaction, set-based, so that
    concurrent batches (other routing processes) never deadlock and need no lock between them.

    Every referral is decided first (reads only), each counting the places those before it in the batch
    will take; then the chosen case managers' rows are locked in ``staff_id`` order in one statement
    and the places taken in one more. A referral whose place was gone meanwhile (another process took
    it between our read and our lock) is decided again; those later rounds lock with NOWAIT, since this
    transaction already holds rows out of any order another batch could wait in: a row held elsewhere
    raises LockNotAvailableError (the caller retries). ``releases``: case managers given one place back
    each (withdrawn offers), locked in the same ordered statement.
    """
    started = time.perf_counter()
    now = datetime.now(UTC)
    plans = [await _plan(conn, ref, rules, now, trace_id) for ref, trace_id in refs]
    records: list[DecisionRecord | None] = [p.settled for p in plans]
    chosen: list[str | None] = [None] * len(plans)
    taken: list[list[str]] = [[] for _ in plans]
    pending = [i for i, p in enumerate(plans) if p.settled is None]
    held: set[str] = set()
    for round_ in range(_TAKE_ROUNDS):
        if not pending and (round_ > 0 or not releases):
            break
        reserved: Counter[str] = Counter()
        wanted: list[tuple[int, str]] = []
        # The first round reads what it can for the whole batch in two statements (read_ahead); later
        # rounds come after places were taken, so each referral reads its own.
        ahead: dict[int, ReadAhead] = {}
        if round_ == 0 and len(pending) > 1:
            asked = [(plans[i].facts, plans[i].excluded, plans[i].ref["youth_key"]) for i in pending]
            ahead = dict(zip(pending, await read_ahead(conn, asked, rules), strict=True))
        for i in pending:
            p = plans[i]
            decision, gathered = await decide(
                conn, p.facts, p.excluded, p.ref["youth_key"], rules, reserved, ahead.get(i)
            )
            records[i] = _record(p, rules, decision, gathered, decision.chosen, taken[i])
            if decision.chosen is not None:
                wanted.append((i, decision.chosen))
                reserved[decision.chosen] += 1
        granted = await _take_places(conn, reserved, releases if round_ == 0 else (), nowait=bool(held))
        held |= set(reserved) | set(releases)
        pending = []
        for i, cid in wanted:
            if granted[cid] > 0:
                granted[cid] -= 1
                chosen[i] = cid
            else:
                taken[i].append(cid)
                pending.append(i)
    routed: list[Routed] = []
    offers: list[tuple[Any, ...]] = []
    queued: list[_Queued] = []
    for i, p in enumerate(plans):
        record = records[i]
        assert record is not None  # every plan was settled or decided at least once
        if chosen[i] is None and record.outcome == "assigned":
            # Its place was gone in every round: as route_referral after _TAKE_ROUNDS.
            record = msgspec.structs.replace(
                record, outcome="no_eligible_case_manager", chosen=None, taken_meanwhile=tuple(taken[i])
            )
        routed.append(await _write(conn, p, rules, record, chosen[i], offers, queued))
    # The queue first: its events went into the outbox before the offers' when each was written alone.
    await _queue_many(conn, queued, rules.version)
    await _offer_many(conn, offers, now, rules.version)
    if plans:
        metrics.decisions_timed(time.perf_counter() - started, len(plans))
    return routed


async def _take_places(
    conn: asyncpg.Connection, wanted: Mapping[str, int], releases: Sequence[str], *, nowait: bool
) -> Counter[str]:
    """Lock the case managers' rows in ``staff_id`` order (one statement), give back ``releases`` and take
    up to ``wanted`` places each where there is room (one statement); how many each granted."""
    ids = sorted(set(wanted) | set(releases))
    if not ids:
        return Counter()
    rows = await conn.fetch(load_sql(_SQL, "lock_places_nowait" if nowait else "lock_places"), ids)
    counts, granted = place_grants(
        {str(r["staff_id"]): (r["status"] == "active", r["active_count"], r["capacity"]) for r in rows},
        wanted,
        Counter(releases),
    )
    changed = [(cid, old, new) for cid, (old, new) in counts.items() if old != new]
    if changed:
        done = await conn.fetch(
            load_sql(_SQL, "set_places"),
            [uuid.UUID(c) for c, _, _ in changed],
            [o for _, o, _ in changed],
            [n for _, _, n in changed],
        )
        if len(done) != len(changed):
            # Impossible while the rows are locked; never write on a count we did not read.
            raise RuntimeError("case managers' places changed under their row locks")
    return granted


async def _write(
    conn: asyncpg.Connection,
    plan: _Plan,
    rules: Rules,
    record: DecisionRecord,
    chosen: str | None,
    offers: list[tuple[Any, ...]] | None = None,
    queued: list[_Queued] | None = None,
) -> Routed:
    """Record the decision and carry it out: the offer (its place taken) or the queue. With ``offers``
    and ``queued``, what the statements would write goes there instead, for one statement of each over
    the batch (_offer_many, _queue_many)."""
    ref = plan.ref
    if record.outcome == "no_eligible_case_manager" and not record.named_all:
        # A region too large to name everyone: count why they could not take it (a full scan, but
        # only when nobody could, which also means the queue gets a new member).
        record = msgspec.structs.replace(record, census=await _census(conn, plan.facts, plan.excluded))
    decision_row = (
        uuid.uuid4(),
        ref["id"],
        plan.now,
        record.outcome,
        chosen,
        msgspec.to_builtins(record),
        rules.version,
    )
    if chosen is not None:
        # The decision record rides on the offer's statement.
        routed = await _offer(
            conn, ref, chosen, rules, plan.now, plan.offers_so_far + 1, plan.trace_id, decision_row, offers
        )
    elif queued is not None:
        queued.append(
            _Queued(decision_row, record.outcome, _queue_events(ref, record.outcome, plan.trace_id))
        )
        routed = Routed("unroutable", record.outcome)
    else:
        await conn.execute(load_sql(_SQL, "insert_decision"), *decision_row)
        routed = await _queue(conn, ref, record.outcome, plan.trace_id)
    log.info(
        "routing.decided",
        referral_id=str(ref["id"]),
        outcome=routed.status,
        reason=routed.reason,
        eligible=record.eligible_total,
        policy_version=rules.version,
        # In a set-based batch no one event's bindings are on the context: name this one's trace.
        **({"trace_id": plan.trace_id} if plan.trace_id else {}),
    )
    metrics.routing_decided(
        record.outcome, ref["received_at"], first_offer=chosen is not None and plan.offers_so_far == 0
    )
    return routed


async def _offer(
    conn: asyncpg.Connection,
    ref: asyncpg.Record,
    case_manager_id: str,
    rules: Rules,
    now: datetime,
    attempt: int,
    trace_id: str,
    decision_row: tuple[object, ...],
    offers: list[tuple[Any, ...]] | None = None,
) -> Routed:
    """Write the decision record and the offer (capacity already taken), move the referral to
    ``assigned`` and outbox its events: one statement (or its parameters into ``offers``)."""
    respond_by = now + timedelta(seconds=rules.offers.ttl_for(ref["urgency"]))
    assignment_id = uuid.uuid4()
    events: list[Event] = [
        ReferralAssigned(
            referral_id=str(ref["id"]),
            assignment_id=str(assignment_id),
            case_manager_id=case_manager_id,
            region=ref["region"] or "",
            respond_by=respond_by,
            urgency=ref["urgency"],
            trace_id=trace_id,
        )
    ]
    events.extend(_status_change(ref, "assigned", trace_id))
    params = (
        *decision_row,
        assignment_id,
        respond_by,
        attempt,
        [e.event_id for e in events],
        [subject_for(e) for e in events],
        [encode_event(e) for e in events],
    )
    if offers is not None:
        offers.append(params)
    else:
        await conn.execute(load_sql(_SQL, "decide_and_offer"), *params)
        mark_outbox_written()
    return Routed("assigned", "assigned", case_manager_id, str(assignment_id))


async def _offer_many(
    conn: asyncpg.Connection, offers: list[tuple[Any, ...]], now: datetime, version: str
) -> None:
    """A batch's offers (parameters as decide_and_offer.sql's, from _offer) in one statement."""
    if not offers:
        return
    await conn.execute(
        load_sql(_SQL, "decide_and_offer_many"),
        [o[0] for o in offers],
        [o[1] for o in offers],
        now,
        [o[4] for o in offers],
        [o[5] for o in offers],
        version,
        [o[7] for o in offers],
        [o[8] for o in offers],
        [o[9] for o in offers],
        [e for o in offers for e in o[10]],
        [s for o in offers for s in o[11]],
        [p for o in offers for p in o[12]],
    )
    mark_outbox_written()


async def _queue(conn: asyncpg.Connection, ref: asyncpg.Record, reason: str, trace_id: str) -> Routed:
    """Move the referral to ``unroutable`` (the supervisor queue), keeping how long it has waited there."""
    await conn.execute(load_sql(_SQL, "mark_unroutable"), ref["id"], reason)
    await enqueue(conn, *_queue_events(ref, reason, trace_id))
    return Routed("unroutable", reason)


def _queue_events(ref: asyncpg.Record, reason: str, trace_id: str) -> list[Event]:
    events: list[Event] = []
    if ref["status"] != "unroutable" or ref["unroutable_reason"] != reason:
        events.append(
            ReferralUnroutable(
                referral_id=str(ref["id"]), reason=reason, region=ref["region"], trace_id=trace_id
            )
        )
    events.extend(_status_change(ref, "unroutable", trace_id))
    return events


class _Queued(NamedTuple):
    """A batch's referral for the queue: its decision record's row, the reason and its events."""

    decision_row: tuple[Any, ...]
    reason: str
    events: list[Event]


async def _queue_many(conn: asyncpg.Connection, queued: list[_Queued], version: str) -> None:
    """A batch's queued referrals (as _queue, after insert_decision, for each) in one statement."""
    if not queued:
        return
    rows = [q.decision_row for q in queued]
    events = [e for q in queued for e in q.events]
    await conn.execute(
        load_sql(_SQL, "decide_and_queue_many"),
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[5] for r in rows],
        version,
        [q.reason for q in queued],
        [e.event_id for e in events],
        [subject_for(e) for e in events],
        [encode_event(e) for e in events],
    )
    if events:
        mark_outbox_written()


def _status_change(ref: asyncpg.Record, status: str, trace_id: str) -> list[Event]:
    if ref["status"] == status:
        return []
    return [
        ReferralStatusChanged(
            referral_id=str(ref["id"]),
            partner_id=str(ref["partner_id"]),
            status=status,
            previous_status=ref["status"],
            trace_id=trace_id,
        )
    ]
