"""Routing's command endpoint: a supervisor's or admin's manual assignment, asked for over NATS."""

from __future__ import annotations

import uuid

import asyncpg
import structlog
from nats.aio.client import Client as NATS
from nats.micro.service import Service

from services.routing.manual import ManualAssignError, assign_manually
from services.routing.rules import Rules, effective_rules
from shared.commands import (
    ASSIGN_SUBJECT,
    ROUTING_SERVICE,
    ActorRefused,
    AssignCommand,
    AssignReply,
    check_actor,
    claimed_identity,
    ensure_in_time,
    serve_command,
)
from shared.config import Settings
from shared.db import retrying, transaction

__all__ = ["MANUAL_ROLES", "assign", "serve_commands"]

log = structlog.get_logger("refnet.routing")
# Who may assign by hand: the database's word for the actor, whatever the command says.
MANUAL_ROLES = ("supervisor", "admin")


async def assign(pool: asyncpg.Pool, rules: Rules, command: AssignCommand) -> AssignReply:
    """Carry out one manual assignment in one transaction under the actor's identity, re-read from
    ``staff``: the actor check, the assignment, its decision record, audit row and events commit together
    or not at all. Refusals come back as the HTTP status and message the caller shows."""
    try:
        referral_id = uuid.UUID(command.referral_id)
    except ValueError:
        return AssignReply(status=404, message="No such referral.")
    try:
        case_manager_id = uuid.UUID(command.case_manager_id)
    except ValueError:
        return AssignReply(status=422, message="No such case manager.", field="case_manager_id")
    reason = command.reason.strip()
    if not reason:
        return AssignReply(status=422, message="A reason is required.", field="reason")
    try:
        identity = claimed_identity(command.actor_id, command.actor_role, command.actor_region)
    except ActorRefused as exc:
        return _refused(command, exc)

    async def once() -> AssignReply:
        async with transaction(pool, identity) as conn:
            await check_actor(conn, identity, MANUAL_ROLES)
            done = await assign_manually(
                conn, identity, referral_id, case_manager_id, reason, rules, trace_id=command.request_id
            )
            ensure_in_time(command)
        log.info(
            "routing.manual_assigned",
            referral_id=done.referral_id,
            case_manager_id=done.case_manager_id,
            actor_id=identity.actor_id,
            over_capacity=done.over_capacity,
        )
        return AssignReply(status=201, assignment=done)

    try:
        return await retrying(once)
    except ActorRefused as exc:
        return _refused(command, exc)
    except ManualAssignError as exc:
        return AssignReply(status=exc.status, message=str(exc), field=exc.field)
    except asyncpg.UniqueViolationError:
        # Routing offered it to someone in the same instant: the partial unique index said no.
        return AssignReply(
            status=409, message="The referral was just offered to someone else; reload and retry."
        )


def _refused(command: AssignCommand, exc: ActorRefused) -> AssignReply:
    log.warning(
        "command.actor_refused",
        actor_id=command.actor_id[:64],
        claimed_role=command.actor_role[:32],
        reason=exc.reason,
    )
    return AssignReply(status=403, message=str(exc))


async def serve_commands(nc: NATS, pool: asyncpg.Pool, settings: Settings) -> Service:
    """Start answering manual-assignment commands (stop the returned service to stop)."""
    rules = effective_rules(settings)

    async def handle(command: AssignCommand) -> AssignReply:
        return await assign(pool, rules, command)

    return await serve_command(
        nc,
        service=ROUTING_SERVICE,
        endpoint="assign",
        subject=ASSIGN_SUBJECT,
        command_type=AssignCommand,
        handle=handle,
        description="refnet routing: manual assignments by supervisors and admins",
    )
