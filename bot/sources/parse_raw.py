"""What every reader of a feed produces, and the one step that normalises it: `RawFeed` and
`RawEntry` hold the fields as the feed wrote them; `finish_feed` and `finish_entry` turn them into
`ParsedFeed` and `ParsedEntry` (plain text, canonical links, UTC dates, capped sizes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from bot.sources.normalize import (
    canonical_url,
    clean_title,
    content_hash,
    excerpt_from_html,
    excerpt_from_text,
    first_image_url,
    looks_like_url,
    parse_datetime,
    person_name,
    repair_mojibake,
    title_from_excerpt,
)
from bot.sources.types import ParsedEntry, ParsedFeed

EXCERPT_LIMIT: Final = 300


# ---------------------------------------------------------------------------------------------
# What both readers produce: an entry's fields as the feed wrote them, before normalization.


@dataclass(slots=True)
class RawEntry:
    base: str | None  # what relative links in this entry resolve against
    guid: str | None = None
    link: str | None = None
    guid_is_link: bool = False  # an RSS guid without isPermaLink="false", or an Atom id
    title: str | None = None
    summary: str | None = None
    summary_is_html: bool = True
    summary_base: str | None = None  # the summary's own xml:base, when it has one
    content: str | None = None
    content_is_html: bool = True
    content_base: str | None = None
    media_description: str | None = None  # plain text; the summary of last resort
    author: str | None = None
    published: str | None = None
    updated: str | None = None
    created: str | None = None
    tags: list[str] = field(default_factory=list)
    thumbnail: str | None = None
    media_image: str | None = None
    enclosure_image: str | None = None


@dataclass(slots=True)
class RawFeed:
    format: str
    base: str | None
    utf8: bool = False  # a UTF-8 document: its text may hold UTF-8 read as Latin-1 ("Ã©")
    title: str | None = None
    site_url: str | None = None
    ttl: str | None = None
    author: str | None = None  # Atom: entries without an author inherit the feed's
    entries: list[RawEntry] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Both paths: raw → normalized


def finish_feed(raw: RawFeed, *, parser: str, warning: str | None) -> ParsedFeed:
    entries: list[ParsedEntry] = []
    seen: set[str] = set()
    for raw_entry in raw.entries:
        entry = finish_entry(raw_entry, utf8=raw.utf8)
        if entry.key not in seen:  # the same entry twice in one feed: the first one counts
            seen.add(entry.key)
            entries.append(entry)
    title = raw.title
    if raw.utf8:
        title = repair_mojibake(title)
    return ParsedFeed(
        format=raw.format,
        title=(clean_title(title) or None) if title else None,
        site_url=canonical_url(raw.site_url, raw.base) if raw.site_url else None,
        ttl_minutes=_ttl_minutes(raw.ttl),
        entries=tuple(entries),
        warning=warning,
        parser=parser,
    )


def _ttl_minutes(value: str | None) -> int | None:
    value = value.strip() if value else ""
    if not value.isdigit():
        return None
    minutes = int(value)
    return minutes if 0 < minutes <= 60 * 24 * 366 else None


def finish_entry(raw: RawEntry, *, utf8: bool) -> ParsedEntry:
    if utf8:  # feedparser repairs this on its own; the fast path does it here
        raw.title = repair_mojibake(raw.title)
        raw.summary = repair_mojibake(raw.summary)
        raw.content = repair_mojibake(raw.content)
        raw.author = repair_mojibake(raw.author)

    guid = raw.guid.strip() if raw.guid else None
    url = canonical_url(raw.link, raw.base) if raw.link else None
    if url is None and guid and raw.guid_is_link and looks_like_url(guid):
        url = canonical_url(guid)

    excerpt = ""
    if raw.summary:
        excerpt = _excerpt(raw.summary, raw.summary_is_html)
    if not excerpt and raw.content:
        excerpt = _excerpt(raw.content, raw.content_is_html)
    if not excerpt and raw.media_description:
        excerpt = _excerpt(raw.media_description, False)

    title = clean_title(raw.title) if raw.title else ""
    if not title:
        title = title_from_excerpt(excerpt)

    tags: list[str] = []
    for tag in raw.tags:
        tag = tag.strip()
        if tag and tag not in tags:
            tags.append(tag)

    body = raw.content or raw.summary or raw.media_description or ""
    digest = content_hash(title, body)
    if guid:
        key = f"guid:{guid}"
    elif url:
        key = f"link:{url}"
    else:
        key = f"hash:{digest}"
    return ParsedEntry(
        key=key,
        guid=guid or None,
        url=url,
        title=title,
        excerpt=excerpt,
        author=person_name(raw.author) if raw.author else None,
        published=(
            parse_datetime(raw.published) or parse_datetime(raw.updated) or parse_datetime(raw.created)
        ),
        tags=tuple(tags),
        image_url=_image_url(raw),
        content_hash=digest,
    )


def _image_url(raw: RawEntry) -> str | None:
    """media:thumbnail, else an image media:content, else an image enclosure, else the first
    <img> of the content or summary."""
    for candidate in (raw.thumbnail, raw.media_image, raw.enclosure_image):
        url = canonical_url(candidate, raw.base) if candidate else None
        if url:
            return url
    if raw.content and raw.content_is_html:
        url = first_image_url(raw.content, raw.content_base or raw.base)
        if url:
            return url
    if raw.summary and raw.summary_is_html:
        return first_image_url(raw.summary, raw.summary_base or raw.base)
    return None


def _excerpt(value: str, is_html: bool) -> str:
    if is_html:
        return excerpt_from_html(value, EXCERPT_LIMIT)
    return excerpt_from_text(value, EXCERPT_LIMIT)
