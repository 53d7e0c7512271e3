"""Referral bodies for the load: valid, varied, pre-encoded (the generator spends its CPU on requests)."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench._platform import BenchError
from refnet_dev.platform import Platform
from shared.codes import AGENCY_ORIGINS, NEED_CODES, REFERRAL_SETTINGS

# A partner may not claim the coordinating agency's own origins (hotline, walk-in, self-referral).
_PARTNER_SETTINGS = tuple(s for s in REFERRAL_SETTINGS if s not in AGENCY_ORIGINS)

__all__ = ["make_bodies", "post_sequentially"]

SOUTH_LA_ZIPS = ("90011", "90044", "90003", "90001", "90047", "90059")
SFV_ZIPS = ("91402", "91331", "91605", "91342", "91306", "91324")
# Real ZIPs outside both pilot regions (New York, Chicago, San Diego): accepted, then unroutable.
OUT_OF_AREA_ZIPS = ("10001", "60601", "92101")
OUT_OF_AREA_SHARE = 0.05

_FIRST = ("Ana", "Jordan", "Maria", "Deshawn", "Sofia", "Kevin", "Luz", "Tyler", "Imani", "Minji")
_LAST = ("Garcia", "Johnson", "Lopez", "Williams", "Hernandez", "Kim", "Brown", "Martinez")
_NOTES = (
    "Met at the drop-in centre; prefers text messages.",
    "Referred after an ER visit; staff member on site can follow up.",
    "Youth asked for a Spanish-speaking case manager if possible.",
    "",
)


def _body(rng: random.Random, now: datetime) -> dict[str, Any]:
    roll = rng.random()
    if roll < OUT_OF_AREA_SHARE:
        zip_code = rng.choice(OUT_OF_AREA_ZIPS)
    elif roll < (1 + OUT_OF_AREA_SHARE) / 2:
        zip_code = rng.choice(SOUTH_LA_ZIPS)
    else:
        zip_code = rng.choice(SFV_ZIPS)
    age_days = rng.randint(12 * 365 + 5, 22 * 365)
    body: dict[str, Any] = {
        "youth": {
            "first_name": rng.choice(_FIRST),
            "last_name": rng.choice(_LAST),
            "date_of_birth": (now - timedelta(days=age_days)).date().isoformat(),
            "phone": f"323-555-{rng.randint(0, 9999):04d}",
            "gender": rng.choice(("female", "male", "non-binary")),
        },
        "location": {"zip": zip_code},
        "needs": rng.sample(NEED_CODES, rng.randint(1, 3)),
        "language": rng.choices(("en", "es", "ko"), weights=(60, 35, 5))[0],
        "urgency": "urgent" if rng.random() < 0.1 else "routine",
        "consent": {
            "obtained_at": (now - timedelta(days=rng.randint(1, 30))).isoformat(),
            "expires_at": (now + timedelta(days=365)).isoformat(),
            "method": rng.choice(("written", "electronic", "verbal")),
            "scope": ["case_management", "evaluation", "share_status_with_referrer"],
        },
        "intake": {
            "referral_setting": rng.choice(_PARTNER_SETTINGS),
            "prior_services": rng.choice(("none", "voluntary", "mandated")),
            "age_first_exploited": rng.randint(11, 16),
            "education_level": rng.choice(("primary", "some_high_school", "high_school")),
            "socioeconomic_status": rng.choice(("very_low", "low", "moderate")),
            "prior_arrests": rng.randint(0, 3),
            "foster_care_history": rng.random() < 0.4,
        },
    }
    note = rng.choice(_NOTES)
    if note:
        body["notes"] = note
    return body


def make_bodies(count: int, seed: int = 1) -> list[bytes]:
    """Pre-encoded request bodies, so the load generator spends its CPU on requests, not JSON."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return [json.dumps(_body(rng, now)).encode() for _ in range(count)]


def post_sequentially(plat: Platform, bodies: list[bytes], count: int, offset: int) -> None:
    """Post ``count`` referrals one after another (warm-up, SQL capture), spread over the demo partners;
    any refusal stops the run."""
    keys = [p["api_key"] for p in plat.creds["partners"]]
    with httpx.Client(base_url=plat.base_url, timeout=60) as client:
        for i in range(count):
            resp = client.post(
                "/v1/referrals",
                content=bodies[(offset + i) % len(bodies)],
                headers={
                    "Authorization": f"Bearer {keys[i % len(keys)]}",
                    "Content-Type": "application/json",
                },
            )
            if resp.status_code != 201:
                raise BenchError(f"referral refused: HTTP {resp.status_code}: {resp.text[:200]}")
            time.sleep(0.05)
