"""Notify consumer: fan each event out to its recipients' channels, once per event, recipient and channel."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec
import structlog

from services.notify.store import (
    NewDelivery,
    add_deliveries,
    add_test_delivery,
    cancel_for_referral,
    webhook_body,
)
from services.notify.subscribers import SubscriberChecks
from shared.bus import CONSUMERS, ConsumerSpec, Handler, Poison, claim_event
from shared.casework import local_date
from shared.codes import FHIR_TASK_STATUS, SHARE_STATUS_SCOPE
from shared.config import Settings
from shared.db import load_sql, retrying
from shared.events import (
    AnyEvent,
    AssignmentCancelled,
    AssignmentExpired,
    AssignmentReminder,
    ConsentExpiring,
    FollowupDue,
    ProtocolOverdue,
    ReferralAssigned,
    ReferralStatusChanged,
    ReferralUnroutable,
    ReferralWithdrawn,
    WebhookTestRequested,
    tag_of,
)
from shared.groupcommit import GroupCommit, ItemFailed

__all__ = ["consumer_spec", "fan_out", "make_handler", "queue_webhook_test"]

log = structlog.get_logger("refnet.notify")
TASK_UPDATED = "task.updated"
CONSUMER = "notify"
_SQL = __package__


class _Fanout:
    """Collects one event's in-app notifications and outbound deliveries, then writes them together."""

    def __init__(self, conn: asyncpg.Connection, event_id: str, email: bool) -> None:
        self.conn = conn
        self.event_id = event_id
        self.email = email
        self.inapp: list[tuple[Any, ...]] = []
        self.outbound: list[NewDelivery] = []

    def notify(
        self,
        recipients: list[str],
        kind: str,
        data: dict[str, Any],
        *,
        referral_id: str | None = None,
        assignment_id: str | None = None,
    ) -> None:
        for rid in recipients:
            self.inapp.append((rid, kind, self.event_id, referral_id, assignment_id, data))

    async def email_staff(
        self,
        recipients: list[str],
        kind: str,
        payload: dict[str, Any],
        *,
        referral_id: str | None = None,
        assignment_id: str | None = None,
    ) -> None:
        """Email the recipients who asked for it (in-app is always on)."""
        if not self.email or not recipients:
            return
        opted_in = await self.conn.fetch(load_sql(_SQL, "email_opted_in"), recipients)
        for r in opted_in:
            self.outbound.append(
                NewDelivery(
                    event_id=self.event_id,
                    kind=kind,
                    channel="email",
                    recipient_id=str(r["id"]),
                    staff_id=str(r["id"]),
                    referral_id=referral_id,
                    assignment_id=assignment_id,
                    payload=payload,
                )
            )

    async def write(self) -> None:
        if self.inapp:
            await self.conn.executemany(load_sql(_SQL, "insert_notification"), self.inapp)
        await add_deliveries(self.conn, self.outbound)

    async def claim_and_write(self, consumer: str) -> bool:
        """Claim the event and write its in-app notifications in one statement, then its deliveries;
        False (nothing written) when an earlier delivery of the event already claimed it."""
        return self.event_id in await claim_and_write_many(self.conn, [self], consumer)


async def _status_shared(conn: asyncpg.Connection, referral_id: str) -> bool:
    return bool(await conn.fetchval(load_sql(_SQL, "status_shared"), referral_id, SHARE_STATUS_SCOPE))


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _named_ids(event: AnyEvent) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """The referral and assignment an event names (None: none, or not an id): what event_referral.sql
    reads for it."""
    assignment_id = getattr(event, "assignment_id", None)
    return (
        _uuid(getattr(event, "referral_id", None)),
        _uuid(assignment_id) if assignment_id is not None else None,
    )


def _assignment_disagrees(
    referral: asyncpg.Record, referral_id: str, case_manager_id: str, states: tuple[str, ...]
) -> str | None:
    """The assignment the event names, as read with its referral (event_referral.sql)."""
    if referral["assignment_state"] is None:
        return "no_such_assignment"
    if (
        str(referral["assignment_referral_id"]) != referral_id
        or str(referral["assignment_case_manager_id"]) != case_manager_id
    ):
        return "assignment_mismatch"
    if referral["assignment_state"] not in states:
        return "assignment_state"
    return None


