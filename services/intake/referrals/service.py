"""Submitting a referral (validated, sealed, idempotent, outboxed in one statement) and reading referrals."""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from msgspec import Meta

from services.intake.core.auth import Caller
from services.intake.core.dependencies import CallerDb
from services.intake.core.problems import Problem
from services.intake.protocol.service import new_step_columns
from services.intake.referrals.matches import record_matches
from services.intake.referrals.matching import Token, blind_tokens
from services.intake.referrals.schemas import ContactPreferences, ReferralIn, ReferralPage, ReferralView
from services.intake.referrals.validation import age_on, check_origin, check_referral
from shared.casework import local_date
from shared.codes import REFERRAL_STATUSES, SHARE_STATUS_SCOPE
from shared.crypto import KeyRing
from shared.db import Identity, load_sql, mark_outbox_written, retrying, switch_identity
from shared.events import ReferralReceived, encode_event, subject_for
from shared.groupcommit import GroupCommit, ItemFailed
from shared.regions import Catalogue
from shared.youthkey import youth_key

__all__ = [
    "NewReferral",
    "Submitted",
    "deny_evaluator",
    "list_referrals",
    "prepare",
    "read_referral",
    "referral_view",
    "store_many",
    "store_one",
    "submit",
    "visibility_args",
    "visible_referrals",
]

_PKG = "services.intake.referrals"
_CREATE = load_sql(_PKG, "create_referrals")
_VISIBLE = load_sql(_PKG, "visible_referrals")
_IDEMPOTENT_RESPONSE = load_sql(_PKG, "idempotent_response")


# One group committer per pool (per intake process): submissions at the same moment share a commit.
_GROUPS: dict[int, tuple[asyncpg.Pool, GroupCommit]] = {}
# Batch bounds: submissions per transaction, and such transactions open at once per process.
# 256, not 64: at 1,000/s batches filled the 64 (nine callers, so about seven referrals per create
# statement) and the rest queued for the next commit. Fixed rate 1,000/s for 15 s, interleaved runs
# (docs/performance.md, stop 26): 1.98-2.00 -> 1.75-1.86 ms of CPU per referral (PostgreSQL
# 0.73-0.77 -> 0.59-0.66), intake p99 3.1-3.3 -> 0.7-1.6 s. 512 was no better (1.88). Below about
# 500/s batches never reach 64, so low rates are unchanged.
SUBMIT_BATCH_MAX = 256
# One batch in flight, as routing's (services/routing/worker.py says why).
SUBMIT_BATCHES_IN_FLIGHT = 1


def _group(pool: asyncpg.Pool) -> GroupCommit:
    entry = _GROUPS.get(id(pool))
    if entry is None or entry[0] is not pool:
        group = GroupCommit(
            pool, together=store_many, max_batch=SUBMIT_BATCH_MAX, max_inflight=SUBMIT_BATCHES_IN_FLIGHT
        )
        _GROUPS[id(pool)] = entry = (pool, group)
    return entry[1]


class NewReferral(msgspec.Struct, frozen=True):
    """A validated, sealed submission ready to store: who submits it, its row of create_referrals.sql
    ($1 to $27, one element each), its protocol steps (new_step_columns) and its blind indexes."""

    identity: Identity
    row: tuple[Any, ...]
    steps: tuple[Any, ...]
    tokens: list[Token]

    @property
    def referral_id(self) -> str:
        return str(self.row[0])


async def _create(conn: asyncpg.Connection, news: list[NewReferral]) -> None:
    """One statement for `news` (all of the transaction's current identity): the columns as arrays,
    every referral's steps flattened into one set of step arrays that name their referral."""
    columns = [list(col) for col in zip(*(n.row for n in news), strict=True)]
    steps: list[list[Any]] = [[] for _ in range(11)]
    for n in news:
        version, *step_columns = n.steps
        steps[0].extend([n.referral_id] * len(step_columns[0]))
        steps[1].extend([version] * len(step_columns[0]))
        for target, values in zip(steps[2:], step_columns, strict=True):
            target.extend(values)
    await conn.execute(_CREATE, *columns, *steps)
    mark_outbox_written()  # the statement above wrote each referral.received into the outbox


