"""Posting digests to Slack as a team channel meets them: each part once, at Slack's pace.

A real conversation: slack-sdk's clients against the fake Slack on loopback. Time is a fake clock
shared by the poster's pacer and the fake's rate limit, so nothing here waits for the wall clock.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.channels.parts import MemoryPartLog
from bot.channels.slack import (
    EVENT_TYPE,
    ChannelPacer,
    SlackDestination,
    SlackPermanentError,
    SlackPoster,
)
from bot.digest.slack import SlackMessage, SlackRenderer
from bot.errors import DeliveryPermanentError, DeliveryTransientError
from bot.testing.fake_slack import FakeSlack
from tests.digest.test_render import make_item, make_view

TOKEN = "xoxb-poster-test"
CHANNEL = "C0POSTER"
KEY = "subscriber-7/2024-05-07/slack"


class FakeClock:
    """Monotonic seconds that move only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 5_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wake at (now + seconds); others who go to sleep meanwhile still see the present."""
        self.slept.append(seconds)
        deadline = self.now + max(0.0, seconds)
        await asyncio.sleep(0)
        self.now = max(self.now, deadline)


class CrashingLog(MemoryPartLog):
    """A part log whose process dies right after Slack accepted part `crash_after`."""

    def __init__(self, crash_after: int) -> None:
        super().__init__()
        self.crash_after = crash_after

    async def record(self, key: str, part: int, ts: str) -> None:
        if part == self.crash_after:
            self.crash_after = 0
            raise KeyboardInterrupt("killed between posting and recording")
        await super().record(key, part, ts)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def slack(clock: FakeClock) -> AsyncIterator[FakeSlack]:
    with FakeSlack(token=TOKEN, clock=clock) as fake:
        fake.add_channel(CHANNEL)
        yield fake


def poster_for(
    slack: FakeSlack,
    clock: FakeClock,
    log: MemoryPartLog | None = None,
    *,
    interval: float = 1.0,
    token: str | None = TOKEN,
) -> SlackPoster:
    return SlackPoster(
        token=token,
        log=log or MemoryPartLog(),
        api_url=slack.api_url,
        pacer=ChannelPacer(interval, clock=clock, sleep=clock.sleep),
    )


def digest(parts: int, *, thread: bool = False) -> tuple[SlackMessage, ...]:
    """A rendered digest of exactly `parts` messages: the fewest items that need that many."""
    renderer = SlackRenderer(thread=thread)
    for count in range(1, 16 * parts + 1):
        messages = renderer.render(make_view(items=tuple(make_item(n) for n in range(count))))
        if len(messages) == parts:
            return messages
    raise AssertionError(f"no digest of {parts} parts")


def parts_in(slack: FakeSlack, key: str = KEY) -> list[int]:
    return [
        m["metadata"]["event_payload"]["part"]
        for m in slack.history(CHANNEL)
        if m["metadata"]["event_payload"]["key"] == key
    ]


async def test_a_digest_is_posted_in_order_with_its_metadata(slack: FakeSlack, clock: FakeClock) -> None:
    log = MemoryPartLog()
    poster = poster_for(slack, clock, log)
    try:
        receipt = await poster.post(SlackDestination(channel=CHANNEL), digest(3), key=KEY)
    finally:
        await poster.aclose()

    stored = slack.history(CHANNEL)
    assert parts_in(slack) == [1, 2, 3]
    assert {m["metadata"]["event_type"] for m in stored} == {EVENT_TYPE}
    assert {m["metadata"]["event_payload"]["parts"] for m in stored} == {3}
    assert all(m["unfurl_links"] is False and m["unfurl_media"] is False for m in stored)
    assert await log.posted(KEY) == {1: stored[0]["ts"], 2: stored[1]["ts"], 3: stored[2]["ts"]}
    assert receipt.channel == "slack" and receipt.destination == CHANNEL
    assert receipt.message_id == stored[0]["ts"] and receipt.detail == "3 part(s): 3 posted"


async def test_a_crash_after_slack_accepted_part_two_reposts_only_part_three(
    slack: FakeSlack, clock: FakeClock
) -> None:
    log = CrashingLog(crash_after=2)
    messages = digest(3)
    poster = poster_for(slack, clock, log)
    try:
        with pytest.raises(KeyboardInterrupt):
            await poster.post(SlackDestination(channel=CHANNEL), messages, key=KEY)
        assert await log.posted(KEY) == {1: slack.history(CHANNEL)[0]["ts"]}  # part 2 is posted, not recorded

        receipt = await poster.post(SlackDestination(channel=CHANNEL), messages, key=KEY)  # the retried job
    finally:
        await poster.aclose()

    assert parts_in(slack) == [1, 2, 3]
    assert sorted(await log.posted(KEY)) == [1, 2, 3]
    assert receipt.detail == "3 part(s): 1 posted, 1 found already in the channel, 1 recorded before"


async def test_a_connection_dropped_after_accepting_is_found_on_retry(
    slack: FakeSlack, clock: FakeClock
) -> None:
    messages = digest(2)
    log = MemoryPartLog()
    poster = poster_for(slack, clock, log)
    slack.drop_after_accept(1)
    try:
        with pytest.raises(DeliveryTransientError):
            await poster.post(SlackDestination(channel=CHANNEL), messages, key=KEY)
        assert await log.posted(KEY) == {}
        assert parts_in(slack) == [1]  # Slack has it; we never heard

        await poster.post(SlackDestination(channel=CHANNEL), messages, key=KEY, resume=True)
    finally:
        await poster.aclose()
    assert parts_in(slack) == [1, 2]


async def test_without_resume_an_unrecorded_first_delivery_is_not_searched(
    slack: FakeSlack, clock: FakeClock
) -> None:
    """The history lookup costs a call per channel; a first attempt with nothing recorded skips it."""
    poster = poster_for(slack, clock)
    try:
        await poster.post(SlackDestination(channel=CHANNEL), digest(1), key=KEY)
    finally:
        await poster.aclose()
    assert [name for name, _ in slack.requests] == ["chat.postMessage"]


async def test_thread_mode_posts_items_as_replies_and_recovers_through_the_thread(
    slack: FakeSlack, clock: FakeClock
) -> None:
    messages = digest(3, thread=True)
    log = CrashingLog(crash_after=3)
    poster = poster_for(slack, clock, log)
    try:
        with pytest.raises(KeyboardInterrupt):
            await poster.post(SlackDestination(channel=CHANNEL), messages, key=KEY)
        await poster.post(SlackDestination(channel=CHANNEL), messages, key=KEY)
    finally:
        await poster.aclose()

    stored = slack.history(CHANNEL)
    assert parts_in(slack) == [1, 2, 3]
    assert "thread_ts" not in stored[0]
    assert [m["thread_ts"] for m in stored[1:]] == [stored[0]["ts"]] * 2


async def test_five_messages_to_one_channel_are_paced_and_never_meet_a_429(
    slack: FakeSlack, clock: FakeClock
) -> None:
    start = clock.now
    poster = poster_for(slack, clock)
    try:
        await poster.post(SlackDestination(channel=CHANNEL), digest(5), key=KEY)
    finally:
        await poster.aclose()
    assert parts_in(slack) == [1, 2, 3, 4, 5]
    assert slack.rate_limited(CHANNEL) == 0
    assert clock.now - start >= 4.0


async def test_concurrent_sends_to_one_channel_share_the_pacer(clock: FakeClock) -> None:
    pacer = ChannelPacer(1.0, clock=clock, sleep=clock.sleep)
    released: dict[str, list[float]] = {"C1": [], "C2": []}

    async def send(channel: str) -> None:
        async with pacer.turn(channel):
            released[channel].append(clock.now)

    await asyncio.gather(*(send("C1") for _ in range(4)), send("C2"))
    assert released["C1"] == [5_000.0, 5_001.0, 5_002.0, 5_003.0]  # one a second, one at a time
    assert len(released["C2"]) == 1 and clock.slept == [1.0, 1.0, 1.0]  # C2 never waited


async def test_the_pacer_counts_from_when_slack_took_the_message(clock: FakeClock) -> None:
    pacer = ChannelPacer(1.0, clock=clock, sleep=clock.sleep)
    offset = 1_700_000_000.0 - clock.now  # Slack's clock is ours plus this

    async with pacer.turn("C1") as turn:  # answered at once: the pacer learns the offset
        turn.accepted(f"{clock.now + offset:.6f}")
    async with pacer.turn("C1") as turn:  # Slack took it at once; the answer took 0.5 s to come back
        turn.accepted(f"{clock.now + offset:.6f}")
        clock.now += 0.5
    async with pacer.turn("C1"):  # no ts (a webhook, an error): counts from the answer
        clock.now += 0.25
    async with pacer.turn("C1"):
        pass
    assert clock.slept == [1.0, 0.5, 1.0]


async def test_a_short_retry_after_is_waited_in_place(slack: FakeSlack, clock: FakeClock) -> None:
    poster = poster_for(slack, clock, interval=0.0)  # no pacing: the fake's limit answers 429
    try:
        await poster.post(SlackDestination(channel=CHANNEL), digest(2), key=KEY)
    finally:
        await poster.aclose()
    assert parts_in(slack) == [1, 2]
    assert slack.rate_limited(CHANNEL) == 1
    assert 1.0 in clock.slept  # the Retry-After the fake sent


async def test_a_long_retry_after_ends_the_attempt_with_it(clock: FakeClock) -> None:
    with FakeSlack(token=TOKEN, clock=clock, rate=0.01) as slack:  # one message per 100 s
        slack.add_channel(CHANNEL)
        log = MemoryPartLog()
        poster = poster_for(slack, clock, log, interval=0.0)
        try:
            with pytest.raises(DeliveryTransientError) as raised:
                await poster.post(SlackDestination(channel=CHANNEL), digest(2), key=KEY)
        finally:
            await poster.aclose()
        assert raised.value.retry_after == 100.0
        assert sorted(await log.posted(KEY)) == [1]  # part 1 stays recorded for the retry


@pytest.mark.parametrize(
    ("arrange", "reason", "words"),
    [
        (lambda fake: None, "channel_not_found", "C0POSTER does not exist"),
        (lambda fake: fake.add_channel(CHANNEL, member=False), "not_in_channel", "invite it"),
        (lambda fake: fake.add_channel(CHANNEL, archived=True), "is_archived", "archived"),
        (lambda fake: fake.tokens.update({TOKEN: "account_inactive"}), "account_inactive", "deactivated"),
        (lambda fake: fake.tokens.clear(), "invalid_auth", "not valid"),
    ],
)
async def test_permanent_errors_say_why_in_plain_words(
    clock: FakeClock, arrange: object, reason: str, words: str
) -> None:
    with FakeSlack(token=TOKEN, clock=clock) as slack:
        if reason != "channel_not_found":
            slack.add_channel(CHANNEL)
        arrange(slack)  # type: ignore[operator]
        poster = poster_for(slack, clock)
        try:
            with pytest.raises(SlackPermanentError, match=words) as raised:
                await poster.post(SlackDestination(channel=CHANNEL), digest(1), key=KEY)
        finally:
            await poster.aclose()
        assert raised.value.reason == reason
        assert isinstance(raised.value, DeliveryPermanentError)
        copy = pickle.loads(pickle.dumps(raised.value))  # the job queue stores errors across processes
        assert (copy.reason, str(copy)) == (reason, str(raised.value))
        assert all(not channel.messages for channel in slack.channels.values())


async def test_no_token_is_not_authed(slack: FakeSlack, clock: FakeClock) -> None:
    poster = poster_for(slack, clock, token=None)
    try:
        with pytest.raises(SlackPermanentError) as raised:
            await poster.post(SlackDestination(channel=CHANNEL), digest(1), key=KEY)
    finally:
        await poster.aclose()
    assert raised.value.reason == "not_authed"


async def test_a_5xx_is_transient_and_the_retry_posts_once(slack: FakeSlack, clock: FakeClock) -> None:
    poster = poster_for(slack, clock)
    slack.fail_next(1, status=503)
    try:
        with pytest.raises(DeliveryTransientError, match="503"):
            await poster.post(SlackDestination(channel=CHANNEL), digest(1), key=KEY)
        await poster.post(SlackDestination(channel=CHANNEL), digest(1), key=KEY, resume=True)
    finally:
        await poster.aclose()
    assert parts_in(slack) == [1]


async def test_a_refused_payload_is_permanent_with_slacks_reason(slack: FakeSlack, clock: FakeClock) -> None:
    too_many = SlackMessage(text="x", blocks=tuple({"type": "divider"} for _ in range(51)), part=1, parts=1)
    poster = poster_for(slack, clock)
    try:
        with pytest.raises(SlackPermanentError, match="no more than 50 items") as raised:
            await poster.post(SlackDestination(channel=CHANNEL), (too_many,), key=KEY)
    finally:
        await poster.aclose()
    assert raised.value.reason == "invalid_blocks"


async def test_an_unreachable_slack_is_transient(clock: FakeClock) -> None:
    with FakeSlack(token=TOKEN, clock=clock) as slack:
        url = slack.api_url
    poster = SlackPoster(token=TOKEN, log=MemoryPartLog(), api_url=url, pacer=ChannelPacer(0.0))
    try:
        with pytest.raises(DeliveryTransientError):
            await poster.post(SlackDestination(channel=CHANNEL), digest(1), key=KEY)
    finally:
        await poster.aclose()


async def test_a_webhook_gets_every_part_once_and_skips_recorded_ones(
    slack: FakeSlack, clock: FakeClock
) -> None:
    url = slack.add_webhook("C0HOOK")
    log = MemoryPartLog()
    messages = digest(2)
    poster = poster_for(slack, clock, log)
    try:
        receipt = await poster.post(SlackDestination(webhook_url=url), messages, key=KEY)
        again = await poster.post(SlackDestination(webhook_url=url), messages, key=KEY)
    finally:
        await poster.aclose()
    assert len(slack.history("C0HOOK")) == 2
    assert receipt.destination.startswith("webhook:") and url.split("/")[-1] not in receipt.destination
    assert again.detail == "2 part(s): 0 posted, 2 recorded before"


@pytest.mark.parametrize(("archived", "reason"), [(True, "is_archived"), (False, "no_service")])
async def test_webhook_failures_are_permanent(
    slack: FakeSlack, clock: FakeClock, archived: bool, reason: str
) -> None:
    url = slack.add_webhook("C0HOOK")
    if archived:
        slack.channels["C0HOOK"].archived = True
    else:
        url = url.rsplit("/", 1)[0] + "/revoked"
    poster = poster_for(slack, clock)
    try:
        with pytest.raises(SlackPermanentError) as raised:
            await poster.post(SlackDestination(webhook_url=url), digest(1), key=KEY)
    finally:
        await poster.aclose()
    assert raised.value.reason == reason


def test_a_destination_is_a_channel_or_a_webhook() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SlackDestination()
    with pytest.raises(ValueError, match="exactly one"):
        SlackDestination(channel="C1", webhook_url="https://hooks.slack.com/services/T/B/x")


async def test_a_webhook_429_is_waited_and_the_part_posted_once(slack: FakeSlack, clock: FakeClock) -> None:
    url = slack.add_webhook("C0HOOK")
    poster = poster_for(slack, clock, interval=0.0)
    try:
        await poster.post(SlackDestination(webhook_url=url), digest(2), key=KEY)
    finally:
        await poster.aclose()
    assert len(slack.history("C0HOOK")) == 2
    assert slack.rate_limited("C0HOOK") == 1 and 1.0 in clock.slept


async def test_a_webhook_5xx_is_transient(slack: FakeSlack, clock: FakeClock) -> None:
    url = slack.add_webhook("C0HOOK")
    poster = poster_for(slack, clock)
    slack.fail_next(1, status=500)
    try:
        with pytest.raises(DeliveryTransientError, match="HTTP 500"):
            await poster.post(SlackDestination(webhook_url=url), digest(1), key=KEY)
    finally:
        await poster.aclose()
    assert slack.history("C0HOOK") == []


class FilePartLog(MemoryPartLog):
    """A part log kept in a JSON file, so it outlives the process that wrote it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        if path.exists():
            self.parts = {
                key: {int(p): ts for p, ts in parts.items()}
                for key, parts in json.loads(path.read_text()).items()
            }

    async def record(self, key: str, part: int, ts: str) -> None:
        await super().record(key, part, ts)
        self.path.write_text(json.dumps(self.parts))


CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from bot.channels.slack import ChannelPacer, SlackDestination, SlackPoster
from tests.channels.test_slack import CHANNEL, KEY, TOKEN, FilePartLog, digest

class Killed(FilePartLog):
    async def record(self, key, part, ts):
        if part == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # Slack has part 2; the log never hears of it
        await super().record(key, part, ts)

async def main():
    poster = SlackPoster(token=TOKEN, log=Killed(Path(sys.argv[2])), api_url=sys.argv[1], pacer=ChannelPacer(0.0))
    await poster.post(SlackDestination(channel=CHANNEL), digest(3), key=KEY)

asyncio.run(main())
"""


async def test_a_sigkill_between_posting_and_recording_never_doubles_a_part(tmp_path: Path) -> None:
    with FakeSlack(token=TOKEN, rate_limit=False) as slack:
        slack.add_channel(CHANNEL)
        record = tmp_path / "parts.json"
        child = subprocess.run(
            [sys.executable, "-c", CHILD, slack.api_url, str(record)],
            cwd=Path(__file__).parents[2],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr
        assert parts_in(slack) == [1, 2] and sorted(json.loads(record.read_text())[KEY]) == ["1"]

        poster = SlackPoster(
            token=TOKEN, log=FilePartLog(record), api_url=slack.api_url, pacer=ChannelPacer(0.0)
        )
        try:  # the restarted worker retries the delivery
            await poster.post(SlackDestination(channel=CHANNEL), digest(3), key=KEY)
        finally:
            await poster.aclose()
        assert parts_in(slack) == [1, 2, 3]
