"""Pure retry decisions for outbound deliveries: back-off with jitter, Retry-After, outcomes, disabling."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

import msgspec

__all__ = [
    "MAX_RETRY_AFTER_S",
    "THROTTLE_STATUSES",
    "AttemptResult",
    "Verdict",
    "backoff",
    "decide",
    "parse_retry_after",
    "parse_schedule",
    "should_disable",
]

# A receiver may ask for a pause, not for our queue to hold its deliveries for ever.
MAX_RETRY_AFTER_S = 24 * 3600.0
# Standard Webhooks: these mean "you are sending too fast / I am overloaded": slow the endpoint down.
THROTTLE_STATUSES = frozenset({429, 502, 504})

Outcome = Literal["delivered", "retry", "throttled", "dead", "gone"]


class AttemptResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one attempt on any channel came to, before deciding what happens next."""

    ok: bool
    status: int | None = None  # HTTP status or SMTP reply code
    error: str | None = None  # an error class (ReadTimeout, http_500, smtp_451, ssrf_refused), never a body
    retry_after: float | None = None
    permanent: bool = False  # retrying cannot help (SMTP 5xx, no address)
    gone: bool = False  # HTTP 410: the receiver says the endpoint is gone for good
    latency_ms: float = 0.0


class Verdict(msgspec.Struct, frozen=True):
    outcome: Outcome
    delay: float | None = None  # seconds until the next attempt, for retry and throttled


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5,30,300"`` → (5.0, 30.0, 300.0): the delay before each retry, in order."""
    values = tuple(float(part) for part in text.split(",") if part.strip())
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"not a retry schedule: {text!r}")
    return values


def backoff(retry_index: int, schedule: tuple[float, ...], jitter: float, rng: random.Random) -> float | None:
    """Delay before retry ``retry_index`` (0 = the first retry), or None when the schedule is spent.

    Jitter spreads retries of deliveries that failed together (an endpoint's outage) so they do not
    all return at the same instant.
    """
    if retry_index < 0 or retry_index >= len(schedule):
        return None
    factor = 1.0 + rng.uniform(-jitter, jitter) if jitter else 1.0
    return max(0.0, schedule[retry_index] * factor)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """RFC 9110 Retry-After: delay-seconds or an HTTP-date; capped; None if absent or malformed."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_S)


def decide(
    result: AttemptResult,
    retries_done: int,
    schedule: tuple[float, ...],
    jitter: float,
    rng: random.Random,
) -> Verdict:
    """What follows an attempt: delivered, retry later, throttle the endpoint, or dead-letter.

    ``retries_done`` counts the retries already made in this round (0 after the first attempt).
    """
    if result.ok:
        return Verdict("delivered")
    if result.gone:
        return Verdict("gone")
    if result.permanent:
        return Verdict("dead")
    delay = backoff(retries_done, schedule, jitter, rng)
    if delay is None:
        return Verdict("dead")
    if result.retry_after is not None:
        # Honour the receiver's pause, but never retry sooner than our own schedule would.
        delay = max(delay, result.retry_after)
    if result.status in THROTTLE_STATUSES:
        return Verdict("throttled", delay)
    return Verdict("retry", delay)


def should_disable(
    consecutive_failures: int,
    failing_since: datetime | None,
    now: datetime,
    min_failures: int,
    min_seconds: float,
) -> bool:
    """Sustained failure: many attempts in a row failed and none succeeded for a long time."""
    if failing_since is None or consecutive_failures < min_failures:
        return False
    return now - failing_since >= timedelta(seconds=min_seconds)
