"""Coded case records: intervention types, follow-up points and outcome measures; pure."""

from __future__ import annotations

import calendar
from datetime import date, datetime
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from shared.codes import NEED_CODES, NeedCode

__all__ = [
    "FAMILIES",
    "FOLLOWUPS",
    "FOLLOWUP_MONTHS",
    "INTERVENTION_TYPES",
    "LOCAL_TZ",
    "MEASURES",
    "MEASURE_VALUES",
    "OUTCOME_SOURCES",
    "FollowupPoint",
    "InterventionType",
    "OutcomeSource",
    "add_months",
    "family_of",
    "favourable",
    "followup_schedule",
    "local_date",
]

# Case dates follow the agency's calendar, not UTC's (as ages do at intake).
LOCAL_TZ = ZoneInfo("America/Los_Angeles")


def local_date(moment: datetime) -> date:
    return moment.astimezone(LOCAL_TZ).date()


InterventionType = Literal[
    # One per need code (shared.codes: defined once, included here) ...
    NeedCode,
    # ... and the specific services the pilot studies.
    "case_management",
    "therapy",
    "court_advocacy",
    "vacatur_or_record_relief",
    "t_visa_or_immigration_relief",
    "housing_placement",
    "school_enrollment",
    "job_training",
    "mentoring",
]
INTERVENTION_TYPES: tuple[str, ...] = get_args(InterventionType)
assert set(NEED_CODES) <= set(INTERVENTION_TYPES), "every need code is also an intervention type"

# The evaluation compares youth by which *kinds* of help they received; 22 types would cut 120
# youth into cells too small to publish, so they are grouped into five families (the rest — case
# management, medical, basic needs, family, LGBTQ-affirming care, safety planning — everyone gets
# in some form and they stay out of the comparison).
FAMILIES: dict[str, frozenset[str]] = {
    "housing": frozenset({"housing", "housing_placement"}),
    "therapy": frozenset({"mental_health", "therapy", "substance_use"}),
    "legal": frozenset(
        {"legal", "court_advocacy", "vacatur_or_record_relief", "immigration", "t_visa_or_immigration_relief"}
    ),
    "education_work": frozenset({"education", "employment", "school_enrollment", "job_training"}),
    "mentoring": frozenset({"mentoring", "peer_support"}),
}
_FAMILY_OF = {t: f for f, types in FAMILIES.items() for t in types}

FollowupPoint = Literal["intake", "m3", "m6", "m12", "m24"]
FOLLOWUPS: tuple[str, ...] = get_args(FollowupPoint)
FOLLOWUP_MONTHS: dict[str, int] = dict(zip(FOLLOWUPS, (0, 3, 6, 12, 24), strict=True))

OutcomeSource = Literal[
    "youth_self_report",
    "case_manager_observation",
    "partner_report",
    "justice_system_record",
    "caregiver_report",
    "other_agency_record",
]
OUTCOME_SOURCES: tuple[str, ...] = get_args(OutcomeSource)

ReArrest = Literal["yes", "no", "unknown"]
ReturnToExploitation = Literal["yes", "no", "unknown"]
HousingStability = Literal["stable", "unstable", "homeless", "unknown"]
InSchoolOrWork = Literal["school", "work", "both", "neither", "unknown"]
Safety = Literal["safe", "at_risk", "unsafe", "unknown"]

MEASURE_VALUES: dict[str, tuple[str, ...]] = {
    # Since the previous follow-up (at intake: in the year before the referral).
    "re_arrest": get_args(ReArrest),
    "return_to_exploitation": get_args(ReturnToExploitation),
    # At the time observed.
    "housing_stability": get_args(HousingStability),
    "in_school_or_work": get_args(InSchoolOrWork),
    "safety": get_args(Safety),
}
MEASURES: tuple[str, ...] = tuple(MEASURE_VALUES)

# Which values count as the good outcome when the report shows shares (unknown counts as not observed).
_FAVOURABLE: dict[str, frozenset[str]] = {
    "re_arrest": frozenset({"no"}),
    "return_to_exploitation": frozenset({"no"}),
    "housing_stability": frozenset({"stable"}),
    "in_school_or_work": frozenset({"school", "work", "both"}),
    "safety": frozenset({"safe"}),
}


def favourable(measure: str, value: str) -> bool | None:
    """True/False for a known value, None for ``unknown`` (left out of shares)."""
    if value == "unknown":
        return None
    return value in _FAVOURABLE[measure]


def family_of(intervention_type: str) -> str | None:
    return _FAMILY_OF.get(intervention_type)


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, clamped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def followup_schedule(first_contact: date) -> list[tuple[str, date]]:
    """Follow-up points and their due dates, counted from first contact (the intake interview)."""
    return [(point, add_months(first_contact, FOLLOWUP_MONTHS[point])) for point in FOLLOWUPS]
