"""Versioned event Structs for the bus: ids, codes and timestamps only, never PII."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import TypeAlias

import msgspec

__all__ = [
    "AssignmentAccepted",
    "AssignmentCancelled",
    "AssignmentDeclined",
    "AssignmentExpired",
    "AssignmentReminder",
    "ConsentExpiring",
    "Event",
    "FollowupDue",
    "ProtocolOverdue",
    "ReferralAssigned",
    "ReferralReceived",
    "ReferralStatusChanged",
    "ReferralUnroutable",
    "ReferralWithdrawn",
    "WebhookTestRequested",
    "decode_event",
    "encode_event",
    "new_event_id",
    "subject_for",
]

SUBJECT_PREFIX = "refnet."


def new_event_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


class Event(msgspec.Struct, kw_only=True, tag_field="type"):
    """Common envelope. Evolve by appending fields with defaults and bumping ``version``.

    Consumers do not forbid unknown fields: an older consumer must accept a newer producer's event.
    """

    event_id: str = msgspec.field(default_factory=new_event_id)
    version: int = 1
    occurred_at: datetime = msgspec.field(default_factory=_now)
    # Correlates log lines across services for one request; an opaque random id, not PII.
    trace_id: str = ""


class ReferralReceived(Event, tag="referral.received"):
    referral_id: str
    partner_id: str
    urgency: str = "routine"


class ReferralAssigned(Event, tag="referral.assigned"):
    referral_id: str
    assignment_id: str
    case_manager_id: str
    region: str
    respond_by: datetime
    urgency: str = "routine"


class ReferralUnroutable(Event, tag="referral.unroutable"):
    referral_id: str
    reason: str
    region: str | None = None


class ReferralStatusChanged(Event, tag="referral.status_changed"):
    referral_id: str
    partner_id: str
    status: str
    previous_status: str | None = None
    # When status is "closed": the close reason code (shared.lifecycle.CLOSE_REASONS), for the partner.
    close_reason: str | None = None


class AssignmentAccepted(Event, tag="assignment.accepted"):
    referral_id: str
    assignment_id: str
    case_manager_id: str


class AssignmentDeclined(Event, tag="assignment.declined"):
    referral_id: str
    assignment_id: str
    case_manager_id: str
    # The reason text stays in the database (it may describe the youth); only that one exists travels.


class AssignmentExpired(Event, tag="assignment.expired"):
    referral_id: str
    assignment_id: str
    case_manager_id: str


class ReferralWithdrawn(Event, tag="referral.withdrawn"):
    """Consent withdrawn or expired (or retention ended): internal only, never sent outside."""

    referral_id: str
    reason: str
    status: str


class AssignmentReminder(Event, tag="assignment.reminder"):
    """An offer is close to its respond_by and still unanswered (written once per offer by notify)."""

    referral_id: str
    assignment_id: str
    case_manager_id: str
    respond_by: datetime


class AssignmentCancelled(Event, tag="assignment.cancelled"):
    """An open offer was withdrawn, e.g. a supervisor assigned the referral to someone else by hand."""

    referral_id: str
    assignment_id: str
    case_manager_id: str
    reason: str


class FollowupDue(Event, tag="case.followup_due"):
    """A scheduled outcome follow-up is due (or overdue) and not yet recorded: remind the case manager.

    Written once per follow-up by intake's periodic sweep. ``do_not_contact``: the youth asked not to be
    contacted, so the reminder must not prompt outreach to them (record from other sources).
    """

    referral_id: str
    followup: str
    due_on: date
    case_manager_id: str | None = None
    do_not_contact: bool = False


class WebhookTestRequested(Event, tag="webhook.test_requested"):
    """A partner registered (or asked to re-test) a webhook endpoint: notify sends it a signed
    ``webhook.test`` delivery with this ``delivery_id`` (intake chose it so the API can name it at once).
    notify re-reads the endpoint and its partner from the database; the ids here are not trusted."""

    endpoint_id: str
    partner_id: str
    delivery_id: str


class ConsentExpiring(Event, tag="case.consent_expiring"):
    """A youth's consent expires within ``lead_days`` and was not renewed: warn the case manager (once per
    lead and expiry date, written by intake's sweep). Unrenewed, the expiry destroys the youth's details."""

    referral_id: str
    case_manager_id: str
    expires_at: datetime
    lead_days: int
    days_left: int


class ProtocolOverdue(Event, tag="protocol.overdue"):
    """A child-protection protocol step passed its due time uncompleted (written once per step by
    intake's sweep). notify re-reads the step and whom to tell (the case manager who has the referral,
    the region's supervisors) from the database: the event's word is not trusted."""

    referral_id: str
    step: str
    due_at: datetime


AnyEvent: TypeAlias = (
    ReferralReceived
    | ReferralAssigned
    | ReferralUnroutable
    | ReferralStatusChanged
    | AssignmentAccepted
    | AssignmentDeclined
    | AssignmentExpired
    | ReferralWithdrawn
    | AssignmentReminder
    | AssignmentCancelled
    | FollowupDue
    | WebhookTestRequested
    | ConsentExpiring
    | ProtocolOverdue
)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def tag_of(event: Event) -> str:
    return str(type(event).__struct_config__.tag)


def subject_for(event: Event) -> str:
    return SUBJECT_PREFIX + tag_of(event)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> AnyEvent:
    return _decoder.decode(data)
