"""The child-protection protocol endpoints: a referral's steps, and completing one."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Controller, Request, get, post

from services.intake.core.auth import Caller, any_caller
from services.intake.protocol import service
from services.intake.protocol.schemas import CompleteIn, ProtocolView, StepView

__all__ = ["ProtocolController"]


class ProtocolController(Controller):
    path = "/v1/referrals"
    tags = ["protocol"]
    # Partners and other roles are answered 404 by the service, as if the referral did not exist.
    guards = [any_caller()]

    @get(
        "/{referral_id:str}/protocol",
        summary="The referral's child-protection steps with their clocks (case manager, supervisors, admins)",
    )
    async def read(
        self, request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, referral_id: str
    ) -> ProtocolView:
        return await service.read(conn, caller, request.app.state.pii_keys, referral_id)

    @post(
        "/{referral_id:str}/protocol/{code:str}",
        status_code=200,
        summary="Complete a protocol step: when, a reference, a note (sealed as PII), a coded outcome",
    )
    async def complete(
        self,
        request: Request[Any, Any, Any],
        caller: Caller,
        conn: asyncpg.Connection,
        referral_id: str,
        code: str,
        data: CompleteIn | None = None,
    ) -> StepView:
        return await service.complete(
            conn, caller, request.app.state.pii_keys, referral_id, code, data or CompleteIn()
        )
