"""The taxonomy and tagger as the settings ask for them (shipped topics plus the user's own).

This module is also all that a parser process needs: `parse_and_tag` is the job ingest sends to
its parse pool, whose forkserver preloads this module. So it imports parsing and tagging only:
no settings (pydantic), store (SQLAlchemy, alembic) or HTTP client, which would cost every parser
process tens of MB and a good part of a second to import.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from bot.ranking.topics import Tagger, Taxonomy, load_taxonomy, topic_from_settings
from bot.ranking.types import ArticleText, Topic
from bot.sources.parse import parse_feed
from bot.sources.types import PackedEntries, ParsedFeed

if TYPE_CHECKING:  # only for annotations: parser processes never import the settings
    from bot.config import Settings


def user_topics(settings: Settings) -> tuple[Topic, ...]:
    return tuple(topic_from_settings(t.model_dump(exclude_none=True)) for t in settings.topics)


def taxonomy_for(settings: Settings) -> Taxonomy:
    return load_taxonomy(user_topics(settings))


@lru_cache(maxsize=4)
def tagger_for(extra: tuple[Topic, ...]) -> Tagger:
    """One Tagger per set of user topics, built once per process (parser workers included)."""
    return Tagger(load_taxonomy(extra))


def tag_feed(feed: ParsedFeed, extra: tuple[Topic, ...]) -> ParsedFeed:
    """Attach weighted topics to every entry: done on ingest so ranking never pays for it."""
    tag = tagger_for(extra).tag
    now = datetime.now(UTC)
    entries = tuple(
        replace(
            entry,
            topics=tag(ArticleText(0, 0, entry.title, entry.excerpt, entry.tags, entry.published or now)),
        )
        for entry in feed.entries
    )
    return replace(feed, entries=entries)


def parse_and_tag(body: bytes, url: str, content_type: str | None, extra: tuple[Topic, ...]) -> ParsedFeed:
    """The parse pool's job: parse a fetched body, then tag its entries (FeedParseError if unreadable).

    A top-level function of this module, so unpickling it in a parser process imports nothing new.
    """
    return tag_feed(parse_feed(body, url=url, content_type=content_type), extra)


def parse_and_pack(
    body: bytes, url: str, content_type: str | None, extra: tuple[Topic, ...]
) -> tuple[ParsedFeed, PackedEntries]:
    """`parse_and_tag` for ingest: the feed without its entries, and the entries packed apart.

    Ingest only unpacks the entries when it writes them (see PackedEntries).
    """
    feed = parse_and_tag(body, url, content_type, extra)
    return replace(feed, entries=()), PackedEntries(feed.entries)
