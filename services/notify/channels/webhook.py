"""Webhook channel: an HTTP client that connects only to addresses the SSRF guard allows, and one POST."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import httpcore
import httpx

from services.notify.retry import AttemptResult, parse_retry_after
from shared.webhook_urls import (
    Environment,
    Resolver,
    UrlRefused,
    check_url,
    checked_addresses,
    system_resolver,
)

__all__ = ["make_client", "post"]

USER_AGENT = "refnet-webhooks/1"


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves names itself, checks every address, then connects to a checked address.

    Checking at connect time, on the very address used, leaves no gap for DNS rebinding between a
    check and the connection. TLS still verifies the certificate against the URL's host name.
    """

    def __init__(self, environment: Environment, resolver: Resolver) -> None:
        self._environment = environment
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await checked_addresses(host, port, self._environment, self._resolver)
        error: Exception | None = None
        for addr in addresses:
            try:
                return await self._inner.connect_tcp(
                    addr, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UrlRefused("unix_socket", "Webhooks are never sent to a local socket.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def make_client(
    environment: Environment, timeout: float, resolver: Resolver = system_resolver, max_connections: int = 100
) -> httpx.AsyncClient:
    """An AsyncClient for webhooks: guarded connections, no redirects, no proxies from the environment."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=20, keepalive_expiry=30)
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    # httpx has no public hook for the network backend; swap in a pool built with ours (same
    # settings as httpx's own). tests/unit/test_notify_webhook.py proves the guard is in the path.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(environment, resolver),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": USER_AGENT},
    )


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    environment: Environment,
    limit_s: float,
) -> AttemptResult:
    """POST one webhook; never raises. The response body is not read: only its status and Retry-After."""
    started = time.perf_counter()
    try:
        check_url(url, environment)
    except UrlRefused as exc:
        # The URL itself is not allowed (say, http in production): no retry can fix that.
        return AttemptResult(ok=False, error=f"ssrf_{exc.reason}", permanent=True, latency_ms=_ms(started))
    try:
        # A receiver that trickles its response must not hold the attempt past the timeout.
        async with asyncio.timeout(limit_s):
            async with client.stream("POST", url, content=body, headers=headers) as resp:
                status = resp.status_code
                retry_after = resp.headers.get("retry-after")
    except UrlRefused as exc:
        return AttemptResult(ok=False, error=f"ssrf_{exc.reason}", latency_ms=_ms(started))
    except TimeoutError:
        return AttemptResult(ok=False, error="Timeout", latency_ms=_ms(started))
    except (httpx.HTTPError, OSError) as exc:
        return AttemptResult(ok=False, error=type(exc).__name__, latency_ms=_ms(started))
    ok = 200 <= status < 300
    return AttemptResult(
        ok=ok,
        status=status,
        error=None if ok else f"http_{status}",
        retry_after=parse_retry_after(retry_after, datetime.now(UTC)),
        gone=status == 410,
        latency_ms=_ms(started),
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