async def _status_disagrees(
    conn: asyncpg.Connection, rid: uuid.UUID, current: str, claimed: str
) -> str | None:
    """None when the referral is in, or ever reached, the status the event claims (it may have moved on
    by the time notify reads it: a legitimate event is never dropped for being late)."""
    if current == claimed or await conn.fetchval(load_sql(_SQL, "event_status_reached"), rid, claimed):
        return None
    return "status_never_reached"


class _Unread:
    """The referral an event names has not been read yet (disagreement reads it)."""


UNREAD = _Unread()


async def disagreement(
    conn: asyncpg.Connection, event: AnyEvent, known: asyncpg.Record | _Unread | None = UNREAD
) -> str | None:
    """Why the database contradicts ``event`` (a code), or None when it bears it out.

    The bus is authenticated, but an event is still only its publisher's word: who is told what is
    decided by the referral, assignment and history rows the event names, re-read here. (The facts a
    notification shows are re-read too where they matter: the partner and status of a status change.)
    ``known``: the event_referral.sql row (None: no such referral) when the batch already read it in
    this transaction (read_event_referrals).
    """
    referral_id = getattr(event, "referral_id", None)
    if referral_id is None:
        return None  # webhook.test_requested: queue_webhook_test re-reads its endpoint itself
    rid, aid = _named_ids(event)
    if rid is None:
        return "no_such_referral"
    if isinstance(known, _Unread):
        referral = await conn.fetchrow(load_sql(_SQL, "event_referral"), rid, aid)
    else:
        referral = known
    if referral is None:
        return "no_such_referral"
    if isinstance(event, ReferralAssigned):
        # Any state: the offer may already be answered by the time this is read; it must exist as named.
        return _assignment_disagrees(
            referral,
            referral_id,
            event.case_manager_id,
            ("offered", "accepted", "declined", "expired", "cancelled"),
        ) or (None if event.urgency == referral["urgency"] else "urgency_mismatch")
    if isinstance(event, AssignmentReminder):
        return _assignment_disagrees(
            referral,
            referral_id,
            event.case_manager_id,
            ("offered", "accepted", "declined", "expired", "cancelled"),
        )
    if isinstance(event, AssignmentExpired):
        return _assignment_disagrees(referral, referral_id, event.case_manager_id, ("expired",))
    if isinstance(event, AssignmentCancelled):
        return _assignment_disagrees(referral, referral_id, event.case_manager_id, ("cancelled",))
    if isinstance(event, ReferralStatusChanged):
        if str(referral["partner_id"]) != event.partner_id:
            return "partner_mismatch"
        return await _status_disagrees(conn, rid, referral["status"], event.status)
    if isinstance(event, ReferralUnroutable):
        if event.region != referral["region"]:
            return "region_mismatch"  # the region decides which supervisors are told
        return await _status_disagrees(conn, rid, referral["status"], "unroutable")
    if isinstance(event, FollowupDue) and event.case_manager_id is not None:
        holder = await conn.fetchval(load_sql(_SQL, "last_case_manager"), rid)
        return None if holder is not None and str(holder) == event.case_manager_id else "recipient_mismatch"
    if isinstance(event, ReferralWithdrawn):
        shredded = await conn.fetchval(load_sql(_SQL, "event_key_shredded"), rid)
        return None if shredded else "not_shredded"
    return None


