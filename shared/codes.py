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
    # Added by refnet (not in the contract's partner list): the coordinating agency's own intake
    # (issue 17). Partners cannot send them; agency intake staff choose one of them.
    "hotline",
    "walk_in",
    "self_referral",
]
PriorServices = Literal["none", "voluntary", "mandated"]
EducationLevel = Literal["none", "primary", "some_high_school", "high_school", "some_college", "college"]
SocioeconomicStatus = Literal["very_low", "low", "moderate", "high"]
Urgency = Literal["routine", "urgent"]
ReferralStatus = Literal["received", "assigned", "accepted", "engaged", "closed", "unroutable", "withdrawn"]
AssignmentState = Literal["offered", "accepted", "declined", "expired", "cancelled"]
StaffRole = Literal["case_manager", "supervisor", "admin", "evaluator", "intake_staff"]
UnroutableReason = Literal["out_of_area", "no_eligible_case_manager", "offers_exhausted"]

NEED_CODES: tuple[str, ...] = get_args(NeedCode)
REFERRAL_SETTINGS: tuple[str, ...] = get_args(ReferralSetting)
REFERRAL_STATUSES: tuple[str, ...] = get_args(ReferralStatus)
ASSIGNMENT_STATES: tuple[str, ...] = get_args(AssignmentState)

MIN_AGE = 10
MAX_AGE = 24
CONSENT_REQUIRED_SCOPE = "case_management"

# The coordinating agency's own intake (issue 17): the origins its intake staff record as the referral
# setting, and the partner kind that stands for the agency itself on those referrals.
AGENCY_ORIGINS: tuple[str, ...] = ("hotline", "walk_in", "self_referral")
AGENCY_PARTNER_KIND = "coordinating_agency"

# FHIR R4 Task.status for each referral status (CONTRACT.md, "FHIR R4"): read by intake's FHIR API and
# by notify's `task.updated` webhooks, so both say the same.
FHIR_TASK_STATUS: dict[str, str] = {
    "received": "requested",
    "unroutable": "on-hold",
    "assigned": "received",
    "accepted": "accepted",
    "engaged": "in-progress",
    "closed": "completed",
    "withdrawn": "cancelled",
}

# Days before a consent expires that the case manager is warned (once each, per expiry date).
CONSENT_REMINDER_DAYS: tuple[int, ...] = (30, 7)

# The closed list of consent scopes (contract v1.1): case work (required); appearing in evaluation outputs
# (reports, exports) at all; the referring partner being told more than received/withdrawn (its status
# view and status webhooks). Any other value is refused (422).
CONSENT_SCOPES: tuple[str, ...] = ("case_management", "evaluation", "share_status_with_referrer")
EVALUATION_SCOPE = "evaluation"
SHARE_STATUS_SCOPE = "share_status_with_referrer"
