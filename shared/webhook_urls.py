"""SSRF guard for webhook URLs: which URLs and which resolved addresses a delivery may reach."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec

__all__ = [
    "MAX_URL_LENGTH",
    "Resolver",
    "Target",
    "UrlRefused",
    "address_refusal",
    "check_url",
    "checked_addresses",
    "system_resolver",
]

MAX_URL_LENGTH = 2048
Environment = Literal["development", "production"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UrlRefused(ValueError):
    """The URL, or an address it resolves to, may not receive webhooks; ``reason`` is a short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Target(msgspec.Struct, frozen=True):
    scheme: str
    host: str  # lower-case name or IP literal, without brackets
    port: int


def _embedded_v4(ip: IPAddress) -> IPAddress:
    # An IPv6 address can carry an IPv4 one (mapped, NAT64, 6to4, Teredo): judge the one it reaches.
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
    return ip


def address_refusal(ip: IPAddress, environment: Environment) -> str | None:
    """Why a webhook may not connect to ``ip`` (a reason code), or None if it may.

    Only public addresses, plus loopback in development. Link-local covers the cloud metadata
    service (169.254.169.254); unspecified (0.0.0.0) reaches the local host on Linux.
    """
    ip = _embedded_v4(ip)
    if ip.is_loopback:
        return None if environment == "development" else "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "not_global"
    return None


def check_url(url: str, environment: Environment) -> Target:
    """Validate a webhook URL's form and, for IP literals, its address. Names are checked after DNS."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused("too_long", f"URLs are limited to {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UrlRefused("malformed", "The URL contains whitespace or control characters.")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("malformed", "The URL is not valid.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UrlRefused("scheme", "Webhook URLs must use https.")
    if scheme == "http" and environment == "production":
        raise UrlRefused("scheme", "Webhook URLs must use https.")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and browser histories; use the signature instead.
        raise UrlRefused("userinfo", "Webhook URLs may not contain credentials.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UrlRefused("malformed", "The URL has no host.")
    if port == 0:
        raise UrlRefused("malformed", "The URL's port is not valid.")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        literal = None
    if literal is not None:
        if "%" in host:
            raise UrlRefused("malformed", "Scoped IPv6 addresses are not allowed.")
        reason = address_refusal(literal, environment)
        if reason is not None:
            raise UrlRefused(reason, f"Webhook URLs may not point at {reason.replace('_', '-')} addresses.")
    return Target(scheme, host, port or (443 if scheme == "https" else 80))


# (host, port) -> the IP addresses it resolves to.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for info in infos:
        seen[str(info[4][0])] = None
    return list(seen)


async def checked_addresses(host: str, port: int, environment: Environment, resolver: Resolver) -> list[str]:
    """Resolve ``host`` and refuse it if ANY address is not allowed: a name that also points inside the
    network is refused outright rather than hoping the connection picks the public address."""
    try:
        addresses = await resolver(host, port)
    except OSError:
        raise UrlRefused("unresolvable", f"The host {host!r} cannot be resolved.") from None
    if not addresses:
        raise UrlRefused("unresolvable", f"The host {host!r} cannot be resolved.")
    for addr in addresses:
        reason = address_refusal(ipaddress.ip_address(addr.split("%", 1)[0]), environment)
        if reason is not None:
            raise UrlRefused(reason, f"The host resolves to a {reason.replace('_', '-')} address.")
    return addresses
