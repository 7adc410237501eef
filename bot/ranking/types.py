"""Plain values that cross the ranking steps: tag → cluster → score → digest."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from bot.types import TopicMatch as TopicMatch  # its home: the store accepts it

TopicKind = Literal["topic", "kind"]  # "kind" = FlareStart's article kinds: news, how-to, opinion


@dataclass(frozen=True, slots=True)
class Topic:
    slug: str  # "python", "machine-learning", "how-to"
    name: str  # "Python", "Machine Learning", "How-To"
    kind: TopicKind = "topic"
    aliases: tuple[str, ...] = ()  # spellings feeds use as tags: "ml", "machine-learning", "MachineLearning"
    phrases: tuple[str, ...] = ()  # key phrases matched in title and excerpt: "neural network"
    # longer phrases that hold one of `phrases` but mean something else: "apple pie", "meta-analysis"
    not_phrases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ArticleText:
    """What tagging and clustering read of an article."""

    id: int
    source_id: int
    title: str
    excerpt: str
    tags: tuple[str, ...]
    published: datetime


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a subscriber wants. Weights are relative: 1.0 is normal, 2.0 twice as important."""

    topics: dict[str, float]  # followed topic slug → weight
    muted_topics: frozenset[str] = frozenset()
    muted_keywords: tuple[str, ...] = ()  # case-insensitive, matched on title and excerpt words
    muted_sources: frozenset[int] = frozenset()  # source ids
    source_weights: dict[int, float] = field(default_factory=dict)  # source id → weight
    max_items: int = 10
    window: timedelta = timedelta(hours=24)
    half_life: timedelta = timedelta(hours=12)
    max_per_source: int = 2


@dataclass(frozen=True, slots=True)
class Reason:
    topics: tuple[TopicMatch, ...]  # the followed topics this article matched, with the terms
    age: timedelta
    coverage: int  # how many sources covered the story (1 = only this one)


@dataclass(frozen=True, slots=True)
class RankedItem:
    article_id: int
    score: float
    story_id: int  # the representative article id of its story
    reason: Reason
    also_covered_by: tuple[int, ...] = ()  # other article ids of the same story
