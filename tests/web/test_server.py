"""`flarestart serve` against slow, idle and too many clients: real sockets on loopback, the
server configured as serve configures it, with short timeouts from the settings."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack

import httpx
import pytest

from bot.config import Settings
from bot.store.subscribers import SubscriberStore
from bot.web.app import create_app
from tests.web.conftest import Web, running

HEADER_TIMEOUT = 1.5
SLOW_CLIENTS = 300
RESET = b"(reset)"


def limited(settings: Settings, **web: object) -> Settings:
    return settings.model_copy(update={"web": settings.web.model_copy(update=web)})


@pytest.fixture
def slow_settings(web_settings: Settings) -> Settings:
    return limited(
        web_settings, header_timeout=HEADER_TIMEOUT, body_timeout=HEADER_TIMEOUT, keepalive_timeout=1
    )


def address(url: str) -> tuple[str, int]:
    parsed = httpx.URL(url)
    assert parsed.host and parsed.port
    return parsed.host, parsed.port


def read_until_closed(sock: socket.socket, *, within: float) -> bytes:
    """Everything the server sends until it closes the connection; fails after `within` seconds.
    A reset counts as closed: bytes a client sends after the server closed are answered with one,
    and it may overtake what the server wrote last."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        return received or RESET
    return received


class Trickle:
    """Sends one more header byte on each socket every 0.2 s, as a slowloris client does: the
    connections are never idle, they just never finish their headers."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self.sockets = sockets
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        alive = list(self.sockets)
        while alive and not self.stop.wait(0.2):
            for sock in list(alive):
                try:
                    sock.send(b"x")
                except OSError:  # closed by the server: that is the point
                    alive.remove(sock)

    def __enter__(self) -> Trickle:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def test_healthz_answers_under_300_slow_clients_and_they_are_closed_after_the_header_timeout(
    slow_settings: Settings,
) -> None:
    app = create_app(slow_settings)
    with running(app, slow_settings.web) as url, ExitStack() as stack:
        host, port = address(url)
        opened = time.monotonic()
        slow = []
        for _ in range(SLOW_CLIENTS):
            sock = stack.enter_context(socket.create_connection((host, port), timeout=5))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: flarestart.example\r\nX-Slow: ")
            slow.append(sock)

        with Trickle(slow):
            asked = time.monotonic()
            health = httpx.get(f"{url}/healthz", timeout=5)
            answered_in = time.monotonic() - asked
            replies = [read_until_closed(sock, within=HEADER_TIMEOUT + 5) for sock in slow]
            all_closed_after = time.monotonic() - opened

    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert answered_in < 2.0
    assert all(reply.startswith(b"HTTP/1.1 408 ") or reply == RESET for reply in replies)
    assert any(reply.startswith(b"HTTP/1.1 408 ") for reply in replies)
    # Closed by the deadline, not before it (the trickle kept them busy) and not much after it.
    assert HEADER_TIMEOUT * 0.9 <= all_closed_after < HEADER_TIMEOUT + 4


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(slow_settings: Settings) -> None:
    with (
        running(create_app(slow_settings), slow_settings.web) as url,
        socket.create_connection(address(url), timeout=5) as idle,
    ):
        started = time.monotonic()
        reply = read_until_closed(idle, within=HEADER_TIMEOUT + 3)
        waited = time.monotonic() - started

    assert reply.startswith(b"HTTP/1.1 408 ")
    assert HEADER_TIMEOUT * 0.9 <= waited < HEADER_TIMEOUT + 2


def test_a_slow_body_is_cut_off_with_one_log_line_and_changes_nothing(
    slow_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = create_app(slow_settings)
    with running(app, slow_settings.web) as url:
        web = Web(app, httpx.Client(base_url=url), SubscriberStore(app.state.store.engine))
        subscriber = web.add()
        with socket.create_connection(address(url), timeout=5) as sock:
            sock.sendall(
                f"POST /u/{web.token('unsubscribe', subscriber)} HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
                "List-Unsubscribe=".encode()
            )
            started = time.monotonic()
            reply = read_until_closed(sock, within=HEADER_TIMEOUT + 3)
            waited = time.monotonic() - started
        web.client.close()
        status = web.get(subscriber).status

    assert reply.startswith(b"HTTP/1.1 408 ")
    assert HEADER_TIMEOUT * 0.9 <= waited < HEADER_TIMEOUT + 2
    assert status == "active"
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a client that went away"
    assert [r.getMessage() for r in caplog.records if r.name.startswith("bot.web")].count(
        "closed a slow connection"
    ) == 1


def test_a_kept_alive_connection_is_closed_when_idle(slow_settings: Settings) -> None:
    with (
        running(create_app(slow_settings), slow_settings.web) as url,
        socket.create_connection(address(url), timeout=5) as sock,
    ):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        reply = read_until_closed(sock, within=5)
        waited = time.monotonic() - started

    assert reply.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in reply
    assert b"408" not in reply  # idle after a response is keep-alive's business, not a slow request
    assert 0.9 <= waited < 3


def test_slow_headers_of_a_second_request_on_a_kept_alive_connection_are_cut_off_too(
    slow_settings: Settings,
) -> None:
    with (
        running(create_app(slow_settings), slow_settings.web) as url,
        socket.create_connection(address(url), timeout=5) as sock,
    ):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b'"database":"ok"}' not in first:
            first += sock.recv(4096)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and the rest never comes
        started = time.monotonic()
        reply = read_until_closed(sock, within=HEADER_TIMEOUT + 3)
        waited = time.monotonic() - started

    assert first.startswith(b"HTTP/1.1 200 ")
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert HEADER_TIMEOUT * 0.9 <= waited < HEADER_TIMEOUT + 2


def test_headers_growing_past_the_size_limit_get_a_400(web_settings: Settings) -> None:
    """h11 holds at most max_header_bytes of a request it cannot parse yet: a client that keeps
    sending header lines is stopped there, not at the header deadline."""
    small = limited(web_settings, max_header_bytes=2048)
    with (
        running(create_app(small), small.web) as url,
        socket.create_connection(address(url), timeout=5) as sock,
    ):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096)
        reply = read_until_closed(sock, within=5)

    assert reply.startswith(b"HTTP/1.1 400 ") or reply == RESET


def test_connections_past_the_cap_get_a_503_and_are_closed(web_settings: Settings) -> None:
    capped = limited(web_settings, max_connections=5)
    with running(create_app(capped), capped.web) as url, ExitStack() as stack:
        held = [stack.enter_context(socket.create_connection(address(url), timeout=5)) for _ in range(5)]
        time.sleep(0.2)  # the server has accepted them all
        with socket.create_connection(address(url), timeout=5) as extra:
            refused = read_until_closed(extra, within=3)
        for sock in held:
            sock.close()
        time.sleep(0.2)
        after = httpx.get(f"{url}/healthz", timeout=5)

    assert refused.startswith(b"HTTP/1.1 503 ") and b"Too many connections" in refused
    assert after.status_code == 200


def test_serve_raises_a_low_open_files_limit_toward_the_hard_limit() -> None:
    script = """
import json, logging, resource
from bot.web.server import raise_open_files_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
result = raise_open_files_limit(1256)
print(json.dumps([result.before, result.after, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after, now, hard = json.loads(out.stdout)

    expected = 1256 if hard in (-1,) or hard >= 1256 else hard
    assert (before, after, now) == (256, expected, expected)


def test_a_client_that_hangs_up_mid_post_is_one_log_line(
    web_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = create_app(web_settings)
    with running(app, web_settings.web) as url:
        web = Web(app, httpx.Client(base_url=url), SubscriberStore(app.state.store.engine))
        subscriber = web.add()
        with socket.create_connection(address(url), timeout=5) as sock:
            sock.sendall(
                f"POST /u/{web.token('unsubscribe', subscriber)} HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 100\r\n\r\nList-Unsubscribe=".encode()
            )
            time.sleep(0.3)  # the app is reading the body
        deadline = time.monotonic() + 5
        while "the client went away" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        web.client.close()
        status = web.get(subscriber).status

    gone = [r for r in caplog.records if r.getMessage().startswith("the client went away")]
    assert len(gone) == 1 and gone[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert status == "active"
