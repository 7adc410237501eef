"""Posting digests to Discord as a server meets them: each part once, at the pace Discord's headers set.

A real conversation: the poster's aiohttp client against the fake Discord on loopback. Time is a
fake clock shared by the poster's route limits and the fake's rate-limit windows and nonce window,
so nothing here waits for the wall clock.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.channels.discord import (
    DiscordDestination,
    DiscordPermanentError,
    DiscordPoster,
    RouteLimits,
    part_marker,
    part_nonce,
)
from bot.channels.parts import MemoryPartLog
from bot.digest.discord import DiscordMessage, DiscordRenderer
from bot.errors import DeliveryPermanentError, DeliveryTransientError
from bot.testing.fake_discord import FakeDiscord
from tests.channels.test_slack import CrashingLog, FakeClock, FilePartLog
from tests.digest.test_render import make_item, make_view

TOKEN = "discord-poster-test"
CHANNEL = "710000000000000001"
KEY = "subscriber-7/2024-05-07/discord"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def discord(clock: FakeClock) -> Iterator[FakeDiscord]:
    with FakeDiscord(token=TOKEN, clock=clock, limit=2, per=1.0) as fake:
        fake.add_channel(CHANNEL)
        yield fake


def poster_for(
    discord: FakeDiscord, clock: FakeClock, log: MemoryPartLog | None = None, *, token: str | None = TOKEN
) -> DiscordPoster:
    return DiscordPoster(
        token=token,
        log=log or MemoryPartLog(),
        api_url=discord.api_url,
        limits=RouteLimits(clock=clock, sleep=clock.sleep),
    )


def digest(parts: int) -> tuple[DiscordMessage, ...]:
    """A rendered digest of exactly `parts` messages (ten items a part)."""
    messages = DiscordRenderer().render(make_view(items=tuple(make_item(n) for n in range(10 * parts))))
    assert len(messages) == parts
    return messages


def parts_in(discord: FakeDiscord, channel: str = CHANNEL, key: str = KEY) -> list[int]:
    marks = {part_marker(key, part, parts): part for parts in range(1, 9) for part in range(1, parts + 1)}
    found = []
    for message in discord.history(channel):
        last = message["content"].rsplit("\n-# ", 1)[-1]
        if last in marks:
            found.append(marks[last])
    return found


async def test_a_digest_is_posted_in_order_with_nonces_and_no_mentions(
    discord: FakeDiscord, clock: FakeClock
) -> None:
    log = MemoryPartLog()
    poster = poster_for(discord, clock, log)
    try:
        receipt = await poster.post(DiscordDestination(channel=CHANNEL), digest(3), key=KEY)
    finally:
        await poster.aclose()
    stored = discord.history(CHANNEL)
    assert parts_in(discord) == [1, 2, 3]
    assert [m["nonce"] for m in stored] == [part_nonce(KEY, part) for part in (1, 2, 3)]
    assert all(m["allowed_mentions"] == {"parse": []} for m in stored)
    assert log.parts[KEY] == {i + 1: m["id"] for i, m in enumerate(stored)}
    assert receipt.message_id == stored[0]["id"] and receipt.detail == "3 part(s): 3 posted"


async def test_the_route_limit_is_kept_from_the_headers_without_meeting_a_429(
    discord: FakeDiscord, clock: FakeClock
) -> None:
    start = clock.now
    poster = poster_for(discord, clock)
    try:  # five parts through a bucket of 2 a second: waits twice, for the window's reset
        await poster.post(DiscordDestination(channel=CHANNEL), digest(5), key=KEY)
    finally:
        await poster.aclose()
    assert parts_in(discord) == [1, 2, 3, 4, 5]
    assert discord.rate_limited() == 0
    assert clock.now - start == pytest.approx(2.0, abs=0.01)  # the floor: ceil(5 / 2) − 1 windows


async def test_a_per_route_429_is_waited_with_its_retry_after(discord: FakeDiscord, clock: FakeClock) -> None:
    url = discord.add_webhook("710000000000000002")
    other = poster_for(discord, clock)  # another process that used up the webhook's window
    poster = poster_for(discord, clock)
    try:
        await other.post(DiscordDestination(webhook_url=url), digest(2), key="other")
        await poster.post(DiscordDestination(webhook_url=url), digest(2), key=KEY)
    finally:
        await poster.aclose()
        await other.aclose()
    assert discord.rate_limited() == 1  # met once, then the bucket was held for retry_after
    assert len(discord.history("710000000000000002")) == 4
    assert clock.slept and clock.slept[0] == pytest.approx(1.0, abs=0.01)


async def test_a_global_429_holds_every_route(clock: FakeClock) -> None:
    with FakeDiscord(token=TOKEN, clock=clock, rate_limit=True, global_limit=2, limit=50) as discord:
        for channel in ("1", "2"):
            discord.add_channel(channel)
        poster = poster_for(discord, clock)
        try:
            await poster.post(DiscordDestination(channel="1"), digest(2), key="a")
            await poster.post(DiscordDestination(channel="2"), digest(1), key="b")
        finally:
            await poster.aclose()
        assert discord.rate_limited() == 1 and len(discord.history("2")) == 1
        assert poster.limits._global_until > 0  # the hold came from the body's "global": true


async def test_a_long_retry_after_ends_the_attempt_with_it(clock: FakeClock) -> None:
    with FakeDiscord(token=TOKEN, clock=clock, limit=1, per=30.0) as discord:
        discord.add_channel(CHANNEL)
        poster = poster_for(discord, clock)
        other = poster_for(discord, clock)
        try:
            await other.post(DiscordDestination(channel=CHANNEL), digest(1), key="other")
            with pytest.raises(DeliveryTransientError) as caught:
                await poster.post(DiscordDestination(channel=CHANNEL), digest(1), key=KEY)
        finally:
            await poster.aclose()
            await other.aclose()
        assert caught.value.retry_after == pytest.approx(30.0, abs=0.01)
        assert parts_in(discord) == []


async def test_a_dropped_answer_is_not_posted_twice_thanks_to_the_nonce(
    discord: FakeDiscord, clock: FakeClock
) -> None:
    poster = poster_for(discord, clock)
    discord.drop_after_accept(1)  # Discord took part 1; the answer never arrived
    try:
        with pytest.raises(DeliveryTransientError):
            await poster.post(DiscordDestination(channel=CHANNEL), digest(2), key=KEY)
        receipt = await poster.post(DiscordDestination(channel=CHANNEL), digest(2), key=KEY)
    finally:
        await poster.aclose()
    assert parts_in(discord) == [1, 2]
    assert receipt.detail == "2 part(s): 2 posted"  # part 1 "posted" again: Discord answered the first


async def test_past_the_nonce_window_a_restart_finds_the_part_in_the_history(
    discord: FakeDiscord, clock: FakeClock
) -> None:
    log = CrashingLog(crash_after=2)
    poster = poster_for(discord, clock, log)
    try:
        with pytest.raises(KeyboardInterrupt):
            await poster.post(DiscordDestination(channel=CHANNEL), digest(3), key=KEY)
        clock.now += 3600  # long past Discord's nonce window
        receipt = await poster.post(DiscordDestination(channel=CHANNEL), digest(3), key=KEY)
    finally:
        await poster.aclose()
    assert parts_in(discord) == [1, 2, 3]
    assert receipt.detail == "3 part(s): 1 posted, 1 found already in the channel, 1 recorded before"


async def test_a_dm_goes_to_the_users_dm_channel(discord: FakeDiscord, clock: FakeClock) -> None:
    discord.add_user("600000000000000001")
    poster = poster_for(discord, clock)
    try:
        receipt = await poster.post(DiscordDestination(user="600000000000000001"), digest(1), key=KEY)
    finally:
        await poster.aclose()
    [message] = discord.dm_history("600000000000000001")
    assert receipt.destination == "user:600000000000000001" and message["id"] == receipt.message_id


@pytest.mark.parametrize(
    ("arrange", "reason", "words"),
    [
        ("remove_channel", "unknown_channel", "does not exist"),
        ("revoke_access", "missing_access", "no access"),
        ("bad_token", "invalid_token", "token is not valid"),
        ("no_token", "no_token", "DISCORD_BOT_TOKEN"),
    ],
)
async def test_permanent_errors_say_why(
    discord: FakeDiscord, clock: FakeClock, arrange: str, reason: str, words: str
) -> None:
    token: str | None = TOKEN
    if arrange == "remove_channel":
        discord.remove_channel(CHANNEL)
    elif arrange == "revoke_access":
        discord.revoke_access(CHANNEL)
    else:
        token = "wrong" if arrange == "bad_token" else None
    poster = poster_for(discord, clock, token=token)
    try:
        with pytest.raises(DiscordPermanentError, match=words) as caught:
            await poster.post(DiscordDestination(channel=CHANNEL), digest(1), key=KEY)
    finally:
        await poster.aclose()
    assert caught.value.reason == reason and isinstance(caught.value, DeliveryPermanentError)


async def test_a_deleted_webhook_is_permanent(discord: FakeDiscord, clock: FakeClock) -> None:
    url = discord.add_webhook("710000000000000003")
    discord.delete_webhook(url)
    poster = poster_for(discord, clock)
    try:
        with pytest.raises(DiscordPermanentError, match=r"webhook .* was deleted") as caught:
            await poster.post(DiscordDestination(webhook_url=url), digest(1), key=KEY)
    finally:
        await poster.aclose()
    assert caught.value.reason == "unknown_webhook" and url.split("/")[-1] not in str(caught.value)


async def test_a_refused_body_is_permanent_with_discords_words(
    discord: FakeDiscord, clock: FakeClock
) -> None:
    [message] = digest(1)
    broken = DiscordMessage(message.content, ({"title": "x" * 300},), 1, 1)
    poster = poster_for(discord, clock)
    try:
        with pytest.raises(DiscordPermanentError, match=r"embeds\.0\.title: Must be 256") as caught:
            await poster.post(DiscordDestination(channel=CHANNEL), (broken,), key=KEY)
    finally:
        await poster.aclose()
    assert caught.value.reason == "invalid_form_body"


async def test_a_5xx_is_transient_and_the_retry_posts_once(discord: FakeDiscord, clock: FakeClock) -> None:
    log = MemoryPartLog()
    poster = poster_for(discord, clock, log)
    discord.fail_next(1, status=502)
    try:
        with pytest.raises(DeliveryTransientError, match="HTTP 502"):
            await poster.post(DiscordDestination(channel=CHANNEL), digest(2), key=KEY)
        await poster.post(DiscordDestination(channel=CHANNEL), digest(2), key=KEY, resume=True)
    finally:
        await poster.aclose()
    assert parts_in(discord) == [1, 2]


async def test_an_unreachable_discord_is_transient(clock: FakeClock) -> None:
    with FakeDiscord(token=TOKEN) as gone:
        api_url = gone.api_url
    poster = DiscordPoster(token=TOKEN, log=MemoryPartLog(), api_url=api_url, limits=RouteLimits(clock=clock))
    try:
        with pytest.raises(DeliveryTransientError, match="Discord 1:"):
            await poster.post(DiscordDestination(channel="1"), digest(1), key=KEY)
    finally:
        await poster.aclose()


async def test_a_webhook_gets_every_part_once_and_skips_recorded_ones(
    discord: FakeDiscord, clock: FakeClock
) -> None:
    url = discord.add_webhook("710000000000000004")
    log = MemoryPartLog()
    await log.record(KEY, 1, "earlier")
    poster = poster_for(discord, clock, log)
    try:
        receipt = await poster.post(DiscordDestination(webhook_url=url), digest(3), key=KEY)
    finally:
        await poster.aclose()
    assert parts_in(discord, "710000000000000004") == [2, 3]
    assert receipt.detail == "3 part(s): 2 posted, 1 recorded before"


def test_a_destination_is_exactly_one_thing() -> None:
    with pytest.raises(ValueError):
        DiscordDestination()
    with pytest.raises(ValueError):
        DiscordDestination(channel="1", user="2")
    assert DiscordDestination(webhook_url="https://discord.com/api/webhooks/1/secret").label.startswith(
        "webhook:"
    )


CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from bot.channels.discord import DiscordDestination, DiscordPoster
from tests.channels.test_discord import CHANNEL, KEY, TOKEN, digest
from tests.channels.test_slack import FilePartLog

class Killed(FilePartLog):
    async def record(self, key, part, ts):
        if part == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # Discord has part 2; the log never hears of it
        await super().record(key, part, ts)

async def main():
    poster = DiscordPoster(token=TOKEN, log=Killed(Path(sys.argv[2])), api_url=sys.argv[1])
    await poster.post(DiscordDestination(channel=CHANNEL), digest(3), key=KEY)

asyncio.run(main())
"""


@pytest.mark.parametrize("nonce_window", [300.0, 0.0], ids=["inside-nonce-window", "past-nonce-window"])
async def test_a_sigkill_between_posting_and_recording_never_doubles_a_part(
    tmp_path: Path, nonce_window: float
) -> None:
    with FakeDiscord(token=TOKEN, rate_limit=False, nonce_window=nonce_window) as discord:
        discord.add_channel(CHANNEL)
        record = tmp_path / "parts.json"
        child = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", CHILD, discord.api_url, str(record)],
            cwd=Path(__file__).parents[2],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr
        assert parts_in(discord) == [1, 2] and sorted(json.loads(record.read_text())[KEY]) == ["1"]

        poster = DiscordPoster(token=TOKEN, log=FilePartLog(record), api_url=discord.api_url)
        try:  # the restarted worker retries the delivery
            await poster.post(DiscordDestination(channel=CHANNEL), digest(3), key=KEY, resume=True)
        finally:
            await poster.aclose()
        assert parts_in(discord) == [1, 2, 3]
