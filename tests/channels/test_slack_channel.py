"""The Slack channel of the registry: a digest for a Slack destination, rendered and posted once,
with its parts kept in the database (DatabasePartLog) so that a crash never doubles a part."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.channels.base import OutgoingDigest
from bot.channels.parts import MemoryPartLog
from bot.channels.registry import registry_for
from bot.channels.slack import ChannelPacer
from bot.channels.slack_channel import SlackChannel
from bot.config import Settings, SlackSettings
from bot.digest.slack import SlackRenderer
from bot.digest.view import DigestView, RenderedDigest
from bot.errors import DeliveryPermanentError
from bot.store.parts import DatabasePartLog
from bot.testing.fake_slack import FakeSlack
from tests.digest.test_render import make_item, make_view

TOKEN = "xoxb-channel-test"
CHANNEL = "C0CHANNEL1"
MESSAGE_ID = "<digest-7-2024-05-07@flarestart.test>"


def view_of(parts: int) -> DigestView:
    """A digest view that renders as exactly `parts` Slack messages."""
    renderer = SlackRenderer()
    for count in range(1, 16 * parts + 1):
        view = make_view(items=tuple(make_item(n) for n in range(count)))
        if len(renderer.render(view)) == parts:
            return view
    raise AssertionError(f"no digest of {parts} parts")


def outgoing(address: str = CHANNEL, parts: int = 3) -> OutgoingDigest:
    return OutgoingDigest(
        to_name="Team",
        to_address=address,
        rendered=RenderedDigest("subject", "<p>html</p>", "text", "pre"),
        message_id=MESSAGE_ID,
        unsubscribe_url="https://flarestart.test/u/x",
        period="2024-05-07",
        view=view_of(parts),
    )


def parts_in(slack: FakeSlack, channel: str = CHANNEL) -> list[int]:
    return [m["metadata"]["event_payload"]["part"] for m in slack.history(channel)]


def test_the_registry_serves_slack_destinations_with_the_slack_channel(settings: Settings) -> None:
    registry = registry_for(settings, MemoryPartLog())
    assert registry.name_for("slack") == "slack"
    assert isinstance(registry.for_kind("slack"), SlackChannel)
    asyncio.run(registry.aclose())


def test_a_digest_is_posted_in_parts_and_a_second_send_posts_nothing(engine: Engine) -> None:
    async def scenario(slack: FakeSlack) -> tuple[str, str]:
        channel = SlackChannel(
            SlackSettings(bot_token=TOKEN, api_url=slack.api_url),
            part_log=DatabasePartLog(engine),
            pacer=ChannelPacer(0.0),
        )
        try:
            first = await channel.send(outgoing())
            again = await channel.send(outgoing())
        finally:
            await channel.aclose()
        return first.detail, again.detail

    with FakeSlack(token=TOKEN, rate_limit=False) as slack:
        slack.add_channel(CHANNEL)
        first, again = asyncio.run(scenario(slack))
        assert parts_in(slack) == [1, 2, 3]
    assert (first, again) == ("3 part(s): 3 posted", "3 part(s): 0 posted, 3 recorded before")
    assert DatabasePartLog(engine).posted_now(MESSAGE_ID).keys() == {0, 1, 2, 3}


def test_a_channel_without_a_token_or_a_webhook_without_its_variable_says_what_to_set() -> None:
    async def attempt(channel: SlackChannel, address: str) -> DeliveryPermanentError:
        try:
            await channel.send(outgoing(address, parts=1))
        except DeliveryPermanentError as exc:
            return exc
        finally:
            await channel.aclose()
        raise AssertionError("sent")

    no_token = asyncio.run(attempt(SlackChannel(SlackSettings(), part_log=MemoryPartLog()), CHANNEL))
    assert "set SLACK_BOT_TOKEN" in str(no_token) and no_token.pauses
    no_url = asyncio.run(
        attempt(SlackChannel(SlackSettings(), part_log=MemoryPartLog(), environ={}), "webhook_env:HOOK")
    )
    assert "HOOK holds no Slack webhook URL" in str(no_url) and no_url.pauses


CHILD = """
import asyncio, os, signal, sys
from bot.channels.slack import ChannelPacer
from bot.channels.slack_channel import SlackChannel
from bot.config import SlackSettings
from bot.store.engine import make_engine
from bot.store.parts import DatabasePartLog
from tests.channels.test_slack_channel import TOKEN, outgoing

api_url, database_url, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])

class Killed(DatabasePartLog):
    async def record(self, key, part, ts):
        if part == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # Slack has the part; the database never hears of it
        await super().record(key, part, ts)

async def main():
    log = Killed(make_engine(database_url))
    channel = SlackChannel(SlackSettings(bot_token=TOKEN, api_url=api_url), part_log=log, pacer=ChannelPacer(0.0))
    await channel.send(outgoing())

asyncio.run(main())
"""


@pytest.mark.parametrize("kill_at", [1, 2])
def test_a_sigkill_between_posting_and_recording_never_doubles_a_part_with_the_database_log(
    engine: Engine, database_url: str, kill_at: int
) -> None:
    """Killed right after Slack accepted part `kill_at` (the first part: nothing but the
    "begun" mark recorded; a later one: the parts before it recorded too). The restarted sender
    finds the unrecorded part in the channel's history and posts only the rest."""
    with FakeSlack(token=TOKEN, rate_limit=False) as slack:
        slack.add_channel(CHANNEL)
        child = subprocess.run(
            [sys.executable, "-c", CHILD, slack.api_url, database_url, str(kill_at)],
            cwd=Path(__file__).parents[2],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr
        assert parts_in(slack) == list(range(1, kill_at + 1))
        assert set(DatabasePartLog(engine).posted_now(MESSAGE_ID)) == set(range(kill_at))

        async def restart() -> str:
            channel = SlackChannel(
                SlackSettings(bot_token=TOKEN, api_url=slack.api_url),
                part_log=DatabasePartLog(engine),
                pacer=ChannelPacer(0.0),
            )
            try:
                return (await channel.send(outgoing())).detail
            finally:
                await channel.aclose()

        detail = asyncio.run(restart())
        assert parts_in(slack) == [1, 2, 3]
        assert "1 found already in the channel" in detail
