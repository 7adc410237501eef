"""When a source is due again, as a table: what the last fetch gave → how long we wait."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from bot.sources.schedule import next_fetch_at, stable_jitter
from bot.sources.types import FetchOutcome

NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
MINUTE = 60.0
HOUR = 3600.0


@dataclass(frozen=True)
class Case:
    name: str
    outcome: FetchOutcome
    wait: timedelta  # expected: next fetch at NOW + wait
    error_count: int = 0
    max_age: float | None = None
    retry_after: float | None = None
    ttl_minutes: int | None = None
    jitter: float = 0.0


CASES = [
    Case("ok waits one interval", "ok", timedelta(minutes=30)),
    Case("not_modified waits one interval", "not_modified", timedelta(minutes=30)),
    Case("short max-age changes nothing", "ok", timedelta(minutes=30), max_age=5 * MINUTE),
    Case("long max-age is honoured", "ok", timedelta(hours=2), max_age=2 * HOUR),
    Case("max-age on a 304 too", "not_modified", timedelta(hours=3), max_age=3 * HOUR),
    Case("rss ttl is honoured", "ok", timedelta(minutes=90), ttl_minutes=90),
    Case("the longer of ttl and max-age", "ok", timedelta(hours=4), max_age=4 * HOUR, ttl_minutes=60),
    Case("a feed cannot park us for a week", "ok", timedelta(hours=24), max_age=7 * 24 * HOUR),
    Case("ttl capped too", "ok", timedelta(hours=24), ttl_minutes=10_000),
    Case("retry-after ignored on success", "ok", timedelta(minutes=30), retry_after=5 * HOUR),
    Case("first error waits one interval", "error", timedelta(minutes=30), error_count=1),
    Case("second error waits two", "error", timedelta(hours=1), error_count=2),
    Case("third error waits four", "error", timedelta(hours=2), error_count=3),
    Case("sixth error waits 16 h", "error", timedelta(hours=16), error_count=6),
    Case("seventh error hits the cap", "error", timedelta(hours=24), error_count=7),
    Case("a thousand errors stay capped", "error", timedelta(hours=24), error_count=1000),
    Case("count 0 on error counts as 1", "error", timedelta(minutes=30), error_count=0),
    Case(
        "retry-after longer than backoff wins",
        "error",
        timedelta(hours=3),
        error_count=1,
        retry_after=3 * HOUR,
    ),
    Case(
        "retry-after shorter than backoff loses",
        "error",
        timedelta(hours=2),
        error_count=3,
        retry_after=60.0,
    ),
    Case(
        "retry-after capped like any feed request",
        "error",
        timedelta(hours=24),
        error_count=1,
        retry_after=30 * 24 * HOUR,
    ),
    Case("gone looks again after the longest backoff", "gone", timedelta(hours=24), error_count=1),
    Case("jitter is added as given", "ok", timedelta(minutes=30, seconds=17), jitter=17.0),
    Case("jitter on errors too", "error", timedelta(hours=1, seconds=5), error_count=2, jitter=5.0),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_next_fetch_at(case: Case) -> None:
    due = next_fetch_at(
        now=NOW,
        outcome=case.outcome,
        error_count=case.error_count,
        interval=timedelta(minutes=30),
        max_backoff=timedelta(hours=24),
        max_age=case.max_age,
        retry_after=case.retry_after,
        ttl_minutes=case.ttl_minutes,
        jitter=case.jitter,
    )

    assert due - NOW == case.wait


def test_backoff_never_below_the_interval_even_with_a_small_cap() -> None:
    due = next_fetch_at(
        now=NOW,
        outcome="error",
        error_count=5,
        interval=timedelta(hours=2),
        max_backoff=timedelta(hours=1),
    )

    assert due - NOW == timedelta(hours=2)


def test_the_feed_delay_cap_can_be_changed() -> None:
    due = next_fetch_at(
        now=NOW,
        outcome="ok",
        error_count=0,
        interval=timedelta(minutes=30),
        max_backoff=timedelta(hours=24),
        max_age=10 * HOUR,
        max_feed_delay=timedelta(hours=6),
    )

    assert due - NOW == timedelta(hours=6)


@pytest.mark.parametrize(
    ("interval", "jitter"),
    [(timedelta(0), 0.0), (timedelta(minutes=-5), 0.0), (timedelta(minutes=30), -1.0)],
)
def test_nonsense_arguments_are_refused(interval: timedelta, jitter: float) -> None:
    with pytest.raises(ValueError):
        next_fetch_at(
            now=NOW,
            outcome="ok",
            error_count=0,
            interval=interval,
            max_backoff=timedelta(hours=24),
            jitter=jitter,
        )


def test_stable_jitter_is_deterministic_and_spread() -> None:
    spread = timedelta(minutes=5)
    urls = [f"https://example.com/feed{n}.xml" for n in range(50)]

    jitters = [stable_jitter(url, spread) for url in urls]

    assert jitters == [stable_jitter(url, spread) for url in urls]
    assert all(0.0 <= j < 300.0 for j in jitters)
    assert len({round(j) for j in jitters}) > 25
    assert stable_jitter("https://example.com/feed.xml", timedelta(0)) == 0.0