async def store_one(conn: asyncpg.Connection, new: NewReferral) -> None:
    """A referral alone (the caller's identity is the transaction's)."""
    await _create(conn, [new])
    # A separate statement: the youth's blind indexes and any probable match with an earlier
    # referral, before routing can read this one.
    await record_matches(conn, [(new.referral_id, new.tokens)])


async def store_many(conn: asyncpg.Connection, news: list[NewReferral]) -> list[None]:
    """A group commit's referrals: per caller (identity switched once each) one create statement for
    all of that caller's referrals, then one for their blind indexes and matches, in arrival order.

    Semantics are those of one transaction per referral, one after the other: concurrent callers have
    no order among them to keep, and a caller's own referrals keep theirs, so a youth submitted twice
    in one batch is matched with the earlier one as if they had come apart. Any database error is
    the batch's ItemFailed: the first referral of the statement that failed runs alone, its
    neighbours again (a batch statement cannot say which row failed; errors here are rare conflicts).
    """
    order = sorted(range(len(news)), key=lambda i: news[i].identity)  # stable: arrival order kept
    for identity, members in itertools.groupby(order, key=lambda i: news[i].identity):
        group = list(members)
        # The first caller's is the transaction's own (shared.groupcommit): no switch for it.
        await switch_identity(conn, identity)
        try:
            await _create(conn, [news[i] for i in group])
            await record_matches(conn, [(news[i].referral_id, news[i].tokens) for i in group])
        except asyncpg.PostgresError as exc:
            raise ItemFailed(group[0]) from exc
    return [None] * len(news)


class Submitted(msgspec.Struct, frozen=True):
    """The answer to a submission: a new referral (201), or the original answer to a repeated one."""

    view: ReferralView
    status_code: int = 201
    replayed: bool = False


def referral_view(row: asyncpg.Record) -> ReferralView:
    return ReferralView(
        id=str(row["id"]),
        status=row["status"],
        region=row["region"],
        needs=list(row["needs"]),
        urgency=row["urgency"],
        received_at=row["received_at"],
        updated_at=row["updated_at"],
        assigned_at=row["assigned_at"],
        accepted_at=row["accepted_at"],
        closed_at=row["closed_at"],
        outcome=row["outcome"],
        unroutable_reason=row["unroutable_reason"],
        engaged_at=row["engaged_at"],
        close_reason=row["close_reason"],
        do_not_contact=row["do_not_contact"],
    )


async def submit(
    db: CallerDb,
    caller: Caller,
    data: ReferralIn,
    *,
    idempotency_key: str | None,
    regions: Catalogue,
    keyring: KeyRing,
    youth_secret: bytes,
    trace_id: str = "",
) -> Submitted:
    """Validate and store a partner's referral, or replay the answer to the same Idempotency-Key.

    One transaction for a new referral (no connection is held while validating); a concurrent request
    with the same key that wins the race is answered with its response.
    """
    # Same key + same body → same response; the hash is over the canonical re-encoding so whitespace or
    # key order do not count as a different body.
    request_hash = hashlib.sha256(msgspec.json.encode(data)).digest()
    if idempotency_key is not None:
        replay = await _replay(db, caller, idempotency_key, request_hash)
        if replay is not None:
            return replay
    now = datetime.now(UTC)
    today = local_date(now)
    errors = check_referral(data, now, today)
    # The coordinating agency's own origins (hotline, walk-in, self-referral) are its intake staff's alone.
    errors.extend(check_origin(data, agency=caller.role == "intake_staff"))
    if errors:
        raise Problem(
            422,
            "; ".join(e.message for e in errors),
            errors=[{"field": e.field, "message": e.message} for e in errors],
        )
    new, view = prepare(
        caller,
        db.identity,
        data,
        now,
        regions=regions,
        keyring=keyring,
        youth_secret=youth_secret,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        trace_id=trace_id,
    )
    try:
        # Group commit (shared.groupcommit): concurrent submissions share one transaction and one
        # commit, and each caller's referrals one statement (store_many); a failing one is retried
        # alone, so it never fails another. Everything runs on `conn`: it may run again if a neighbour
        # fails.
        async def store(conn: asyncpg.Connection) -> None:
            await store_one(conn, new)

        # Batches in flight at once can cross on the same Idempotency-Key (each waits for the other's
        # uncommitted key): a deadlock rolls back without effect, so it is retried like any conflict.
        await retrying(lambda: _group(db.pool).run(store, db.identity, payload=new))
    except asyncpg.UniqueViolationError:
        # A concurrent request with the same Idempotency-Key won the race.
        if idempotency_key is not None:
            replay = await _replay(db, caller, idempotency_key, request_hash)
            if replay is not None:
                return replay
        raise Problem(409, "A conflicting request was processed at the same time; retry.") from None
    return Submitted(view)


