"""The fetcher against a real HTTP server on loopback: every feed host misbehaviour we know."""

from __future__ import annotations

import asyncio
import gzip
import importlib
import ipaddress
import logging
import socket
import threading
import time
import tracemalloc
import zlib
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from bot.config import FetchSettings
from bot.sources import netguard
from bot.sources.fetch import RAMP_START, Fetcher, parse_max_age, parse_retry_after
from bot.sources.types import FetchResult
from bot.testing.httpserver import FixtureServer, Request, Response, endless, redirect, static

RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
brotli: Any = importlib.import_module("brotli")  # ships no type information


def settings(**overrides: Any) -> FetchSettings:
    return FetchSettings(**overrides)


async def fetch_once(
    url: str,
    *,
    config: FetchSettings | None = None,
    allow_private: bool = True,
    **kwargs: Any,
) -> FetchResult:
    async with Fetcher(config or settings(), allow_private=allow_private) as fetcher:
        return await fetcher.fetch(url, **kwargs)


# --- conditional GET -----------------------------------------------------------------------


async def test_etag_round_trip_answers_not_modified(feed_server: FixtureServer) -> None:
    url = feed_server.add("/feed.xml", static(RSS, "application/rss+xml", last_modified=None))

    async with Fetcher(settings(), allow_private=True) as fetcher:
        first = await fetcher.fetch(url)
        second = await fetcher.fetch(url, etag=first.etag, last_modified=first.last_modified)

    assert first.outcome == "ok"
    assert first.status == 200
    assert first.body == RSS
    assert first.content_type == "application/rss+xml"
    assert first.etag is not None
    assert second.outcome == "not_modified"
    assert second.status == 304
    assert second.body == b""
    assert second.etag == first.etag
    assert feed_server.hits("/feed.xml")[1].header("if-none-match") == first.etag


async def test_last_modified_only_server_answers_not_modified(feed_server: FixtureServer) -> None:
    url = feed_server.add("/feed.xml", static(RSS, etag=False))

    async with Fetcher(settings(), allow_private=True) as fetcher:
        first = await fetcher.fetch(url)
        second = await fetcher.fetch(url, last_modified=first.last_modified)

    assert first.outcome == "ok"
    assert first.etag is None
    assert first.last_modified == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert second.outcome == "not_modified"
    assert second.last_modified == first.last_modified
    assert feed_server.hits("/feed.xml")[1].header("if-modified-since") == first.last_modified


async def test_requests_carry_user_agent_accept_and_reuse_the_connection(
    feed_server: FixtureServer,
) -> None:
    url = feed_server.add("/feed.xml", static(RSS))

    async with Fetcher(settings(user_agent="TestBot/1.0"), allow_private=True) as fetcher:
        await fetcher.fetch(url)
        await fetcher.fetch(url)

    first, second = feed_server.hits("/feed.xml")
    assert first.header("user-agent") == "TestBot/1.0"
    assert "application/rss+xml" in (first.header("accept") or "")
    assert "application/atom+xml" in (first.header("accept") or "")
    assert "application/feed+json" in (first.header("accept") or "")
    assert first.header("if-none-match") is None
    assert second.client == first.client  # one keep-alive connection carried both


async def test_not_modified_answers_keep_the_connection_alive(feed_server: FixtureServer) -> None:
    urls = [feed_server.add(f"/feed{n}.xml", static(RSS + b" " * n)) for n in range(5)]

    async with Fetcher(settings(), allow_private=True) as fetcher:
        first = [await fetcher.fetch(url) for url in urls]
        again = [await fetcher.fetch(url, etag=r.etag) for url, r in zip(urls, first, strict=True)]

    assert [r.outcome for r in again] == ["not_modified"] * 5
    # A 304 has no body, but it must still be read to its end: an unread response closes its
    # connection, and a re-poll would open a new connection for every feed.
    assert len({request.client for request in feed_server.requests}) == 1