async def fan_out(
    conn: asyncpg.Connection,
    event: AnyEvent,
    settings: Settings,
    *,
    write: bool = True,
    known: asyncpg.Record | _Unread | None = UNREAD,
) -> _Fanout:
    """Decide and write what ``event`` produces, inside the caller's transaction (which claimed it; with
    ``write=False`` nothing is written, for ``_Fanout.claim_and_write`` to claim and write at once).

    Messages carry ids and codes only; what a person sees is read by intake under their authorisation.

    ``referrals.do_not_contact`` (the youth asked not to be contacted) filters no channel here: nothing
    notify sends reaches a youth (emails go to staff and partner contacts, webhooks carry ids and codes
    to the referring partner). The one message that could prompt outreach, the follow-up reminder,
    asks the case manager to check the contact preference first.
    """
    out = _Fanout(conn, event.event_id, email=bool(settings.smtp_host))
    refused = await disagreement(conn, event, known)
    if refused is not None:
        # Dropped (the caller's claim keeps a redelivery from trying again); the event id says which.
        log.warning("notify.event_dropped", event_id=event.event_id, event_type=tag_of(event), reason=refused)
        return out
    if isinstance(event, ReferralAssigned):
        respond_by = event.respond_by.isoformat()
        cm = [event.case_manager_id]
        out.notify(
            cm,
            "offer",
            {"respond_by": respond_by, "region": event.region, "urgency": event.urgency},
            referral_id=event.referral_id,
            assignment_id=event.assignment_id,
        )
        await out.email_staff(
            cm,
            "offer",
            {"respond_by": respond_by},
            referral_id=event.referral_id,
            assignment_id=event.assignment_id,
        )
    elif isinstance(event, AssignmentReminder):
        state = await conn.fetchval(load_sql(_SQL, "assignment_state"), event.assignment_id)
        if state == "offered":
            respond_by = event.respond_by.isoformat()
            cm = [event.case_manager_id]
            out.notify(
                cm,
                "offer_reminder",
                {"respond_by": respond_by},
                referral_id=event.referral_id,
                assignment_id=event.assignment_id,
            )
            await out.email_staff(
                cm,
                "offer_reminder",
                {"respond_by": respond_by},
                referral_id=event.referral_id,
                assignment_id=event.assignment_id,
            )
    elif isinstance(event, AssignmentExpired):
        out.notify(
            [event.case_manager_id],
            "offer_expired",
            {},
            referral_id=event.referral_id,
            assignment_id=event.assignment_id,
        )
    elif isinstance(event, AssignmentCancelled):
        # A supervisor gave the referral to someone else: the offer leaves this case manager's inbox
        # (live, the page listens for this kind) with a note of why, instead of a 409 on Accept.
        out.notify(
            [event.case_manager_id],
            "offer_cancelled",
            {"reason": event.reason},
            referral_id=event.referral_id,
            assignment_id=event.assignment_id,
        )
    elif isinstance(event, ReferralUnroutable):
        # The region's supervisors work its queue; a referral with no region (out of area) is everyone's.
        rows = await conn.fetch(load_sql(_SQL, "region_supervisors"), event.region)
        supervisors = [str(r["id"]) for r in rows]
        out.notify(
            supervisors,
            "unroutable",
            {"reason": event.reason, "region": event.region},
            referral_id=event.referral_id,
        )
        # The email says only that the queue has work: not the reason, not the region.
        await out.email_staff(supervisors, "unroutable", {}, referral_id=event.referral_id)
    elif isinstance(event, ReferralStatusChanged):
        # Closed loop for the referring partner (the one event in store.WEBHOOK_EVENTS today), only
        # while the youth's consent lets the referrer be told (share_status_with_referrer, re-read
        # here). Nothing leaves once consent is withdrawn.
        if event.status != "withdrawn" and await _status_shared(conn, event.referral_id):
            # FHIR partners hear of it as a Task change, under the same consent.
            await _task_updated(conn, event, out)
            endpoints = await conn.fetch(
                load_sql(_SQL, "subscribed_endpoints"), event.partner_id, "referral.status_changed"
            )
            data: dict[str, Any] = {
                "referral_id": event.referral_id,
                "status": event.status,
                "previous_status": event.previous_status,
            }
            # The closed loop: why the case ended, as a code (the contract's data allows more fields).
            if event.status == "closed" and event.close_reason is not None:
                data["close_reason"] = event.close_reason
            body = webhook_body("referral.status_changed", event.occurred_at, data)
            for e in endpoints:
                out.outbound.append(
                    NewDelivery(
                        event_id=event.event_id,
                        kind="referral.status_changed",
                        channel="webhook",
                        recipient_id=str(e["id"]),
                        endpoint_id=str(e["id"]),
                        partner_id=event.partner_id,
                        referral_id=event.referral_id,
                        payload=body,
                    )
                )
    elif isinstance(event, ReferralWithdrawn):
        if event.status == "withdrawn":
            cancelled = await cancel_for_referral(conn, event.referral_id, "referral_withdrawn")
            if cancelled:
                log.info("notify.outbound_cancelled", referral_id=event.referral_id, count=cancelled)
        # The case manager who had it learns in-app (ids and codes only) that it stopped.
        cm = await conn.fetchval(load_sql(_SQL, "last_case_manager"), event.referral_id)
        if cm is not None:
            out.notify(
                [str(cm)],
                "referral_withdrawn",
                {"reason": event.reason, "status": event.status},
                referral_id=event.referral_id,
            )
    elif isinstance(event, ConsentExpiring):
        # Intake's sweep wrote the in-app warning under this event id; the email goes to whoever holds
        # the case now (re-read, not the event's word), and only while the case manager named still does.
        holder = await conn.fetchval(load_sql(_SQL, "last_case_manager"), event.referral_id)
        if holder is not None and str(holder) == event.case_manager_id:
            cm = [event.case_manager_id]
            facts = {"expires_at": event.expires_at.isoformat(), "days_left": event.days_left}
            out.notify(
                cm, "consent_expiring", {**facts, "lead_days": event.lead_days}, referral_id=event.referral_id
            )
            await out.email_staff(
                cm,
                "consent_expiring",
                {"referral_id": event.referral_id, **facts},
                referral_id=event.referral_id,
            )
    elif isinstance(event, FollowupDue) and event.case_manager_id is not None:
        # Intake's sweep already wrote this in-app reminder under the same event id (so writing it again
        # is a no-op) and, when nobody holds the case, told the region's supervisors in-app instead.
        cm = [event.case_manager_id]
        due_on = event.due_on.isoformat()
        out.notify(
            cm,
            "followup_due",
            {
                "followup": event.followup,
                "due_on": due_on,
                "overdue": event.due_on < local_date(event.occurred_at),
                "do_not_contact": event.do_not_contact,
            },
            referral_id=event.referral_id,
        )
        # The email carries the referral id and the due date only, not even the contact preference.
        await out.email_staff(
            cm,
            "followup_due",
            {"referral_id": event.referral_id, "due_on": due_on},
            referral_id=event.referral_id,
        )
    elif isinstance(event, ProtocolOverdue):
        await _protocol_overdue(conn, event, out)
    if write:
        await out.write()
    return out


