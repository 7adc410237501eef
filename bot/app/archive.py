"""Digests on the web: one subscriber's digest as it was sent ("view in browser"), and the public
archive of "FlareStart daily", a digest of a configured topic set, one page per (UTC) day.

A sent digest is read back from the delivery ledger's article ids, in the order they were sent:
nothing is ranked again, so the page shows what the mail showed (less what was pruned since).
An archive day is ranked like a reader's digest (same composer, same per-source cap and story
deduplication) over that day's articles only. Days are cached: a past day changes only when
late articles arrive, so a few minutes of staleness are fine and the archive answers from memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.app.core import FlareStart
    from bot.ranking.topics import Taxonomy
    from bot.store.store import StoredArticle

# The FlareStart site's filters: Home (everything), News, How-To.
FILTERS: dict[str, str | None] = {"home": None, "news": "news", "how-to": "how-to"}
KIND_NAMES = {"news": "News", "how-to": "How-To", "opinion": "Opinion"}
DAY_TTL = 300.0  # seconds today's page is served from memory
PAST_DAY_TTL = 3600.0  # an earlier day changes only when a late article arrives
DAY = timedelta(days=1)
TITLE_MAX, SOURCE_MAX, EXCERPT_MAX = 300, 120, 280


@dataclass(frozen=True, slots=True)
class WebItem:
    """One article as a web page lists it (no images: pages make no third-party requests)."""

    title: str
    url: str
    source: str
    published: datetime
    excerpt: str
    chip: str  # the kind ("How-To") or the first topic's name
    kind: str | None  # news | how-to | opinion | None


@dataclass(frozen=True, slots=True)
class ArchiveDay:
    day: date
    items: tuple[WebItem, ...]

    def filtered(self, kind: str | None) -> tuple[WebItem, ...]:
        return self.items if kind is None else tuple(i for i in self.items if i.kind == kind)


@dataclass(frozen=True, slots=True)
class SentDigest:
    """A digest as it was sent: to whom (masked by the door), when, and its articles."""

    subscriber_id: int
    email: str
    period: str
    sent_at: datetime | None
    items: tuple[WebItem, ...]


def web_item(article: StoredArticle, taxonomy: Taxonomy) -> WebItem:
    """The article as a page shows it. Feed text is hostile: one line each, cut to size, and a
    link only when it is plain http(s) (never javascript: or data:); templates escape the rest."""
    from bot.digest.text import clean_text, safe_link

    kind = next((m.slug for m in article.topics if m.slug in KIND_NAMES), None)
    if kind is not None:
        chip = KIND_NAMES[kind]
    else:
        names = [taxonomy.get(m.slug).name for m in article.topics if m.slug in taxonomy]
        chip = names[0] if names else "News"
    return WebItem(
        title=clean_text(article.title, TITLE_MAX) or "(untitled)",
        url=safe_link(article.url) or "",
        source=clean_text(article.source_name, SOURCE_MAX),
        published=article.published,
        excerpt=clean_text(article.excerpt, EXCERPT_MAX),
        chip=chip,
        kind=kind,
    )


class Archive:
    """The public daily and the sent digests of one FlareStart (thread-safe; the web calls it from
    its worker threads)."""

    def __init__(
        self, app: FlareStart, *, ttl: float = DAY_TTL, monotonic: Callable[[], float] = time.monotonic
    ):
        self.app = app
        self.settings = app.settings.web
        self.ttl = ttl
        self._monotonic = monotonic
        self._days: dict[date, tuple[float, ArchiveDay]] = {}
        self._lock = threading.Lock()
        # One thread composes while the others wait for its result: when a day expires under load,
        # it is composed once, not once per waiting request.
        self._composing = threading.Lock()

    # -- the public daily ------------------------------------------------------------------------

    def today(self) -> date:
        return self.app.now().astimezone(UTC).date()

    def dates(self) -> list[date]:
        """The archive's days, latest first (today first)."""
        today = self.today()
        return [today - DAY * n for n in range(self.settings.archive_days)]

    def covers(self, day: date) -> bool:
        dates = self.dates()
        return dates[-1] <= day <= dates[0]

    def day(self, day: date) -> ArchiveDay:
        """One day of the public daily (from the cache when fresh)."""
        fresh = self._cached(day)
        if fresh is not None:
            return fresh
        with self._composing:
            fresh = self._cached(day)  # composed by the thread this one waited for
            if fresh is not None:
                return fresh
            computed = self._compose(day)
            with self._lock:
                self._days[day] = (self._monotonic(), computed)
                for old in [d for d in self._days if not self.covers(d)]:
                    del self._days[old]
        return computed

    def _cached(self, day: date) -> ArchiveDay | None:
        ttl = self.ttl if day >= self.today() else max(self.ttl, PAST_DAY_TTL)
        with self._lock:
            cached = self._days.get(day)
        if cached is not None and self._monotonic() - cached[0] < ttl:
            return cached[1]
        return None

    def latest(self) -> ArchiveDay:
        """The newest day with articles (today, else the day before, …); today's when none has."""
        dates = self.dates()
        for day in dates[:3]:  # an empty archive costs three days at most
            found = self.day(day)
            if found.items:
                return found
        return self.day(dates[0])

    def peek(self, day: date) -> ArchiveDay | None:
        """The day when it is fresh in the cache, else None (no database work: a door may call
        this on its event loop and go to a thread only for a miss)."""
        return self._cached(day)

    def peek_latest(self) -> ArchiveDay | None:
        """`latest()` when every day it looks at is fresh in the cache, else None."""
        dates = self.dates()
        for day in dates[:3]:
            found = self._cached(day)
            if found is None:
                return None
            if found.items:
                return found
        return self._cached(dates[0])

    def recent(self, count: int) -> list[ArchiveDay]:
        """The newest `count` days that have articles (the Atom feed's entries)."""
        found = [self.day(day) for day in self.dates()]
        return [day for day in found if day.items][:count]

    def _compose(self, day: date) -> ArchiveDay:
        from bot.digest.compose import Composer

        app = self.app
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        until = min(start + DAY - timedelta(microseconds=1), app.now())
        if until <= start:
            return ArchiveDay(day, ())
        composer = Composer(app.store, app.settings, app.taxonomy, now=until, horizon=DAY)
        topics = [slug for slug in self.settings.archive_topics if slug in app.taxonomy]
        prefs = composer.preferences(
            topics={slug: 1.0 for slug in topics},
            # Twice a day's worth: a filter (How-To) still finds some among them.
            max_items=min(self.settings.archive_items * 2, 50),
            window=until - start,  # the day itself: the day before is its own page
        )
        plan = composer.plan(prefs)
        items = tuple(
            web_item(item.article, app.taxonomy) for item in plan.items if item.article.published >= start
        )
        return ArchiveDay(day, items)

    # -- one subscriber's digest, as sent --------------------------------------------------------

    def sent_digest(self, subscriber_id: int, period: str) -> SentDigest | None:
        """None when there is no such sent digest (not sent yet, or its subscriber removed)."""
        from bot.delivery.ledger import DeliveryLedger
        from bot.errors import NotFoundError

        app = self.app
        delivery = DeliveryLedger(app.store.engine).sent_digest(subscriber_id, period)
        if delivery is None:
            return None
        try:
            subscriber = app.get_subscriber(subscriber_id)
        except NotFoundError:
            return None
        articles = app.store.articles_by_ids(list(delivery.article_ids))
        return SentDigest(
            subscriber_id=subscriber_id,
            email=subscriber.email or "",
            period=period,
            sent_at=delivery.sent_at,
            items=tuple(web_item(article, app.taxonomy) for article in articles),
        )


def parse_day(text: str) -> date | None:
    """'2026-12-05' → that date; None for anything else (the door answers 404)."""
    if len(text) != 10:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