async def test_small_error_pages_keep_the_connection_alive(feed_server: FixtureServer) -> None:
    broken = feed_server.add("/broken.xml", Response(500, b"oops"))
    gone = feed_server.add("/gone.xml", Response(410, b"bye"))
    good = feed_server.add("/feed.xml", static(RSS))

    async with Fetcher(settings(), allow_private=True) as fetcher:
        results = [await fetcher.fetch(url) for url in (broken, gone, good)]

    assert [r.outcome for r in results] == ["error", "gone", "ok"]
    assert len({request.client for request in feed_server.requests}) == 1


async def test_each_fetch_logs_one_debug_line_naming_the_url(
    feed_server: FixtureServer, caplog: pytest.LogCaptureFixture
) -> None:
    ok_url = feed_server.add("/feed.xml", static(RSS))
    missing_url = feed_server.url("/missing.xml")

    with caplog.at_level(logging.DEBUG, logger="bot.sources.fetch"):
        await fetch_once(ok_url)
        await fetch_once(missing_url)

    fetched, failed = caplog.records
    assert fetched.levelno == failed.levelno == logging.DEBUG
    assert fetched.getMessage() == "fetched"
    assert (fetched.__dict__["url"], fetched.__dict__["outcome"], fetched.__dict__["status"]) == (
        ok_url,
        "ok",
        200,
    )
    assert failed.getMessage() == "fetch failed: HTTP 404 Not Found"
    assert (failed.__dict__["url"], failed.__dict__["outcome"]) == (missing_url, "error")


# --- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "moves"), [(301, True), (308, True), (302, False), (303, False), (307, False)]
)
async def test_only_permanent_redirects_record_moved_to(
    feed_server: FixtureServer, status: int, moves: bool
) -> None:
    new_url = feed_server.add("/new.xml", static(RSS))
    old_url = feed_server.add("/old.xml", redirect("/new.xml", status))

    result = await fetch_once(old_url)

    assert result.outcome == "ok"
    assert result.body == RSS
    assert result.url == old_url
    assert result.final_url == new_url
    assert result.moved_to == (new_url if moves else None)


async def test_permanent_then_temporary_keeps_only_the_permanent_part(
    feed_server: FixtureServer,
) -> None:
    feed_server.add("/a", redirect("/b", 301))
    feed_server.add("/b", redirect("/c", 302))
    feed_server.add("/c", static(RSS))

    result = await fetch_once(feed_server.url("/a"))

    assert result.outcome == "ok"
    assert result.moved_to == feed_server.url("/b")
    assert result.final_url == feed_server.url("/c")


async def test_temporary_then_permanent_records_nothing(feed_server: FixtureServer) -> None:
    feed_server.add("/a", redirect("/b", 302))
    feed_server.add("/b", redirect("/c", 301))
    feed_server.add("/c", static(RSS))

    result = await fetch_once(feed_server.url("/a"))

    assert result.outcome == "ok"
    assert result.moved_to is None
    assert result.final_url == feed_server.url("/c")


async def test_permanent_redirect_to_a_missing_feed_is_not_a_move(
    feed_server: FixtureServer,
) -> None:
    feed_server.add("/a", redirect("/nowhere", 301))

    result = await fetch_once(feed_server.url("/a"))

    assert result.outcome == "error"
    assert result.error == "HTTP 404 Not Found"
    assert result.moved_to is None


async def test_redirect_loop_is_an_error(feed_server: FixtureServer) -> None:
    feed_server.add("/a", redirect("/b", 302))
    feed_server.add("/b", redirect("/a", 302))

    result = await fetch_once(feed_server.url("/a"))

    assert result.outcome == "error"
    assert result.error == f"redirect loop back to {feed_server.url('/a')}"
    assert len(feed_server.requests) == 2


async def test_more_than_five_redirects_is_an_error(feed_server: FixtureServer) -> None:
    for hop in range(7):
        feed_server.add(f"/{hop}", redirect(f"/{hop + 1}", 301))

    result = await fetch_once(feed_server.url("/0"))

    assert result.outcome == "error"
    assert result.error == f"too many redirects (more than 5), last to {feed_server.url('/6')}"
    assert result.moved_to is None
    assert len(feed_server.requests) == 6


