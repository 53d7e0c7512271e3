"""Pure checks of case records: dates on the agency's calendar, durations, status transitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.intake.core.problems import Problem
from shared import lifecycle

__all__ = ["SKEW", "check_day", "check_duration", "illegal", "in_range"]

# A few minutes' clock skew between a case manager's device and us is not "the future".
SKEW = timedelta(minutes=5)
_MAX_DURATION = timedelta(days=3 * 365)


def check_day(day: date, field: str, received_day: date, today: date) -> None:
    """A case record's date: not before the referral arrived, not in the future (agency calendar)."""
    if day > today:
        raise Problem(
            422, f"{field} is in the future.", errors=[{"field": field, "message": "in the future"}]
        )
    if day < received_day:
        raise Problem(
            422,
            f"{field} is before the referral was received.",
            errors=[{"field": field, "message": "before the referral was received"}],
        )


def check_duration(duration: timedelta | None) -> None:
    if duration is not None and not timedelta(0) < duration <= _MAX_DURATION:
        raise Problem(
            422,
            "duration must be positive and at most three years.",
            errors=[{"field": "duration", "message": "must be positive and at most three years"}],
        )


def in_range(moment: datetime, earliest: datetime, latest: datetime) -> bool:
    try:
        # "0001-01-01T00:00+14:00" is valid ISO 8601 but not representable in UTC: not in range.
        moment = moment.astimezone(UTC)
    except OverflowError:
        return False
    return earliest <= moment <= latest


def illegal(exc: lifecycle.IllegalTransition) -> Problem:
    """The 409 for a status change the lifecycle does not allow, naming the ones it does."""
    allowed = list(exc.allowed)
    return Problem(
        409,
        f"A referral that is {exc.source} cannot become {exc.target}"
        + (f"; from {exc.source} you may move it to: {', '.join(allowed)}." if allowed else "; it is final."),
        extra_fields={"current": exc.source, "requested": exc.target, "allowed": allowed},
        slug="illegal-transition",
    )
