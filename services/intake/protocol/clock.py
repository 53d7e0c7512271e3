"""Pure protocol decisions: each step's due time and status, and who is told when it is overdue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from services.intake.protocol.definition import RECEIPT, Step

__all__ = [
    "NewStep",
    "StepStatus",
    "completion_errors",
    "due_after",
    "may_complete",
    "new_steps",
    "started_by",
    "status_of",
]

StepStatus = Literal["open", "overdue", "done", "done_late"]


class NewStep(msgspec.Struct, frozen=True):
    """A step as stored with a new referral: its clock travels with it, so replacing the file later
    changes no due time already set."""

    code: str
    position: int
    roles: tuple[str, ...]
    clock_from: str
    clock_minutes: int | None
    reference_required: bool
    outcomes: tuple[str, ...]
    escalate_to: tuple[str, ...]
    due_at: datetime | None


def due_after(clock_minutes: int | None, started: datetime | None) -> datetime | None:
    """A clock of ``clock_minutes`` started at ``started``; no clock or not yet started: no due time."""
    if clock_minutes is None or started is None:
        return None
    return started + timedelta(minutes=clock_minutes)


def new_steps(steps: Sequence[Step], received_at: datetime) -> list[NewStep]:
    """The steps of a referral received at ``received_at``: clocks from receipt start now; clocks from
    another step start when that step is completed."""
    return [
        NewStep(
            code=s.code,
            position=i,
            roles=tuple(s.roles),
            clock_from=s.clock_from,
            clock_minutes=s.clock_minutes,
            reference_required=s.reference_required,
            outcomes=tuple(s.outcomes),
            escalate_to=tuple(s.escalate_to),
            due_at=due_after(s.clock_minutes, received_at if s.clock_from == RECEIPT else None),
        )
        for i, s in enumerate(steps)
    ]


def status_of(due_at: datetime | None, completed_at: datetime | None, now: datetime) -> StepStatus:
    """open until due, overdue after; done, or done_late when completed after its due time."""
    if completed_at is not None:
        return "done_late" if due_at is not None and completed_at > due_at else "done"
    if due_at is not None and now >= due_at:
        return "overdue"
    return "open"


def started_by(
    completed_code: str, completed_at: datetime, clocks: Mapping[str, tuple[str, int | None]]
) -> dict[str, datetime | None]:
    """Due times that start because ``completed_code`` was completed: {step code: due time}, for the
    steps whose clock runs from it (``clocks``: code → (clock_from, clock_minutes))."""
    return {
        code: due_after(minutes, completed_at)
        for code, (origin, minutes) in clocks.items()
        if origin == completed_code
    }


def may_complete(roles: Sequence[str], caller_role: str) -> bool:
    return caller_role in roles


# Clocks of a few minutes' skew between a phone and the server must not refuse a completion "just now".
_FUTURE_SKEW = timedelta(minutes=5)


def completion_errors(
    *,
    reference_required: bool,
    outcomes: Sequence[str],
    received_at: datetime,
    now: datetime,
    completed_at: datetime,
    reference: str | None,
    outcome: str | None,
) -> list[tuple[str, str]]:
    """Every problem with completing a step as asked, as (field, message) pairs."""
    errors: list[tuple[str, str]] = []
    if completed_at > now + _FUTURE_SKEW:
        errors.append(("completed_at", "must not be in the future"))
    elif completed_at < received_at:
        errors.append(("completed_at", "must not be before the referral was received"))
    if reference_required and not (reference or "").strip():
        errors.append(("reference", "this step needs a reference (e.g. the report number)"))
    if outcomes and outcome is not None and outcome not in outcomes:
        errors.append(("outcome", f"must be one of {', '.join(outcomes)}"))
    if not outcomes and outcome is not None:
        errors.append(("outcome", "this step records no outcome"))
    return errors
