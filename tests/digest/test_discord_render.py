"""Discord digests as a channel sees them: every item once, nothing hostile alive, under every limit.

What a message shows is judged by the fake Discord's client view (`seen`): the messages are posted
to it through a webhook, so Discord's payload checks run on every rendered part too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.digest.discord import (
    AUTHOR_MAX,
    CONTENT_MAX,
    DESCRIPTION_MAX,
    EMBED_TOTAL_MAX,
    EMBEDS_MAX,
    FOOTER_MAX,
    MARKER_ROOM,
    TITLE_MAX,
    DiscordMessage,
    DiscordRenderer,
    embed_size,
    escape_markdown,
)
from bot.digest.render import DigestTemplateError
from bot.errors import ConfigError
from bot.testing.fake_discord import FakeDiscord, seen
from tests.digest.test_render import make_item, make_view

CHANNEL = "700000000000000001"
OURS = ("https://news.example.com/", "https://cdn.example.com/", "https://flarestart.example.com/")


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord(rate_limit=False) as fake:
        yield fake


def post_all(discord: FakeDiscord, messages: tuple[DiscordMessage, ...]) -> list[dict[str, Any]]:
    """Post through the fake's webhook as the poster would; return what the channel stored."""
    url = discord.add_webhook(CHANNEL)
    for message in messages:
        answer = httpx.post(url, params={"wait": "true"}, json=message.payload(marker="fs·0123456789ab 1/1"))
        assert answer.status_code == 200, answer.text
    return discord.history(CHANNEL)


def check_limits(message: DiscordMessage) -> None:
    payload = message.payload(marker="x" * (MARKER_ROOM - 4))
    assert len(payload["content"]) <= CONTENT_MAX
    assert len(message.embeds) <= EMBEDS_MAX
    assert sum(embed_size(embed) for embed in message.embeds) <= EMBED_TOTAL_MAX
    for embed in message.embeds:
        assert len(embed["title"]) <= TITLE_MAX
        assert len(embed.get("description", "")) <= DESCRIPTION_MAX
        assert len(embed.get("footer", {}).get("text", "")) <= FOOTER_MAX
        assert len(embed.get("author", {}).get("name", "")) <= AUTHOR_MAX
    assert payload["allowed_mentions"] == {"parse": []}


def test_one_embed_per_item_with_link_source_time_thumbnail_and_why(discord: FakeDiscord) -> None:
    messages = DiscordRenderer().render(make_view(items=tuple(make_item(n) for n in range(3))))
    assert len(messages) == 1
    [stored] = post_all(discord, messages)
    shown = seen(stored)
    assert shown.text.startswith("FlareStart · Tuesday, 7 May 2024")
    first = stored["embeds"][0]
    assert first["url"] == "https://news.example.com/articles/0?ref=feed&lang=en"
    assert first["author"]["name"] == "Dev.to"
    assert first["thumbnail"] == {"url": "https://cdn.example.com/0.png"}
    assert first["timestamp"] == "2024-05-07T05:30:00+00:00"  # NOW − 1 h
    assert (
        first["footer"]["text"] == "Because you follow Python and AI. · How-To · Also covered by Hackernoon"
    )
    assert "thumbnail" not in stored["embeds"][1]
    assert [e["title"] for e in stored["embeds"]] == [
        escape_markdown(f"Story {n}: Python 3.13 ships an experimental JIT") for n in range(3)
    ]
    assert "Story 1: Python 3.13" in shown.text  # the escapes are invisible to the reader
    assert "https://flarestart.example.com/u/UNSUBTOKEN" in shown.links


