"""How `flarestart serve` runs the web app: uvicorn's h11 protocol with a deadline on every client.

uvicorn only bounds the wait between requests (keep-alive). A connection that sends nothing, or
sends its headers or body a byte at a time, would otherwise hold a socket and a file descriptor
for ever, and a few hundred of them starve the server (slowloris). Here each connection has a
deadline for what it owes us next:

    connected, or the first bytes of a request   the headers within web.header_timeout
    headers read, body still coming              the body within web.body_timeout
    idle after a response                        web.keepalive_timeout (uvicorn's own timer)

A client that misses its deadline gets a 408 and is closed. The server also holds at most
web.max_connections at once: one more is answered 503 and closed at once, so the descriptors left
keep /healthz answering. A reverse proxy in front does all this in production (README: Running
behind a reverse proxy); the guard keeps a directly exposed `serve` alive too.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from bot.config import WebSettings

log = logging.getLogger(__name__)

Phase = Literal["headers", "body"]
# Descriptors kept for everything that is not a client: the database pool, log files, templates.
RESERVED_FDS = 256
# Refusals at the connection cap are logged at most this often (a flood would flood the log).
REFUSAL_LOG_SECONDS = 10.0


def _plain_response(status: str, text: str, *headers: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, written before h11 saw a request."""
    body = (text + "\n").encode("ascii")
    lines = [
        f"HTTP/1.1 {status}",
        "content-type: text/plain; charset=utf-8",
        f"content-length: {len(body)}",
        "connection: close",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


_TIMED_OUT = _plain_response("408 Request Timeout", "The request took too long.")
_BUSY = _plain_response("503 Service Unavailable", "Too many connections; try again.", "retry-after: 5")


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """What one client may take of the server (from the web.* settings)."""

    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def of(cls, settings: WebSettings, *, max_connections: int | None = None) -> ClientLimits:
        return cls(
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            max_connections=max_connections or settings.max_connections,
        )


class _Refusals:
    """Counts connections refused at the cap, and logs them once in a while."""

    def __init__(self) -> None:
        self.count = 0
        self.logged_at = float("-inf")

    def note(self, limit: int) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= REFUSAL_LOG_SECONDS:
            log.warning(
                "refused connections: the server holds its most at once",
                extra={"refused": self.count, "max_connections": limit},
            )
            self.logged_at, self.count = now, 0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on the headers and body of each request and a cap on
    connections. Use `guarded_protocol(limits)`, which binds the limits."""

    limits: ClassVar[ClientLimits]
    refusals: ClassVar[_Refusals]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: Phase | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            self.transport = transport
            self.refusals.note(self.limits.max_connections)
            transport.write(_BUSY)
            transport.close()
            return
        super().connection_made(transport)
        self._arm("headers")  # a client that connects and says nothing is a slow client too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._phase is None and self.conn.their_state is h11.IDLE:
            self._arm("headers")  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body")
        elif state is not h11.IDLE or self._phase == "body":
            # The whole request is in (the app has it), or it was and the next cycle began:
            # between requests the keep-alive timer watches, and the next first byte re-arms.
            self._disarm()

    def _arm(self, phase: Phase) -> None:
        self._disarm()
        seconds = self.limits.header_timeout if phase == "headers" else self.limits.body_timeout
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expire, phase, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, None

    def _expire(self, phase: Phase, seconds: float) -> None:
        self._deadline, self._phase = None, None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
        log.info(
            "closed a slow connection",
            extra={"client": client, "waiting_for": phase, "timeout_seconds": seconds},
        )
        cycle = self.cycle
        in_request = cycle is not None and not cycle.response_complete
        if cycle is None or not cycle.response_started or not in_request:
            self.transport.write(_TIMED_OUT)
        if cycle is not None and in_request:
            # The app may be waiting for the body: it reads a disconnect, and what it still sends
            # is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def guarded_protocol(limits: ClientLimits) -> type[GuardedH11Protocol]:
    """A GuardedH11Protocol class bound to `limits` (uvicorn builds one protocol per connection)."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"limits": limits, "refusals": _Refusals(), "__module__": __name__},
    )


def server_config(
    app: Any,
    settings: WebSettings,
    *,
    host: str,
    port: int,
    max_connections: int | None = None,
    **options: Any,
) -> uvicorn.Config:
    """The uvicorn configuration of `flarestart serve` (tests serve through it too)."""
    limits = ClientLimits.of(settings, max_connections=max_connections)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits),
        timeout_keep_alive=settings.keepalive_timeout,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        log_config=None,  # our logging, set up by the CLI
        access_log=False,  # access lines would log link tokens; the app logs what happened instead
        server_header=False,
        **options,
    )


@dataclass(frozen=True, slots=True)
class OpenFilesLimit:
    before: int
    after: int
    hard: int | None  # None: unlimited


def raise_open_files_limit(wanted: int) -> OpenFilesLimit:
    """Raise this process's soft limit on open files to `wanted`, or as near as the hard limit
    allows (an unprivileged process may go up to the hard limit). Each client holds a descriptor;
    the common default of 1024 is what made 300 slow clients fail with "Too many open files"."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard_limit = None if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard_limit is None else min(wanted, hard_limit)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (ValueError, OSError) as exc:
                log.warning(
                    "could not raise the open files limit", extra={"wanted": target, "error": str(exc)}
                )
            else:
                log.info(
                    "raised the open files limit", extra={"before": soft, "after": target, "hard": hard_limit}
                )
                return OpenFilesLimit(before=soft, after=target, hard=hard_limit)
    return OpenFilesLimit(before=soft, after=soft, hard=hard_limit)


def connections_allowed(settings: WebSettings) -> int:
    """web.max_connections, after raising the open files limit for it; lower (and logged) when the
    limit cannot hold that many clients and the descriptors the process needs besides."""
    limit = raise_open_files_limit(settings.max_connections + RESERVED_FDS)
    if limit.after == resource.RLIM_INFINITY:
        return settings.max_connections
    room = max(limit.after - RESERVED_FDS, 1)
    if room < settings.max_connections:
        log.warning(
            "web.max_connections is more than the open files limit allows; holding fewer",
            extra={"max_connections": settings.max_connections, "allowed": room, "open_files": limit.after},
        )
        return room
    return settings.max_connections


__all__ = [
    "ClientLimits",
    "GuardedH11Protocol",
    "OpenFilesLimit",
    "connections_allowed",
    "guarded_protocol",
    "raise_open_files_limit",
    "server_config",
]
