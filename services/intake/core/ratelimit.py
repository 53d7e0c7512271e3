"""Token-bucket rate limit per authenticated identity (else per client address): 429 with Retry-After."""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable

import jwt
import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

__all__ = ["TokenBuckets", "bucket_key", "rate_limit_middleware", "remember_credential"]

_EXEMPT = ("/healthz", "/readyz", "/metrics")


class _KnownCredentials:
    """Digests of credentials authentication accepted (API keys, OIDC tokens) and whose they are, so the
    limiter can key on the identity without a database lookup. Bounded; a forgotten entry only means
    the next request counts against the client address until authentication remembers it again."""

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._who: OrderedDict[bytes, bytes] = OrderedDict()

    def remember(self, credential: str, identity: str) -> None:
        digest = hashlib.sha256(credential.encode()).digest()
        self._who[digest] = identity.encode()
        self._who.move_to_end(digest)
        while len(self._who) > self._size:
            self._who.popitem(last=False)

    def identity(self, credential: bytes) -> bytes | None:
        return self._who.get(hashlib.sha256(credential).digest())


_KNOWN = _KnownCredentials()


def remember_credential(credential: str, identity: str) -> None:
    """Authentication accepted ``credential`` for ``identity`` ("partner:<id>", "staff:<id>")."""
    _KNOWN.remember(credential, identity)


def bucket_key(authorization: bytes | None, client: str, secret: str) -> bytes:
    """Whose bucket a request spends from: the identity of a credential we can vouch for (a token we
    signed, checked here; an API key or OIDC token authentication accepted before), else the client
    address. A made-up credential is never a bucket of its own, so sending a fresh random one with
    each request gains nothing."""
    scheme, _, token = (authorization or b"").partition(b" ")
    token = token.strip()
    if scheme.lower() == b"bearer" and token:
        known = _KNOWN.identity(token)
        if known is not None:
            return b"id|" + known
        if secret and token.count(b".") == 2:
            try:
                claims = jwt.decode(token, secret, algorithms=["HS256"], issuer="refnet")
            except jwt.PyJWTError:
                claims = None
            subject = claims.get("sub") if claims is not None else None
            if isinstance(subject, str):
                return b"id|staff:" + subject.encode()
    return b"addr|" + client.encode()


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


def rate_limit_middleware(per_minute: int, secret: str = "") -> Callable[[ASGIApp], ASGIApp]:
    buckets = TokenBuckets(per_minute) if per_minute > 0 else None

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if buckets is None or scope["type"] != ScopeType.HTTP or scope.get("path", "") in _EXEMPT:
                await app(scope, receive, send)
                return
            headers = dict(scope["headers"])
            client = str((scope.get("client") or ("?",))[0])
            key = bucket_key(headers.get(b"authorization"), client, secret)
            wait = buckets.take(hashlib.sha256(key).digest()[:16], time.monotonic())
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
