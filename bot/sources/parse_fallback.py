"""The fallback: what lxml cannot read goes to feedparser, whose forgiving parser recovers what
it can; its entries are mapped into the same `RawEntry` shape as the fast readers'."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urljoin

from bot.errors import FeedParseError
from bot.sources.normalize import (
    canonical_url,
    looks_like_url,
)
from bot.sources.parse_bytes import Prepared, first_line
from bot.sources.parse_raw import RawEntry, RawFeed, finish_feed
from bot.sources.parse_xml import is_image
from bot.sources.types import ParsedFeed

# ---------------------------------------------------------------------------------------------
# Fallback: feedparser → raw feed

# feedparser's version strings → our format names (unknown ones pass through).
_FEEDPARSER_FORMATS: Final = {
    "rss090": "rss1",
    "rss10": "rss1",
    "rss091n": "rss2",
    "rss091u": "rss2",
    "rss092": "rss2",
    "rss093": "rss2",
    "rss094": "rss2",
    "rss20": "rss2",
    "rss": "rss2",
    "atom01": "atom",
    "atom02": "atom",
    "atom03": "atom",
    "atom10": "atom",
    "atom": "atom",
}
_HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml", "html"})
_ITUNES_SCHEME: Final = "http://www.itunes.com/"


def parse_with_feedparser(
    prepared: Prepared, url: str, *, reason: str | None, need_entries: bool = False
) -> ParsedFeed:
    import feedparser  # only broken feeds pay for importing it

    # The media type is settled (we sniffed XML) and so is the encoding (the body is UTF-8 now,
    # or declares what it is): tell feedparser no more. No content-location either, else it
    # turns relative guids into URLs; links are resolved against `url` afterwards, as on the
    # fast path.
    result = feedparser.parse(
        prepared.body,
        sanitize_html=False,
        resolve_relative_uris=False,
        response_headers={"content-type": "application/xml"},
    )
    bozo = result.get("bozo_exception") if result.get("bozo") else None
    version = result.get("version") or ""
    fp_feed = result.get("feed", {})
    feed_author = fp_feed.get("author_detail") or {}
    raw = RawFeed(
        format=_FEEDPARSER_FORMATS.get(version, version or "unknown"),
        base=url,
        title=fp_feed.get("title"),
        site_url=fp_feed.get("link"),
        ttl=fp_feed.get("ttl"),
        entries=[_raw_from_feedparser(entry, url) for entry in result.get("entries", [])],
    )
    if raw.format == "atom" and feed_author.get("name"):
        for entry in raw.entries:
            entry.author = entry.author or feed_author.get("name")
    if not raw.entries and (need_entries or not raw.title):
        detail = reason or (f"feedparser: {first_line(str(bozo))}" if bozo else "no entries")
        raise FeedParseError(f"not a feed: {detail}")
    warning = prepared.warning
    if warning is None and (reason is not None or bozo is not None):
        why = first_line(str(bozo)) if bozo is not None else reason
        warning = f"recovered by feedparser: {why}"
    return finish_feed(raw, parser="feedparser", warning=warning)


def _raw_from_feedparser(entry: Any, url: str) -> RawEntry:
    raw = RawEntry(base=url, guid=entry.get("id"), title=entry.get("title"))
    link = entry.get("link")
    # feedparser copies a guid that is no URL ("1234") into link; the fast path does not.
    if entry.get("guidislink") and link and raw.guid and not looks_like_url(raw.guid):
        link = None if canonical_url(link, url) == canonical_url(raw.guid, url) else link
    raw.link = link
    summary = entry.get("summary_detail")
    if summary is not None and summary.get("value") is not None:
        raw.summary = summary.get("value")
        raw.summary_is_html = summary.get("type") in _HTML_TYPES
        raw.summary_base = urljoin(url, summary.get("base") or "")
    contents = entry.get("content") or []
    if contents:
        raw.content = contents[0].get("value")
        raw.content_is_html = contents[0].get("type") in _HTML_TYPES
        raw.content_base = urljoin(url, contents[0].get("base") or "")
    author = entry.get("author_detail") or {}
    raw.author = author.get("name") or author.get("email") or entry.get("author")
    # dict.get: FeedParserDict.get("updated") falls back to "published", with a warning.
    raw.published = dict.get(entry, "published")
    raw.updated = dict.get(entry, "updated")
    raw.created = dict.get(entry, "created")
    raw.tags = [
        tag.get("term") or tag.get("label") or ""
        for tag in entry.get("tags") or []
        if tag.get("scheme") != _ITUNES_SCHEME
    ]
    raw.thumbnail = next(
        (thumb.get("url") for thumb in entry.get("media_thumbnail") or [] if thumb.get("url")),
        None,
    )
    for media in entry.get("media_content") or []:
        if media.get("url") and is_image(media.get("medium"), media.get("type")):
            raw.media_image = media.get("url")
            break
    for link_detail in entry.get("links") or []:
        is_enclosure = link_detail.get("rel") == "enclosure" and link_detail.get("href")
        if is_enclosure and is_image(None, link_detail.get("type")):
            raw.enclosure_image = link_detail.get("href")
            break
    return raw