# --- statuses ------------------------------------------------------------------------------


async def test_410_means_gone(feed_server: FixtureServer) -> None:
    url = feed_server.add("/feed.xml", Response(410, b"bye"))

    result = await fetch_once(url)

    assert result.outcome == "gone"
    assert result.status == 410
    assert result.error == f"HTTP 410 Gone: {url} was removed"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, "HTTP 404 Not Found"),
        (500, "HTTP 500 Internal Server Error"),
        (502, "HTTP 502 Bad Gateway"),
        (403, "HTTP 403 Forbidden"),
    ],
)
async def test_http_errors_read_like_http(feed_server: FixtureServer, status: int, error: str) -> None:
    url = feed_server.add("/feed.xml", Response(status, b"oops"))

    result = await fetch_once(url)

    assert result.outcome == "error"
    assert result.status == status
    assert result.error == error
    assert result.body == b""
    assert result.retry_after is None


async def test_429_with_retry_after_seconds(feed_server: FixtureServer) -> None:
    url = feed_server.add("/feed.xml", Response(429, b"", {"Retry-After": "120"}))

    result = await fetch_once(url)

    assert result.outcome == "error"
    assert result.error == "HTTP 429 Too Many Requests"
    assert result.retry_after == 120.0


async def test_503_with_retry_after_http_date(feed_server: FixtureServer) -> None:
    later = formatdate(time.time() + 600, usegmt=True)
    url = feed_server.add("/feed.xml", Response(503, b"", {"Retry-After": later}))

    result = await fetch_once(url)

    assert result.outcome == "error"
    assert result.error == "HTTP 503 Service Unavailable"
    assert result.retry_after is not None
    assert 598 <= result.retry_after <= 601  # the server's Date header has whole seconds


async def test_cache_control_max_age_is_reported(feed_server: FixtureServer) -> None:
    headers = {"Cache-Control": "public, s-maxage=60, max-age=900"}
    url = feed_server.add("/feed.xml", static(RSS, headers=headers))

    result = await fetch_once(url)

    assert result.outcome == "ok"
    assert result.max_age == 900.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Cache-Control": "max-age=300"}, 300.0),
        ({"Cache-Control": 'max-age="300"'}, 300.0),
        ({"Cache-Control": "s-maxage=600"}, None),
        ({"Cache-Control": "s-maxage=600, max-age=60"}, 60.0),
        ({"Cache-Control": "no-cache, max-age=300"}, None),
        ({"Cache-Control": "no-store"}, None),
        ({"Cache-Control": "max-age=soon"}, None),
        (
            {"Expires": "Wed, 01 Jan 2025 01:00:00 GMT", "Date": "Wed, 01 Jan 2025 00:00:00 GMT"},
            3600.0,
        ),
        (
            {"Expires": "Wed, 01 Jan 2025 00:00:00 GMT", "Date": "Wed, 01 Jan 2025 01:00:00 GMT"},
            0.0,
        ),
        ({"Expires": "0", "Date": "Wed, 01 Jan 2025 00:00:00 GMT"}, None),
        (
            {
                "Cache-Control": "max-age=10",
                "Expires": "Wed, 01 Jan 2025 01:00:00 GMT",
                "Date": "Wed, 01 Jan 2025 00:00:00 GMT",
            },
            10.0,
        ),
        ({}, None),
    ],
)
def test_max_age_from_headers(headers: dict[str, str], expected: float | None) -> None:
    assert parse_max_age(httpx.Headers(headers)) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "30"}, 30.0),
        (
            {
                "Retry-After": "Wed, 01 Jan 2025 00:02:00 GMT",
                "Date": "Wed, 01 Jan 2025 00:00:00 GMT",
            },
            120.0,
        ),
        (
            {
                "Retry-After": "Wed, 01 Jan 2025 00:00:00 GMT",
                "Date": "Wed, 01 Jan 2025 00:02:00 GMT",
            },
            0.0,
        ),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-5"}, None),
        ({}, None),
    ],
)
def test_retry_after_from_headers(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers)) == expected