async def _protocol_overdue(conn: asyncpg.Connection, event: ProtocolOverdue, out: _Fanout) -> None:
    """A child-protection step passed its clock: the case manager who has the referral and the region's
    supervisors hear of it (in-app; email where they enabled it), re-read from the database. The step's
    code and due time only: nothing about the youth. Once per event (the claim), and the sweep writes one
    event per step."""
    step = await conn.fetchrow(load_sql(_SQL, "protocol_step"), event.referral_id, event.step)
    if step is None:
        raise Poison("protocol.overdue for a step that does not exist")
    if step["completed_at"] is not None and step["completed_at"] <= step["due_at"]:
        return  # done in time after all (a late completion still escalates: it was overdue)
    recipients: list[str] = []
    if "case_manager" in step["escalate_to"]:
        cm = await conn.fetchval(load_sql(_SQL, "case_manager_holding"), event.referral_id)
        if cm is not None:
            recipients.append(str(cm))
    if "supervisor" in step["escalate_to"] or not recipients:
        # Nobody holds the case yet: the region's supervisors must know even if the file names only the
        # case manager.
        rows = await conn.fetch(load_sql(_SQL, "region_supervisors"), step["region"])
        recipients.extend(str(r["id"]) for r in rows if str(r["id"]) not in recipients)
    due_at = step["due_at"].isoformat()
    out.notify(
        recipients, "protocol_overdue", {"step": event.step, "due_at": due_at}, referral_id=event.referral_id
    )
    await out.email_staff(
        recipients,
        "protocol_overdue",
        {"referral_id": event.referral_id, "step": event.step, "due_at": due_at},
        referral_id=event.referral_id,
    )


async def _task_updated(conn: asyncpg.Connection, event: ReferralStatusChanged, out: _Fanout) -> None:
    """FHIR partners' `task.updated` webhooks (issue 17): the Task's new status (the contract's mapping);
    the partner reads the Task itself with GET /fhir/r4/Task/{id}. Ids and codes only, like every webhook.
    An endpoint subscribed to both gets the referral.status_changed message only (one per change)."""
    endpoints = await conn.fetch(
        load_sql(_SQL, "task_endpoints"), event.partner_id, TASK_UPDATED, "referral.status_changed"
    )
    if not endpoints:
        return
    data: dict[str, Any] = {
        "referral_id": event.referral_id,
        "task": f"Task/{event.referral_id}",
        "status": FHIR_TASK_STATUS.get(event.status, "requested"),
        "referral_status": event.status,
    }
    body = webhook_body(TASK_UPDATED, event.occurred_at, data)
    for e in endpoints:
        out.outbound.append(
            NewDelivery(
                event_id=event.event_id,
                kind=TASK_UPDATED,
                channel="webhook",
                recipient_id=str(e["id"]),
                endpoint_id=str(e["id"]),
                partner_id=event.partner_id,
                referral_id=event.referral_id,
                payload=body,
            )
        )


