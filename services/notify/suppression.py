"""Pure delivery-time checks: whether an outbound message may still be sent, decided just before sending."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["Suppressed", "suppression"]

# Offer emails are worth sending only while the offer waits for an answer.
_OFFER_KINDS = frozenset({"offer", "offer_reminder"})


class Suppressed(msgspec.Struct, frozen=True):
    # cancelled: nobody should ever receive it; dead: kept for an admin to replay once possible.
    state: Literal["cancelled", "dead"]
    reason: str


def suppression(
    *,
    channel: str,
    kind: str,
    referral_status: str | None,
    assignment_state: str | None,
    endpoint_state: str | None,
    followup_recorded: bool = False,
    status_shared: bool | None = None,
) -> Suppressed | None:
    """Why this delivery must not go out now, or None to send it.

    Checked at delivery time, not only at fan-out: consent can be withdrawn, an endpoint deleted, an
    offer answered or a follow-up recorded while a delivery waits for its retry.
    """
    if referral_status == "withdrawn":
        # Consent withdrawn: nothing more about this youth leaves the platform, ever.
        return Suppressed("cancelled", "referral_withdrawn")
    if kind == "referral.status_changed" and status_shared is False:
        # The youth's consent does not (or no longer) let the referrer be told (share_status_with_referrer).
        return Suppressed("cancelled", "status_not_shared")
    if channel == "webhook":
        if endpoint_state == "deleted" or endpoint_state is None:
            return Suppressed("cancelled", "endpoint_deleted")
        if endpoint_state != "active":
            return Suppressed("dead", "endpoint_disabled")
    if kind in _OFFER_KINDS and assignment_state is not None and assignment_state != "offered":
        return Suppressed("cancelled", "offer_answered")
    if kind == "followup_due" and followup_recorded:
        # The case manager recorded the follow-up while the reminder waited for a retry.
        return Suppressed("cancelled", "followup_recorded")
    return None
