"""A loopback Socket Mode endpoint that behaves like Slack's, for `flarestart slack` in tests.

Slack's Socket Mode: the app asks `apps.connections.open` (with its app-level token) for a
WebSocket URL, connects, and gets `{"type": "hello"}`; Slack then sends envelopes
(`{"envelope_id", "type": "slash_commands", "payload": {…the command's form fields…},
"accepts_response_payload": true}`) and the app must acknowledge each within 3 seconds with
`{"envelope_id": …}`, optionally carrying the answer as `payload`. Unacknowledged envelopes are
sent again by Slack; here the test sees the missing ack instead.

    with FakeSlack() as slack, FakeSlackSocket(slack) as socket:
        ...  # start the Socket Mode client with socket.app_token and base_url=slack.api_url
        socket.wait_connected()
        ack = socket.send_command({"command": "/flarestart", "text": "status", …})

The server is aiohttp's (already a dependency through slack-sdk's async clients), run on its own
event loop in a background thread, bound to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from concurrent.futures import Future
from typing import Any, Self

from aiohttp import WSMsgType, web

from bot.testing.fake_slack import FakeSlack

ACK_DEADLINE = 3.0  # seconds Slack waits for an envelope's acknowledgement


class FakeSlackSocket:
    def __init__(self, slack: FakeSlack, *, app_token: str = "xapp-1-A0FAKE-1-test") -> None:
        self.slack = slack
        self.app_token = app_token
        self.acks: list[dict[str, Any]] = []  # every acknowledgement received, in order
        self.ack_seconds: list[float] = []  # how long each took
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._connected = threading.Event()
        self.port = 0

    # lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._start()).result(timeout=10)
        self.slack.app_tokens.add(self.app_token)
        self.slack.socket_url = f"ws://127.0.0.1:{self.port}/link/?ticket={secrets.token_hex(8)}"
        return self

    def stop(self) -> None:
        self._call(self._stop()).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # what tests do ------------------------------------------------------------------------

    def wait_connected(self, timeout: float = 10.0) -> None:
        if not self._connected.wait(timeout):
            raise TimeoutError("no Socket Mode client connected")

    def send_command(self, fields: dict[str, Any], *, timeout: float = ACK_DEADLINE) -> dict[str, Any]:
        """Send a slash command envelope; the acknowledgement, or TimeoutError after `timeout`."""
        ack: dict[str, Any] = self._call(self._send_command(fields, timeout)).result(timeout=timeout + 5)
        return ack

    def disconnect_all(self) -> None:
        """Close every connection as Slack does when it refreshes them (the client reconnects)."""
        self._call(self._close_sockets()).result(timeout=10)

    # the server ---------------------------------------------------------------------------

    def _call(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/link/", self._serve)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _stop(self) -> None:
        await self._close_sockets()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _close_sockets(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        self._sockets.clear()
        self._connected.clear()

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._sockets.append(socket)
        hello = {
            "type": "hello",
            "num_connections": len(self._sockets),
            "connection_info": {"app_id": "A0FAKE"},
            "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
        }
        await socket.send_str(json.dumps(hello))
        self._connected.set()
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                ack = json.loads(message.data)
            except ValueError:
                continue
            waiting = self._waiting.pop(str(ack.get("envelope_id")), None) if isinstance(ack, dict) else None
            if waiting is not None and not waiting.done():
                waiting.set_result(ack)
        if socket in self._sockets:
            self._sockets.remove(socket)
        return socket

    async def _send_command(self, fields: dict[str, Any], timeout: float) -> dict[str, Any]:
        if not self._sockets:
            raise ConnectionError("no Socket Mode client is connected")
        envelope_id = secrets.token_hex(8)
        acked: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._waiting[envelope_id] = acked
        envelope = {
            "envelope_id": envelope_id,
            "type": "slash_commands",
            "payload": {"token": "deprecated-verification-token", "team_id": "T0FAKE", **fields},
            "accepts_response_payload": True,
        }
        started = time.monotonic()
        await self._sockets[-1].send_str(json.dumps(envelope))
        try:
            ack = await asyncio.wait_for(acked, timeout)
        finally:
            self._waiting.pop(envelope_id, None)
        self.ack_seconds.append(time.monotonic() - started)
        self.acks.append(ack)
        return ack
