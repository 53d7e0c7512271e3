"""The benchmark's generated referral bodies pass every check a partner's referral goes through."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from bench._load import make_bodies
from services.intake.referrals.schemas import ReferralIn
from services.intake.referrals.validation import check_origin, check_referral


def test_every_generated_body_is_a_valid_partner_referral() -> None:
    now = datetime.now(UTC)
    for body in make_bodies(500, seed=7):
        ref = msgspec.json.decode(body, type=ReferralIn)
        assert check_referral(ref, now, now.date()) == []
        assert check_origin(ref, agency=False) == []
