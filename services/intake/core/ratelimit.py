"""Per-credential token-bucket rate limit: 429 with Retry-After, keyed by a hash of the credential."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

__all__ = ["TokenBuckets", "rate_limit_middleware"]

_EXEMPT = ("/healthz", "/readyz", "/metrics")


class TokenBuckets:
    """Pure bucket arithmetic (testable with a fake clock); one bucket per key, refilled continuously."""

    def __init__(self, per_minute: int, burst: int | None = None, max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, per_minute // 2))
        self._buckets: dict[bytes, tuple[float, float]] = {}
        self._max_keys = max_keys

    def take(self, key: bytes, now: float) -> float:
        """Spend one token; return 0 when allowed, else the seconds until a token is available."""
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self._max_keys:
                # Forget the oldest half; a forgotten key simply starts with a full bucket again.
                for k in list(self._buckets)[: self._max_keys // 2]:
                    del self._buckets[k]
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


def rate_limit_middleware(per_minute: int) -> Callable[[ASGIApp], ASGIApp]:
    buckets = TokenBuckets(per_minute) if per_minute > 0 else None

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if buckets is None or scope["type"] != ScopeType.HTTP or scope.get("path", "") in _EXEMPT:
                await app(scope, receive, send)
                return
            headers = dict(scope["headers"])
            credential = headers.get(b"authorization") or str((scope.get("client") or ("?",))[0]).encode()
            wait = buckets.take(hashlib.sha256(credential).digest()[:16], time.monotonic())
            if wait == 0.0:
                await app(scope, receive, send)
                return
            body = msgspec.json.encode(
                {
                    "type": "https://refnet.dev/problems/rate-limited",
                    "title": "Too many requests",
                    "status": 429,
                    "detail": "Request rate limit exceeded for this credential; retry later.",
                }
            )
            start: HTTPResponseStartEvent = {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"retry-after", str(max(1, math.ceil(wait))).encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
            await send(start)
            end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
            await send(end)

        return middleware

    return factory
