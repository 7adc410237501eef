"""Compose: pick and order each subscriber's items for a period, from one shared candidate pool.

The pool (articles of the window, their topics, their stories) is built once per run; each
subscriber then costs one `rank()` over it. Preferences name topics and sources the way people
write them; this module turns them into the ids the ranker works with.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.config import Settings
from bot.errors import ConfigError
from bot.ranking.pool import CandidatePool
from bot.ranking.score import Digest, rank, rank_many
from bot.ranking.stories import cluster_stories
from bot.ranking.topics import Taxonomy
from bot.ranking.types import ArticleText, Preferences, RankedItem
from bot.store import Store
from bot.store.store import StoredArticle

DAY = timedelta(hours=24)
WEEK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class PlannedItem:
    article: StoredArticle
    ranked: RankedItem
    also: tuple[StoredArticle, ...]  # the same story from other sources
    story_size: int = 1  # articles of its story in the pool
    related_stories: tuple[int, ...] = ()  # stories too similar to share its digest (ids)


@dataclass(frozen=True, slots=True)
class DigestPlan:
    items: tuple[PlannedItem, ...]
    empty_reason: str | None
    candidates: int  # articles in the pool the plan was picked from


class SubscriberPreferences(Protocol):
    """What preferences are read from: a `Subscriber` row or a `SubscriberRecord`."""

    @property
    def topics(self) -> Mapping[str, float]: ...
    @property
    def muted_topics(self) -> Sequence[str]: ...
    @property
    def muted_keywords(self) -> Sequence[str]: ...
    @property
    def muted_sources(self) -> Sequence[str]: ...
    @property
    def source_weights(self) -> Mapping[str, float]: ...
    @property
    def max_items(self) -> int: ...
    @property
    def frequency(self) -> str: ...


def window_for(frequency: str) -> timedelta:
    return WEEK if frequency.startswith("weekly") else DAY


class Composer:
    """Builds the candidate pool once, then plans digests for any number of subscribers."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        taxonomy: Taxonomy,
        *,
        now: datetime,
        horizon: timedelta = WEEK,
    ) -> None:
        self.settings = settings
        self.taxonomy = taxonomy
        self.now = now
        self.articles = {a.id: a for a in store.recent_articles(now - horizon, until=now)}
        self.source_ids = {a.source_name.casefold(): a.source_id for a in self.articles.values()}
        for source in store.list_sources():  # sources with nothing recent can still be muted
            if source.id is not None:
                self.source_ids.setdefault(source.name.casefold(), source.id)
        texts = [
            ArticleText(a.id, a.source_id, a.title, a.excerpt, a.tags, a.published)
            for a in self.articles.values()
        ]
        self.stories = cluster_stories(texts, window=timedelta(hours=settings.ranking.story_window_hours))
        self.pool = CandidatePool.build(
            texts,
            {a.id: a.topics for a in self.articles.values()},
            self.stories,
            now=now,
            source_weights={a.source_id: a.source_weight for a in self.articles.values()},
            related=self.stories.related,
        )
        self.story_sizes = Counter(self.stories.values())

    # -- preferences -------------------------------------------------------------------------

    def preferences(
        self,
        *,
        topics: Mapping[str, float],
        muted_topics: Sequence[str] = (),
        muted_keywords: Sequence[str] = (),
        muted_sources: Sequence[str] = (),
        source_weights: Mapping[str, float] | None = None,
        max_items: int | None = None,
        window: timedelta = DAY,
    ) -> Preferences:
        """Preferences in people's words → the ranker's ids. Unknown names are clear errors."""
        self.taxonomy.resolve([*topics, *muted_topics])  # one error naming every unknown topic
        followed = {self.taxonomy.resolve([name])[0].slug: float(w) for name, w in topics.items()}
        if not followed:  # no topics chosen: the day's best across every topic
            followed = {t.slug: 1.0 for t in self.taxonomy.topics if t.kind == "topic"}
        muted = frozenset(t.slug for t in self.taxonomy.resolve(muted_topics))
        ranking = self.settings.ranking
        return Preferences(
            topics=followed,
            muted_topics=muted,
            muted_keywords=tuple(k.strip().lower() for k in muted_keywords if k.strip()),
            muted_sources=frozenset(self._source_id(name) for name in muted_sources),
            source_weights={self._source_id(n): float(w) for n, w in (source_weights or {}).items()},
            max_items=max_items or ranking.max_items,
            window=window,
            half_life=timedelta(hours=ranking.half_life_hours),
            max_per_source=ranking.max_per_source,
        )

    def preferences_of(
        self, subscriber: SubscriberPreferences, *, window: timedelta | None = None
    ) -> Preferences:
        return self.preferences(
            topics=subscriber.topics,
            muted_topics=subscriber.muted_topics,
            muted_keywords=subscriber.muted_keywords,
            muted_sources=subscriber.muted_sources,
            source_weights=subscriber.source_weights,
            max_items=subscriber.max_items,
            window=window or window_for(subscriber.frequency),
        )

    def _source_id(self, name: str) -> int:
        found = self.source_ids.get(name.casefold())
        if found is None:
            close = difflib.get_close_matches(name.casefold(), list(self.source_ids), n=3)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ConfigError(f"unknown source {name!r}{hint}")
        return found

    # -- plans -------------------------------------------------------------------------------

    def plan(self, prefs: Preferences, *, delivered: Collection[int] = ()) -> DigestPlan:
        return self._plan(rank(self.pool, prefs, delivered=delivered))

    def plan_many(
        self, prefs: Sequence[Preferences], *, delivered: Sequence[Collection[int]] | None = None
    ) -> list[DigestPlan]:
        return [self._plan(d) for d in rank_many(self.pool, prefs, delivered=delivered)]

    def _plan(self, digest: Digest) -> DigestPlan:
        items = tuple(
            PlannedItem(
                article=self.articles[item.article_id],
                ranked=item,
                also=tuple(self.articles[i] for i in item.also_covered_by if i in self.articles),
                story_size=self.story_sizes.get(item.story_id, 1),
                related_stories=tuple(sorted(self.stories.related.get(item.story_id, ()))),
            )
            for item in digest.items
        )
        return DigestPlan(items, digest.empty_reason, len(self.articles))