def prepare(
    caller: Caller,
    identity: Identity,
    data: ReferralIn,
    now: datetime,
    *,
    regions: Catalogue,
    keyring: KeyRing,
    youth_secret: bytes,
    idempotency_key: str | None,
    request_hash: bytes,
    trace_id: str = "",
) -> tuple[NewReferral, ReferralView]:
    """A validated submission made ready to store (sealed, keyed, its steps and blind indexes computed,
    no database needed), and the answer its caller gets once it has committed."""
    today = local_date(now)
    referral_id = str(uuid.uuid4())
    region = regions.resolve(data.location.zip, data.location.lat, data.location.lon)
    intake_attrs = msgspec.to_builtins(data.intake) if data.intake is not None else {}
    sealed_fields: dict[str, object] = {"youth": data.youth, "location": data.location, "notes": data.notes}
    if isinstance(data.contact, ContactPreferences):
        # The safe times and contact notes are PII: sealed with the youth's details.
        sealed_fields["contact"] = data.contact
    pii = msgspec.json.encode(sealed_fields)
    sealed = keyring.seal(pii, referral_id.encode())
    # Lets routing prefer a case manager who served this youth before, without reading PII.
    key = youth_key(youth_secret, data.youth.first_name, data.youth.last_name, data.youth.date_of_birth)
    # Blind indexes for "possibly the same youth" across partners (issue 17), from the plaintext at hand.
    tokens = blind_tokens(
        youth_secret,
        data.youth.first_name,
        data.youth.last_name,
        data.youth.date_of_birth,
        data.youth.phone,
        key,
    )
    event = ReferralReceived(
        referral_id=referral_id, partner_id=caller.partner_id, urgency=data.urgency, trace_id=trace_id
    )
    view = ReferralView(
        id=referral_id,
        status="received",
        region=region,
        needs=list(data.needs),
        urgency=data.urgency,
        received_at=now,
        updated_at=now,
        do_not_contact=data.youth.do_not_contact is True,
    )
    contact = data.contact if isinstance(data.contact, ContactPreferences) else None
    new = NewReferral(
        identity=identity,
        row=(
            referral_id,
            caller.partner_id,
            region,
            ",".join(data.needs),
            data.language,
            data.urgency,
            age_on(data.youth.date_of_birth, today),
            intake_attrs,
            now,
            sealed.key_id,
            sealed.wrapped_key,
            sealed.nonce,
            sealed.ciphertext,
            data.consent.method,
            ",".join(data.consent.scope),
            data.consent.obtained_at,
            data.consent.expires_at,
            event.event_id,
            subject_for(event),
            encode_event(event),
            idempotency_key,
            request_hash,
            msgspec.json.encode(view),
            key,
            data.youth.do_not_contact is True,
            contact.safe_channel if contact is not None else None,
            contact.voicemail_ok if contact is not None else None,
        ),
        # The child-protection steps a minor's referral triggers (issue 18), in the same statement.
        steps=new_step_columns(age_on(data.youth.date_of_birth, today), now),
        tokens=tokens,
    )
    return new, view