HOSTILE = [
    "@everyone look",
    "<@&123456789012345678> ping the role",
    "<@123456789012345678> and @here",
    "[click me](javascript:alert(1))",
    "[safe looking](https://evil.example/phish)",
    "**bold** __under__ ~~strike~~ `code` ||spoiler||",
    "# Heading\n> quote",
    "1. a list",
    "https://evil.example/bare-link",
    "\\@everyone escaped by the feed",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_feed_text_arrives_inert(discord: FakeDiscord, text: str) -> None:
    item = make_item(
        1,
        title=text,
        excerpt=text,
        source=text,
        author=text,
        chip=text,
        reason=text,
        also_covered_by=((text, "javascript:alert(1)"),),
        url="javascript:alert(1)",
        image_url="javascript:alert(2)",
    )
    messages = DiscordRenderer().render(make_view(items=(item,), subscriber_name=text))
    [stored] = post_all(discord, messages)
    shown = seen(stored)
    assert shown.mentions == () and shown.pings == ()
    assert all(link.startswith(OURS) for link in shown.links), shown.links
    assert "url" not in stored["embeds"][0] and "thumbnail" not in stored["embeds"][0]
    # the words are all there, as written (whitespace collapsed)
    assert " ".join(text.split()).replace("\\@", "@") in shown.text.replace("\\@", "@")


def test_a_template_that_writes_a_mention_pings_no_one(discord: FakeDiscord, tmp_path: Path) -> None:
    source = (Path(__file__).parents[2] / "templates/discord/digest.j2").read_text()
    (tmp_path / "digest.j2").write_text(source.replace("Good morning", "@everyone <@&42> good morning"))
    messages = DiscordRenderer(template_dir=tmp_path).render(make_view(items=(make_item(1),)))
    [stored] = post_all(discord, messages)
    assert seen(stored).pings == () and seen(stored).mentions == ()
    assert stored["allowed_mentions"] == {"parse": []}


# Data-driven limits: (items, title length, excerpt length) → parts; every part posted to the fake.
LIMIT_CASES = [
    pytest.param(1, 60, 80, 1, id="one-item"),
    pytest.param(10, 60, 80, 1, id="ten-embeds-one-message"),
    pytest.param(11, 60, 80, 2, id="eleventh-embed-splits"),
    pytest.param(25, 60, 80, 3, id="twenty-five-items"),
    pytest.param(10, 300, 600, 3, id="text-budget-splits-before-ten"),
    pytest.param(30, 1000, 5000, 8, id="long-titles-and-excerpts"),
]


@pytest.mark.parametrize(("count", "title_len", "excerpt_len", "parts"), LIMIT_CASES)
def test_digests_split_under_every_limit(
    discord: FakeDiscord, count: int, title_len: int, excerpt_len: int, parts: int
) -> None:
    items = tuple(
        make_item(
            n, title=("T" * 7 + " ") * (title_len // 8), excerpt=("e:*" * 3 + " ") * (excerpt_len // 10)
        )
        for n in range(count)
    )
    messages = DiscordRenderer().render(make_view(items=items))
    assert len(messages) == parts
    numbers = [number for message in messages for number in message.items]
    assert numbers == list(range(1, count + 1))  # every item once, in order
    for message in messages:
        check_limits(message)
    assert [m.part for m in messages] == list(range(1, parts + 1))
    stored = post_all(discord, messages)  # the fake refuses anything over Discord's limits
    assert len(stored) == parts
    assert "Unsubscribe" in stored[-1]["content"]  # the links end the last part only
    if parts > 1:
        assert "Unsubscribe" not in stored[0]["content"]
        assert f"part 2 of {parts}" in seen(stored[1]).text


def test_a_long_title_is_shortened_at_a_word_and_its_link_kept() -> None:
    title = "Word " * 200
    url = "https://news.example.com/" + "a" * 1500
    [message] = DiscordRenderer().render(make_view(items=(make_item(1, title=title, url=url),)))
    embed = message.embeds[0]
    assert len(embed["title"]) <= TITLE_MAX and embed["title"].endswith("Word…")
    assert embed["url"] == url  # a link lives in its own field and is never cut


def test_the_fake_refuses_what_is_over_discords_limits(discord: FakeDiscord) -> None:
    url = discord.add_webhook(CHANNEL)
    cases = {
        "title": {"embeds": [{"title": "x" * 257}]},
        "content": {"content": "x" * 2001},
        "total": {"embeds": [{"description": "x" * 4000}, {"description": "x" * 2001}]},
        "count": {"embeds": [{"title": "x"}] * 11},
        "scheme": {"embeds": [{"title": "x", "url": "javascript:alert(1)"}]},
    }
    codes = {}
    for name, body in cases.items():
        answer = httpx.post(url, params={"wait": "true"}, json=body)
        assert answer.status_code == 400 and answer.json()["code"] == 50035, name
        codes[name] = answer.json()["errors"]
    assert codes["title"] == {
        "embeds": {
            "0": {
                "title": {
                    "_errors": [
                        {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 256 or fewer in length."}
                    ]
                }
            }
        }
    }
    assert codes["total"]["embeds"]["_errors"][0]["code"] == "MAX_EMBED_SIZE_EXCEEDED"
    assert httpx.post(url, json={"content": ""}).json()["code"] == 50006
    assert discord.history(CHANNEL) == []


def test_a_quiet_day_is_one_message_without_embeds(discord: FakeDiscord) -> None:
    messages = DiscordRenderer().render(make_view(items=()))
    assert len(messages) == 1 and messages[0].embeds == ()
    [stored] = post_all(discord, messages)
    assert "A quiet day" in seen(stored).text


def test_a_broken_or_missing_template_fails_at_start(tmp_path: Path) -> None:
    (tmp_path / "digest.j2").write_text("{% macro header(digest) %}{{ x }")
    with pytest.raises(DigestTemplateError, match=r"discord template .*line 1"):
        DiscordRenderer(template_dir=tmp_path)
    (tmp_path / "digest.j2").write_text("{% macro header(digest) %}x{% endmacro %}")
    with pytest.raises(DigestTemplateError, match="lacks the macro"):
        DiscordRenderer(template_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"discord\.template_dir"):
        DiscordRenderer(template_dir=tmp_path / "missing")
