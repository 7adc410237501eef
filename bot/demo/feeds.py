"""The demo's feeds as the internet would serve them: RSS 2.0, Atom 1.0 and JSON Feed 1.1.

    for feed in DEMO_FEEDS:
        server.add(feed_path(feed), static(render_feed(feed, now=now, url=...), content_type(feed)))

Dates are computed from `now`, so the same articles are always fresh.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from email.utils import format_datetime
from html import escape
from typing import TYPE_CHECKING

from bot.demo.content import DEMO_FEEDS, DemoArticle, DemoFeed

if TYPE_CHECKING:
    from bot.store import NewSource
    from bot.testing.httpserver import FixtureServer

_ATOM = "http://www.w3.org/2005/Atom"
_DC = "http://purl.org/dc/elements/1.1/"
ET.register_namespace("dc", _DC)  # the usual prefix, instead of ElementTree's ns0

_FILES = {"rss": "rss.xml", "atom": "atom.xml", "json": "feed.json"}
_CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}


def feed_path(feed: DemoFeed) -> str:
    """Where the feed is served: /snakebyte/rss.xml, /gradient-notes/atom.xml, …"""
    return f"/{feed.slug}/{_FILES[feed.format]}"


def content_type(feed: DemoFeed) -> str:
    return _CONTENT_TYPES[feed.format]


def article_url(feed: DemoFeed, article: DemoArticle) -> str:
    return f"{feed.site_url}posts/{article.slug}"


def published_at(article: DemoArticle, now: datetime) -> datetime:
    return (now - timedelta(hours=article.hours_ago)).replace(microsecond=0)


def render_feed(feed: DemoFeed, *, now: datetime, url: str) -> bytes:
    """The feed document, with `url` as its self link."""
    if feed.format == "rss":
        return _rss(feed, now, url)
    if feed.format == "atom":
        return _atom(feed, now, url)
    return _json_feed(feed, now, url)


def _summary_html(article: DemoArticle) -> str:
    # Feeds put HTML in their descriptions; the parser must turn it back into plain text.
    return f"<p>{escape(article.summary)}</p>"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    return element


def _rss(feed: DemoFeed, now: datetime, url: str) -> bytes:
    rss = ET.Element("rss", {"version": "2.0"})
    channel = _sub(rss, "channel")
    _sub(channel, "title", feed.name)
    _sub(channel, "link", feed.site_url)
    _sub(channel, "description", feed.description)
    _sub(channel, "language", "en")
    _sub(channel, "lastBuildDate", format_datetime(now, usegmt=True))
    _sub(channel, "ttl", "30")
    for article in feed.articles:
        item = _sub(channel, "item")
        _sub(item, "title", article.title)
        _sub(item, "link", article_url(feed, article))
        _sub(item, "guid", f"{feed.slug}:{article.slug}", isPermaLink="false")
        _sub(item, "pubDate", format_datetime(published_at(article, now), usegmt=True))
        _sub(item, f"{{{_DC}}}creator", article.author)
        for tag in article.tags:
            _sub(item, "category", tag)
        _sub(item, "description", _summary_html(article))
    document: bytes = ET.tostring(rss, encoding="utf-8", xml_declaration=True)
    return document


def _atom(feed: DemoFeed, now: datetime, url: str) -> bytes:
    # Plain tag names under a default xmlns: what Atom feeds look like in the wild.
    root = ET.Element("feed", {"xmlns": _ATOM})
    _sub(root, "title", feed.name)
    _sub(root, "subtitle", feed.description)
    _sub(root, "id", feed.site_url)
    _sub(root, "updated", now.replace(microsecond=0).isoformat())
    _sub(root, "link", rel="alternate", href=feed.site_url)
    _sub(root, "link", rel="self", href=url)
    for article in feed.articles:
        entry = _sub(root, "entry")
        stamp = published_at(article, now).isoformat()
        _sub(entry, "title", article.title)
        _sub(entry, "id", f"tag:{feed.slug}.example,2026:{article.slug}")
        _sub(entry, "link", rel="alternate", type="text/html", href=article_url(feed, article))
        _sub(entry, "published", stamp)
        _sub(entry, "updated", stamp)
        author = _sub(entry, "author")
        _sub(author, "name", article.author)
        for label in article.tags:
            _sub(entry, "category", term=label)
        _sub(entry, "summary", _summary_html(article), type="html")
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def _json_feed(feed: DemoFeed, now: datetime, url: str) -> bytes:
    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": feed.name,
        "description": feed.description,
        "home_page_url": feed.site_url,
        "feed_url": url,
        "language": "en",
        "items": [
            {
                "id": f"{feed.slug}:{article.slug}",
                "url": article_url(feed, article),
                "title": article.title,
                "summary": article.summary,
                "content_html": _summary_html(article),
                "date_published": published_at(article, now).isoformat(),
                "authors": [{"name": article.author}],
                "tags": list(article.tags),
            }
            for article in feed.articles
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")


def serve_demo_feeds(server: FixtureServer, now: datetime) -> list[NewSource]:
    """Put every demo feed on `server` (dated from `now`) and return them as sources to add."""
    from bot.store import NewSource
    from bot.testing.httpserver import static

    new = []
    for feed in DEMO_FEEDS:
        url = server.url(feed_path(feed))
        body = render_feed(feed, now=now, url=url)
        server.add(feed_path(feed), static(body, content_type(feed), last_modified=now.timestamp()))
        new.append(
            NewSource(
                feed.name,
                url,
                site_url=feed.site_url,
                title=feed.name,
                topics=feed.topics,
                category="Demo",
            )
        )
    return new
