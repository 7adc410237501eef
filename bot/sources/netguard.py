"""Keep fetches of untrusted feed URLs away from the machine's own network (SSRF guard).

Anyone who can add a source could point it at `http://169.254.169.254/` or an admin page on
the LAN. So for untrusted sources the fetcher resolves the host before every request (and after
every redirect hop) and refuses if ANY address it resolves to is not public. Sources added by an
operator (CLI, configuration) are trusted and skip the address check, but never the scheme check:
only http and https are ever fetched.

The address rules are a plain function (`blocked_reason`) so that a deployment, or a test, can
pass its own policy explicitly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import httpx

from bot.errors import UnsafeURLError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress], str | None]
"""Says why an address must not be fetched ("loopback", "private", ...), or None when it may."""

ALLOWED_SCHEMES = frozenset({"http", "https"})

# Carrier-grade NAT (RFC 6598): not "private" for every Python version, never public either.
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")


def blocked_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public internet address, or None when it is one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        inner = blocked_reason(address.ipv4_mapped)
        return f"IPv4-mapped {inner}" if inner else None
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


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IP literals resolve to themselves), without duplicates."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeURLError(f"cannot resolve host {host}: {exc.strerror}") from None
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canonname, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


async def assert_public_host(host: str, port: int, *, policy: AddressPolicy = blocked_reason) -> None:
    """Resolve `host` and raise UnsafeURLError unless every address is public.

    A host that does not resolve is refused too (we cannot tell where it points); the message
    says so. Numeric forms such as `2130706433` or `0x7f.1` resolve like the OS would connect.
    """
    check_addresses(host, await resolve(host.strip("[]"), port), policy=policy)
