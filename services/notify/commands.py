"""Notify's command endpoint: an admin's replay of a dead-lettered delivery, asked for over NATS."""

from __future__ import annotations

import uuid

import asyncpg
import structlog
from nats.aio.client import Client as NATS
from nats.micro.service import Service

from services.notify import store
from shared import audit
from shared.commands import (
    NOTIFY_SERVICE,
    REPLAY_SUBJECT,
    ActorRefused,
    ReplayCommand,
    ReplayReply,
    check_actor,
    claimed_identity,
    ensure_in_time,
    serve_command,
)
from shared.config import Settings
from shared.db import retrying, transaction

__all__ = ["REPLAY_ROLES", "replay", "serve_commands"]

log = structlog.get_logger("refnet.notify")
REPLAY_ROLES = ("admin",)


async def replay(pool: asyncpg.Pool, command: ReplayCommand) -> ReplayReply:
    """Queue a dead delivery again, in one transaction under the admin's identity re-read from ``staff``,
    with its audit record; the commit wakes the dispatchers (store.replay's NOTIFY)."""
    try:
        delivery_id = str(uuid.UUID(command.delivery_id))
    except ValueError:
        return ReplayReply(status=404, message="No such delivery.")
    try:
        identity = claimed_identity(command.actor_id, command.actor_role)
    except ActorRefused as exc:
        return _refused(command, exc)

    async def once() -> ReplayReply:
        async with transaction(pool, identity) as conn:
            await check_actor(conn, identity, REPLAY_ROLES)
            await store.replay(conn, delivery_id)
            await audit.record(conn, identity, "delivery.replay", "delivery", delivery_id)
            ensure_in_time(command)
        log.info("delivery.replayed", delivery_id=delivery_id, actor_id=identity.actor_id)
        return ReplayReply(status=202)

    try:
        return await retrying(once)
    except ActorRefused as exc:
        return _refused(command, exc)
    except LookupError:
        return ReplayReply(status=404, message="No such delivery.")
    except store.ReplayRefused as exc:
        return ReplayReply(status=409, message=str(exc))


def _refused(command: ReplayCommand, exc: ActorRefused) -> ReplayReply:
    log.warning(
        "command.actor_refused",
        actor_id=command.actor_id[:64],
        claimed_role=command.actor_role[:32],
        reason=exc.reason,
    )
    return ReplayReply(status=403, message=str(exc))


async def serve_commands(nc: NATS, pool: asyncpg.Pool, settings: Settings) -> Service:
    """Start answering replay commands (stop the returned service to stop)."""

    async def handle(command: ReplayCommand) -> ReplayReply:
        return await replay(pool, command)

    return await serve_command(
        nc,
        service=NOTIFY_SERVICE,
        endpoint="replay",
        subject=REPLAY_SUBJECT,
        command_type=ReplayCommand,
        handle=handle,
        description="refnet notify: admins' replays of dead-lettered deliveries",
    )
