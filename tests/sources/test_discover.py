"""Feed autodiscovery: the links a page declares, then the whole hunt against a loopback host."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from bot.config import FetchSettings
from bot.errors import SourceError
from bot.sources.discover import (
    COMMON_FEED_PATHS,
    MAX_DECLARED_LINKS,
    FeedLink,
    Fetch,
    discover_feed,
    find_feed_links,
)
from bot.sources.fetch import Fetcher
from bot.sources.parse import parse_feed
from bot.sources.types import ParsedFeed
from bot.testing.httpserver import FixtureServer, redirect, static

PAGE = "https://blog.example.com/posts/2024/hello.html"


def page(head: str, body: str = "") -> bytes:
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>".encode()


# find_feed_links


def test_every_declared_feed_type_in_page_order() -> None:
    html = page(
        '<link rel="stylesheet" href="/style.css">'
        '<link rel="alternate" type="application/atom+xml" title="Atom" href="/atom.xml">'
        '<link rel="icon" type="image/png" href="/favicon.png">'
        '<link rel="alternate" type="application/rss+xml" title="RSS" href="/rss.xml">'
        '<link rel="alternate" type="text/html" hreflang="fr" href="/fr/">'
        '<link rel="alternate" type="application/feed+json" title="JSON" href="/feed.json">'
        '<link rel="alternate" type="application/json" href="/wp-json/posts">'
        '<link rel="alternate" type="application/rdf+xml" href="/index.rdf">'
        '<link rel="alternate" type="text/xml" href="/old.xml">'
        '<link rel="canonical" href="/posts/2024/hello.html">'
    )

    links = find_feed_links(html, PAGE)

    assert links == [
        FeedLink("https://blog.example.com/atom.xml", "Atom", "application/atom+xml"),
        FeedLink("https://blog.example.com/rss.xml", "RSS", "application/rss+xml"),
        FeedLink("https://blog.example.com/feed.json", "JSON", "application/feed+json"),
        FeedLink("https://blog.example.com/wp-json/posts", None, "application/json"),
        FeedLink("https://blog.example.com/index.rdf", None, "application/rdf+xml"),
        FeedLink("https://blog.example.com/old.xml", None, "text/xml"),
    ]


def test_relative_hrefs_resolve_against_the_page() -> None:
    html = page(
        '<link rel="alternate" type="application/rss+xml" href="feed.xml">'
        '<link rel="alternate" type="application/rss+xml" href="../atom.xml">'
        '<link rel="alternate" type="application/rss+xml" href="//cdn.example.net/f.xml">'
        '<link rel="alternate" type="application/rss+xml" href="?format=rss">'
        '<link rel="alternate" type="application/rss+xml" href="  /spaced.xml\n">'
    )

    urls = [link.url for link in find_feed_links(html, PAGE)]

    assert urls == [
        "https://blog.example.com/posts/2024/feed.xml",
        "https://blog.example.com/posts/atom.xml",
        "https://cdn.example.net/f.xml",
        "https://blog.example.com/posts/2024/hello.html?format=rss",
        "https://blog.example.com/spaced.xml",
    ]


def test_base_href_wins_over_the_page_url_and_is_itself_resolved() -> None:
    absolute = page(
        '<base href="https://static.example.org/site/">'
        '<link rel="alternate" type="application/rss+xml" href="feed.xml">'
    )
    relative = page(
        '<base href="/blog/"><base href="/ignored/">'
        '<link rel="alternate" type="application/atom+xml" href="atom.xml">'
    )
    no_href = page('<base target="_blank"><link rel="alternate" type="application/rss+xml" href="rss">')

    assert [link.url for link in find_feed_links(absolute, PAGE)] == [
        "https://static.example.org/site/feed.xml"
    ]
    assert [link.url for link in find_feed_links(relative, PAGE)] == [
        "https://blog.example.com/blog/atom.xml"
    ]
    assert [link.url for link in find_feed_links(no_href, PAGE)] == [
        "https://blog.example.com/posts/2024/rss"
    ]


def test_rel_is_a_case_insensitive_token_list() -> None:
    html = page(
        '<link rel="alternate feed" type="application/rss+xml" href="/a">'
        '<link rel="  ALTERNATE  " type="application/rss+xml" href="/b">'
        '<link rel="feed" type="application/atom+xml" href="/c">'
        '<link rel="feed" type="application/json" href="/api-not-a-feed">'
        '<link rel="alternates" type="application/rss+xml" href="/not-a-token-match">'
        '<link rel="stylesheet" type="text/xml" href="/style.xml">'
        '<link type="application/rss+xml" href="/no-rel">'
    )

    urls = [link.url for link in find_feed_links(html, PAGE)]

    assert urls == [
        "https://blog.example.com/a",
        "https://blog.example.com/b",
        "https://blog.example.com/c",
    ]


def test_uppercase_tags_attributes_and_types() -> None:
    html = (
        b"<HTML><HEAD>"
        b'<LINK REL="Alternate" TYPE="Application/RSS+XML; charset=UTF-8" '
        b'TITLE="  Main feed  " HREF="/Feed.XML">'
        b"</HEAD></HTML>"
    )

    links = find_feed_links(html, PAGE)

    assert links == [FeedLink("https://blog.example.com/Feed.XML", "Main feed", "application/rss+xml")]


def test_duplicates_and_unusable_hrefs_are_dropped() -> None:
    html = page(
        '<link rel="alternate" type="application/rss+xml" href="/feed">'
        '<link rel="alternate" type="application/atom+xml" title="Again" href="/feed#top">'
        '<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">'
        '<link rel="alternate" type="application/rss+xml" href="mailto:me@example.com">'
        '<link rel="alternate" type="application/rss+xml" href="data:text/xml,<rss/>">'
        '<link rel="alternate" type="application/rss+xml" href="">'
        '<link rel="alternate" type="application/rss+xml">'
        '<link rel="alternate" type="application/rss+xml" href="http://[::1">'
        '<link rel="alternate" type="application/rss+xml" title="" href="/other">'
    )

    links = find_feed_links(html, PAGE)

    assert links == [
        FeedLink("https://blog.example.com/feed", None, "application/rss+xml"),
        FeedLink("https://blog.example.com/other", None, "application/rss+xml"),
    ]


def test_a_page_without_feed_links_gives_none() -> None:
    html = page('<link rel="stylesheet" href="/s.css"><title>No feeds</title>', "<p>Hello</p>")

    assert find_feed_links(html, PAGE) == []
    assert find_feed_links(b"", PAGE) == []
    assert find_feed_links(b"   \n", PAGE) == []
    assert find_feed_links(b"<!-- nothing but a comment -->", PAGE) == []


def test_broken_html_is_read_like_a_browser_would() -> None:
    html = (
        b'<html><head><title>Bold <b>title</title><meta name=x content="a"b" <p <div>'
        b"<link rel=alternate type=application/rss+xml href=/unquoted.xml title=Bare>"
        b"<div><p>never closed"
        b'<link rel="alternate" type="application/atom+xml" href="/in-body.xml">'
        b"</span></table>\x00 stray bytes \xff\xfe <<<>>>"
        b"<!-- a comment hiding <link rel=alternate type=application/rss+xml href=/hidden> -->"
    )

    urls = [link.url for link in find_feed_links(html, PAGE)]

    assert urls == ["https://blog.example.com/unquoted.xml", "https://blog.example.com/in-body.xml"]


def test_the_page_charset_decodes_titles() -> None:
    html = (
        '<html><head><meta charset="windows-1252">'
        '<link rel="alternate" type="application/rss+xml" title="Café crème" href="/f">'
        "</head></html>"
    ).encode("cp1252")

    assert [link.title for link in find_feed_links(html, PAGE)] == ["Café crème"]


def test_xhtml_pages_work_too() -> None:
    html = (
        b'<?xml version="1.0" encoding="utf-8"?>\n'
        b'<html xmlns="http://www.w3.org/1999/xhtml"><head>'
        b'<link rel="alternate" type="application/atom+xml" href="atom.xml" />'
        b"</head><body/></html>"
    )

    assert [link.url for link in find_feed_links(html, PAGE)] == [
        "https://blog.example.com/posts/2024/atom.xml"
    ]


# discover_feed, against a real loopback host with the real fetcher and parser


RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
  <title>Loopback RSS</title><link>http://example.com/</link><description>d</description>
  <item><title>First post</title><link>http://example.com/1</link><guid>p1</guid></item>
</channel></rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Loopback Atom</title><id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <updated>2024-05-01T10:00:00Z</updated>
  <entry><title>An entry</title><id>urn:entry:1</id><updated>2024-05-01T10:00:00Z</updated>
    <link href="http://example.com/e1"/></entry>
</feed>"""

