"""Commands between services over NATS request-reply: one service asks another to act on its own data.

A command is not an event: it is not persisted, it expects one answer, and the caller turns a missing
responder into a 503 (nothing was done). The responder re-reads every identity and ownership it acts on
from the database: the actor named in a command is a claim to check, never a credential.

Routing and notify serve these with nats-py's micro-service API (`nats.micro`, `serve_command`), in a
queue group per service, so each request reaches one process and `$SRV.PING` / `$SRV.INFO` discovery
works with the stock `nats micro` tooling.

"Nothing was done" holds because of the deadline: `request_*` stamps the command with the moment the
caller stops waiting; the responder does not start a command past it and rolls back one that reaches
it before committing (`ensure_in_time`). Only a commit that lands in the last instant before the
deadline, with its reply arriving after, can be done while the caller answered 503; the client's retry
then meets the state it asked for (a 409, or the same result).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import msgspec
import structlog

from shared.bus import safe_error_text
from shared.db import Identity, load_sql

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.micro.service import Service

__all__ = [
    "ASSIGN_SUBJECT",
    "NOTIFY_SERVICE",
    "REPLAY_SUBJECT",
    "ROUTING_SERVICE",
    "ActorRefused",
    "AssignCommand",
    "AssignReply",
    "CommandExpired",
    "CommandUnavailable",
    "ManualAssignment",
    "ReplayCommand",
    "ReplayReply",
    "check_actor",
    "claimed_identity",
    "ensure_in_time",
    "request_assignment",
    "request_replay",
    "serve_command",
]

log = structlog.get_logger("refnet.commands")

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
    # Unix time after which the caller has stopped waiting (request_assignment fills it in): a command
    # that reaches the responder later is not carried out, and one still running then is rolled back.
    deadline: float = 0.0


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
    """`status` is the HTTP status the caller answers with: 201 with `assignment`, or 403 (the actor may
    not, by the database's word), 404, 409 or 422 with a message safe to show (and the offending `field`
    for a 422)."""

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
    deadline: float = 0.0


class ReplayReply(msgspec.Struct, kw_only=True):
    """`status`: 202 when the delivery is queued again, 403 when the actor is not an active admin by the
    database's word, 404 when there is none, 409 (with a message safe to show) when it cannot be
    replayed now."""

    status: int
    message: str = ""


T = TypeVar("T")
C = TypeVar("C", AssignCommand, ReplayCommand)
# A command arriving this close to its deadline is not started: the caller would not see its answer.
_DEADLINE_MARGIN_S = 0.05


async def _request(nc: Any, subject: str, command: C, reply: type[T], timeout: float) -> T:  # noqa: ASYNC109 - the NATS request's own deadline
    import nats.errors

    if not command.deadline:
        command = msgspec.structs.replace(command, deadline=time.time() + timeout)
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


# -- the responder's side ---------------------------------------------------------------------------------


def expired(command: AssignCommand | ReplayCommand) -> bool:
    """The caller has given up on this command (or is about to): carrying it out now would do
    something it was told was not done."""
    return bool(command.deadline) and time.time() > command.deadline - _DEADLINE_MARGIN_S


class CommandExpired(Exception):
    """Raised by a handler inside its transaction when the deadline has passed: the work rolls back."""


def ensure_in_time(command: AssignCommand | ReplayCommand) -> None:
    """Call just before the command's transaction commits: past the deadline, roll back instead."""
    if expired(command):
        raise CommandExpired


class ActorRefused(Exception):
    """The command's actor is not (or no longer) allowed to act: unknown, deactivated, another role or
    region than claimed. The message is safe to show; the reason is for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__("Your account may not do this.")
        self.reason = reason


def claimed_identity(actor_id: str, role: str, region: str = "") -> Identity:
    """The identity a command claims, for the transaction that checks it (`check_actor`) and then
    acts under it. A malformed actor id is refused before it can reach a setting."""
    try:
        actor = str(uuid.UUID(actor_id))
    except ValueError:
        raise ActorRefused("malformed_actor_id") from None
    return Identity(role=role, actor_id=actor, region=region)


async def check_actor(conn: asyncpg.Connection, identity: Identity, roles: Collection[str]) -> None:
    """Re-read the acting staff member inside the command's transaction (begun under ``identity``) and
    raise `ActorRefused` unless they exist, are active and hold the claimed role in ``roles`` (and, as a
    supervisor, the claimed region). Afterwards the transaction's identity is the database's own word.
    """
    row = await conn.fetchrow(load_sql("shared", "staff_actor"), identity.actor_id)
    if row is None:
        raise ActorRefused("unknown_actor")
    if row["deactivated_at"] is not None:
        raise ActorRefused("deactivated")
    if row["role"] not in roles or row["role"] != identity.role:
        raise ActorRefused("role_mismatch")
    if row["role"] == "supervisor" and (row["region"] or "") != identity.region:
        raise ActorRefused("region_mismatch")


async def serve_command(
    nc: NATS,
    *,
    service: str,
    endpoint: str,
    subject: str,
    command_type: type[C],
    handle: Callable[[C], Awaitable[msgspec.Struct]],
    description: str,
    version: str = "1.0.0",
) -> Service:
    """Answer ``subject`` with ``handle`` as a nats.micro service (queue group: each request reaches one
    of the service's processes). Malformed or late commands get a micro error reply (the caller's
    `CommandUnavailable`); so does a handler that fails, after logging why (never the command's text)."""
    import nats.micro
    from nats.micro.request import Request

    decoder = msgspec.json.Decoder(command_type)

    async def on_request(req: Request) -> None:
        try:
            command = decoder.decode(req.data)
        except msgspec.DecodeError:
            log.warning("command.malformed", subject=subject)
            await req.respond_error("400", "malformed command")
            return
        with structlog.contextvars.bound_contextvars(request_id=command.request_id, command=endpoint):
            if expired(command):
                log.warning("command.expired", late_s=round(time.time() - command.deadline, 3))
                await req.respond_error("408", "the command's deadline passed before it could start")
                return
            started = time.perf_counter()
            try:
                reply = await handle(command)
            except CommandExpired:
                log.warning(
                    "command.expired_rolled_back", ms=round((time.perf_counter() - started) * 1000, 2)
                )
                await req.respond_error("408", "the command's deadline passed; nothing was done")
                return
            except Exception as exc:
                # The error's shape only: a database message may quote values.
                log.error("command.failed", error=type(exc).__name__, detail=safe_error_text(exc))
                await req.respond_error("503", "the command could not be carried out; nothing was done")
                return
            log.info(
                "command.answered",
                status=getattr(reply, "status", None),
                ms=round((time.perf_counter() - started) * 1000, 2),
            )
            await req.respond(msgspec.json.encode(reply))

    svc = await nats.micro.add_service(nc, name=service, version=version, description=description)
    await svc.add_endpoint(name=endpoint, subject=subject, handler=on_request)
    # The subscription is live once the server has it: without the flush a request sent at once (by
    # another connection) can find no responder.
    await nc.flush()
    return svc
