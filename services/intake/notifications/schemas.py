"""In-app notification views."""

from __future__ import annotations

from datetime import datetime

import msgspec

__all__ = ["NotificationPage", "NotificationView"]


class NotificationView(msgspec.Struct, kw_only=True):
    id: int
    kind: str
    referral_id: str | None
    assignment_id: str | None
    created_at: datetime
    read_at: datetime | None
    data: dict[str, object]


class NotificationPage(msgspec.Struct):
    items: list[NotificationView]
