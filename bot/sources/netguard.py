"""Keep fetches of feed URLs away from the machine's own network (SSRF guard).

Anyone who can add a source could point it at `http://169.254.169.254/` or an admin page on
the LAN. So for untrusted sources every connection (the first and one after every redirect hop)
goes through `GuardedBackend`: it resolves the host once, refuses if ANY address is not public,
and connects to an address it checked, so a rebinding DNS server cannot answer "public" to the
check and 127.0.0.1 to the connection. Sources added by an operator (CLI, configuration) are
trusted and may reach the LAN, but not link-local and cloud metadata addresses (nothing a feed
lives on; the instance's credentials do), and never anything but http and https.
FLARESTART_ALLOW_PRIVATE_URLS lifts the address checks (development, tests).

The address rules are plain functions (`blocked_reason`, `trusted_blocked_reason`) so that a
deployment, or a test, can pass its own policy explicitly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import httpcore

from bot.errors import UnsafeURLError
from bot.sources.httpclient import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress], str | None]
"""Says why an address must not be fetched ("loopback", "private", ...), or None when it may."""

ALLOWED_SCHEMES = frozenset({"http", "https"})

# Carrier-grade NAT (RFC 6598): not "private" for every Python version, never public either.
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
# Where clouds serve an instance its credentials (AWS, GCP and Azure on 169.254.169.254, AWS over
# IPv6, Alibaba): never a feed, whoever added the source.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(text) for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
# NAT64's well-known prefix (RFC 6052): the last 32 bits are the IPv4 address a gateway reaches.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: IPAddress) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries to (IPv4-mapped, 6to4, Teredo, NAT64), and how."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address.teredo is not None:
        return "Teredo", address.teredo[1]  # (server, client): the client is the host reached
    if address in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def trusted_blocked_reason(address: IPAddress) -> str | None:
    """Why even a trusted source (an operator's) may not reach `address`: link-local and cloud
    metadata addresses, also when carried inside an IPv6 address. None otherwise."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        kind, inner = embedded
        reason = trusted_blocked_reason(inner)
        return f"{kind} {reason}" if reason else None
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    if address.is_link_local:
        return "link-local"
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public internet address, or None when it is one."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        kind, inner = embedded
        reason = blocked_reason(inner)
        if reason or kind == "IPv4-mapped":  # a mapped address is the IPv4 one: nothing else to judge
            return f"{kind} {reason}" if reason else None
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED_ADDRESS_SPACE:
        return "carrier-grade NAT"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        # Documentation, benchmarking and other special-purpose ranges.
        return "not globally routable"
    return None


def check_url(url: str) -> str:
    """Return `url` (stripped) when it is an absolute http(s) URL without credentials.

    Raises UnsafeURLError for any other scheme (file:, ftp:, gopher:, ...), for URLs that carry a
    user name or password (they would end up in logs and in the store), and for malformed ones.
    """
    text = url.strip()
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise UnsafeURLError(f"not a valid URL: {text!r} contains spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError when out of range or not a number
        host = parts.hostname
        httpx.URL(text)  # the parser that will make the request must accept it too
    except (ValueError, httpx.InvalidURL) as exc:
        raise UnsafeURLError(f"not a valid URL: {text!r} ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"{scheme}:" if scheme else "no scheme"
        raise UnsafeURLError(f"refusing {shown} URL {text!r}: only http and https are fetched")
    if not host:
        raise UnsafeURLError(f"not a valid URL: {text!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURLError(
            f"refusing URL with a user name or password for host {host}: "
            "credentials in feed URLs are not supported"
        )
    if port == 0:
        raise UnsafeURLError(f"not a valid URL: {text!r} has port 0")
    return text


def check_addresses(host: str, addresses: Iterable[str], *, policy: AddressPolicy = blocked_reason) -> None:
    """Raise UnsafeURLError naming the first address of `host` that `policy` refuses."""
    for text in addresses:
        # getaddrinfo may append a scope to link-local IPv6 ("fe80::1%eth0").
        shown = text.split("%", 1)[0]
        reason = policy(ipaddress.ip_address(shown))
        if reason is not None:
            raise UnsafeURLError(f"refusing {shown} ({reason}) for host {host}")


async def lookup(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IP literals resolve to themselves), without duplicates;
    socket.gaierror when it does not resolve."""
    try:
        ipaddress.ip_address(host)
        return [host]  # a literal: no trip to the resolver's thread
    except ValueError:
        pass  # a name, or a numeric form only the OS reads ("2130706433", "0x7f.1")
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canonname, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


async def resolve(host: str, port: int) -> list[str]:
    """`lookup`, with a host that does not resolve refused as an UnsafeURLError."""
    try:
        return await lookup(host, port)
    except socket.gaierror as exc:
        raise UnsafeURLError(f"cannot resolve host {host}: {exc.strerror}") from None


async def assert_public_host(host: str, port: int, *, policy: AddressPolicy = blocked_reason) -> None:
    """Resolve `host` and raise UnsafeURLError unless every address is public.

    A host that does not resolve is refused too (we cannot tell where it points); the message
    says so. Numeric forms such as `2130706433` or `0x7f.1` resolve like the OS would connect.
    """
    check_addresses(host, await resolve(host.strip("[]"), port), policy=policy)


# Seconds a connection attempt gets when another address is left to try (RFC 8305 staggers
# attempts by a quarter second; one at a time, a few seconds keeps slow but working hosts).
FALLBACK_SECONDS = 3.0


def _interleave_families(addresses: list[str]) -> list[str]:
    """The resolver's order, alternating IPv6 and IPv4 from the first one (RFC 8305 §4)."""
    six = [a for a in addresses if ":" in a]
    four = [a for a in addresses if ":" not in a]
    first, second = (six, four) if addresses and ":" in addresses[0] else (four, six)
    ordered: list[str] = []
    for index in range(max(len(first), len(second))):
        ordered.extend(family[index] for family in (first, second) if index < len(family))
    return ordered


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, opening each connection to an address it checked itself.

    The host is resolved once, every address it resolves to is checked against `policy` (None:
    no check), and the connection goes to one of those addresses, tried in turn (IPv6 and IPv4
    alternating, each but the last for at most FALLBACK_SECONDS). Only the
    socket is pinned: the URL keeps the name, so the Host header, TLS SNI and the certificate
    check all still use it.
    """

    def __init__(self, policy: AddressPolicy | None) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await lookup(host, port)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve host {host}: {exc.strerror}") from exc
        if self._policy is not None:
            check_addresses(host, addresses, policy=self._policy)
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        ordered = _interleave_families(addresses)
        for number, address in enumerate(ordered, 1):
            # A broken IPv6 route must not cost the whole connect timeout before IPv4 is tried.
            limit = timeout if number == len(ordered) or timeout is None else min(timeout, FALLBACK_SECONDS)
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=limit, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        if failure is None:
            raise httpcore.ConnectError(f"host {host} resolves to no address")
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("feeds are fetched over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