JSON_FEED = b"""{"version": "https://jsonfeed.org/version/1.1", "title": "Loopback JSON",
 "items": [{"id": "1", "url": "http://example.com/j1", "content_text": "hi"}]}"""


def html_page(*links: str, body: str = "<p>Welcome</p>") -> bytes:
    head = "".join(
        f'<link rel="alternate" type="{kind}" href="{href}">'
        for kind, href in (link.split(" ", 1) for link in links)
    )
    return page(f"<title>A blog</title>{head}", body)


@pytest.fixture
async def fetch() -> AsyncIterator[Fetch]:
    async with Fetcher(FetchSettings(), allow_private=True) as fetcher:
        yield lambda url: fetcher.fetch(url)


def parse(body: bytes, url: str, content_type: str | None) -> ParsedFeed:
    return parse_feed(body, url=url, content_type=content_type)


async def test_a_feed_url_is_its_own_feed(feed_server: FixtureServer, fetch: Fetch) -> None:
    url = feed_server.add("/feed.xml", static(RSS, "application/rss+xml"))

    found, feed = await discover_feed(url, fetch=fetch, parse=parse)

    assert found == url
    assert feed.title == "Loopback RSS"
    assert len(feed_server.requests) == 1


async def test_a_page_leads_to_the_feed_it_declares(feed_server: FixtureServer, fetch: Fetch) -> None:
    feed_server.add("/blog/atom.xml", static(ATOM, "application/atom+xml"))
    url = feed_server.add("/blog/", static(html_page("application/atom+xml atom.xml"), "text/html"))

    found, feed = await discover_feed(url, fetch=fetch, parse=parse)

    assert found == feed_server.url("/blog/atom.xml")
    assert feed.title == "Loopback Atom"