# --- timeouts and broken hosts ---------------------------------------------------------------


async def test_response_slower_than_read_timeout_fails_fast(feed_server: FixtureServer) -> None:
    url = feed_server.add("/slow.xml", Response(200, RSS, delay=2.0))
    config = settings(connect_timeout=1.0, read_timeout=0.2, total_timeout=5.0)

    started = time.monotonic()
    result = await fetch_once(url, config=config)

    assert time.monotonic() - started < 1.5
    assert result.outcome == "error"
    assert result.status == 0
    assert result.error == "127.0.0.1 sent nothing for 0.2 s (read timeout)"


async def test_trickling_body_hits_the_total_deadline(feed_server: FixtureServer) -> None:
    url = feed_server.add("/trickle.xml", Response(200, endless(b"<item/>"), chunk_delay=0.05))
    config = settings(read_timeout=1.0, total_timeout=0.4)

    started = time.monotonic()
    result = await fetch_once(url, config=config)

    assert time.monotonic() - started < 1.5
    assert result.outcome == "error"
    assert result.status == 200
    assert result.error == "timed out after 0.4 s (total deadline)"


async def test_refused_connection_is_an_error_not_an_exception() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again on leaving: nobody listens there

    result = await fetch_once(f"http://127.0.0.1:{port}/feed.xml")

    assert result.outcome == "error"
    assert result.status == 0
    assert result.error == "cannot connect to 127.0.0.1: connection refused"


