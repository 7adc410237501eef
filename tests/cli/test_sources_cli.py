"""`flarestart sources …` as a user types it, against feeds served on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.testing.httpserver import FixtureServer, static
from tests.cli.conftest import Runner

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Loopback Weekly</title><link>http://127.0.0.1/</link>
<item><title>First post</title><link>http://127.0.0.1/1</link><guid>p1</guid>
<pubDate>Thu, 26 Nov 2026 08:00:00 GMT</pubDate>
<description>Hello &lt;b&gt;world&lt;/b&gt;</description></item>
</channel></rss>"""

PAGE = b"""<!doctype html><html><head><title>Blog</title>
<link rel="alternate" type="application/rss+xml" title="Feed" href="/feed.xml"></head>
<body>Welcome</body></html>"""


def test_add_from_a_page_discovers_the_feed(cli: Runner, feed_server: FixtureServer) -> None:
    feed_server.add("/feed.xml", static(RSS, "application/rss+xml"))
    page = feed_server.add("/", static(PAGE, "text/html"))
    result = cli("sources", "add", page, "--topics", "Python, AI")
    assert result.code == 0, result.err
    assert "Added 'Loopback Weekly'" in result.out
    [source] = cli("sources", "list", "--json").json()
    assert source["url"] == feed_server.url("/feed.xml")
    assert source["topics"] == ["python", "ai"]
    assert source["status"] == "new"


def test_adding_the_same_feed_twice_is_reported_not_added(cli: Runner, feed_server: FixtureServer) -> None:
    url = feed_server.add("/feed.xml", static(RSS, "application/rss+xml"))
    assert cli("sources", "add", url).code == 0
    again = cli("sources", "add", url, "--name", "Another name")
    assert again.code != 0
    assert "already a source" in again.err
    assert len(cli("sources", "list", "--json").json()) == 1


def test_bad_urls_and_pages_without_feeds_are_one_line_errors(
    cli: Runner, feed_server: FixtureServer
) -> None:
    page = feed_server.add("/plain", static(b"<html><body>no feed here</body></html>", "text/html"))
    for args, expected in (
        (("ftp://example.com/feed",), "http"),
        ((page,), "no feed found"),
        ((feed_server.url("/missing"),), "404"),
    ):
        result = cli("sources", "add", *args)
        assert result.code != 0, args
        assert result.err.startswith("error:") and expected in result.err, result.err
        assert "Traceback" not in result.err
    assert cli("sources", "list", "--json").json() == []


def test_enable_disable_remove_and_unknown_names(cli: Runner, feed_server: FixtureServer) -> None:
    url = feed_server.add("/feed.xml", static(RSS, "application/rss+xml"))
    cli("sources", "add", url, "--name", "Weekly")
    assert cli("sources", "disable", "Weekly").code == 0
    assert cli("sources", "list", "--json").json()[0]["enabled"] is False
    assert cli("sources", "enable", "Weekly").code == 0
    assert cli("sources", "list", "--json").json()[0]["enabled"] is True
    missing = cli("sources", "remove", "Weekl")
    assert missing.code == 3 and "did you mean 'Weekly'" in missing.err
    assert cli("sources", "remove", "Weekly").code == 0
    assert cli("sources", "list", "--json").json() == []


OPML = """<?xml version="1.0"?>
<opml version="2.0"><head><title>Mine</title></head><body>
  <outline text="News">
    <outline type="rss" text="One" xmlUrl="https://one.example/feed"/>
    <outline text="Deep"><outline type="rss" text="Two" xmlUrl="https://two.example/rss"/></outline>
  </outline>
  <outline type="rss" text="Three &amp; Co" xmlUrl="https://three.example/atom"/>
</body></opml>"""


def test_opml_import_export_round_trip(cli: Runner, tmp_path: Path) -> None:
    source = tmp_path / "in.opml"
    source.write_text(OPML, encoding="utf-8")
    assert cli("sources", "import", str(source)).code == 0
    listed = {s["name"]: s["category"] for s in cli("sources", "list", "--json").json()}
    assert listed == {"One": "News", "Two": "News/Deep", "Three & Co": None}
    exported = tmp_path / "out.opml"
    assert cli("sources", "export", str(exported)).code == 0
    again = cli("sources", "import", str(exported))
    assert again.code == 0 and "3 already present" in again.out
    assert len(cli("sources", "list", "--json").json()) == 3


def test_malformed_opml_writes_nothing(cli: Runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.opml"
    bad.write_text(OPML.replace('xmlUrl="https://two.example/rss"', ""), encoding="utf-8")
    result = cli("sources", "import", str(bad))
    assert result.code != 0 and "nothing imported" in result.err
    assert cli("sources", "list", "--json").json() == []
    broken = tmp_path / "broken.opml"
    broken.write_text("<opml><body><outline", encoding="utf-8")
    result = cli("sources", "import", str(broken))
    assert result.code != 0 and "broken.opml" in result.err
    assert cli("sources", "import", str(bad), "--skip-invalid").code == 0
    assert len(cli("sources", "list", "--json").json()) == 2


def test_sources_list_keeps_names_whole_at_80_columns(
    cli: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["Medium: Programming", "DEV Community", "Hackernoon", "The Pragmatic Engineer Newsletter X"]
    outlines = "".join(
        f'<outline text="{name}" type="rss" xmlUrl="https://feeds{n}.example/rss"/>'
        for n, name in enumerate(names)
    )
    opml = tmp_path / "feeds.opml"
    opml.write_text(f'<opml version="2.0"><body>{outlines}</body></opml>', encoding="utf-8")
    assert cli("sources", "import", str(opml)).code == 0
    monkeypatch.setenv("COLUMNS", "80")

    table = cli("sources", "list").out

    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in names[:3]:  # each on one line, never cut inside a word
        assert any(name in line for line in lines), (name, table)
    assert any("The Pragmatic Engineer …" in line for line in lines), table  # past 24: an ellipsis
