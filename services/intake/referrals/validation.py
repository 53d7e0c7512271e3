"""Semantic checks a type system cannot express (age band, consent validity, location shape); pure."""

from __future__ import annotations

from datetime import UTC, date, datetime

import msgspec

from services.intake.referrals.schemas import Consent, ReferralIn
from shared.codes import AGENCY_ORIGINS, CONSENT_REQUIRED_SCOPE, CONSENT_SCOPES, MAX_AGE, MIN_AGE

__all__ = ["FieldError", "age_on", "check_consent", "check_origin", "check_referral"]


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


def age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def check_referral(ref: ReferralIn, now: datetime, today: date) -> list[FieldError]:
    """Return every semantic error in ``ref`` (empty when it may be accepted)."""
    errors: list[FieldError] = []
    dob = ref.youth.date_of_birth
    if dob > today:
        errors.append(FieldError("youth.date_of_birth", "date of birth is in the future"))
    else:
        age = age_on(dob, today)
        if not MIN_AGE <= age <= MAX_AGE:
            errors.append(
                FieldError(
                    "youth.date_of_birth", f"age on the day received must be {MIN_AGE}-{MAX_AGE}, not {age}"
                )
            )
    loc = ref.location
    has_point = loc.lat is not None or loc.lon is not None
    if loc.zip is not None and has_point:
        errors.append(FieldError("location", "give either zip or lat/lon, not both"))
    elif loc.zip is None and not has_point:
        errors.append(FieldError("location", "zip or lat/lon is required"))
    elif has_point and (loc.lat is None or loc.lon is None):
        # Name the coordinate that is missing, so a client can point at the field to fix.
        missing = "location.lon" if loc.lon is None else "location.lat"
        errors.append(FieldError(missing, "lat and lon must be given together"))
    if len(set(ref.needs)) != len(ref.needs):
        errors.append(FieldError("needs", "need codes must be distinct"))
    c = ref.consent
    errors.extend(_consent_times(c.obtained_at, c.expires_at, now))
    if CONSENT_REQUIRED_SCOPE not in c.scope:
        errors.append(FieldError("consent.scope", f"consent scope must include {CONSENT_REQUIRED_SCOPE!r}"))
    # A closed list: a scope nobody enforces would be a promise to the youth that means nothing.
    errors.extend(
        FieldError(f"consent.scope[{i}]", f"unknown consent scope {s!r}; one of {', '.join(CONSENT_SCOPES)}")
        for i, s in enumerate(c.scope)
        if s not in CONSENT_SCOPES
    )
    return errors


def _consent_times(obtained_at: datetime, expires_at: datetime, now: datetime) -> list[FieldError]:
    errors = [
        FieldError(f"consent.{name}", "timestamp is out of range once converted to UTC")
        for name, value in (("obtained_at", obtained_at), ("expires_at", expires_at))
        if not _utc_representable(value)
    ]
    if errors:
        # Comparing such values is meaningless, and storing them would fail in the database driver.
        return errors
    if obtained_at > now:
        errors.append(FieldError("consent.obtained_at", "consent must have been obtained in the past"))
    if expires_at <= now:
        errors.append(FieldError("consent.expires_at", "consent has expired"))
    if expires_at <= obtained_at:
        errors.append(FieldError("consent.expires_at", "consent must expire after it was obtained"))
    return errors


def _utc_representable(value: datetime) -> bool:
    # "0001-01-01T00:00+14:00" and "9999-12-31T23:59-12:00" are valid ISO 8601 but fall outside the
    # years 1-9999 once in UTC; asyncpg normalises to UTC when binding and would fail with a 500.
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


def check_origin(ref: ReferralIn, *, agency: bool) -> list[FieldError]:
    """The agency's own origins (hotline, walk-in, self-referral) are for its intake staff, who must give
    one of them; a partner's referral names a setting from the contract's list."""
    setting = ref.intake.referral_setting if ref.intake is not None else None
    field = "intake.referral_setting"
    if agency and setting not in AGENCY_ORIGINS:
        return [FieldError(field, f"the agency's own intake must be one of {', '.join(AGENCY_ORIGINS)}")]
    if not agency and setting in AGENCY_ORIGINS:
        return [FieldError(field, f"{setting!r} is reserved for the coordinating agency's own intake")]
    return []


def check_consent(consent: Consent, now: datetime) -> list[FieldError]:
    """A consent body on its own (a renewal): the same rules as a referral's, fields named without the
    ``consent.`` prefix."""
    errors = _consent_times(consent.obtained_at, consent.expires_at, now)
    if CONSENT_REQUIRED_SCOPE not in consent.scope:
        errors.append(FieldError("consent.scope", f"consent scope must include {CONSENT_REQUIRED_SCOPE!r}"))
    return [FieldError(e.field.removeprefix("consent."), e.message) for e in errors]
