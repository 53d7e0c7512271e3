"""Bodies and views of offers, case work, consent withdrawal and the youth's identifying details."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.intake.core.schemas import AwareDatetime, Input
from shared.casework import (
    FollowupPoint,
    HousingStability,
    InSchoolOrWork,
    InterventionType,
    OutcomeSource,
    ReArrest,
    ReturnToExploitation,
    Safety,
)
from shared.codes import AssignmentState
from shared.lifecycle import CloseReason

__all__ = [
    "AssignmentPage",
    "AssignmentView",
    "BreakGlassIn",
    "CloseIn",
    "ContactIn",
    "ContactPreferenceIn",
    "DeclineIn",
    "FollowupView",
    "HistoryPage",
    "InterventionIn",
    "InterventionPage",
    "InterventionView",
    "OutcomeIn",
    "OutcomePage",
    "OutcomeView",
    "PiiView",
    "TransitionView",
    "WithdrawIn",
]


# --------------------------------------------------------------------------- offers


class AssignmentView(msgspec.Struct, omit_defaults=True, kw_only=True):
    id: str
    referral_id: str
    state: AssignmentState
    offered_at: datetime
    respond_by: datetime
    responded_at: datetime | None = None
    region: str | None = None
    needs: list[str] = msgspec.field(default_factory=list)
    urgency: str | None = None


class AssignmentPage(msgspec.Struct):
    items: list[AssignmentView]


class DeclineIn(Input):
    reason: Annotated[str, Meta(min_length=1, max_length=1000)]


# --------------------------------------------------------------------------- consent and details


class WithdrawIn(Input):
    # Free text may describe the youth: it is not stored; only that a withdrawal happened.
    note: Annotated[str, Meta(max_length=1000)] | None = None


class BreakGlassIn(Input):
    # Sealed with the referral's data key (migration 0061); the audit row names it by id.
    reason: Annotated[str, Meta(min_length=10, max_length=500)]


class PiiView(msgspec.Struct, kw_only=True):
    referral_id: str
    youth: dict[str, object]
    location: dict[str, object]
    notes: str | None
    consent: dict[str, object]
    # The youth's safe contact preferences (issue 18), when the referral gave them.
    contact: dict[str, object] | None = None


# --------------------------------------------------------------------------- case work


class ContactIn(Input):
    # When the first contact happened, if it is being recorded afterwards (default: now).
    contacted_at: AwareDatetime | None = None
    method: Literal["in_person", "phone", "video", "text", "other"] | None = None


class CloseIn(Input):
    reason: CloseReason


class ContactPreferenceIn(Input):
    do_not_contact: bool


class InterventionIn(Input):
    type: InterventionType
    delivered_on: date
    # A partner organisation's id, or "external" for a provider outside the network.
    provider: Annotated[str, Meta(min_length=1, max_length=64)] = "external"
    # ISO 8601 duration, e.g. "PT50M" for a session or "P90D" for a placement.
    duration: timedelta | None = None


class InterventionView(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    referral_id: str
    type: str
    delivered_on: date
    provider: str
    duration: timedelta | None = None
    recorded_at: datetime


class InterventionPage(msgspec.Struct):
    items: list[InterventionView]


class OutcomeIn(Input):
    followup: FollowupPoint
    observed_on: date
    source: OutcomeSource
    re_arrest: ReArrest | None = None
    return_to_exploitation: ReturnToExploitation | None = None
    housing_stability: HousingStability | None = None
    in_school_or_work: InSchoolOrWork | None = None
    safety: Safety | None = None


class OutcomeView(msgspec.Struct, kw_only=True):
    id: str
    followup: str
    measure: str
    value: str
    observed_on: date
    source: str
    recorded_at: datetime


class FollowupView(msgspec.Struct, kw_only=True, omit_defaults=True):
    followup: str
    due_on: date
    reminded_at: datetime | None = None
    completed_at: datetime | None = None


class OutcomePage(msgspec.Struct):
    followups: list[FollowupView]
    items: list[OutcomeView]


class TransitionView(msgspec.Struct, kw_only=True, omit_defaults=True):
    from_status: str
    to_status: str
    # FHIR R4 Task.status of the new status, for systems that speak FHIR.
    fhir_task_status: str
    actor_role: str
    at: datetime
    reason: str | None = None


class HistoryPage(msgspec.Struct):
    items: list[TransitionView]
