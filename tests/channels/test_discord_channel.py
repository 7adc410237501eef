"""The Discord channel as the delivery service uses it: an OutgoingDigest in, every part posted once
to the destination its stored address names (a channel, a DM, a webhook read from the environment)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.channels.base import OutgoingDigest
from bot.channels.discord import DiscordPermanentError, RouteLimits, part_marker
from bot.channels.discord_channel import DiscordChannel
from bot.channels.parts import MemoryPartLog
from bot.channels.registry import registry_for
from bot.config import DiscordSettings, Settings
from bot.digest.render import DigestTemplateError
from bot.digest.view import RenderedDigest
from bot.store.parts import DatabasePartLog
from bot.testing.fake_discord import FakeDiscord, seen
from tests.channels.test_slack import FakeClock
from tests.digest.test_render import make_item, make_view

TOKEN = "discord-channel-test"
CHANNEL = "740000000000000001"
RENDERED = RenderedDigest(subject="FlareStart", html="<p>x</p>", text="x", preheader="")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeDiscord]:
    with FakeDiscord(token=TOKEN, clock=clock) as server:
        server.add_channel(CHANNEL)
        yield server


def outgoing(address: str, *, items: int = 12, view: bool = True) -> OutgoingDigest:
    return OutgoingDigest(
        to_name="Community",
        to_address=address,
        rendered=RENDERED,
        message_id=f"<{address}.2024-05-07@flarestart.example>",  # one per subscriber and period
        unsubscribe_url="https://flarestart.example.com/u/x",
        period="2024-05-07",
        view=make_view(items=tuple(make_item(n) for n in range(items))) if view else None,
    )


def channel_for(
    fake: FakeDiscord, clock: FakeClock, env: dict[str, str] | None = None, **settings: object
) -> DiscordChannel:
    return DiscordChannel(
        DiscordSettings(bot_token=TOKEN, api_url=fake.api_url, **settings),  # type: ignore[arg-type]
        part_log=MemoryPartLog(),
        env=env or {},
        limits=RouteLimits(clock=clock, sleep=clock.sleep),
    )


async def test_a_channel_digest_is_posted_in_parts_and_sent_again_posts_nothing(
    fake: FakeDiscord, clock: FakeClock
) -> None:
    channel = channel_for(fake, clock)
    try:
        first = await channel.send(outgoing(CHANNEL))
        again = await channel.send(outgoing(CHANNEL))
    finally:
        await channel.aclose()
    stored = fake.history(CHANNEL)
    assert len(stored) == 2 and [len(m["embeds"]) for m in stored] == [10, 2]
    assert first.channel == "discord" and first.message_id == stored[0]["id"]
    assert again.detail == "2 part(s): 0 posted, 2 recorded before"
    assert "Story 0: Python 3.13" in seen(stored[0]).text


async def test_a_webhook_is_read_from_its_variable_at_send_time(fake: FakeDiscord, clock: FakeClock) -> None:
    url = fake.add_webhook("740000000000000002")
    channel = channel_for(fake, clock, env={"COMMUNITY_WEBHOOK": url})
    try:
        receipt = await channel.send(outgoing("webhook_env:COMMUNITY_WEBHOOK", items=3))
        with pytest.raises(DiscordPermanentError, match="OTHER_WEBHOOK should hold") as missing:
            await channel.send(outgoing("webhook_env:OTHER_WEBHOOK", items=3))
    finally:
        await channel.aclose()
    assert len(fake.history("740000000000000002")) == 1
    assert receipt.destination.startswith("webhook:") and url.split("/")[-1] not in receipt.destination
    assert missing.value.reason == "webhook_env_unset"


async def test_a_dm_and_a_user_who_refuses_them(fake: FakeDiscord, clock: FakeClock) -> None:
    fake.add_user("750000000000000001")
    fake.add_user("750000000000000002", accepts_dms=False)
    channel = channel_for(fake, clock)
    try:
        await channel.send(outgoing("user:750000000000000001", items=2))
        with pytest.raises(DiscordPermanentError, match="does not accept direct messages") as refused:
            await channel.send(outgoing("user:750000000000000002", items=2))
    finally:
        await channel.aclose()
    assert len(fake.dm_history("750000000000000001")) == 1
    assert refused.value.reason == "cannot_dm" and fake.dm_history("750000000000000002") == []


async def test_a_mail_that_is_not_a_digest_is_refused(fake: FakeDiscord, clock: FakeClock) -> None:
    channel = channel_for(fake, clock)
    try:
        with pytest.raises(DiscordPermanentError) as caught:
            await channel.send(outgoing(CHANNEL, view=False))
    finally:
        await channel.aclose()
    assert caught.value.reason == "not_a_digest" and fake.history(CHANNEL) == []


def test_a_broken_user_template_fails_when_the_channel_is_made(
    fake: FakeDiscord, clock: FakeClock, tmp_path: Path
) -> None:
    (tmp_path / "digest.j2").write_text("{% macro header(digest) %}{{ oops }")
    with pytest.raises(DigestTemplateError, match="discord template"):
        channel_for(fake, clock, template_dir=tmp_path)


def test_the_registry_serves_discord_destinations_with_the_discord_channel(settings: Settings) -> None:
    registry = registry_for(settings, MemoryPartLog())
    assert registry.name_for("discord") == "discord"
    assert isinstance(registry.for_kind("discord"), DiscordChannel)
    asyncio.run(registry.aclose())


CHILD = """
import asyncio, os, signal, sys
from bot.channels.discord_channel import DiscordChannel
from bot.config import DiscordSettings
from bot.store.engine import make_engine
from bot.store.parts import DatabasePartLog
from tests.channels.test_discord_channel import CHANNEL, TOKEN, outgoing

