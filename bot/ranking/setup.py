"""The taxonomy and tagger as the settings ask for them (shipped topics plus the user's own)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache

from bot.config import Settings
from bot.ranking.topics import Tagger, Taxonomy, load_taxonomy, topic_from_settings
from bot.ranking.types import ArticleText, Topic
from bot.sources.types import ParsedFeed


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
    tagger = tagger_for(extra)
    now = datetime.now(UTC)
    entries = tuple(
        replace(
            entry,
            topics=tagger.tag(
                ArticleText(0, 0, entry.title, entry.excerpt, entry.tags, entry.published or now)
            ),
        )
        for entry in feed.entries
    )
    return replace(feed, entries=entries)
