"""Views of the administration endpoints: dashboard figures, deliveries, dead letters, audit, routing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from services.intake.core.schemas import Input

__all__ = [
    "AttemptView",
    "AuditEntry",
    "Bucket",
    "CandidateView",
    "CaseManagerLoad",
    "Channel",
    "ConsumerLag",
    "DashboardFigures",
    "DeadLetterPage",
    "DeadLetterView",
    "DecisionView",
    "DeliveryDetail",
    "DeliveryFigures",
    "DeliveryPage",
    "DeliveryState",
    "DeliveryView",
    "Duration",
    "HourPoint",
    "ManualAssignIn",
    "NeedFigures",
    "OfferView",
    "Offers",
    "Outbox",
    "PartnerVolume",
    "Person",
    "QueueItem",
    "QueuePage",
    "Reason",
    "RoutingExplanation",
    "Utilisation",
    "Window",
]

DeliveryState = Literal["pending", "failed", "delivered", "dead", "cancelled"]
Channel = Literal["webhook", "email"]
# Staff-written: must say something, and hold no NUL (which PostgreSQL text cannot store).
Reason = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=1000,
        pattern=r"^[^\x00]*[^\s\x00][^\x00]*$",
        extra={"invalid": "must be written out (not blank, no NUL characters)"},
    ),
]

# --------------------------------------------------------------------------- dashboard


class Bucket(msgspec.Struct):
    le: float | None  # None: above the last edge
    count: int


class Duration(msgspec.Struct):
    """A duration distribution: sample size, median and 90th percentile in seconds, and a histogram."""

    count: int
    p50_seconds: float | None
    p90_seconds: float | None
    histogram: list[Bucket]


class HourPoint(msgspec.Struct):
    start: datetime
    received: int
    assigned: int
    unroutable: int


# The dashboard's time windows (`?window=`): the last 24 hours, 7 days, 30 days, or all time.
Window = Literal["24h", "7d", "30d", "all"]


class NeedFigures(msgspec.Struct):
    """Referrals received in the window that name this need (a referral counts once per need it names),
    how many were offered to someone, and p50/p90 seconds from receipt to the first offer."""

    need: str
    count: int
    assigned: int
    tta_p50_seconds: float | None
    tta_p90_seconds: float | None


class PartnerVolume(msgspec.Struct):
    partner_id: str
    name: str
    count: int


class CaseManagerLoad(msgspec.Struct):
    staff_id: str
    name: str
    regions: list[str]
    active: int
    capacity: int
    status: str


class Utilisation(msgspec.Struct):
    active: int
    capacity: int
    ratio: float | None
    case_managers: list[CaseManagerLoad]


class Offers(msgspec.Struct):
    open: int
    expiring_within_1h: int


class ConsumerLag(msgspec.Struct):
    consumer: str
    pending: int | None  # None when NATS could not be asked
    ack_pending: int | None
    redelivered: int | None


class Outbox(msgspec.Struct):
    pending: int
    oldest_age_seconds: float | None


class DeliveryFigures(msgspec.Struct):
    """Per channel: ``failed`` (waiting for a retry), ``dead`` (dead-lettered), ``pending`` and the
    notify counters (attempts, delivered, retried, dead_lettered, suppressed)."""

    channels: dict[str, dict[str, int]]
    failed: int
    dead: int


class ProtocolCompliance(msgspec.Struct, kw_only=True):
    """One child-protection protocol step in one region over the window (issue 18): steps done on time,
    done late, open (not yet due, or without a deadline) and overdue."""

    region: str
    step: str
    on_time: int
    late: int
    open: int
    overdue: int


class DashboardFigures(msgspec.Struct, kw_only=True):
    """Figures over the ``window`` (referrals received since ``window_start``, null for all time):
    the referral counts, per need, the durations and the ``timeline`` (one point per
    ``timeline_bucket``: hour, day or month). ``last_24h`` is always the last 24 hours, hour by hour.
    Offers, utilisation, deliveries, consumer lag and outbox are as they are now."""

    generated_at: datetime
    window: Window
    window_start: datetime | None
    window_days: int | None  # the window in days (null: all time)
    referrals_total: int
    referrals_by_status: dict[str, int]
    referrals_by_region: dict[str, int]  # every region, "out_of_area" for referrals outside every region
    referrals_by_partner: list[PartnerVolume]
    referrals_by_need: list[NeedFigures]  # every need code, in the contract's order
    timeline_bucket: Literal["hour", "day", "month"]
    timeline: list[HourPoint]
    last_24h: list[HourPoint]
    time_to_assignment: Duration
    time_to_acceptance: Duration
    offers: Offers
    utilisation: Utilisation
    deliveries: DeliveryFigures
    consumer_lag: list[ConsumerLag]
    outbox: Outbox
    # Per region and step, over the window (referrals received in it).
    protocol_compliance: list[ProtocolCompliance] = []


# --------------------------------------------------------------------------- deliveries, dead letters, audit


class DeliveryView(msgspec.Struct, kw_only=True):
    """Ids, codes and outcomes only: no payload, no URL, no email address."""

    id: str
    webhook_id: str | None
    channel: str
    kind: str
    event_id: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    endpoint_id: str | None
    partner_id: str | None
    staff_id: str | None
    referral_id: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None


class AttemptView(msgspec.Struct, kw_only=True):
    attempt: int
    started_at: datetime
    latency_ms: float
    status_code: int | None
    error: str | None
    outcome: str
    next_attempt_at: datetime | None


class DeliveryDetail(msgspec.Struct, kw_only=True):
    delivery: DeliveryView
    attempts: list[AttemptView]


class DeliveryPage(msgspec.Struct):
    items: list[DeliveryView]
    next_cursor: str | None


class DeadLetterView(msgspec.Struct, kw_only=True):
    id: int
    consumer: str
    subject: str
    event_id: str | None
    stream_seq: int
    delivery_count: int
    reason: str
    error_class: str
    error_message: str
    # Events carry ids, codes and timestamps only (no PII), so the original bytes are shown as sent.
    payload_base64: str
    payload_size: int
    first_failed_at: datetime
    last_failed_at: datetime


class DeadLetterPage(msgspec.Struct):
    items: list[DeadLetterView]
    next_cursor: str | None


class AuditEntry(msgspec.Struct, kw_only=True):
    seq: int | None
    id: int
    at: str
    actor_role: str
    actor_id: str
    action: str
    target_type: str
    target_id: str
    detail: dict[str, Any]


# --------------------------------------------------------------------------- routing


class QueueItem(msgspec.Struct, kw_only=True):
    referral_id: str
    region: str | None
    needs: list[str]
    language: str
    urgency: str
    age_years: int
    reason: str | None
    received_at: datetime
    queued_at: datetime | None
    waiting_seconds: int
    failed_offers: int


class QueuePage(msgspec.Struct):
    items: list[QueueItem]


class ManualAssignIn(Input):
    case_manager_id: str
    reason: Reason


class Person(msgspec.Struct):
    id: str
    name: str


class CandidateView(msgspec.Struct, kw_only=True):
    case_manager: Person
    eligible: bool
    score: float | None
    reasons: list[str]


class DecisionView(msgspec.Struct, kw_only=True, omit_defaults=True):
    decided_at: datetime
    kind: str
    outcome: str
    policy_version: str | None
    chosen: Person | None
    summary: str
    details: list[str]
    decided_by: Person | None = None
    candidates: list[CandidateView] = msgspec.field(default_factory=list)


class OfferView(msgspec.Struct, kw_only=True):
    assignment_id: str
    case_manager: Person
    state: str
    offered_at: datetime
    respond_by: datetime
    responded_at: datetime | None


class RoutingExplanation(msgspec.Struct, kw_only=True):
    referral_id: str
    status: str
    region: str | None
    region_name: str | None
    urgency: str
    needs: list[str]
    summary: str
    decisions: list[DecisionView]
    offers: list[OfferView]