api_url, database_url, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])

class Killed(DatabasePartLog):
    async def record(self, key, part, ts):
        if part == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # Discord has the part; the database never hears of it
        await super().record(key, part, ts)

async def main():
    channel = DiscordChannel(DiscordSettings(bot_token=TOKEN, api_url=api_url), part_log=Killed(make_engine(database_url)))
    await channel.send(outgoing(CHANNEL, items=25))

asyncio.run(main())
"""


@pytest.mark.parametrize("kill_at", [1, 2])
def test_a_sigkill_between_posting_and_recording_never_doubles_a_part_with_the_database_log(
    engine: Engine, database_url: str, kill_at: int
) -> None:
    """Killed right after Discord took part `kill_at` (the first: only the "begun" mark is
    recorded; a later one: the parts before it too), long past Discord's nonce window: the
    restarted sender finds the unrecorded part by its marker in the history and posts the rest."""
    key = outgoing(CHANNEL).message_id
    with FakeDiscord(token=TOKEN, rate_limit=False, nonce_window=0.0) as fake:
        fake.add_channel(CHANNEL)
        child = subprocess.run(
            [sys.executable, "-c", CHILD, fake.api_url, database_url, str(kill_at)],
            cwd=Path(__file__).parents[2],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr
        assert len(fake.history(CHANNEL)) == kill_at
        assert set(DatabasePartLog(engine).posted_now(key)) == set(range(kill_at))

        async def restart() -> str:
            channel = DiscordChannel(
                DiscordSettings(bot_token=TOKEN, api_url=fake.api_url), part_log=DatabasePartLog(engine)
            )
            try:
                return (await channel.send(outgoing(CHANNEL, items=25))).detail
            finally:
                await channel.aclose()

        detail = asyncio.run(restart())
        marks = [m["content"].rsplit("\n-# ", 1)[-1] for m in fake.history(CHANNEL)]
        assert marks == [part_marker(key, part, 3) for part in (1, 2, 3)]
        assert "1 found already in the channel" in detail
