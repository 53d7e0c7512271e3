"""The protocol's API bodies: a step as read, the referral's steps, and a completion."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from services.intake.core.schemas import AwareDatetime, Input
from services.intake.protocol.clock import StepStatus

__all__ = ["CompleteIn", "ProtocolView", "StepView"]


class StepView(msgspec.Struct, kw_only=True):
    """A step: its clock and status, who completed it; the reference and note (PII) only for the case
    manager who has the referral (each such read audited)."""

    code: str
    status: StepStatus
    due_at: datetime | None
    completed_at: datetime | None
    completed_by: str | None
    outcome: str | None = None
    roles: list[str] = []
    reference_required: bool = False
    outcomes: list[str] = []
    has_reference: bool = False
    has_note: bool = False
    reference: str | msgspec.UnsetType | None = msgspec.UNSET
    note: str | msgspec.UnsetType | None = msgspec.UNSET


class ProtocolView(msgspec.Struct, kw_only=True):
    referral_id: str
    protocol_version: str | None
    steps: list[StepView]


class CompleteIn(Input):
    # When the step was done (default: now); not in the future, not before the referral was received.
    completed_at: AwareDatetime | None = None
    # E.g. the Child Protection Hotline's report number (required where the protocol says so).
    reference: Annotated[str, Meta(max_length=200)] | None = None
    # Free text: may describe the youth, so it is sealed with the referral's data key.
    note: Annotated[str, Meta(max_length=4000)] | None = None
    # A coded outcome where the step has some (medical_exam_offered: accepted, declined, not_applicable).
    outcome: Annotated[str, Meta(max_length=64)] | None = None
