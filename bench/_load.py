"""Closed-loop load: simulated partners post valid referrals back to back, each over one connection."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.codes import NEED_CODES, REFERRAL_SETTINGS

__all__ = ["LoadResult", "make_bodies", "run_load"]

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
            "scope": ["case_management"],
        },
        "intake": {
            "referral_setting": rng.choice(REFERRAL_SETTINGS),
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


@dataclass
class LoadResult:
    """One row per request: (start, latency_s, status); status 0 means a transport error."""

    started: float = 0.0  # perf_counter when the measured window began
    ended: float = 0.0
    window_start_utc: datetime = field(default_factory=lambda: datetime.now(UTC))
    window_end_utc: datetime = field(default_factory=lambda: datetime.now(UTC))
    samples: list[tuple[float, float, int]] = field(default_factory=list)
    warmup_requests: int = 0
    first_error: str = ""

    def measured(self) -> list[tuple[float, float, int]]:
        """Requests that completed inside the measured window."""
        return [s for s in self.samples if self.started <= s[0] + s[1] < self.ended]


async def _partner(
    client: httpx.AsyncClient, bodies: list[bytes], offset: int, stop_at: float, result: LoadResult
) -> None:
    i = offset
    while (t0 := time.perf_counter()) < stop_at:
        body = bodies[i % len(bodies)]
        i += 1
        try:
            resp = await client.post("/v1/referrals", content=body)
            status = resp.status_code
            if status != 201 and not result.first_error:
                result.first_error = f"HTTP {status}: {resp.text[:200]}"
        except httpx.HTTPError as exc:
            status = 0
            if not result.first_error:
                result.first_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.05)  # a refused connection must not become a busy loop
        result.samples.append((t0, time.perf_counter() - t0, status))


async def run_load(
    base_url: str, api_keys: list[str], concurrency: int, warmup: float, duration: float, bodies: list[bytes]
) -> LoadResult:
    """Run `concurrency` partners for warmup + duration seconds; only the last `duration` is measured."""
    result = LoadResult()
    clients = [
        httpx.AsyncClient(
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {api_keys[i % len(api_keys)]}",
                "Content-Type": "application/json",
            },
            # One keep-alive connection per partner: a closed loop of one request at a time.
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=httpx.Timeout(30.0),
        )
        for i in range(concurrency)
    ]
    try:
        begin = time.perf_counter()
        result.started = begin + warmup
        result.ended = result.started + duration
        stop_at = result.ended
        result.window_start_utc = datetime.now(UTC) + timedelta(seconds=warmup)
        result.window_end_utc = result.window_start_utc + timedelta(seconds=duration)
        step = len(bodies) // max(1, concurrency)
        await asyncio.gather(*(_partner(c, bodies, i * step, stop_at, result) for i, c in enumerate(clients)))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
    result.warmup_requests = sum(1 for s in result.samples if s[0] + s[1] < result.started)
    return result