async def queue_webhook_test(conn: asyncpg.Connection, event: WebhookTestRequested) -> bool:
    """Insert the requested ``webhook.test`` delivery in the caller's transaction (which claimed the
    event), after re-reading the endpoint: the event's ids are intake's word, the database is ours.
    False (logged, nothing written) when the endpoint is gone, disabled or not that partner's."""
    try:
        delivery_id, endpoint_id = str(uuid.UUID(event.delivery_id)), str(uuid.UUID(event.endpoint_id))
        partner_id = str(uuid.UUID(event.partner_id))
    except ValueError:
        raise Poison("webhook.test_requested with a malformed id") from None
    endpoint = await conn.fetchrow(load_sql(_SQL, "endpoint_for_test"), endpoint_id)
    refused = None
    if endpoint is None or endpoint["state"] == "deleted":
        refused = "endpoint_gone"
    elif str(endpoint["partner_id"]) != partner_id:
        refused = "partner_mismatch"
    elif endpoint["state"] != "active":
        refused = "endpoint_disabled"
    if refused is None and not await add_test_delivery(
        conn, delivery_id, event.event_id, endpoint_id, partner_id, event.occurred_at
    ):
        refused = "delivery_id_taken"
    if refused is not None:
        log.warning(
            "notify.webhook_test_dropped",
            event_id=event.event_id,
            endpoint_id=endpoint_id,
            delivery_id=delivery_id,
            reason=refused,
        )
        return False
    log.info("notify.webhook_test_queued", endpoint_id=endpoint_id, delivery_id=delivery_id)
    return True


# Group commit bounds: events fanned out in one transaction, and such transactions open at once.
BATCH_MAX = 64
# One batch in flight, as routing's (services/routing/worker.py says why).
BATCHES_IN_FLIGHT = 1
# Messages in hand at once: enough that the next batch fills while one commits and its acks go out.
CONSUMER_CONCURRENCY = 4 * BATCH_MAX


async def read_event_referrals(
    conn: asyncpg.Connection, events: Sequence[AnyEvent]
) -> list[asyncpg.Record | _Unread | None]:
    """The event_referral.sql row of every event of a batch (None: no such referral) in one statement;
    UNREAD for an event naming no referral, or a malformed one (disagreement judges it without a read)."""
    named: list[tuple[int, uuid.UUID, uuid.UUID | None]] = []
    for index, event in enumerate(events):
        rid, aid = _named_ids(event)
        if rid is not None:
            named.append((index, rid, aid))
    found: list[asyncpg.Record | _Unread | None] = [UNREAD] * len(events)
    if not named:
        return found
    rows = await conn.fetch(
        load_sql(_SQL, "event_referrals"), [rid for _, rid, _ in named], [aid for _, _, aid in named]
    )
    for index, _, _ in named:
        found[index] = None  # read: no such referral unless a row says otherwise
    for r in rows:
        found[named[r["i"] - 1][0]] = r
    return found


async def claim_and_write_many(conn: asyncpg.Connection, outs: Sequence[_Fanout], consumer: str) -> set[str]:
    """_Fanout.claim_and_write for several events' fan-outs at once (distinct events): one statement
    claims them all and writes the claimed ones' in-app notifications; then their deliveries. The
    claimed event ids come back."""
    rows = [(out.event_id, *n[:2], *n[3:]) for out in outs for n in out.inapp]
    events, recipients, kinds, referrals, assignments, data = (
        list(zip(*rows, strict=True)) if rows else [()] * 6
    )
    claimed = {
        str(r["event_id"])
        for r in await conn.fetch(
            load_sql(_SQL, "claim_and_notify_many"),
            consumer,
            [out.event_id for out in outs],
            list(events),
            list(recipients),
            list(kinds),
            list(referrals),
            list(assignments),
            [msgspec.json.encode(d).decode() for d in data],
        )
    }
    await add_deliveries(conn, [d for out in outs if out.event_id in claimed for d in out.outbound])
    return claimed


_OURS = (
    ReferralAssigned
    | AssignmentReminder
    | AssignmentExpired
    | AssignmentCancelled
    | ReferralUnroutable
    | ReferralStatusChanged
    | ReferralWithdrawn
    | FollowupDue
    | ConsentExpiring
    | ProtocolOverdue
    | WebhookTestRequested
)


