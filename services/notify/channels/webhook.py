"""Webhook channel: an HTTP client that connects only to addresses the SSRF guard allows, and one POST."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
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

__all__ = ["GuardedBackend", "GuardedTransport", "make_client", "post"]

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


# httpcore's errors as httpx's, most specific first (what httpx's own transport raises), so callers
# handle one family of exceptions.
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        # Anything else (the guard's UrlRefused among them) passes through unchanged.
        target = next((t for source, t in _ERRORS if isinstance(exc, source)), None)
        if target is None:
            raise
        raise target(str(exc)) from exc


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore connection pool whose every connection is made by
    `GuardedBackend`: httpx's own transport offers no public way to choose the network backend."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend, limits: httpx.Limits) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def make_client(
    environment: Environment, timeout: float, resolver: Resolver = system_resolver, max_connections: int = 100
) -> httpx.AsyncClient:
    """An AsyncClient for webhooks: guarded connections, no redirects, no proxies from the environment."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=20, keepalive_expiry=30)
    return httpx.AsyncClient(
        # tests/integration/test_notify_channels.py proves the guard is in the path.
        transport=GuardedTransport(GuardedBackend(environment, resolver), limits),
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