async def _replay(db: CallerDb, caller: Caller, key: str, request_hash: bytes) -> Submitted | None:
    async with db.transaction() as conn:
        row = await conn.fetchrow(_IDEMPOTENT_RESPONSE, caller.partner_id, key)
    if row is None:
        return None
    if bytes(row["request_hash"]) != request_hash:
        raise Problem(
            409,
            "This Idempotency-Key was already used with a different request body.",
            slug="idempotency-conflict",
        )
    # The stored bytes are the original response; decoding them keeps the documented response type.
    view = msgspec.json.decode(bytes(row["response_body"]), type=ReferralView)
    return Submitted(view, status_code=row["status_code"], replayed=True)


def visibility_args(caller: Caller) -> tuple[str, str | None, str | None, str | None]:
    """The caller as visible_referrals.sql takes it: role, partner id, staff id, region."""
    return (
        caller.role,
        caller.partner_id or None,
        caller.id if caller.kind == "staff" else None,
        caller.region or None,
    )


async def visible_referrals(
    conn: asyncpg.Connection,
    caller: Caller,
    *,
    referral_id: uuid.UUID | None = None,
    status: str | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 1,
) -> list[asyncpg.Record]:
    """The referrals the caller may see (one, or a page newest first after a keyset cursor); a partner
    sees a referral's progress only as far as the youth's consent lets it (visible_referrals.sql)."""
    after_ts, after_id = after or (None, None)
    return await conn.fetch(
        _VISIBLE, referral_id, *visibility_args(caller), status, after_ts, after_id, limit, SHARE_STATUS_SCOPE
    )


def deny_evaluator(caller: Caller) -> None:
    if caller.role == "evaluator":
        raise Problem(403, "Evaluators read de-identified exports, not referral records.")


async def read_referral(conn: asyncpg.Connection, caller: Caller, referral_id: str) -> ReferralView:
    """One referral's status view, if the caller may see it (else 404, whether or not it exists)."""
    try:
        rid = uuid.UUID(referral_id)
    except ValueError:
        raise Problem(404, "No such referral.") from None
    deny_evaluator(caller)
    rows = await visible_referrals(conn, caller, referral_id=rid)
    if not rows:
        raise Problem(404, "No such referral.")
    return referral_view(rows[0])


def _check_status(status: str | None) -> None:
    if status is not None and status not in REFERRAL_STATUSES:
        raise Problem(
            422,
            f"Unknown status {status!r}.",
            errors=[{"field": "status", "message": f"must be one of {', '.join(REFERRAL_STATUSES)}"}],
        )


async def list_referrals(
    conn: asyncpg.Connection, caller: Caller, status: str | None, limit: int, cursor: str | None
) -> ReferralPage:
    """A page of the caller's visible referrals, newest first."""
    deny_evaluator(caller)
    _check_status(status)
    after = decode_cursor(cursor) if cursor else None
    rows = await visible_referrals(conn, caller, status=status, after=after, limit=limit + 1)
    items = [referral_view(r) for r in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return ReferralPage(items=items, next_cursor=next_cursor)


def encode_cursor(row: asyncpg.Record) -> str:
    raw = msgspec.json.encode([row["received_at"].isoformat(), str(row["id"])])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, rid = msgspec.json.decode(raw, type=tuple[Annotated[datetime, Meta(tz=True)], uuid.UUID])
        # A forged timestamp such as year 1 at +14:00 only overflows once normalised to UTC, which
        # asyncpg does while binding: check here so it is the client's 422, not our 500.
        ts.astimezone(UTC)
    except (binascii.Error, ValueError, OverflowError, msgspec.DecodeError):
        raise Problem(
            422, "The cursor is not valid.", errors=[{"field": "cursor", "message": "invalid cursor"}]
        ) from None
    return ts, rid
