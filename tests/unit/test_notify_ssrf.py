"""The SSRF guard: webhook URL form and scheme, and which resolved addresses a delivery may reach."""

from __future__ import annotations

import ipaddress

import pytest

from shared.webhook_urls import UrlRefused, address_refusal, check_url, checked_addresses


@pytest.mark.parametrize(
    "addr",
    [
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "169.254.0.1",
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 - an address under test, not a bind
        "224.0.0.1",
        "240.0.0.1",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "::",
        "::ffff:10.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:a00:1::",  # 6to4 of 10.0.0.1
    ],
)
@pytest.mark.parametrize("environment", ["development", "production"])
def test_internal_addresses_are_always_refused(addr: str, environment: str) -> None:
    assert address_refusal(ipaddress.ip_address(addr), environment) is not None  # type: ignore[arg-type]


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.5.5.5", "::1", "::ffff:127.0.0.1"])
def test_loopback_only_in_development(addr: str) -> None:
    ip = ipaddress.ip_address(addr)
    assert address_refusal(ip, "development") is None
    assert address_refusal(ip, "production") == "loopback"


@pytest.mark.parametrize("addr", ["93.184.215.14", "8.8.8.8", "2606:4700::6810:85e5"])
def test_public_addresses_pass(addr: str) -> None:
    assert address_refusal(ipaddress.ip_address(addr), "production") is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://example.com", "scheme"),
        ("https://user:pw@example.com/hook", "userinfo"),
        ("https:///nohost", "malformed"),
        ("https://example.com:0/", "malformed"),
        ("https://example.com:99999/", "malformed"),
        ("https://exa mple.com/", "malformed"),
        ("https://example.com/\nX-Injected: 1", "malformed"),
        ("https://10.1.2.3/hook", "private"),
        ("https://[::ffff:a9fe:a9fe]/latest/meta-data", "link_local"),
        ("https://169.254.169.254/latest/meta-data", "link_local"),
        ("https://example.com/" + "a" * 2100, "too_long"),
    ],
)
def test_refused_urls(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused) as info:
        check_url(url, "development")
    assert info.value.reason == reason


def test_production_requires_https() -> None:
    with pytest.raises(UrlRefused) as info:
        check_url("http://hooks.example.com/x", "production")
    assert info.value.reason == "scheme"
    target = check_url("https://Hooks.Example.com./x?a=1", "production")
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 443)


def test_development_allows_loopback_http() -> None:
    assert check_url("http://127.0.0.1:8123/hook", "development").port == 8123
    assert check_url("http://localhost:9000/", "development").host == "localhost"
    with pytest.raises(UrlRefused):
        check_url("http://127.0.0.1:8123/hook", "production")


def _resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("no such host")
        return table[host]

    return resolve


async def test_names_are_judged_by_every_address_they_resolve_to() -> None:
    resolve = _resolver(
        {
            "public.test": ["93.184.215.14"],
            "mixed.test": ["93.184.215.14", "10.0.0.7"],  # one bad address spoils the name
            "meta.test": ["169.254.169.254"],
            "local.test": ["127.0.0.1"],
        }
    )
    assert await checked_addresses("public.test", 443, "production", resolve) == ["93.184.215.14"]
    for host, reason in (
        ("mixed.test", "private"),
        ("meta.test", "link_local"),
        ("nowhere.test", "unresolvable"),
    ):
        with pytest.raises(UrlRefused) as info:
            await checked_addresses(host, 443, "production", resolve)
        assert info.value.reason == reason
    assert await checked_addresses("local.test", 80, "development", resolve) == ["127.0.0.1"]
    with pytest.raises(UrlRefused):
        await checked_addresses("local.test", 80, "production", resolve)
