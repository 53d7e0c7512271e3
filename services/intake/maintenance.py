"""Intake's periodic duties: seal the audit chain, expire consents, enforce PII retention, remind follow-ups,
rotate the PII master key epoch."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import structlog

from services.intake.cases.consent import expire_consents, shred_expired_retention
from services.intake.cases.followups import remind_followups
from services.intake.cases.renewal import remind_consents
from services.intake.core.keyrotation import rotate_if_due
from services.intake.protocol.sweep import escalate_overdue
from shared import audit
from shared.config import Settings

__all__ = ["run_maintenance"]

log = structlog.get_logger("refnet.intake")


async def run_maintenance(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
    last_sweep = last_rotation_check = 0.0
    key: bytes | None = None
    anchors = audit.anchor_path(settings)
    while not stop.is_set():
        try:
            key = key or audit.load_key(settings, create=True)
            # Seal promptly: unsealed audit rows are the only ones not yet tamper-evident.
            while await audit.seal(pool, key, anchors=anchors) >= 1000:
                pass
        except Exception as exc:
            # Apart from the duties below: a missing audit key must not also stop consent expiry.
            log.error("maintenance.audit_seal_failed", error=type(exc).__name__, detail=str(exc)[:200])
        try:
            if time.monotonic() - last_sweep >= settings.consent_sweep_seconds:
                last_sweep = time.monotonic()
                # First: a child-protection step past its clock must not wait on the other duties.
                await escalate_overdue(pool)
                expired = await expire_consents(pool)
                retained = await shred_expired_retention(pool, settings.pii_retention_days)
                if expired or retained:
                    log.info("maintenance.pii_shredded", consent_expired=expired, retention=retained)
                await remind_followups(pool, settings.followup_reminder_lead_days)
                await remind_consents(pool)
            if time.monotonic() - last_rotation_check >= 60.0:
                last_rotation_check = time.monotonic()
                await rotate_if_due(pool, settings)
        except Exception as exc:
            log.warning("maintenance.failed", error=type(exc).__name__, detail=str(exc)[:200])
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
