"""Slack digests as a channel sees them: every item once, nothing hostile alive, under every limit.

What a message shows is judged by the fake Slack's client view (`seen`): the messages are posted to
it, so Slack's payload checks run on every rendered part too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.digest.render import DigestTemplateError
from bot.digest.slack import (
    BLOCKS_MAX,
    BLOCKS_TEXT_MAX,
    HEADER_MAX,
    SECTION_MAX,
    TEXT_MAX,
    SlackMessage,
    SlackRenderer,
    escape_mrkdwn,
    slack_url,
)
from bot.digest.view import DigestItemView, DigestView
from bot.errors import ConfigError
from bot.testing.fake_slack import FakeSlack, seen, seen_text
from tests.digest.test_render import make_item, make_view

TOKEN = "xoxb-render-test"
CHANNEL = "C0RENDER"
OUR_STYLES = {"bold", "italic"}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN, rate_limit=False) as fake:
        fake.add_channel(CHANNEL)
        yield fake


def post_all(slack: FakeSlack, messages: tuple[SlackMessage, ...]) -> list[dict[str, Any]]:
    """Post through slack-sdk as the poster would; return what the channel stored."""
    client = WebClient(token=TOKEN, base_url=slack.api_url)
    parent = None
    for message in messages:
        extra = {"thread_ts": parent} if message.in_thread and parent else {}
        response = client.chat_postMessage(channel=CHANNEL, **message.payload(), **extra)
        assert response["ok"], response
        parent = parent or response["ts"]
    return slack.history(CHANNEL)


def text_sizes(block: Any) -> Iterator[str]:
    if isinstance(block, dict):
        for key, value in block.items():
            if key == "text" and isinstance(value, str):
                yield value
            else:
                yield from text_sizes(value)
    elif isinstance(block, list | tuple):
        for value in block:
            yield from text_sizes(value)


def check_limits(message: SlackMessage) -> None:
    assert len(message.blocks) <= BLOCKS_MAX
    assert len(message.text) <= TEXT_MAX
    assert sum(len(text) for text in text_sizes(message.blocks)) <= BLOCKS_TEXT_MAX
    for block in message.blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= HEADER_MAX
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SECTION_MAX
    json.dumps(message.payload())  # plain JSON all the way down


def test_a_digest_reads_like_the_email_one(slack: FakeSlack) -> None:
    view = make_view(items=tuple(make_item(n) for n in range(3)))
    messages = SlackRenderer().render(view)
    stored = post_all(slack, messages)

    assert [(m.part, m.parts, m.items) for m in messages] == [(1, 1, (1, 2, 3))]
    shown = seen(stored[0])
    assert shown.text.startswith("FlareStart · Tuesday, 7 May 2024\nGood morning, Ada. 3 stories picked")
    assert "Story 1: Python 3.13 ships an experimental JIT" in shown.text
    assert "The Verge · Ada Lovelace · 2h ago · Python" in shown.text  # source · author · age · chip
    assert "Excerpt 1: a free-threaded build" in shown.text
    assert "Because you follow Python and AI." in shown.text
    assert (
        "https://news.example.com/articles/1?ref=feed&lang=en",
        "Story 1: Python 3.13 ships an experimental JIT",
    ) in shown.links
    assert ("https://hackernoon.example.com/1", "Hackernoon") in shown.links
    assert "Also covered by Hackernoon" in shown.text
    assert ("https://flarestart.example.com/p/PREFTOKEN", "Choose topics and time") in shown.links
    assert ("https://flarestart.example.com/u/UNSUBTOKEN", "Unsubscribe") in shown.links
    assert [block["type"] for block in messages[0].blocks].count("divider") == 2
    assert stored[0]["unfurl_links"] is False and stored[0]["unfurl_media"] is False
    assert seen_text(stored[0]).text.startswith("FlareStart · Tuesday, 7 May 2024\n\n1. Story 0")


HOSTILE = [
    "<!channel> wake up",
    "<!here|here> and <!everyone>",
    "<@U123> you have been chosen",
    "<#C999|general> leak",
    "<https://evil.example.com|click> for more",
    "*bold* _italic_ ~strike~ `code`",
    "Tom &amp; Jerry &lt;b&gt; & < >",
    "a > b < c | d",
]


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("field", ["title", "excerpt", "source", "author", "also"])
def test_hostile_feed_text_arrives_inert(slack: FakeSlack, hostile: str, field: str) -> None:
    changes: dict[str, object] = {"also_covered_by": (("Other", "https://other.example.com/x"),)}
    if field == "also":
        changes["also_covered_by"] = ((hostile, "https://other.example.com/x"),)
    else:
        changes[field] = hostile
    view = make_view(items=(make_item(1, **changes),), subscriber_name=hostile)
    stored = post_all(slack, SlackRenderer().render(view))

    shown, notification = seen(stored[0]), seen_text(stored[0])
    assert hostile in shown.text  # shown exactly as the feed wrote it
    assert shown.mentions == () and notification.mentions == ()
    assert {url for url, _ in shown.links} <= {
        "https://news.example.com/articles/1?ref=feed&lang=en",
        "https://other.example.com/x",
        "https://flarestart.example.com/p/PREFTOKEN",
        "https://flarestart.example.com/u/UNSUBTOKEN",
    }
    assert notification.links == () and notification.formatted == ()
    # Only our own styling: the whole title bold, the whole byline italic; nothing the feed wrote.
    title = shown.links[0][1] if field == "title" else "Story 1: Python 3.13 ships an experimental JIT"
    for style, text in shown.formatted:
        assert style in OUR_STYLES
        assert text == title or text.startswith("\n")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a|b>c<d", "https://example.com/a%7Cb%3Ec%3Cd"),
        ("http://example.com/ok?x=1&y=2", "http://example.com/ok?x=1&y=2"),
        ("javascript:alert(1)", None),
        ("data:text/html,x", None),
        ("/relative/path", None),
        ("", None),
    ],
)
def test_links_are_http_and_cannot_break_out(url: str, expected: str | None) -> None:
    assert slack_url(url) == expected


def test_an_unsafe_article_link_leaves_the_title_unlinked(slack: FakeSlack) -> None:
    view = make_view(items=(make_item(1, url="javascript:alert(1)"),))
    shown = seen(post_all(slack, SlackRenderer().render(view))[0])
    assert "Story 1: Python 3.13 ships an experimental JIT" in shown.text
    assert not any("javascript" in url for url, _ in shown.links)


def long_item(number: int, title: int, excerpt: int, also: int) -> DigestItemView:
    return make_item(
        number,
        title=f"T{number} " + "t" * title,
        excerpt=f"E{number} " + "word " * (excerpt // 5),
        url=f"https://news.example.com/{number}",
        also_covered_by=tuple((f"Outlet {k}", f"https://o{k}.example.com/{number}") for k in range(also)),
    )


@pytest.mark.parametrize(
    ("count", "title", "excerpt", "also", "thread"),
    [
        (1, 20, 50, 0, False),
        (
            16,
            20,
            50,
            1,
            False,
        ),  # fills one message's 50 blocks exactly (2 header + 16×3 − 1 divider + footer)
        (17, 20, 50, 1, False),  # one more item: a second part
        (60, 300, 600, 3, False),  # long text: the text budget splits first
        (200, 40, 100, 0, False),
        (40, 300, 600, 5, True),
        (3, 20, 50, 0, True),
    ],
)
def test_long_digests_split_under_every_limit_and_keep_every_item_once(
    slack: FakeSlack, count: int, title: int, excerpt: int, also: int, thread: bool
) -> None:
    view = make_view(items=tuple(long_item(n, title, excerpt, also) for n in range(count)))
    messages = SlackRenderer(thread=thread).render(view)
    stored = post_all(slack, messages)  # the fake refuses anything over Slack's limits

    for message in messages:
        check_limits(message)
    assert [m.part for m in messages] == list(range(1, len(messages) + 1))
    assert {m.parts for m in messages} == {len(messages)}
    carried = [number for message in messages for number in message.items]
    assert carried == list(range(1, count + 1))
    article_links = [
        url
        for message in stored
        for url, _ in seen(message).links
        if url.startswith("https://news.example.com/")
    ]
    assert sorted(article_links) == sorted(f"https://news.example.com/{n}" for n in range(count))
    assert len(stored) == len(messages)
    if thread:
        assert messages[0].items == () and all(m.in_thread for m in messages[1:])
        assert all(message.get("thread_ts") == stored[0]["ts"] for message in stored[1:])
    if len(messages) > 1 and not thread:
        assert seen(stored[1]).text.startswith(
            f"FlareStart · Tuesday, 7 May 2024 · part 2 of {len(messages)}"
        )
    footer = "https://flarestart.example.com/u/UNSUBTOKEN"
    assert [any(url == footer for url, _ in seen(m).links) for m in stored] == [False] * (len(stored) - 1) + [
        True
    ]


def test_sixteen_items_fit_one_message_and_seventeen_do_not() -> None:
    renderer = SlackRenderer()
    items = tuple(make_item(n) for n in range(17))
    assert len(renderer.render(make_view(items=items[:16]))) == 1
    assert len(renderer.render(make_view(items=items))) == 2


def test_a_quiet_day_is_one_short_message(slack: FakeSlack) -> None:
    messages = SlackRenderer().render(make_view(items=(), quiet=True))
    shown = seen(post_all(slack, messages)[0])
    assert len(messages) == 1 and messages[0].items == ()
    assert "A quiet day" in shown.text


def test_the_header_is_cut_to_slacks_limit(slack: FakeSlack, tmp_path: Path) -> None:
    (tmp_path / "digest.j2").write_text(
        (Path(__file__).parents[2] / "templates/slack/digest.j2")
        .read_text()
        .replace(
            "{{ digest.brand }} · {{ digest.date_label }}\n{%- endmacro %}",
            "{{ 'x' * 400 }}\n{%- endmacro %}",
            1,
        )
    )
    messages = SlackRenderer(template_dir=tmp_path).render(make_view())
    post_all(slack, messages)
    header = messages[0].blocks[0]["text"]["text"]
    assert len(header) == HEADER_MAX and header.endswith("…")


def test_a_user_template_overrides_the_words(tmp_path: Path) -> None:
    shipped = (Path(__file__).parents[2] / "templates/slack/digest.j2").read_text()
    (tmp_path / "digest.j2").write_text(shipped.replace("Also covered by", "Elsewhere:"))
    messages = SlackRenderer(template_dir=tmp_path).render(make_view(items=(make_item(1),)))
    assert "Elsewhere: Hackernoon" in seen({"blocks": list(messages[0].blocks)}).text


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{% macro header(digest) %}{{ digest.brand }\n", "line 1"),
        ("{% macro header(digest) %}x{% endmacro %}\n", r"lacks the macro\(s\) continued"),
    ],
)
def test_a_broken_template_fails_at_start_naming_the_problem(
    tmp_path: Path, template: str, message: str
) -> None:
    (tmp_path / "digest.j2").write_text(template)
    with pytest.raises(DigestTemplateError, match=message):
        SlackRenderer(template_dir=tmp_path)


def test_a_template_that_fails_while_rendering_names_its_macro(tmp_path: Path) -> None:
    shipped = (Path(__file__).parents[2] / "templates/slack/digest.j2").read_text()
    (tmp_path / "digest.j2").write_text(shipped.replace("{{ item.reason }}", "{{ item.no_such_field }}"))
    renderer = SlackRenderer(template_dir=tmp_path)
    with pytest.raises(DigestTemplateError, match="macro reason"):
        renderer.render(make_view())


def test_a_missing_template_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"slack\.template_dir"):
        SlackRenderer(template_dir=tmp_path / "nope")


def test_the_fallback_escapes_what_mrkdwn_would_parse() -> None:
    assert escape_mrkdwn("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    view = make_view(items=(make_item(1, title="<!channel> & co"),))
    (message,) = SlackRenderer().render(view)
    assert "&lt;!channel&gt; &amp; co" in message.text


def test_rendering_depends_on_the_views_clock_only() -> None:
    view = make_view(items=(make_item(1),))
    later: DigestView = replace(view, now=view.now.replace(year=view.now.year + 1))
    first = SlackRenderer().render(view)[0]
    assert "2h ago" in seen({"blocks": list(first.blocks)}).text
    assert "2h ago" not in seen({"blocks": list(SlackRenderer().render(later)[0].blocks)}).text
