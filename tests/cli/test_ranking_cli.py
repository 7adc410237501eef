"""`topics list` and `preview`: what a reader would get now, each item explained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

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
    preview = cli("preview", "--topics", "python,rust", "--mute", "crypto", "--json").json()
    items = preview["items"]
    assert (preview["candidates"], preview["shown"], preview["left_out"]["muted"]) == (2, 2, 0)
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


def _python_feed(ages_hours: list[float]) -> bytes:
    """Python articles published `ages_hours` before now (the clock of the test run)."""
    now = datetime.now(UTC)
    items = "".join(
        f"<item><title>Python note {n}: a distinct subject {n * 7919}</title>"
        f"<link>https://dev.example/{n}</link><guid>p{n}</guid><category>python</category>"
        f"<pubDate>{format_datetime(now - timedelta(hours=age), usegmt=True)}</pubDate>"
        f"<description>Number {n} about something else entirely, {n * 104729}.</description></item>"
        for n, age in enumerate(ages_hours)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Py</title>{items}</channel></rss>'.encode()
    )


def _with_feed(cli: Runner, feed_server: FixtureServer, body: bytes) -> None:
    assert cli("sources", "add", feed_server.add("/py.xml", static(body)), "--name", "Py").code == 0
    assert cli("fetch", "--all").code == 0


def test_an_empty_store_says_there_are_no_articles_yet(cli: Runner) -> None:
    preview = cli("preview", "--topics", "python", "--json").json()
    assert preview["items"] == [] and preview["newest_article_age_hours"] is None
    assert preview["reason"].startswith("no articles at all yet")
    people = cli("preview", "--topics", "python")
    assert "Empty digest" in people.out and "fetch --all" in people.out


def test_articles_older_than_the_window_say_how_old_the_newest_is_and_the_window_is_a_setting(
    cli: Runner, feed_server: FixtureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_feed(cli, feed_server, _python_feed([72, 80]))

    preview = cli("preview", "--topics", "python", "--json").json()

    assert preview["items"] == [] and (preview["in_window"], preview["window_hours"]) == (0, 24)
    assert preview["reason"].startswith("no articles in the last 24 h: the newest is 3 days old")
    assert 71.9 < preview["newest_article_age_hours"] < 72.5
    monkeypatch.setenv("FLARESTART_DIGEST_WINDOW_HOURS", "96")
    wider = cli("preview", "--topics", "python", "--json").json()
    assert (len(wider["items"]), wider["window_hours"], wider["reason"]) == (2, 96, None)


def test_the_per_source_cap_is_named_when_fewer_items_than_candidates_show(
    cli: Runner, feed_server: FixtureServer
) -> None:
    _with_feed(cli, feed_server, _python_feed([1, 2, 3, 4, 5, 6]))

    preview = cli("preview", "--topics", "python", "--json").json()

    assert (len(preview["items"]), preview["candidates"], preview["shown"]) == (2, 6, 2)
    assert preview["left_out"] == {
        "muted": 0,
        "already_sent": 0,
        "per_source_cap_or_same_story": 4,
        "max_items": 0,
    }
    assert preview["reason"] == (
        "2 of 6 candidates of the last 24 h: 4 over the per-source cap (2 a source) or the same story"
    )
    people = cli("preview", "--topics", "python")
    assert "2 of 6 candidates" in people.out and "per-source cap" in people.out


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


# Two outlets on one event, in their own words (headlines from the UCI News Aggregator data set,
# CC BY 4.0): the digest shows it once, and --json says which story and how big it is.
def one_story_feed(title: str, guid: str) -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Markets</title>'
        f"<item><title>{title}</title><link>https://markets.example/{guid}</link><guid>{guid}</guid>"
        "<category>business</category><description>The Fed official spoke on Monday.</description>"
        "</item></channel></rss>"
    ).encode()


def test_preview_json_shows_story_id_and_size(cli: Runner, feed_server: FixtureServer) -> None:
    first = feed_server.add(
        "/a.xml", static(one_story_feed("Fed's Plosser: Taper pace may be too slow", "a"))
    )
    second = feed_server.add(
        "/b.xml", static(one_story_feed("Plosser: Fed May Have to Accelerate Tapering Pace", "b"))
    )
    cli("sources", "add", first, "--name", "Wire A")
    cli("sources", "add", second, "--name", "Wire B")
    assert cli("fetch", "--all").code == 0

    items = cli("preview", "--topics", "business", "--json").json()["items"]

    assert len(items) == 1
    assert items[0]["story_size"] == 2 and items[0]["related_stories"] == []
    assert [a["source"] for a in items[0]["also_covered_by"]] == [
        "Wire B" if items[0]["source"] == "Wire A" else "Wire A"
    ]
