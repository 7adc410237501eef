"""`topics list` and `preview`: what a reader would get now, each item explained."""

from __future__ import annotations

import pytest
from rich.console import Console

from bot.cli import ranking as ranking_cli
from bot.testing.httpserver import FixtureServer, static
from tests.cli.conftest import Runner

FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Dev News</title>
<item><title>How to profile Python code with py-spy</title><link>https://dev.example/pyspy</link>
<guid>a</guid><category>python</category><description>A tutorial on sampling profilers.</description></item>
<item><title>Rust 1.90 released with faster compile times</title><link>https://dev.example/rust</link>
<guid>b</guid><category>rust</category><description>The Rust team ships a release.</description></item>
<item><title>Bitcoin hits a record as crypto funds pile in</title><link>https://dev.example/btc</link>
<guid>c</guid><category>crypto</category><description>Crypto markets rally.</description></item>
</channel></rss>"""


def test_topics_list_ships_the_taxonomy(cli: Runner) -> None:
    topics = cli("topics", "list", "--json").json()
    slugs = {t["slug"] for t in topics}
    assert len([t for t in topics if t["kind"] == "topic"]) >= 40
    assert {"python", "rust", "security", "how-to", "news", "opinion"} <= slugs


def test_preview_by_topics_explains_each_item(cli: Runner, feed_server: FixtureServer) -> None:
    cli("sources", "add", feed_server.add("/feed.xml", static(FEED)), "--name", "Dev News")
    assert cli("fetch", "--all").code == 0
    items = cli("preview", "--topics", "python,rust", "--mute", "crypto", "--json").json()
    assert {i["title"] for i in items} == {
        "How to profile Python code with py-spy",
        "Rust 1.90 released with faster compile times",
    }
    for item in items:
        assert item["source"] == "Dev News" and item["score"] > 0
        assert item["topics"] and item["topics"][0]["terms"]
        assert item["why"].startswith("because you follow")
        assert {"url", "published", "story_id", "also_covered_by"} <= set(item)
    people = cli("preview", "--topics", "python")
    assert people.code == 0 and "py-spy" in people.out and "because you follow Python" in people.out


def test_unknown_topic_lists_the_closest_names(cli: Runner) -> None:
    result = cli("preview", "--topics", "pyton")
    assert result.code != 0
    assert "pyton" in result.err and "python" in result.err and "Traceback" not in result.err


def test_no_match_is_an_empty_digest_with_the_reason(cli: Runner, feed_server: FixtureServer) -> None:
    cli("sources", "add", feed_server.add("/feed.xml", static(FEED)), "--name", "Dev News")
    cli("fetch", "--all")
    result = cli("preview", "--topics", "haskell")
    assert result.code == 0 and "Empty digest" in result.out and "haskell" in result.out.lower()


HOSTILE = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Dev News</title>
<item><title>Python 3.14 [bold]ships[/bold] at 0x1F, see [link=https://evil.example/]this[/link]</title>
<link>https://dev.example/py</link><guid>h</guid><category>python</category>
<description>Python 3.14 is out.</description></item>
</channel></rss>"""


def test_preview_prints_feed_text_as_written_without_highlighting(
    cli: Runner, feed_server: FixtureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Feed text is neither markup nor run through the highlighter (whose regexes once spun for
    minutes on a 2 MB title): on a colour terminal the title comes out in one piece."""
    cli("sources", "add", feed_server.add("/feed.xml", static(HOSTILE)), "--name", "Dev [i]News[/i]")
    cli("fetch", "--all")
    monkeypatch.setattr(
        ranking_cli, "console", Console(force_terminal=True, color_system="standard", width=300)
    )

    result = cli("preview", "--topics", "python")

    title = "Python 3.14 [bold]ships[/bold] at 0x1F, see [link=https://evil.example/]this[/link]"
    assert result.code == 0
    assert title in result.out  # no escape codes inside it: nothing highlighted 3.14 or 0x1F
    assert "via Dev [i]News[/i]" in result.out


def test_articles_list_prints_titles_as_written(cli: Runner, feed_server: FixtureServer) -> None:
    cli("sources", "add", feed_server.add("/feed.xml", static(HOSTILE)), "--name", "Dev News")
    cli("fetch", "--all")

    result = cli("articles", "list")

    assert result.code == 0
    assert "[link=https://evil.example/]this[/link]" in result.out.replace("\n", "")
