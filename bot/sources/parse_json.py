"""The JSON Feed 1.0 / 1.1 reader → `RawFeed`."""

from __future__ import annotations

import json
from typing import Any

from bot.errors import FeedParseError
from bot.sources.parse_bytes import first_line
from bot.sources.parse_raw import RawEntry, RawFeed

# ---------------------------------------------------------------------------------------------
# Fast path: JSON Feed 1.0 / 1.1


def read_json_feed(body: bytes, url: str) -> RawFeed:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FeedParseError(f"invalid JSON Feed: {first_line(str(exc))}") from None
    if not isinstance(document, dict):
        raise FeedParseError("invalid JSON Feed: the top level is not an object")
    version = document.get("version")
    items = document.get("items")
    if items is None and not (isinstance(version, str) and "jsonfeed.org" in version):
        raise FeedParseError("invalid JSON Feed: no jsonfeed.org version and no items")
    if not isinstance(items, list):
        raise FeedParseError("invalid JSON Feed: items is not a list")
    feed = RawFeed(
        format="json",
        base=url,
        utf8=True,
        title=_json_str(document.get("title")),
        site_url=_json_str(document.get("home_page_url")),
        author=_json_author(document),
    )
    for item in items:
        if isinstance(item, dict):
            feed.entries.append(_read_json_item(item, url, feed.author))
    return feed


def _read_json_item(item: dict[str, Any], url: str, feed_author: str | None) -> RawEntry:
    item_id = item.get("id")
    if isinstance(item_id, int | float) and not isinstance(item_id, bool):
        item_id = str(item_id)  # the spec says string; numbers are common
    raw = RawEntry(
        base=url,
        guid=_json_str(item_id),
        link=_json_str(item.get("url")) or _json_str(item.get("external_url")),
        title=_json_str(item.get("title")),
        author=_json_author(item) or feed_author,
        published=_json_str(item.get("date_published")),
        updated=_json_str(item.get("date_modified")),
        media_image=_json_str(item.get("image")) or _json_str(item.get("banner_image")),
    )
    summary = _json_str(item.get("summary"))  # plain text, per the spec
    if summary:
        raw.summary, raw.summary_is_html = summary, False
    content_html = _json_str(item.get("content_html"))
    content_text = _json_str(item.get("content_text"))
    if content_html:
        raw.content, raw.content_is_html = content_html, True
    elif content_text:
        raw.content, raw.content_is_html = content_text, False
    tags = item.get("tags")
    if isinstance(tags, list):
        raw.tags = [tag for tag in tags if isinstance(tag, str)]
    return raw


def _json_str(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _json_author(obj: dict[str, Any]) -> str | None:
    authors = obj.get("authors")  # 1.1; 1.0 has a single "author"
    candidates = authors if isinstance(authors, list) else [obj.get("author")]
    for author in candidates:
        if isinstance(author, dict):
            name = _json_str(author.get("name"))
            if name:
                return name
    return None
