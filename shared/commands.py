"""Commands between services over NATS request-reply: one service asks another to act on its own data.

A command is not an event: it is not persisted, it expects one answer, and the caller turns a missing
responder into a 503 (nothing was done). The responder re-reads every identity and ownership it acts on
from the database: the actor named in a command is a claim to check, never a credential.

Routing serves these with nats-py's micro-service API (`nats.micro`), so `$SRV.PING` / `$SRV.INFO`
discovery works with the stock `nats micro` tooling.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

__all__ = [
    "ASSIGN_SUBJECT",
    "ROUTING_SERVICE",
    "AssignCommand",
    "AssignReply",
    "CommandUnavailable",
    "ManualAssignment",
    "request_assignment",
]

# The routing micro-service and its endpoint for a supervisor's or admin's manual assignment.
ROUTING_SERVICE = "refnet-routing"
ASSIGN_SUBJECT = "refnet.cmd.routing.assign"


class CommandUnavailable(Exception):
    """No responder answered in time: nothing was done; the caller answers 503 and the client retries."""


class AssignCommand(msgspec.Struct, frozen=True, kw_only=True):
    """Offer `referral_id` to `case_manager_id` by hand, as the named staff member, with a reason."""

    referral_id: str
    case_manager_id: str
    reason: str
    actor_id: str
    # The role and region the caller authenticated with; the responder checks them against `staff`.
    actor_role: str
    actor_region: str = ""
    # Correlates the routing log lines with the HTTP request that asked.
    request_id: str = ""


class ManualAssignment(msgspec.Struct, kw_only=True):
    """The outcome the HTTP API returns for a manual assignment (unchanged from v1)."""

    assignment_id: str
    referral_id: str
    case_manager_id: str
    respond_by: datetime
    over_capacity: bool
    active_count: int
    capacity: int
    warnings: list[str]
    decision_id: str


class AssignReply(msgspec.Struct, kw_only=True):
    """`status` is the HTTP status the caller answers with: 201 with `assignment`, or 404/409/422 with a
    message safe to show (and the offending `field` for a 422)."""

    status: int
    message: str = ""
    field: str | None = None
    assignment: ManualAssignment | None = None


_encode = msgspec.json.encode


async def request_assignment(nc: Any, command: AssignCommand, timeout: float = 5.0) -> AssignReply:  # noqa: ASYNC109 - the NATS request's own deadline
    """Send the command to routing and wait for its answer; `CommandUnavailable` if none comes."""
    import nats.errors

    try:
        msg = await nc.request(ASSIGN_SUBJECT, _encode(command), timeout=timeout)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
        raise CommandUnavailable(type(exc).__name__) from None
    headers = msg.headers or {}
    # nats.micro answers a handler's error with Nats-Service-Error headers and an empty body.
    if "Nats-Service-Error-Code" in headers:
        raise CommandUnavailable(headers.get("Nats-Service-Error", "service error"))
    return msgspec.json.decode(msg.data, type=AssignReply)
