"""`topics list` and `preview`: what a reader would get now, each item explained."""

from __future__ import annotations

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

    items = cli("preview", "--topics", "business", "--json").json()

    assert len(items) == 1
    assert items[0]["story_size"] == 2 and items[0]["related_stories"] == []
    assert [a["source"] for a in items[0]["also_covered_by"]] == [
        "Wire B" if items[0]["source"] == "Wire A" else "Wire A"
    ]
