"""Plain values that cross the steps of ingestion: fetch → parse → store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from bot.ranking.types import TopicMatch

FetchOutcome = Literal["ok", "not_modified", "gone", "error"]


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one conditional GET of a feed URL gave."""

    url: str  # the URL that was asked for
    outcome: FetchOutcome
    status: int = 0  # final HTTP status; 0 when no response arrived
    final_url: str | None = None  # where the body came from after any redirects
    moved_to: str | None = None  # new permanent URL (301/308 chain) to store instead of `url`
    body: bytes = b""
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    max_age: float | None = None  # seconds the server says the body stays fresh
    retry_after: float | None = None  # seconds the server asks us to wait (429/503)
    error: str | None = None  # one line for people: what went wrong
    elapsed: float = 0.0


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """One feed entry, normalized: plain text, absolute canonical link, UTC dates."""

    key: str  # identity inside its source: "guid:…", else "link:…", else "hash:…"
    guid: str | None
    url: str | None
    title: str
    excerpt: str
    author: str | None
    published: datetime | None  # aware UTC: published, else updated; None when the feed has neither
    tags: tuple[str, ...] = ()
    image_url: str | None = None
    content_hash: str = ""
    topics: tuple[TopicMatch, ...] = ()  # filled by the tagger on ingest


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    format: str  # "rss2", "rss1", "atom", "json", or feedparser's version string
    title: str | None
    site_url: str | None
    ttl_minutes: int | None = None  # RSS <ttl>
    entries: tuple[ParsedEntry, ...] = ()
    warning: str | None = None  # e.g. a recovered bozo feed's reason
    parser: str = "fast"  # "fast" (lxml/json) or "feedparser" (fallback)
    extra: dict[str, str] = field(default_factory=dict)
