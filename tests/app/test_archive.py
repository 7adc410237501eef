"""The public daily's days: composed once, served from memory while fresh, composed again after."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.app import FlareStart
from bot.app.archive import DAY_TTL, PAST_DAY_TTL, Archive
from bot.config import Settings
from tests.web.test_public import NOW, seed_articles


@pytest.fixture
def app(settings: Settings) -> Iterator[FlareStart]:
    with FlareStart(settings, seed=False, clock=lambda: NOW) as app:
        seed_articles(app.store)
        yield app


def test_a_day_is_composed_once_while_fresh_and_again_when_stale(app: FlareStart) -> None:
    ticks = [1000.0]
    archive = Archive(app, monotonic=lambda: ticks[0])
    today, yesterday = NOW.date(), NOW.date() - timedelta(days=1)

    assert archive.peek(today) is None and archive.peek_latest() is None
    first = archive.day(today)
    ticks[0] += DAY_TTL - 1
    again = archive.day(today)
    old = archive.day(yesterday)
    ticks[0] += 2
    stale = archive.peek_latest()
    later = archive.day(today)

    assert again is first and stale is None  # today's page is older than DAY_TTL now
    assert later is not first and later == first
    assert archive.peek(yesterday) is old  # an earlier day keeps longer
    ticks[0] += PAST_DAY_TTL
    assert archive.peek(yesterday) is None
    assert [item.title for item in first.items if item.kind == "how-to"] == ["How to profile Python code"]