async def test_garbage_instead_of_http_is_an_error() -> None:
    async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(babble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await fetch_once(f"http://127.0.0.1:{port}/feed.xml")

    assert result.outcome == "error"
    assert result.error is not None
    assert result.error.startswith("127.0.0.1 broke the HTTP protocol")


# --- body size and compression -------------------------------------------------------------


async def test_endless_body_stops_at_the_cap_with_flat_memory(feed_server: FixtureServer) -> None:
    url = feed_server.add("/endless.xml", Response(200, endless()))
    config = settings(max_body_bytes=1024 * 1024)

    tracemalloc.start()
    try:
        result = await fetch_once(url, config=config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.outcome == "error"
    assert result.status == 200
    assert result.error == "body larger than 1 MB"
    assert result.body == b""
    assert peak < 4 * 1024 * 1024


async def test_too_large_content_length_is_refused_before_reading(
    feed_server: FixtureServer,
) -> None:
    url = feed_server.add("/big.xml", Response(200, b"x" * 4096))

    result = await fetch_once(url, config=settings(max_body_bytes=2048))

    assert result.outcome == "error"
    assert result.error == "body larger than 2 KB (4096 bytes declared)"


async def test_body_exactly_at_the_cap_is_accepted(feed_server: FixtureServer) -> None:
    url = feed_server.add("/exact.xml", Response(200, iter([b"x" * 1024, b"y" * 1024])))

    result = await fetch_once(url, config=settings(max_body_bytes=2048))

    assert result.outcome == "ok"
    assert result.body == b"x" * 1024 + b"y" * 1024


async def test_gzip_body_is_decompressed(feed_server: FixtureServer) -> None:
    body = RSS * 200
    url = feed_server.add("/feed.xml", static(body, compress=True))

    result = await fetch_once(url)

    assert result.outcome == "ok"
    assert result.body == body
    assert "gzip" in (feed_server.hits("/feed.xml")[0].header("accept-encoding") or "")


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
        ("br", brotli.compress),
        ("gzip", lambda data: gzip.compress(data[:500]) + gzip.compress(data[500:])),
        ("deflate, gzip", lambda data: gzip.compress(zlib.compress(data))),
    ],
    ids=["deflate-zlib", "deflate-raw", "brotli", "gzip-two-members", "deflate-then-gzip"],
)
async def test_other_codings_are_decompressed(feed_server: FixtureServer, coding: str, encode: Any) -> None:
    body = RSS * 300
    url = feed_server.add("/feed.xml", Response(200, encode(body), {"Content-Encoding": coding}))

    result = await fetch_once(url)

    assert result.outcome == "ok"
    assert result.body == body


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", lambda data: gzip.compress(data, 6)),
        ("br", lambda data: brotli.compress(data, quality=5)),
    ],
    ids=["gzip", "brotli"],
)
async def test_compression_bomb_stops_at_the_cap(
    feed_server: FixtureServer, coding: str, encode: Any
) -> None:
    bomb = encode(b"\0" * (16 * 1024 * 1024))  # 16 MB of zeros in a few KB
    url = feed_server.add("/bomb.xml", Response(200, bomb, {"Content-Encoding": coding}))

    tracemalloc.start()
    try:
        result = await fetch_once(url, config=settings(max_body_bytes=1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(bomb) < 1024 * 1024  # small on the wire: only the decompressed size gives it away
    assert result.outcome == "error"
    assert result.error == "body larger than 1 MB"
    assert peak < 4 * 1024 * 1024


async def test_corrupt_gzip_is_an_error(feed_server: FixtureServer) -> None:
    url = feed_server.add(
        "/feed.xml", Response(200, b"\x1f\x8bnot gzip at all", {"Content-Encoding": "gzip"})
    )

    result = await fetch_once(url)

    assert result.outcome == "error"
    assert result.error is not None
    assert result.error.startswith("could not decompress the body (gzip)")


async def test_unknown_content_encoding_is_an_error(feed_server: FixtureServer) -> None:
    url = feed_server.add("/feed.xml", Response(200, b"????", {"Content-Encoding": "compress"}))

    result = await fetch_once(url)

    assert result.outcome == "error"
    assert result.error == "unsupported Content-Encoding 'compress'"


# --- concurrency ---------------------------------------------------------------------------


class InFlight:
    """A route that holds each request a moment and remembers how many overlapped."""

    def __init__(self, hold: float = 0.1) -> None:
        self.hold = hold
        self.current = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
        time.sleep(self.hold)
        with self._lock:
            self.current -= 1
        return Response(200, RSS, {"Content-Type": "application/rss+xml"})


@pytest.mark.parametrize(("concurrency", "per_host", "expected_peak"), [(8, 2, 2), (2, 8, 2), (8, 3, 3)])
async def test_concurrency_limits_are_honoured(
    feed_server: FixtureServer, concurrency: int, per_host: int, expected_peak: int
) -> None:
    route = InFlight()
    for n in range(6):
        feed_server.add(f"/feed{n}.xml", route)
    config = settings(concurrency=concurrency, per_host=per_host)

    async with Fetcher(config, allow_private=True) as fetcher:
        results = await asyncio.gather(*(fetcher.fetch(feed_server.url(f"/feed{n}.xml")) for n in range(6)))

    assert [r.outcome for r in results] == ["ok"] * 6
    assert route.peak == expected_peak


class Ramp(InFlight):
    """InFlight that also remembers the overlap before the host had answered anyone."""

    def __init__(self, hold: float = 0.1) -> None:
        super().__init__(hold)
        self.answered = 0
        self.peak_before_first_answer = 0

    def __call__(self, request: Request) -> Response:
        with self._lock:
            if not self.answered:
                self.peak_before_first_answer = max(self.peak_before_first_answer, self.current + 1)
        response = super().__call__(request)
        with self._lock:
            self.answered += 1
        return response


async def test_a_new_host_gets_a_few_requests_first_then_up_to_the_limit(
    feed_server: FixtureServer,
) -> None:
    # 16 connections opened in the same millisecond overflow a small server's listen queue
    # (Python's http.server listens with a backlog of 5): each dropped SYN costs a second.
    route = Ramp(hold=0.2)
    for n in range(24):
        feed_server.add(f"/feed{n}.xml", route)
    config = settings(concurrency=16, per_host=8)

    async with Fetcher(config, allow_private=True) as fetcher:
        results = await asyncio.gather(*(fetcher.fetch(feed_server.url(f"/feed{n}.xml")) for n in range(24)))

    assert [r.outcome for r in results] == ["ok"] * 24
    assert route.peak_before_first_answer == RAMP_START
    assert RAMP_START < route.peak <= 8


async def test_a_failed_request_never_blocks_the_next_ones() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens there

    async with Fetcher(settings(concurrency=4, per_host=4), allow_private=True) as fetcher:
        results = await asyncio.wait_for(
            asyncio.gather(*(fetcher.fetch(f"http://127.0.0.1:{port}/{n}.xml") for n in range(12))), 10
        )

    assert {r.error for r in results} == {"cannot connect to 127.0.0.1: connection refused"}


# --- netguard at work ----------------------------------------------------------------------


async def test_untrusted_loopback_url_is_refused(feed_server: FixtureServer) -> None:
    url = feed_server.add("/feed.xml", static(RSS))

    result = await fetch_once(url, allow_private=False, trusted=False)

    assert result.outcome == "error"
    assert result.status == 0
    assert result.error == "refusing 127.0.0.1 (loopback) for host 127.0.0.1"
    assert feed_server.requests == []


async def test_untrusted_localhost_name_is_refused_after_resolving(
    feed_server: FixtureServer,
) -> None:
    url = f"http://localhost:{feed_server.port}/feed.xml"

    result = await fetch_once(url, allow_private=False, trusted=False)

    assert result.outcome == "error"
    assert result.error is not None
    assert "(loopback) for host localhost" in result.error
    assert feed_server.requests == []


@pytest.mark.parametrize(("allow_private", "trusted"), [(True, False), (False, True), (True, True)])
async def test_loopback_is_fetched_when_allowed_or_trusted(
    feed_server: FixtureServer, allow_private: bool, trusted: bool
) -> None:
    url = feed_server.add("/feed.xml", static(RSS))

    result = await fetch_once(url, allow_private=allow_private, trusted=trusted)

    assert result.outcome == "ok"


def loopback_except_127_0_0_1(address: netguard.IPAddress) -> str | None:
    """Test policy: pretend 127.0.0.1 is a public host so a first hop can pass the guard."""
    if address == ipaddress.ip_address("127.0.0.1"):
        return None
    return netguard.blocked_reason(address)


async def test_redirect_from_public_host_to_private_one_is_refused(
    feed_server: FixtureServer,
) -> None:
    url = feed_server.add("/feed.xml", redirect(f"http://127.0.0.2:{feed_server.port}/admin", 302))

    async with Fetcher(settings(), allow_private=False, address_policy=loopback_except_127_0_0_1) as fetcher:
        result = await fetcher.fetch(url, trusted=False)

    assert result.outcome == "error"
    assert result.error == "refusing 127.0.0.2 (loopback) for host 127.0.0.2"
    assert [r.path for r in feed_server.requests] == ["/feed.xml"]


def loopback_except_127_0_0_2(address: netguard.IPAddress) -> str | None:
    """Test policy: pretend 127.0.0.2 is a public host (the rebinding name's first answer)."""
    if address == ipaddress.ip_address("127.0.0.2"):
        return None
    return netguard.blocked_reason(address)


async def test_a_rebinding_name_is_fetched_from_the_address_that_was_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebinding DNS server answers a public address to the first lookup and 127.0.0.1 to every
    later one: the connection must go where the check looked, never to the second answer."""
    lookups: list[str] = []
    system_getaddrinfo = socket.getaddrinfo

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "feeds.rebind.test":
            return system_getaddrinfo(host, port, *args, **kwargs)
        lookups.append("127.0.0.2" if not lookups else "127.0.0.1")
        return system_getaddrinfo(lookups[-1], port, *args, **kwargs)

    with FixtureServer("127.0.0.1") as internal, FixtureServer("127.0.0.2", internal.port) as public:
        internal.add("/feed.xml", static(b"the admin page of the machine itself"))
        public.add("/feed.xml", static(RSS))
        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        url = f"http://feeds.rebind.test:{internal.port}/feed.xml"
        async with Fetcher(
            settings(), allow_private=False, address_policy=loopback_except_127_0_0_2
        ) as fetcher:
            result = await fetcher.fetch(url, trusted=False)

    assert internal.requests == []
    assert result.outcome == "ok" and result.body == RSS
    assert lookups == ["127.0.0.2"]
    # Only the socket is pinned: the request still names the host.
    assert [r.header("Host") for r in public.requests] == [f"feeds.rebind.test:{internal.port}"]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://169.254.169.254/latest/meta-data/", "refusing 169.254.169.254 (cloud metadata)"),
        ("http://[fe80::1]/feed.xml", "refusing fe80::1 (link-local)"),
        ("http://[::ffff:169.254.10.1]/", "refusing ::ffff:169.254.10.1 (IPv4-mapped link-local)"),
    ],
)
async def test_trusted_sources_may_not_reach_link_local_or_metadata_addresses(url: str, error: str) -> None:
    result = await fetch_once(url, allow_private=False, trusted=True)

    assert result.outcome == "error" and result.error is not None
    assert result.error.startswith(error)


async def test_allow_private_lifts_the_link_local_refusal_for_trusted_sources() -> None:
    result = await fetch_once("http://[fe80::1]/feed.xml", allow_private=True, trusted=True)

    assert result.outcome == "error" and result.error is not None
    assert "refusing" not in result.error and result.error.startswith("cannot connect to fe80::1")


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("file:///etc/passwd", "refusing file: URL 'file:///etc/passwd'"),
        ("ftp://127.0.0.1/feed.xml", "refusing ftp: URL 'ftp://127.0.0.1/feed.xml'"),
        ("gopher://127.0.0.1:70/", "refusing gopher: URL 'gopher://127.0.0.1:70/'"),
        ("http://user:secret@127.0.0.1/", "refusing URL with a user name or password"),
        ("http:///feed.xml", "not a valid URL: 'http:///feed.xml' has no host"),
    ],
)
@pytest.mark.parametrize("trusted", [True, False])
async def test_non_http_urls_are_refused_even_when_trusted(url: str, error: str, trusted: bool) -> None:
    result = await fetch_once(url, trusted=trusted)

    assert result.outcome == "error"
    assert result.error is not None
    assert result.error.startswith(error)


async def test_redirect_to_a_file_url_is_refused(feed_server: FixtureServer) -> None:
    url = feed_server.add("/feed.xml", redirect("file:///etc/passwd", 302))

    result = await fetch_once(url)

    assert result.outcome == "error"
    assert result.error is not None
    assert result.error.startswith("refusing file: URL")


async def test_fetch_outside_the_context_manager_is_a_bug() -> None:
    fetcher = Fetcher(settings(), allow_private=True)

    with pytest.raises(RuntimeError):
        await fetcher.fetch("http://127.0.0.1/")


async def test_an_address_that_refuses_falls_back_to_the_next_one(
    feed_server: FixtureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    system_getaddrinfo = socket.getaddrinfo

    def two_addresses(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "feeds.twice.test":
            return system_getaddrinfo(host, port, *args, **kwargs)
        # Nothing listens on 127.0.0.3: refused; then the fixture server on 127.0.0.1.
        return [
            *system_getaddrinfo("127.0.0.3", port, *args, **kwargs),
            *system_getaddrinfo("127.0.0.1", port, *args, **kwargs),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
    feed_server.add("/feed.xml", static(RSS))

    result = await fetch_once(f"http://feeds.twice.test:{feed_server.port}/feed.xml", trusted=True)

    assert result.outcome == "ok" and result.body == RSS


def test_address_families_alternate_from_the_resolvers_first() -> None:
    addresses = ["2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2", "192.0.2.3"]

    assert netguard._interleave_families(addresses) == [
        "2001:db8::1",
        "192.0.2.1",
        "2001:db8::2",
        "192.0.2.2",
        "192.0.2.3",
    ]
    assert netguard._interleave_families(["192.0.2.1", "2001:db8::1"]) == ["192.0.2.1", "2001:db8::1"]
