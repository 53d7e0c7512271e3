"""Bodies and views of partners, their API keys and their webhook endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.intake.core.schemas import Input
from shared.webhook_urls import MAX_URL_LENGTH

__all__ = [
    "DeliveryLogItem",
    "DeliveryLogPage",
    "KeyCreateIn",
    "KeyRevokeIn",
    "KeyRotateIn",
    "PartnerCreated",
    "PartnerIn",
    "PartnerPatch",
    "PartnerView",
    "SecretRotated",
    "TestQueued",
    "WebhookCreated",
    "WebhookIn",
    "WebhookPage",
    "WebhookView",
]

# --------------------------------------------------------------------------- partners and keys


class KeyCreateIn(Input):
    label: Annotated[str, Meta(max_length=100)] = ""


class KeyRevokeIn(Input):
    reason: Annotated[str, Meta(max_length=500)] = ""


class KeyRotateIn(Input):
    grace_seconds: Annotated[int, Meta(ge=0, le=30 * 24 * 3600)] = 24 * 3600


class PartnerView(msgspec.Struct):
    id: str
    name: str
    kind: str
    active_keys: int
    # False once deactivated: its keys and partner users get 401.
    active: bool = True


class PartnerIn(Input):
    name: Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")]


class PartnerPatch(Input):
    active: bool


class PartnerCreated(msgspec.Struct):
    id: str
    name: str
    api_key: str


# --------------------------------------------------------------------------- webhooks

# task.updated: FHIR partners' Task status changes (issue 17, docs/fhir.md).
WebhookEvent = Literal["referral.status_changed", "task.updated"]


class WebhookIn(Input):
    url: Annotated[str, Meta(min_length=1, max_length=MAX_URL_LENGTH)]
    events: Annotated[list[WebhookEvent], Meta(min_length=1, max_length=10)]


class WebhookView(msgspec.Struct, kw_only=True):
    id: str
    url: str
    events: list[str]
    state: str
    created_at: datetime
    verified_at: datetime | None = None
    last_success_at: datetime | None = None
    failing_since: datetime | None = None
    consecutive_failures: int = 0
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    previous_secret_expires_at: datetime | None = None


class WebhookCreated(msgspec.Struct, kw_only=True):
    id: str
    url: str
    events: list[str]
    # Shown here and on rotation only; refnet keeps it sealed and never displays it again.
    secret: str
    state: str
    created_at: datetime
    test_delivery_id: str


class WebhookPage(msgspec.Struct):
    items: list[WebhookView]


class SecretRotated(msgspec.Struct, kw_only=True):
    id: str
    secret: str
    previous_secret_expires_at: datetime | None


class TestQueued(msgspec.Struct):
    delivery_id: str


class DeliveryLogItem(msgspec.Struct, kw_only=True):
    id: str
    webhook_id: str
    type: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None


class DeliveryLogPage(msgspec.Struct):
    items: list[DeliveryLogItem]
