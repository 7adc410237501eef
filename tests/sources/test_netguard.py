"""The SSRF guard: which URLs and addresses an untrusted source may reach."""

from __future__ import annotations

import ipaddress

import pytest

from bot.errors import UnsafeURLError
from bot.sources import netguard


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.10", "private"),  # documentation range (TEST-NET-1)
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("::ffff:10.0.0.1", "IPv4-mapped private"),
        ("::ffff:169.254.169.254", "IPv4-mapped cloud metadata"),
        ("::ffff:169.254.1.1", "IPv4-mapped link-local"),
        # 6to4 (2002::/16) and Teredo (2001::/32) carry an IPv4 address: judged by that address
        ("2002:7f00:1::1", "6to4 loopback"),
        ("2002:a00:1::", "6to4 private"),
        ("2002:a9fe:a9fe::1", "6to4 cloud metadata"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo loopback"),  # client 127.0.0.1, obfuscated
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo private"),  # client 10.0.0.1
        ("64:ff9b::a00:1", "NAT64 private"),
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("100.128.0.1", None),  # just past the CGNAT range
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("2002:808:808::1", None),  # 6to4 of 8.8.8.8
    ],
)
def test_blocked_reason(address: str, reason: str | None) -> None:
    assert netguard.blocked_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("169.254.10.20", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "cloud metadata"),
        ("::ffff:169.254.169.254", "IPv4-mapped cloud metadata"),
        ("2002:a9fe:101::", "6to4 link-local"),
        ("127.0.0.1", None),  # an operator's own machine and LAN stay reachable
        ("10.0.0.7", None),
        ("fd12:3456::1", None),
        ("8.8.8.8", None),
    ],
)
def test_trusted_sources_may_not_reach_link_local_or_metadata(address: str, reason: str | None) -> None:
    assert netguard.trusted_blocked_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/feed.xml",
        "https://example.com:8443/feed?format=rss",
        "HTTPS://Example.COM/Feed",
        "http://[2606:4700::1111]/feed",
        "  https://example.com/feed.xml\n",
    ],
)
def test_check_url_accepts_plain_http_urls(url: str) -> None:
    assert netguard.check_url(url) == url.strip()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "refusing file: URL 'file:///etc/passwd'"),
        ("ftp://example.com/feed.xml", "refusing ftp: URL"),
        ("gopher://example.com/", "refusing gopher: URL"),
        ("javascript:alert(1)", "refusing javascript: URL"),
        ("example.com/feed.xml", "refusing no scheme URL"),
        ("http://user:pw@example.com/", "refusing URL with a user name or password"),
        ("http://user@example.com/", "refusing URL with a user name or password"),
        ("http:///feed.xml", "not a valid URL: 'http:///feed.xml' has no host"),
        ("http://[::1/feed", "not a valid URL"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://example.com:0/", "not a valid URL"),
        ("http://exa mple.com/", "not a valid URL"),
        ("http://example.com/\r\nHost: evil", "not a valid URL"),
    ],
)
def test_check_url_refuses(url: str, message: str) -> None:
    with pytest.raises(UnsafeURLError) as caught:
        netguard.check_url(url)

    assert str(caught.value).startswith(message)


def test_any_private_address_among_several_is_refused() -> None:
    with pytest.raises(UnsafeURLError) as caught:
        netguard.check_addresses("mixed.example", ["93.184.216.34", "10.0.0.7", "8.8.8.8"])

    assert str(caught.value) == "refusing 10.0.0.7 (private) for host mixed.example"


def test_scoped_ipv6_addresses_are_checked_without_their_scope() -> None:
    with pytest.raises(UnsafeURLError, match=r"refusing fe80::1 \(link-local\)"):
        netguard.check_addresses("printer.local", ["fe80::1%eth0"])


def test_public_addresses_pass() -> None:
    netguard.check_addresses("example.com", ["93.184.216.34", "2606:2800:220:1::248"])


def test_a_policy_can_be_given_explicitly() -> None:
    def nothing_allowed(address: netguard.IPAddress) -> str | None:
        return "not on the list"

    with pytest.raises(UnsafeURLError, match=r"refusing 8\.8\.8\.8 \(not on the list\)"):
        netguard.check_addresses("dns.google", ["8.8.8.8"], policy=nothing_allowed)


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("127.0.0.1", "refusing 127.0.0.1 (loopback) for host 127.0.0.1"),
        ("localhost", "(loopback) for host localhost"),
        ("2130706433", "refusing 127.0.0.1 (loopback) for host 2130706433"),  # as one number
        ("0x7f.1", "refusing 127.0.0.1 (loopback) for host 0x7f.1"),
        ("[::1]", "refusing ::1 (loopback) for host [::1]"),
        (
            "::ffff:192.168.0.1",
            "refusing ::ffff:192.168.0.1 (IPv4-mapped private) for host ::ffff:192.168.0.1",
        ),
        ("169.254.169.254", "refusing 169.254.169.254 (cloud metadata) for host 169.254.169.254"),
    ],
)
async def test_assert_public_host_resolves_before_judging(host: str, message: str) -> None:
    with pytest.raises(UnsafeURLError) as caught:
        await netguard.assert_public_host(host, 80)

    assert message in str(caught.value)


async def test_assert_public_host_accepts_a_public_literal() -> None:
    await netguard.assert_public_host("93.184.216.34", 443)
