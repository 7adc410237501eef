"""Fetch feed URLs like Miniflux and lemon24/reader do: our own HTTP, polite and hard to abuse.

One `Fetcher` owns one shared httpx.AsyncClient (keep-alive reused across feeds) and turns every
conditional GET into a `FetchResult`. It never raises for network or HTTP trouble: each failure
becomes `outcome="error"` with one line a person can read.

    async with Fetcher(settings.fetch, allow_private=settings.allow_private_urls) as fetcher:
        result = await fetcher.fetch(url, etag=stored_etag, last_modified=stored_modified)

What it honours: a global and a per-host concurrency limit; connect/read timeouts and a total
deadline; a body size cap counted on decompressed bytes while streaming (compression bombs stop
at the cap); ETag / Last-Modified validators (304 → "not_modified"); redirects followed by hand
so a 301/308 chain can update the stored URL; 410 → "gone"; Retry-After on 429/503;
Cache-Control max-age / Expires. Untrusted sources also go through `netguard` at every hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import os
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, Protocol

import httpcore

from bot.config import FetchSettings
from bot.errors import UnsafeURLError
from bot.sources import netguard
from bot.sources.httpclient import httpx
from bot.sources.types import FetchOutcome, FetchResult

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECTS = frozenset({301, 308})
RETRY_AFTER_STATUSES = frozenset({429, 503})
_PIECE = 64 * 1024  # largest piece a decoder hands out at once: memory stays flat
_REDIRECT_BODY_DRAIN = 64 * 1024  # read small redirect bodies so the connection can be reused
RAMP_START = 4  # requests at once to a host not yet answered (see _HostLimiter)


class Fetcher:
    """Conditional GETs of feed URLs through shared, limited, guarded HTTP clients.

    Every connection goes through netguard.GuardedBackend, which resolves the host once, checks
    the addresses and connects to one of them. Untrusted sources get `address_policy` (public
    addresses only); trusted ones netguard.trusted_blocked_reason (no link-local or cloud
    metadata address). `allow_private=True` lifts both (a home lab, tests). `address_policy`
    exists for deployments with a vetted internal range and for tests. The two kinds of source
    use two clients, so a connection checked under the trusted rules never carries an untrusted
    request.
    """

    def __init__(
        self,
        settings: FetchSettings,
        *,
        allow_private: bool,
        address_policy: netguard.AddressPolicy = netguard.blocked_reason,
    ) -> None:
        self.settings = settings
        self.allow_private = allow_private
        self._policy = address_policy
        self._clients: dict[bool, httpx.AsyncClient] = {}  # guarded → its client
        self._global = asyncio.Semaphore(settings.concurrency)
        self._hosts = _HostLimiter(settings.per_host)
        self._pool_entry = _PoolEntry()
        self._decoders = _bounded_decoders()

    async def __aenter__(self) -> Fetcher:
        trusted_policy = None if self.allow_private else netguard.trusted_blocked_reason
        self._clients = {False: self._client_for(trusted_policy)}
        if not self.allow_private:
            self._clients[True] = self._client_for(self._policy)
        return self

    def _client_for(self, policy: netguard.AddressPolicy | None) -> httpx.AsyncClient:
        settings = self.settings
        transport = _GuardedTransport(
            netguard.GuardedBackend(policy),
            limits=httpx.Limits(
                max_connections=settings.concurrency,
                max_keepalive_connections=settings.concurrency,
                keepalive_expiry=30.0,
            ),
        )
        return httpx.AsyncClient(
            transport=transport,
            headers={
                "User-Agent": settings.user_agent,
                "Accept": ACCEPT,
                "Accept-Encoding": ", ".join(c for c in self._decoders if c != "x-gzip"),
            },
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.connect_timeout,
            ),
            follow_redirects=False,
            # No proxies or certificates from the environment: what the guard checks is what
            # we connect to.
            trust_env=False,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        trusted: bool = True,
    ) -> FetchResult:
        """GET `url` with the stored validators; never raises for network or HTTP problems.

        `trusted` sources (added by an operator) skip the private-address check; untrusted
        ones are checked before the request and after every redirect hop.
        """
        if not self._clients:
            raise RuntimeError("Fetcher used outside 'async with'")
        loop = asyncio.get_running_loop()
        attempt = _Attempt(
            url=url,
            etag=etag,
            last_modified=last_modified,
            guarded=not trusted and not self.allow_private,
        )
        client = self._clients[attempt.guarded]
        async with self._global:
            # The deadline starts once we hold a slot: waiting in line is not the host's fault.
            started = loop.time()
            try:
                async with asyncio.timeout(self.settings.total_timeout):
                    result = await self._follow(client, attempt)
            except TimeoutError:
                result = attempt.error(
                    f"timed out after {_seconds(self.settings.total_timeout)} s (total deadline)",
                    status=attempt.status,
                )
            elapsed = loop.time() - started
        result = replace(result, elapsed=round(elapsed, 6))
        _log(result)
        return result

    async def _follow(self, client: httpx.AsyncClient, attempt: _Attempt) -> FetchResult:
        current = attempt.url
        seen = {current}
        for _hop in range(MAX_REDIRECTS + 1):
            attempt.status = 0
            try:
                # The addresses are checked when a connection opens (netguard.GuardedBackend).
                target = httpx.URL(netguard.check_url(current))
                async with self._hosts.slot(target.host):
                    step = await self._request(client, attempt, target)
            except UnsafeURLError as exc:
                return attempt.error(str(exc), status=attempt.status)
            except httpx.HTTPError as exc:
                message = _describe_http_error(exc, current, self.settings)
                return attempt.error(message, status=attempt.status)
            except OSError as exc:
                return attempt.error(f"cannot fetch {current}: {_os_reason(exc)}", status=attempt.status)
            if isinstance(step, FetchResult):
                return step
            if step in seen:
                return attempt.error(f"redirect loop back to {step}", status=attempt.status)
            seen.add(step)
            current = step
        return attempt.error(
            f"too many redirects (more than {MAX_REDIRECTS}), last to {current}",
            status=attempt.status,
        )

    async def _request(
        self, client: httpx.AsyncClient, attempt: _Attempt, target: httpx.URL
    ) -> FetchResult | str:
        """One hop: a FetchResult when done, or the absolute URL to go to next."""
        async with (
            self._pool_entry.ticket() as trace,
            client.stream(
                "GET", target, headers=attempt.conditional_headers(), extensions={"trace": trace}
            ) as response,
        ):
            attempt.status = response.status_code
            attempt.final_url = str(response.url)
            status = response.status_code
            location = response.headers.get("Location")
            if status in REDIRECT_STATUSES and location:
                try:
                    next_url = str(target.join(location.strip()))
                except (httpx.InvalidURL, ValueError):
                    return attempt.done(
                        "error", response, error=f"HTTP {status} to an invalid URL {location!r}"
                    )
                await _drain(response)
                return attempt.redirect(status, next_url)
            if status == 304:
                # No body, but reading to its end hands the connection back to the pool:
                # closing an unread response closes the connection (a re-poll would open one
                # connection per feed).
                await _drain_quietly(response)
                return attempt.done("not_modified", response)
            if 200 <= status < 300:
                body = await self._read_body(response, attempt)
                if isinstance(body, FetchResult):
                    return body
                return attempt.done("ok", response, body=body)
            await _drain_if_small(response)  # an error page: keep the connection if that is cheap
            if status == 410:
                return attempt.done("gone", response, error=f"HTTP 410 Gone: {attempt.final_url} was removed")
            retry_after = parse_retry_after(response.headers) if status in RETRY_AFTER_STATUSES else None
            return attempt.done(
                "error",
                response,
                error=f"HTTP {status} {_reason(response)}",
                retry_after=retry_after,
            )

    async def _read_body(self, response: httpx.Response, attempt: _Attempt) -> bytes | FetchResult:
        cap = self.settings.max_body_bytes
        too_big = f"body larger than {_size(cap)}"
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            return attempt.done("error", response, error=too_big + f" ({declared} bytes declared)")
        codings = _content_codings(response.headers)
        unknown = [c for c in codings if c not in self._decoders]
        if unknown:
            return attempt.done("error", response, error=f"unsupported Content-Encoding {unknown[0]!r}")
        decoder = _Chain([self._decoders[c]() for c in codings])
        parts: list[bytes] = []
        size = 0
        try:
            async for raw in response.aiter_raw():
                # Decompressed bytes count against the cap, a piece at a time: a bomb stops here.
                for piece in decoder.decode(raw):
                    size += len(piece)
                    if size > cap:
                        return attempt.done("error", response, error=too_big)
                    parts.append(piece)
        except _DecodeError as exc:
            return attempt.done("error", response, error=str(exc))
        return b"".join(parts)


@dataclass
class _Attempt:
    """What one fetch has learned so far, hop after hop."""

    url: str
    etag: str | None
    last_modified: str | None
    guarded: bool
    status: int = 0
    final_url: str | None = None
    moved_to: str | None = None
    permanent: bool = True  # every hop so far was a 301/308

    def conditional_headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers

    def redirect(self, status: int, location: str) -> str:
        if status in PERMANENT_REDIRECTS and self.permanent:
            self.moved_to = location
        else:
            self.permanent = False
        return location

    def done(
        self,
        outcome: FetchOutcome,
        response: httpx.Response,
        *,
        body: bytes = b"",
        error: str | None = None,
        retry_after: float | None = None,
    ) -> FetchResult:
        headers = response.headers
        fresh = outcome in ("ok", "not_modified")
        return FetchResult(
            url=self.url,
            outcome=outcome,
            status=response.status_code,
            final_url=str(response.url),
            # A move only counts when the new place actually serves the feed.
            moved_to=self.moved_to if fresh and self.moved_to != self.url else None,
            body=body,
            content_type=headers.get("Content-Type"),
            # A 304 may leave the validators out: keep the ones that still hold.
            etag=headers.get("ETag") or (self.etag if outcome == "not_modified" else None),
            last_modified=headers.get("Last-Modified")
            or (self.last_modified if outcome == "not_modified" else None),
            max_age=parse_max_age(headers) if fresh else None,
            retry_after=retry_after,
            error=error,
        )

    def error(self, message: str, *, status: int = 0) -> FetchResult:
        return FetchResult(
            url=self.url,
            outcome="error",
            status=status,
            final_url=self.final_url,
            error=message,
        )


class _HostLimiter:
    """One semaphore per host, forgotten again when nobody uses it.

    A host starts with at most RAMP_START requests at once, and takes one more each time a
    request to it is answered, up to `per_host` (a slow start). With a high per-host limit a
    burst would otherwise open that many connections in the same millisecond, and a small
    server's listen queue drops the excess: each dropped SYN costs a one-second retransmit.
    Keep-alive connections then carry the rest.
    """

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._hosts: dict[str, _Host] = {}

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        key = host.lower()
        entry = self._hosts.get(key)
        if entry is None:
            start = min(self._per_host, RAMP_START)
            entry = self._hosts[key] = _Host(asyncio.Semaphore(start), start)
        entry.users += 1
        try:
            async with entry.semaphore:
                yield
            if entry.capacity < self._per_host:  # answered: the host can take one more at once
                entry.capacity += 1
                entry.semaphore.release()
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._hosts[key]


class _PoolEntry:
    """Lets requests into the connection pool one at a time, each until it holds a connection.

    httpcore 1.0 hands an idle connection to a queued request without marking it taken, so
    requests entering the pool together are all given the same connection: all but one fail
    with ConnectionNotAvailable and go round again, and every round scans every pooled
    connection (encode/httpcore#1035). Under load that was 3-4 rounds per request, most of
    the fetch's CPU. The request's trace hook tells us when it holds its connection: its first
    event is either opening a new connection (one nobody else is given) or sending on a
    connection already marked busy. Only that short wait is serialized, never the transfer.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def ticket(self) -> AsyncIterator[Callable[[str, dict[str, Any]], Awaitable[None]]]:
        await self._lock.acquire()
        held = True

        def leave() -> None:
            nonlocal held
            if held:
                held = False
                self._lock.release()

        async def trace(event: str, info: dict[str, Any]) -> None:
            leave()

        try:
            yield trace
        finally:
            leave()


@dataclass
class _Host:
    semaphore: asyncio.Semaphore
    capacity: int  # requests allowed at once now: grows from RAMP_START to per_host
    users: int = 0  # requests holding or waiting for a slot


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose connections open through `backend`.

    httpx takes no network backend, so the pool it builds is replaced by the same pool with one.
    """

    def __init__(self, backend: httpcore.AsyncNetworkBackend, *, limits: httpx.Limits) -> None:
        super().__init__(verify=_ssl_context(), trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default context (certifi's CAs, nothing from the environment), built once: loading
    the CA bundle costs ~20 ms, once per Fetcher otherwise (every fetch run, every daemon cycle)."""
    return httpx.create_ssl_context(trust_env=False)


# --- response headers -----------------------------------------------------------------------


def parse_retry_after(headers: httpx.Headers, *, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or HTTP date), or None."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    when = _http_date(value)
    if when is None:
        return None
    reference = _http_date(headers.get("Date", "")) or now or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def parse_max_age(headers: httpx.Headers, *, now: datetime | None = None) -> float | None:
    """Seconds the body stays fresh: Cache-Control max-age, else Expires minus Date.

    no-store / no-cache mean no freshness at all; s-maxage is for shared caches and ignored.
    """
    directives: dict[str, str] = {}
    for item in headers.get_list("Cache-Control", split_commas=True):
        name, _, value = item.strip().partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return None
    if "max-age" in directives:
        value = directives["max-age"]
        return float(value) if value.isdigit() else None
    expires = headers.get("Expires")
    if not expires:
        return None
    when = _http_date(expires)
    if when is None:  # "0", "-1": already expired
        return None
    reference = _http_date(headers.get("Date", "")) or now or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def _http_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _content_codings(headers: httpx.Headers) -> list[str]:
    codings = [c.strip().lower() for c in headers.get_list("Content-Encoding", split_commas=True)]
    return [c for c in codings if c and c != "identity"]


# --- decompression with a bounded output ---------------------------------------------------


class _DecodeError(Exception):
    pass


class _Decoder(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]:
        """Undo the coding of `data`, handing out pieces of at most _PIECE bytes."""
        ...


class _ZlibDecoder:
    """gzip (several members allowed) or deflate (zlib-wrapped, or raw as some servers send)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._wbits = 16 + zlib.MAX_WBITS if name == "gzip" else zlib.MAX_WBITS
        self._inflater = zlib.decompressobj(self._wbits)
        self._may_be_raw = name == "deflate"

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            while True:
                piece = self._decompress(data)
                if piece:
                    yield piece
                data = self._inflater.unconsumed_tail
                if self._inflater.eof:
                    data = self._next_member()
                    if not data:
                        return
                elif not data and len(piece) < _PIECE:
                    return
                # Otherwise output is still waiting: ask again (with no new input if need be).
        except zlib.error as exc:
            raise _DecodeError(f"could not decompress the body ({self._name}): {exc}") from None

    def _decompress(self, data: bytes) -> bytes:
        try:
            return self._inflater.decompress(data, _PIECE)
        except zlib.error:
            if not self._may_be_raw:
                raise
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._inflater.decompress(data, _PIECE)
        finally:
            self._may_be_raw = False

    def _next_member(self) -> bytes:
        """The next gzip member's bytes; anything else after the end of the stream is ignored."""
        rest: bytes = self._inflater.unused_data
        if self._name == "gzip" and rest.startswith(b"\x1f\x8b"):
            self._inflater = zlib.decompressobj(self._wbits)
            return rest
        return b""


class _BrotliDecoder:
    def __init__(self) -> None:
        self._brotli = _brotli_module()
        self._inflater = self._brotli.Decompressor()

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            piece: bytes = self._inflater.process(data, output_buffer_limit=_PIECE)
            if piece:
                yield piece
            while not self._inflater.can_accept_more_data():
                piece = self._inflater.process(b"", output_buffer_limit=_PIECE)
                if piece:
                    yield piece
        except self._brotli.error as exc:
            raise _DecodeError(f"could not decompress the body (br): {exc}") from None


class _Chain:
    """Content-Encoding lists codings in the order applied; undo them in reverse, lazily."""

    def __init__(self, decoders: list[_Decoder]) -> None:
        self._decoders = list(reversed(decoders))

    def decode(self, data: bytes) -> Iterator[bytes]:
        pieces: Iterator[bytes] = iter((data,))
        for decoder in self._decoders:
            pieces = _through(decoder, pieces)
        return pieces


def _through(decoder: _Decoder, pieces: Iterator[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield from decoder.decode(piece)


def _brotli_module() -> Any:
    # Imported by name: the "brotli" package ships no type information.
    return importlib.import_module("brotli")


def _bounded_decoders() -> dict[str, Callable[[], _Decoder]]:
    """Codings we can undo with a bounded output; brotli only where the library can bound it."""
    decoders: dict[str, Callable[[], _Decoder]] = {
        "gzip": lambda: _ZlibDecoder("gzip"),
        "x-gzip": lambda: _ZlibDecoder("gzip"),
        "deflate": lambda: _ZlibDecoder("deflate"),
    }
    try:
        brotli = _brotli_module()
    except ImportError:
        return decoders
    if hasattr(brotli.Decompressor(), "can_accept_more_data"):  # brotli >= 1.2
        decoders["br"] = _BrotliDecoder
    return decoders


async def _drain(response: httpx.Response) -> None:
    read = 0
    async for raw in response.aiter_raw():
        read += len(raw)
        if read > _REDIRECT_BODY_DRAIN:
            return  # not worth it: closing the connection is cheaper


async def _drain_quietly(response: httpx.Response) -> None:
    """Read a body we do not need, so the connection is reused; trouble only costs the connection."""
    with contextlib.suppress(httpx.HTTPError):
        await _drain(response)


async def _drain_if_small(response: httpx.Response) -> None:
    """`_drain_quietly` when the declared size is small: an error page is not worth a long read."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) <= _REDIRECT_BODY_DRAIN:
        await _drain_quietly(response)


# --- messages for people -------------------------------------------------------------------


def _describe_http_error(exc: httpx.HTTPError, url: str, settings: FetchSettings) -> str:
    host = httpx.URL(url).host
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connection to {host} timed out after {_seconds(settings.connect_timeout)} s"
    if isinstance(exc, httpx.ReadTimeout):
        return f"{host} sent nothing for {_seconds(settings.read_timeout)} s (read timeout)"
    if isinstance(exc, httpx.PoolTimeout):
        return f"no free connection for {host} after {_seconds(settings.connect_timeout)} s"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out talking to {host}"
    if isinstance(exc, httpx.ConnectError):
        reason = _os_reason(exc)
        if "certificate" in reason.lower() or "ssl" in reason.lower():
            return f"TLS handshake with {host} failed: {reason}"
        if reason.startswith("cannot resolve"):
            return f"cannot resolve host {host}"
        return f"cannot connect to {host}: {reason}"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.LocalProtocolError):
        return f"{host} broke the HTTP protocol: {exc}"
    return f"{type(exc).__name__} talking to {host}: {exc}"


def _os_reason(exc: BaseException) -> str:
    """The most specific OS-level reason in an exception chain, e.g. 'connection refused'."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return str(current.reason or current.strerror or current)
        if isinstance(current, OSError) and current.errno is not None:
            if current.errno < 0:  # getaddrinfo's own error numbers
                return "cannot resolve the host name"
            return os.strerror(current.errno).lower()
        current = current.__cause__ or current.__context__
    return str(exc) or type(exc).__name__


def _reason(response: httpx.Response) -> str:
    try:
        return HTTPStatus(response.status_code).phrase
    except ValueError:
        return response.reason_phrase or "(unknown status)"


def _seconds(value: float) -> str:
    return f"{value:g}"


def _size(limit: int) -> str:
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if limit >= factor:
            return f"{limit / factor:g} {unit}"
    return f"{limit} bytes"


def _log(result: FetchResult) -> None:
    # Debug only: callers (ingest, discovery) report outcomes to people with the source's name.
    if not logger.isEnabledFor(logging.DEBUG):
        return
    extra: dict[str, object] = {
        "url": result.url,
        "outcome": result.outcome,
        "status": result.status,
        "elapsed": result.elapsed,
    }
    if result.outcome in ("ok", "not_modified"):
        extra["bytes"] = len(result.body)
        if result.moved_to:
            extra["moved_to"] = result.moved_to
        logger.debug("fetched", extra=extra)
    else:
        logger.debug("fetch failed: %s", result.error, extra=extra)