def make_handler(pool: asyncpg.Pool, settings: Settings) -> Handler:
    async def work_alone(conn: asyncpg.Connection, event: AnyEvent) -> _Fanout | None:
        """One event, claimed and fanned out in its transaction (shared with its batch's others)."""
        if isinstance(event, WebhookTestRequested):
            if await claim_event(conn, CONSUMER, event.event_id):
                await queue_webhook_test(conn, event)
            return None
        if isinstance(event, ReferralAssigned):
            # Every referral's offer: its fan-out only reads, so the claim rides on the notification
            # insert (one statement fewer per referral). A redelivery re-reads, then finds the claim
            # taken and writes nothing.
            out = await fan_out(conn, event, settings, write=False)
            return out if await out.claim_and_write(CONSUMER) else None
        if not await claim_event(conn, CONSUMER, event.event_id):
            return None
        return await fan_out(conn, event, settings)

    async def together(conn: asyncpg.Connection, events: list[AnyEvent]) -> list[_Fanout | None]:
        """A batch of events at once, each with the outcome it would have alone: the referrals they
        name read in one statement, and each run of consecutive offers claimed with its in-app
        notifications in one statement (flushed before any other event, so effects keep their
        order: a withdrawal later in the batch still cancels an offer's deliveries)."""
        known = await read_event_referrals(conn, events)
        results: list[_Fanout | None] = []
        offers: list[tuple[int, _Fanout]] = []

        async def flush() -> None:
            if not offers:
                return
            try:
                claimed = await claim_and_write_many(conn, [out for _, out in offers], CONSUMER)
            except Exception as exc:
                raise ItemFailed(offers[0][0]) from exc
            for index, out in offers:
                if out.event_id not in claimed:
                    results[index] = None
            offers.clear()

        for index, event in enumerate(events):
            try:
                if isinstance(event, ReferralAssigned):
                    if any(out.event_id == event.event_id for _, out in offers):
                        results.append(None)  # a second delivery of one event in one batch
                        continue
                    out = await fan_out(conn, event, settings, write=False, known=known[index])
                    offers.append((index, out))
                    results.append(out)
                    continue
                await flush()
                if isinstance(event, WebhookTestRequested):
                    results.append(await work_alone(conn, event))
                elif await claim_event(conn, CONSUMER, event.event_id):
                    results.append(await fan_out(conn, event, settings, known=known[index]))
                else:
                    results.append(None)  # an earlier delivery already did it
            except ItemFailed:
                raise
            except Exception as exc:
                raise ItemFailed(index) from exc
        await flush()
        return results

    # Events handled at the same moment share one transaction and one commit (shared.groupcommit),
    # as one call over the batch (`together`); each is claimed and fanned out as alone, and acked
    # after that commit. A lone event, or one a batch gave up on, runs `work_alone`.
    group = GroupCommit(pool, max_batch=BATCH_MAX, max_inflight=BATCHES_IN_FLIGHT, together=together)
    # Whether a status change has anyone to tell: webhook subscribers to status changes or FHIR Tasks.
    has_subscriber = SubscriberChecks(pool, ("referral.status_changed", TASK_UPDATED))

    async def handle(event: AnyEvent) -> None:
        if not isinstance(event, _OURS):
            return  # not ours (filtered subjects make this rare); ack and move on
        if _uuid(event.event_id) is None:
            # Checked before it joins a batch: its claim would fail the batch's statement.
            raise Poison(f"{tag_of(event)} with a malformed event id")
        if isinstance(event, ReferralStatusChanged) and not await has_subscriber(event.partner_id):
            # Nothing to send, so nothing to record either: a read-only check instead of a claim
            # (an insert and a commit flushed to disk) for every status change of every referral.
            return

        async def work(conn: asyncpg.Connection) -> _Fanout | None:
            return await work_alone(conn, event)

        out = await retrying(lambda: group.run(work, payload=event))
        if out is not None and (out.inapp or out.outbound):
            log.info(
                "notify.fanned_out",
                referral_id=getattr(event, "referral_id", None),
                inapp=len(out.inapp),
                outbound=len(out.outbound),
            )

    return handle


def consumer_spec() -> ConsumerSpec:
    return CONSUMERS[CONSUMER]
