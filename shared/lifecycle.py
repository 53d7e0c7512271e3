"""The referral status machine as one table, close reasons, and the mapping to FHIR Task statuses; pure."""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

from shared.codes import REFERRAL_STATUSES

__all__ = [
    "ASSIGNMENT_FHIR",
    "CLOSE_CATEGORY",
    "CLOSE_REASONS",
    "STATUS_FHIR",
    "TERMINAL",
    "TRANSITIONS",
    "CloseReason",
    "IllegalTransition",
    "Transition",
    "allowed_targets",
    "check",
    "fhir_task_status",
    "is_legal",
]

# Who acts: the roles of shared.db.Identity ("system" is routing, sweeps and operators).
Actor = Literal["partner", "case_manager", "supervisor", "admin", "system"]

CloseReason = Literal[
    "goals_met",
    "youth_declined_services",
    "lost_contact",
    "moved_out_of_area",
    "transferred",
    "aged_out",
    "other",
]
CLOSE_REASONS: tuple[str, ...] = get_args(CloseReason)

# The coarse category a referring partner reads in the status view's `outcome` (the reason code
# itself is shown as `close_reason`; neither says anything about the youth beyond the code).
CLOSE_CATEGORY: dict[str, str] = {
    "goals_met": "services_completed",
    "transferred": "transferred",
    "moved_out_of_area": "transferred",
    "youth_declined_services": "youth_disengaged",
    "lost_contact": "youth_disengaged",
    "aged_out": "other",
    "other": "other",
}


class Transition(msgspec.Struct, frozen=True):
    source: str
    target: str
    # The API action (or worker) that performs it, for people reading the table and for 409 bodies.
    action: str
    actors: frozenset[str]


_STOPPERS = frozenset({"partner", "case_manager", "system"})

# THE status machine. Anything not listed is illegal. Mirrored row for row by the
# referral_status_transitions table of migration 0005, which the database enforces on every
# UPDATE of referrals.status (tests/unit/test_lifecycle.py keeps the two equal).
TRANSITIONS: tuple[Transition, ...] = (
    Transition("received", "assigned", "route", frozenset({"system", "supervisor", "admin"})),
    Transition("received", "unroutable", "route", frozenset({"system"})),
    Transition("received", "withdrawn", "withdraw_consent", _STOPPERS),
    Transition("assigned", "accepted", "accept", frozenset({"case_manager"})),
    # Every offer declined or expired and nobody else eligible: the supervisor queue.
    Transition("assigned", "unroutable", "route", frozenset({"system"})),
    Transition("assigned", "withdrawn", "withdraw_consent", _STOPPERS),
    # Drained from the queue automatically, or assigned by hand by a supervisor or admin.
    Transition("unroutable", "assigned", "route", frozenset({"system", "supervisor", "admin"})),
    Transition("unroutable", "withdrawn", "withdraw_consent", _STOPPERS),
    Transition("accepted", "engaged", "contact", frozenset({"case_manager"})),
    # Accepted but the youth was never reached (lost contact, declined, moved) before first contact.
    Transition("accepted", "closed", "close", frozenset({"case_manager"})),
    Transition("accepted", "withdrawn", "withdraw_consent", _STOPPERS),
    Transition("engaged", "closed", "close", frozenset({"case_manager"})),
    # Consent withdrawn after engagement keeps the case going without PII: no status change (issue 3).
)

_BY_PAIR: dict[tuple[str, str], Transition] = {(t.source, t.target): t for t in TRANSITIONS}
TERMINAL: frozenset[str] = frozenset(REFERRAL_STATUSES) - {t.source for t in TRANSITIONS}


class IllegalTransition(Exception):
    """``source`` → ``target`` is not in the table (or not for this actor); ``allowed`` says what is."""

    def __init__(self, source: str, target: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"a referral that is {source} cannot become {target}")
        self.source = source
        self.target = target
        self.allowed = allowed


def allowed_targets(source: str, actor: str | None = None) -> tuple[str, ...]:
    """Statuses reachable from ``source`` in one step (by ``actor``, when given), in table order."""
    return tuple(t.target for t in TRANSITIONS if t.source == source and (actor is None or actor in t.actors))


def is_legal(source: str, target: str, actor: str | None = None) -> bool:
    t = _BY_PAIR.get((source, target))
    return t is not None and (actor is None or actor in t.actors)


def check(source: str, target: str, actor: str) -> Transition:
    """The transition ``actor`` may make from ``source`` to ``target``, or IllegalTransition."""
    t = _BY_PAIR.get((source, target))
    if t is None or actor not in t.actors:
        raise IllegalTransition(source, target, allowed_targets(source, actor))
    return t


# FHIR R4 Task.status for each referral status (Task.businessStatus carries ours; for `closed`,
# Task.statusReason carries the close reason). `assigned` is still a request: an owner is proposed
# but has not accepted. `unroutable` waits for a supervisor: on-hold.
STATUS_FHIR: dict[str, str] = {
    "received": "requested",
    "assigned": "requested",
    "accepted": "accepted",
    "engaged": "in-progress",
    "closed": "completed",
    "unroutable": "on-hold",
    "withdrawn": "cancelled",
}
# An offer is a Task for one owner: declining it is FHIR's `rejected`; an offer that lapsed or was
# withdrawn with the referral is `cancelled`.
ASSIGNMENT_FHIR: dict[str, str] = {
    "offered": "requested",
    "accepted": "accepted",
    "declined": "rejected",
    "expired": "cancelled",
    "cancelled": "cancelled",
}


def fhir_task_status(status: str) -> str:
    return STATUS_FHIR[status]