async def test_declared_links_are_tried_in_page_order_until_one_parses(
    feed_server: FixtureServer, fetch: Fetch
) -> None:
    feed_server.add("/broken.xml", static(b"<rss><channel><title>oops", "application/rss+xml"))
    feed_server.add("/feed.json", static(JSON_FEED, "application/feed+json"))
    feed_server.add("/later.xml", static(RSS, "application/rss+xml"))
    url = feed_server.add(
        "/",
        static(
            html_page(
                "application/rss+xml /missing.xml",
                "application/rss+xml /broken.xml",
                "application/feed+json /feed.json",
                "application/rss+xml /later.xml",
            ),
            "text/html; charset=utf-8",
        ),
    )

    found, feed = await discover_feed(url, fetch=fetch, parse=parse)

    assert found == feed_server.url("/feed.json")
    assert feed.title == "Loopback JSON"
    assert feed_server.hits("/later.xml") == []


async def test_common_paths_are_tried_when_the_page_declares_nothing(
    feed_server: FixtureServer, fetch: Fetch
) -> None:
    feed_server.add("/rss", static(b"<html><body>not a feed</body></html>", "text/html"))
    feed_server.add("/atom.xml", static(ATOM, "application/atom+xml"))
    feed_server.add("/index.xml", static(RSS, "application/rss+xml"))
    url = feed_server.add("/about/team.html", static(html_page(), "text/html"))

    found, feed = await discover_feed(url, fetch=fetch, parse=parse)

    assert found == feed_server.url("/atom.xml")
    assert feed.title == "Loopback Atom"
    asked = [request.path for request in feed_server.requests]
    assert asked == ["/about/team.html", "/feed", "/rss", "/rss.xml", "/atom.xml"]


