"""Socket Mode end to end on loopback: slack-sdk's client asks the fake Slack for a WebSocket
(`apps.connections.open`), the fake sends slash-command envelopes, and the acknowledgements carry
the same answers as the HTTP door."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.app import FlareStart
from bot.app.chat import ChatCommands
from bot.chat.slack import SlackCommandHandler
from bot.chat.slack_socket import run_socket_mode
from bot.config import Settings
from bot.errors import ConfigError
from bot.testing.fake_slack import FakeSlack, seen
from bot.testing.fake_slack_socket import FakeSlackSocket
from tests.chat.conftest import NOW, stock_python_story

CHANNEL = "team@example.com"


class Running:
    """run_socket_mode on its own event loop in a thread, stopped at the end."""

    def __init__(self, handler: SlackCommandHandler, *, app_token: str, api_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.error: BaseException | None = None

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(
                    run_socket_mode(handler, app_token=app_token, api_url=api_url, stop=self.stop)
                )
            except BaseException as exc:  # the test reports it
                self.error = exc
            finally:
                self.loop.close()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=20)
        assert not self.thread.is_alive() and self.error is None, self.error


@pytest.fixture
def app(settings: Settings) -> Iterator[FlareStart]:
    moment = datetime.fromtimestamp(NOW, UTC)
    with FlareStart(settings, seed=False, clock=lambda: moment) as flarestart:
        yield flarestart


def test_slash_commands_over_socket_mode_are_acknowledged_with_their_answer(app: FlareStart) -> None:
    stock_python_story(app)
    with FakeSlack() as slack, FakeSlackSocket(slack) as socket:
        handler = SlackCommandHandler(
            ChatCommands(app, prefix="email", origin="slack"), stand_in=slack.api_url
        )
        running = Running(handler, app_token=socket.app_token, api_url=slack.api_url)
        try:
            socket.wait_connected()
            fields = {
                "command": "/flarestart",
                "channel_id": CHANNEL,
                "channel_name": "team",
                "user_id": "U0ADA",
            }
            subscribed = socket.send_command({**fields, "text": "subscribe python"})
            url = slack.add_response_url("C0TEAM")
            preview = socket.send_command({**fields, "text": "preview", "response_url": url})
            deadline = time.monotonic() + 10
            while not slack.responses(url) and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            running.close()
    assert subscribed["payload"]["response_type"] == "in_channel"
    assert "now gets a FlareStart digest" in seen(subscribed["payload"]).text
    assert app.subscriber(CHANNEL).subscriber.topics == {"python": 1.0}
    assert "Composing" in seen(preview["payload"]).text
    assert max(socket.ack_seconds) < 3.0  # Slack's deadline for an acknowledgement
    [posted] = slack.responses(url)
    assert seen(posted).links == (("https://py.example/a1", "Python 3.15 released"),)
    assert ("apps.connections.open", "") in slack.requests


def test_a_wrong_app_token_never_connects(app: FlareStart) -> None:
    with FakeSlack() as slack, FakeSlackSocket(slack) as socket:
        handler = SlackCommandHandler(ChatCommands(app, prefix="email"), stand_in=slack.api_url)

        async def attempt() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(
                run_socket_mode(handler, app_token="xapp-wrong", api_url=slack.api_url, stop=stop)
            )
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.wait_for(task, 10)

        with pytest.raises(ConfigError, match=r"Slack refused SLACK_APP_TOKEN \(invalid_auth\)"):
            asyncio.run(attempt())
        with pytest.raises(TimeoutError):
            socket.wait_connected(timeout=0.1)
