"""Commands between services over NATS request-reply: one service asks another to act on its own data.

A command is not an event: it is not persisted, it expects one answer, and the caller turns a missing
responder into a 503 (nothing was done). The responder re-reads every identity and ownership it acts on
from the database: the actor named in a command is a claim to check, never a credential.

Routing serves these with nats-py's micro-service API (`nats.micro`), so `$SRV.PING` / `$SRV.INFO`
discovery works with the stock `nats micro` tooling.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec

__all__ = [
    "ASSIGN_SUBJECT",
    "NOTIFY_SERVICE",
    "REPLAY_SUBJECT",
    "ROUTING_SERVICE",
    "AssignCommand",
    "AssignReply",
    "CommandUnavailable",
    "ManualAssignment",
    "ReplayCommand",
    "ReplayReply",
    "request_assignment",
    "request_replay",
]

# Command subjects stay outside the REFNET stream's "refnet.>": a request published on a stream subject
# would be stored and answered by JetStream's own PubAck before the service could reply.
# The routing micro-service and its endpoint for a supervisor's or admin's manual assignment.
ROUTING_SERVICE = "refnet-routing"
ASSIGN_SUBJECT = "cmd.refnet.routing.assign"
# The notify micro-service and its endpoint for an admin's replay of a dead-lettered delivery.
NOTIFY_SERVICE = "refnet-notify"
REPLAY_SUBJECT = "cmd.refnet.notify.replay"


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


class ReplayCommand(msgspec.Struct, frozen=True, kw_only=True):
    """Put a dead-lettered delivery back in notify's queue, as the named admin (audited by notify)."""

    delivery_id: str
    actor_id: str
    actor_role: str
    request_id: str = ""


class ReplayReply(msgspec.Struct, kw_only=True):
    """`status`: 202 when the delivery is queued again, 404 when there is none, 409 (with a message safe
    to show) when it cannot be replayed now."""

    status: int
    message: str = ""


T = TypeVar("T")


async def _request(nc: Any, subject: str, command: msgspec.Struct, reply: type[T], timeout: float) -> T:  # noqa: ASYNC109 - the NATS request's own deadline
    import nats.errors

    try:
        msg = await nc.request(subject, msgspec.json.encode(command), timeout=timeout)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
        raise CommandUnavailable(type(exc).__name__) from None
    headers = msg.headers or {}
    # nats.micro answers a handler's error with Nats-Service-Error headers and an empty body.
    if "Nats-Service-Error-Code" in headers:
        raise CommandUnavailable(headers.get("Nats-Service-Error", "service error"))
    return msgspec.json.decode(msg.data, type=reply)


async def request_assignment(nc: Any, command: AssignCommand, timeout: float = 5.0) -> AssignReply:  # noqa: ASYNC109
    """Ask routing to make the manual assignment; `CommandUnavailable` if no answer comes."""
    return await _request(nc, ASSIGN_SUBJECT, command, AssignReply, timeout)


async def request_replay(nc: Any, command: ReplayCommand, timeout: float = 5.0) -> ReplayReply:  # noqa: ASYNC109
    """Ask notify to replay a dead delivery; `CommandUnavailable` if no answer comes."""
    return await _request(nc, REPLAY_SUBJECT, command, ReplayReply, timeout)
