"""The chat command core as every chat meets it: a verb and words for one channel, a reply of
plain lines, and the channel's subscriber changed in the store through the usual validators.

The channel here is an email destination ("email" prefix), so the core is shown to be
chat-agnostic: Slack and Discord adapters only change the prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.app import FlareStart
from bot.app.chat import MAX_TEXT, ChatCommands
from bot.config import Settings, load_settings
from bot.store import NewSource
from bot.testing.httpserver import FixtureServer
from tests.chat.conftest import stock_python_story

NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday, 06:00 UTC
CHANNEL = "team@example.com"


@pytest.fixture
def app(settings: Settings) -> Iterator[FlareStart]:
    with FlareStart(settings, seed=False, clock=lambda: NOW) as flarestart:
        yield flarestart


@pytest.fixture
def chat(app: FlareStart) -> ChatCommands:
    return ChatCommands(app, prefix="email", origin="chat")


def say(chat: ChatCommands, text: str):  # type: ignore[no-untyped-def]
    return chat.run_text(text, channel=CHANNEL, user="U1", channel_name="team")


def test_subscribe_then_every_verb_changes_the_channels_subscriber(
    chat: ChatCommands, app: FlareStart
) -> None:
    app.add_sources([NewSource("The Verge", "https://verge.example/feed")])
    first = say(chat, "subscribe python rust")
    assert first.ok and first.public and first.verb == "subscribe"
    row = app.subscriber(CHANNEL).subscriber
    assert (row.topics, row.status, row.origin, row.name) == (
        {"python": 1.0, "rust": 1.0},
        "active",
        "chat",
        "team",
    )

    assert say(chat, "follow Go").public  # a name resolves to its slug
    assert say(chat, "unfollow rust").public
    assert say(chat, "mute ai").ok  # a topic
    assert say(chat, "mute 'the verge'").ok  # a source, any case
    assert say(chat, "mute crypto scam").ok  # anything else: a keyword
    assert say(chat, "time 08:30 Europe/Berlin").public
    assert say(chat, "frequency weekly:fri").public
    row = app.subscriber(CHANNEL).subscriber
    assert row.topics == {"python": 1.0, "go": 1.0}
    assert (row.muted_topics, row.muted_sources, row.muted_keywords) == (
        ["ai"],
        ["The Verge"],
        ["crypto scam"],
    )
    assert (row.delivery_time, row.timezone, row.frequency) == ("08:30", "Europe/Berlin", "weekly:fri")

    assert say(chat, "unmute AI").ok
    assert app.subscriber(CHANNEL).subscriber.muted_topics == []

    paused = say(chat, "pause")
    assert paused.public and app.subscriber(CHANNEL).subscriber.status == "paused"
    assert "already" in say(chat, "pause").text
    assert say(chat, "resume").public and app.subscriber(CHANNEL).subscriber.status == "active"
    assert say(chat, "unsubscribe").public
    assert app.subscriber(CHANNEL).subscriber.status == "unsubscribed"
    again = say(chat, "subscribe")
    assert again.public and app.subscriber(CHANNEL).subscriber.status == "active"


def test_status_says_what_the_channel_gets_and_when(chat: ChatCommands) -> None:
    assert "gets no digest" in say(chat, "status").text
    say(chat, "subscribe python")
    say(chat, "time 07:30")
    status = say(chat, "status")
    assert not status.public
    assert "Topics: python." in status.lines
    assert "daily at 07:30 (UTC)" in status.text
    # NOW is 06:00 UTC: the next digest is today's, in 1h30m, as `flarestart subscribers show` says.
    assert "Next digest: Mon 2026-03-02 07:30 UTC (in 1h)" in status.text
    say(chat, "pause")
    assert "Status: paused." in say(chat, "status").lines


def test_bad_input_is_one_clear_line_and_changes_nothing(chat: ChatCommands, app: FlareStart) -> None:
    say(chat, "subscribe python")
    before = app.subscriber(CHANNEL).subscriber

    verb = say(chat, "folow rust")
    topic = say(chat, "follow pyhton")
    time = say(chat, "time 25:00")
    zone = say(chat, "time 08:00 Europe/Berln")
    frequency = say(chat, "frequency fortnightly")
    usage = say(chat, "time")
    for reply in (verb, topic, time, zone, frequency, usage):
        assert not reply.ok and not reply.public and len(reply.lines) == 1
    assert "did you mean `/flarestart follow`?" in verb.text
    assert "there is no topic 'pyhton'; did you mean python" in topic.text
    assert "Europe/Berlin" in zone.text
    assert "time" in usage.text and "HH:MM" in usage.text
    assert app.subscriber(CHANNEL).subscriber == before


def test_hostile_input_is_kept_literal_and_bounded(chat: ChatCommands, app: FlareStart) -> None:
    say(chat, "subscribe python")
    mention = say(chat, "mute <!channel>")
    assert mention.ok and "<!channel>" in mention.text  # literal: the adapter escapes what it shows
    assert app.subscriber(CHANNEL).subscriber.muted_keywords == ["<!channel>"]

    huge = say(chat, "mute " + "x" * 5_000)
    long_word = say(chat, "mute " + "y" * 150)
    many = say(chat, "follow " + " ".join(["python"] * 30))
    unbalanced = say(chat, "mute 'open")
    for reply in (huge, long_word, many, unbalanced):
        assert not reply.ok and len(reply.lines) == 1 and len(reply.text) < 200
    assert str(MAX_TEXT) in huge.text
    assert app.subscriber(CHANNEL).subscriber.muted_keywords == ["<!channel>"]


def test_verbs_on_a_channel_without_a_digest_say_how_to_start_one(chat: ChatCommands) -> None:
    for text in ("follow python", "pause", "time 08:00", "unsubscribe"):
        reply = say(chat, text)
        assert not reply.ok and "`/flarestart subscribe` starts one" in reply.text


def test_help_and_hints_use_the_adapters_names(app: FlareStart) -> None:
    discord = ChatCommands(app, prefix="email", names={"time": "schedule", "preview": "digest"}, command="/")
    help_text = discord.run_text("help", channel=CHANNEL, user="U1").text
    assert "`schedule HH:MM [Zone]`" in help_text and "`digest`" in help_text
    assert "`time" not in help_text
    assert "did you mean `/ schedule`?" in discord.run_text("schedul 08:00", channel=CHANNEL, user="U1").text
    assert discord.run_text("subscribe python", channel=CHANNEL, user="U1").ok
    assert discord.run("schedule", ["09:15"], channel=CHANNEL, user="U1").public
    assert app.subscriber(CHANNEL).subscriber.delivery_time == "09:15"
    assert discord.changes_digest("schedule") and not discord.changes_digest("digest")
    assert discord.privileged("sources", ["add", "https://x.example"]) and not discord.privileged("sources")
    assert ChatCommands(app, prefix="email").run_text("", channel=CHANNEL, user="U1").verb == "help"


def test_preview_answers_at_once_and_finishes_later(chat: ChatCommands, app: FlareStart) -> None:
    stock_python_story(app, title="Python 3.15 <!channel> released")
    say(chat, "subscribe python")
    first = say(chat, "preview")
    assert first.later and not first.public and first.items == ()
    done = chat.finish(first.verb, first.args, channel=CHANNEL, user="U1")
    assert [(item.title, item.url, item.source) for item in done.items] == [
        ("Python 3.15 <!channel> released", "https://py.example/a1", "Py Weekly")
    ]
    assert "python" in done.items[0].why


def test_sources_add_is_untrusted_and_refuses_loopback(tmp_path, feed_server: FixtureServer) -> None:  # type: ignore[no-untyped-def]
    strict = load_settings({"FLARESTART_DATA_DIR": str(tmp_path / "strict")})
    with FlareStart(strict, seed=False, clock=lambda: NOW) as app:
        chat = ChatCommands(app, prefix="email")
        first = chat.run_text(f"sources add {feed_server.url('/feed.xml')}", channel=CHANNEL, user="U1")
        assert first.later
        refused = chat.finish(first.verb, first.args, channel=CHANNEL, user="U1")
        assert not refused.ok and len(refused.lines) == 1
        assert "127.0.0.1" in refused.text or "private" in refused.text or "loopback" in refused.text
        assert app.list_sources() == []
        listed = chat.run_text("sources", channel=CHANNEL, user="U1")
        assert "no sources yet" in listed.text


def test_a_channel_kept_in_a_subscribers_file_keeps_the_files_preferences(
    chat: ChatCommands, app: FlareStart
) -> None:
    say(chat, "subscribe python")
    row = app.subscriber(CHANNEL).subscriber
    assert row.id is not None
    app.subscribers.update(row.id, origin="file:subscribers/team.toml")
    refused = say(chat, "follow rust")
    assert not refused.ok and "subscribers file subscribers/team.toml" in refused.text
    assert say(chat, "pause").public  # status is the channel's own
    assert app.subscriber(CHANNEL).subscriber.topics == {"python": 1.0}
