"""Closed code lists from the contract: needs, settings, statuses, and their Literal types."""

from __future__ import annotations

from typing import Literal, get_args

NeedCode = Literal[
    "housing",
    "mental_health",
    "medical",
    "substance_use",
    "legal",
    "immigration",
    "education",
    "employment",
    "basic_needs",
    "family",
    "lgbtq_affirming",
    "peer_support",
    "safety_planning",
]
ReferralSetting = Literal[
    "emergency_room",
    "hospital",
    "child_welfare",
    "juvenile_justice",
    "domestic_violence_center",
    "youth_shelter",
    "faith_community",
    "community_organization",
    "school",
    "health_clinic",
    "refugee_services",
    "legal_aid",
    "street_outreach",
    "homeless_services",
    "other",
]
PriorServices = Literal["none", "voluntary", "mandated"]
EducationLevel = Literal["none", "primary", "some_high_school", "high_school", "some_college", "college"]
SocioeconomicStatus = Literal["very_low", "low", "moderate", "high"]
Urgency = Literal["routine", "urgent"]
ReferralStatus = Literal["received", "assigned", "accepted", "engaged", "closed", "unroutable", "withdrawn"]
AssignmentState = Literal["offered", "accepted", "declined", "expired", "cancelled"]
StaffRole = Literal["case_manager", "supervisor", "admin", "evaluator"]
UnroutableReason = Literal["out_of_area", "no_eligible_case_manager", "offers_exhausted"]

NEED_CODES: tuple[str, ...] = get_args(NeedCode)
REFERRAL_SETTINGS: tuple[str, ...] = get_args(ReferralSetting)
REFERRAL_STATUSES: tuple[str, ...] = get_args(ReferralStatus)
ASSIGNMENT_STATES: tuple[str, ...] = get_args(AssignmentState)

MIN_AGE = 10
MAX_AGE = 24
CONSENT_REQUIRED_SCOPE = "case_management"
# The closed list of consent scopes (contract v1.1): case work (required); appearing in evaluation outputs
# (reports, exports) at all; the referring partner being told more than received/withdrawn (its status
# view and status webhooks). Any other value is refused (422).
CONSENT_SCOPES: tuple[str, ...] = ("case_management", "evaluation", "share_status_with_referrer")
EVALUATION_SCOPE = "evaluation"
SHARE_STATUS_SCOPE = "share_status_with_referrer"
