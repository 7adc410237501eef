"""Compose: pick and order each subscriber's items for a period, from one shared candidate pool.

The pool (articles of the window, their topics, their stories) is built once per run; each
subscriber then costs one `rank()` over it. Preferences name topics and sources the way people
write them; this module turns them into the ids the ranker works with.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np

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


@dataclass(frozen=True, slots=True)
class DigestAccount:
    """Why a digest holds what it holds: how many articles were candidates and where the ones
    not shown went. `reason` is one line for people (None when there is nothing to explain)."""

    reason: str | None
    window: timedelta
    in_window: int  # articles published within the window
    candidates: int  # of those, on a topic the reader follows
    shown: int
    muted: int  # candidates hidden by a muted topic, keyword or source
    already_sent: int  # candidates the reader was sent before (and not muted)
    held_back: int  # left out by the per-source cap or as the same story as a shown item
    over_max: int  # left out because the digest was full (max_items)
    newest_age: timedelta | None  # of the newest stored article; None: there are none

    def as_dict(self) -> dict[str, object]:
        hours = None if self.newest_age is None else round(self.newest_age.total_seconds() / 3600, 2)
        return {
            "reason": self.reason,
            "window_hours": round(self.window.total_seconds() / 3600, 2),
            "in_window": self.in_window,
            "candidates": self.candidates,
            "shown": self.shown,
            "left_out": {
                "muted": self.muted,
                "already_sent": self.already_sent,
                "per_source_cap_or_same_story": self.held_back,
                "max_items": self.over_max,
            },
            "newest_article_age_hours": hours,
        }


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


def window_for(frequency: str, settings: Settings | None = None) -> timedelta:
    """How far back a digest of `frequency` looks: a week for weekly ones, else
    digest.window_hours (24 unless set)."""
    if frequency.startswith("weekly"):
        return WEEK
    return timedelta(hours=settings.digest.window_hours) if settings is not None else DAY


class Composer:
    """Builds the candidate pool once, then plans digests for any number of subscribers."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        taxonomy: Taxonomy,
        *,
        now: datetime,
        horizon: timedelta | None = None,
    ) -> None:
        self.settings = settings
        self.taxonomy = taxonomy
        self.now = now
        # Every window a digest may ask for: a week, or a longer digest.window_hours.
        horizon = horizon or max(WEEK, timedelta(hours=settings.digest.window_hours))
        self.articles = {a.id: a for a in store.recent_articles(now - horizon, until=now)}
        self.newest_published = store.newest_published_at()  # to say how old the newest article is
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
            window=window or window_for(subscriber.frequency, self.settings),
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

    def account(
        self, prefs: Preferences, plan: DigestPlan, *, delivered: Collection[int] = ()
    ) -> DigestAccount:
        """Why `plan` (made from `prefs`) holds what it holds: the candidates of its window and
        where the ones not shown went. Counts over the pool: cheap, meant for one reader at a
        time (preview, a quiet send), not for every digest of a run."""
        pool, window = self.pool, prefs.window
        newest = (
            None if self.newest_published is None else max(self.now - self.newest_published, timedelta(0))
        )
        in_window = pool.age_seconds <= window.total_seconds()
        columns = [pool.topic_position[slug] for slug in prefs.topics if slug in pool.topic_position]
        followed = in_window.copy()
        followed &= pool.topic_weights_t[columns].sum(axis=0) > 0 if columns else False
        hidden = np.zeros(pool.size, dtype=np.bool_)
        muted = [pool.topic_position[slug] for slug in prefs.muted_topics if slug in pool.topic_position]
        if muted:
            hidden |= pool.muting_t[muted].max(axis=0) > 0
        for keyword in prefs.muted_keywords:
            hidden[pool.keyword_hits(keyword)] = True
        if prefs.muted_sources:
            hidden |= np.isin(np.asarray(pool.source_ids, dtype=np.int64), list(prefs.muted_sources))
        sent = np.zeros(pool.size, dtype=np.bool_)
        sent[[pool.position_of[a] for a in delivered if a in pool.position_of]] = True
        candidates = int(np.count_nonzero(followed))
        muted_count = int(np.count_nonzero(followed & hidden))
        sent_count = int(np.count_nonzero(followed & ~hidden & sent))
        eligible = candidates - muted_count - sent_count
        shown = len(plan.items)
        full = shown >= prefs.max_items
        left = max(eligible - shown, 0)
        over_max, held_back = (left, 0) if full else (0, left)
        account = DigestAccount(
            reason=None,
            window=window,
            in_window=int(np.count_nonzero(in_window)),
            candidates=candidates,
            shown=shown,
            muted=muted_count,
            already_sent=sent_count,
            held_back=held_back,
            over_max=over_max,
            newest_age=newest,
        )
        return replace(account, reason=_reason(account, plan, prefs))

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


def _reason(account: DigestAccount, plan: DigestPlan, prefs: Preferences) -> str | None:
    """One line: why the digest is empty, or why it shows fewer items than it had candidates."""
    window = _span(account.window)
    if account.newest_age is None:
        return "no articles at all yet: `flarestart fetch --all` fetches the sources now"
    if account.in_window == 0:
        return (
            f"no articles in the last {window}: the newest is {_span(account.newest_age)} old "
            "(are the sources fetching? `flarestart sources list` shows their errors; "
            "digest.window_hours widens the window)"
        )
    if account.shown == account.candidates and plan.items:
        return None
    parts = [
        f"{count} {what}"
        for count, what in (
            (account.muted, "muted"),
            (account.already_sent, "already sent"),
            (
                account.held_back,
                f"over the per-source cap ({prefs.max_per_source} a source) or the same story",
            ),
            (account.over_max, f"beyond max items ({prefs.max_items})"),
        )
        if count
    ]
    counted = ": " + ", ".join(parts) if parts else ""
    if not plan.items:
        why = plan.empty_reason or "nothing matched"
        return f"{why} ({account.candidates} candidates of the last {window}{counted})"
    return f"{account.shown} of {account.candidates} candidates of the last {window}{counted}"


def _span(length: timedelta) -> str:
    """'3 days', '5 h', '40 min': an age or a window, the way people say it."""
    seconds = int(length.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 3600:
        return f"{seconds // 3600} h"
    return f"{max(1, seconds // 60)} min"
