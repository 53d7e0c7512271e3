"""Delivery-time suppression rules of notify, without servers: what may still go out when it is due."""

from __future__ import annotations

from typing import Any

import pytest

from services.notify.suppression import Suppressed, suppression
from shared.codes import ASSIGNMENT_STATES


def check(**overrides: Any) -> Suppressed | None:
    facts: dict[str, Any] = {
        "channel": "email",
        "kind": "offer",
        "referral_status": "assigned",
        "assignment_state": "offered",
        "endpoint_state": None,
    }
    facts.update(overrides)
    return suppression(**facts)


def test_an_open_offer_email_goes_out() -> None:
    assert check() is None


@pytest.mark.parametrize("channel", ["email", "webhook"])
@pytest.mark.parametrize("kind", ["offer", "referral.status_changed", "followup_due", "unroutable"])
def test_nothing_leaves_about_a_withdrawn_referral(channel: str, kind: str) -> None:
    assert check(
        channel=channel, kind=kind, referral_status="withdrawn", endpoint_state="active"
    ) == Suppressed("cancelled", "referral_withdrawn")


@pytest.mark.parametrize("state", [s for s in ASSIGNMENT_STATES if s != "offered"])
@pytest.mark.parametrize("kind", ["offer", "offer_reminder"])
def test_an_answered_offer_is_not_announced(kind: str, state: str) -> None:
    assert check(kind=kind, assignment_state=state) == Suppressed("cancelled", "offer_answered")


def test_other_kinds_do_not_care_about_the_offer() -> None:
    assert check(kind="followup_due", assignment_state="accepted") is None


def test_a_followup_reminder_stops_once_the_followup_is_recorded() -> None:
    assert check(kind="followup_due", assignment_state=None, followup_recorded=True) == Suppressed(
        "cancelled", "followup_recorded"
    )
    assert check(kind="followup_due", assignment_state=None, followup_recorded=False) is None
    # Only the follow-up reminder looks at it.
    assert check(kind="offer", followup_recorded=True) is None


@pytest.mark.parametrize(
    ("endpoint_state", "expected"),
    [
        ("active", None),
        ("disabled", Suppressed("dead", "endpoint_disabled")),
        ("deleted", Suppressed("cancelled", "endpoint_deleted")),
        (None, Suppressed("cancelled", "endpoint_deleted")),
    ],
)
def test_webhooks_follow_their_endpoint(endpoint_state: str | None, expected: Suppressed | None) -> None:
    assert (
        check(
            channel="webhook",
            kind="referral.status_changed",
            assignment_state=None,
            endpoint_state=endpoint_state,
        )
        == expected
    )


def test_a_status_webhook_waits_on_the_youths_consent() -> None:
    """share_status_with_referrer (contract v1.1): a status change is sent to the referrer only while
    the youth's consent covers it; re-checked when the delivery is due, not only at fan-out."""
    status = {"channel": "webhook", "kind": "referral.status_changed", "endpoint_state": "active"}
    assert check(**status, status_shared=True) is None
    assert check(**status, status_shared=False) == Suppressed("cancelled", "status_not_shared")
    # Other kinds never carry the flag; an unknown flag is not a refusal.
    assert check(**status, status_shared=None) is None
    assert check(kind="offer", status_shared=None) is None