async def test_common_paths_follow_declared_links_that_fail(feed_server: FixtureServer, fetch: Fetch) -> None:
    feed_server.add("/feed", static(RSS, "application/rss+xml"))
    url = feed_server.add("/", static(html_page("application/rss+xml /gone.xml"), "text/html"))

    found, _ = await discover_feed(url, fetch=fetch, parse=parse)

    assert found == feed_server.url("/feed")


async def test_redirects_count_from_where_they_land(feed_server: FixtureServer, fetch: Fetch) -> None:
    feed_server.add("/start", redirect("/home/"))
    feed_server.add("/home/", static(html_page("application/rss+xml feed"), "text/html"))
    feed_server.add("/home/feed", redirect("/home/feed.rss", 302))
    feed_server.add("/home/feed.rss", static(RSS, "application/rss+xml"))

    found, _ = await discover_feed(feed_server.url("/start"), fetch=fetch, parse=parse)

    assert found == feed_server.url("/home/feed.rss")


async def test_nothing_found_says_what_was_tried(feed_server: FixtureServer, fetch: Fetch) -> None:
    url = feed_server.add("/", static(html_page(), "text/html"))

    with pytest.raises(SourceError) as caught:
        await discover_feed(url, fetch=fetch, parse=parse)

    assert str(caught.value) == (
        f"no feed found at {url}: the page declares no <link rel=alternate> feed and none of "
        "/feed, /rss, /rss.xml, /atom.xml, /feed.xml, /index.xml, /feed.json parse"
    )
    assert len(feed_server.requests) == 1 + len(COMMON_FEED_PATHS)


async def test_failing_declared_links_are_named_with_their_reasons(
    feed_server: FixtureServer, fetch: Fetch
) -> None:
    feed_server.add("/not-a-feed.xml", static(b"<html><p>hi</p></html>", "text/xml"))
    url = feed_server.add(
        "/",
        static(
            html_page("application/rss+xml /missing.xml", "text/xml /not-a-feed.xml"),
            "text/html",
        ),
    )

    with pytest.raises(SourceError) as caught:
        await discover_feed(url, fetch=fetch, parse=parse)

    message = str(caught.value)
    assert message.startswith(f"no feed found at {url}: the page declares 2 feeds but none parse")
    assert f"{feed_server.url('/missing.xml')}: HTTP 404" in message
    assert f"{feed_server.url('/not-a-feed.xml')}: not a feed: " in message
    assert message.endswith(
        "and none of /feed, /rss, /rss.xml, /atom.xml, /feed.xml, /index.xml, /feed.json parse"
    )


async def test_a_page_with_many_links_costs_a_bounded_number_of_fetches(
    feed_server: FixtureServer, fetch: Fetch
) -> None:
    links = [f"application/rss+xml /missing-{n}.xml" for n in range(MAX_DECLARED_LINKS + 5)]
    url = feed_server.add("/", static(html_page(*links), "text/html"))

    with pytest.raises(SourceError, match=r"declares 10 feeds \(and 5 more not tried\)"):
        await discover_feed(url, fetch=fetch, parse=parse)

    assert len(feed_server.requests) == 1 + MAX_DECLARED_LINKS + len(COMMON_FEED_PATHS)


async def test_an_unreachable_page_reports_the_fetch_error(feed_server: FixtureServer, fetch: Fetch) -> None:
    url = feed_server.url("/nothing-here")

    with pytest.raises(SourceError, match=rf"^could not fetch {re.escape(url)}: HTTP 404"):
        await discover_feed(url, fetch=fetch, parse=parse)


async def test_a_closed_port_reports_the_fetch_error(fetch: Fetch) -> None:
    with FixtureServer() as server:
        url = server.url("/")  # the port is closed once the server stops

    with pytest.raises(SourceError, match=rf"^could not fetch {re.escape(url)}: ."):
        await discover_feed(url, fetch=fetch, parse=parse)


async def test_a_response_that_is_neither_feed_nor_page_is_refused(
    feed_server: FixtureServer, fetch: Fetch
) -> None:
    url = feed_server.add("/logo.png", static(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png"))

    with pytest.raises(SourceError, match=r"the response \(image/png\) is neither a feed"):
        await discover_feed(url, fetch=fetch, parse=parse)

    assert len(feed_server.requests) == 1
