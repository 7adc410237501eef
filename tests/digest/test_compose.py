"""The Composer: one pool from the store, preferences in people's words, plans per subscriber."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Settings
from bot.digest.compose import Composer
from bot.errors import ConfigError
from bot.ranking.setup import taxonomy_for
from bot.ranking.types import TopicMatch
from bot.sources.types import ParsedEntry
from bot.store import NewSource, Store

NOW = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


def entry(key: str, title: str, topic: str, hours: float) -> ParsedEntry:
    return ParsedEntry(
        key=key,
        guid=key,
        url=f"https://n.example/{key}",
        title=title,
        excerpt=title,
        author=None,
        published=NOW - timedelta(hours=hours),
        tags=(),
        content_hash=key,
        topics=(TopicMatch(topic, 0.9, (topic,)),),
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings)
    one = store.add_source(NewSource("One", "https://one.example/feed")).id
    two = store.add_source(NewSource("Two", "https://two.example/feed")).id
    assert one and two
    store.save_entries(
        one,
        [entry("p1", "Python 3.14 is out", "python", 2), entry("r1", "Rust 2.0 roadmap", "rust", 3)],
        now=NOW,
    )
    store.save_entries(
        two,
        [
            entry("p2", "Django 6 ships async ORM", "python", 1),
            entry("old", "Python 2 retrospective", "python", 30),
        ],
        now=NOW,
    )
    yield store
    store.close()


def composer(store: Store, settings: Settings) -> Composer:
    return Composer(store, settings, taxonomy_for(settings), now=NOW)


def test_plan_follows_topics_and_the_window(store: Store, settings: Settings) -> None:
    c = composer(store, settings)
    plan = c.plan(c.preferences(topics={"python": 1.0}))
    assert [i.article.title for i in plan.items] == ["Django 6 ships async ORM", "Python 3.14 is out"]
    assert plan.items[0].article.source_name == "Two"


def test_mutes_by_source_name_and_delivered_articles(store: Store, settings: Settings) -> None:
    c = composer(store, settings)
    plan = c.plan(c.preferences(topics={"python": 1.0}, muted_sources=["two"]))
    assert [i.article.title for i in plan.items] == ["Python 3.14 is out"]
    sent = {plan.items[0].article.id}
    again = c.plan(c.preferences(topics={"python": 1.0}, muted_sources=["Two"]), delivered=sent)
    assert again.items == () and again.empty_reason


def test_no_topics_means_the_best_of_every_topic(store: Store, settings: Settings) -> None:
    c = composer(store, settings)
    titles = {i.article.title for i in c.plan(c.preferences(topics={})).items}
    assert titles == {"Python 3.14 is out", "Rust 2.0 roadmap", "Django 6 ships async ORM"}


def test_unknown_names_are_clear_errors(store: Store, settings: Settings) -> None:
    c = composer(store, settings)
    with pytest.raises(ConfigError, match="pyton"):
        c.preferences(topics={"pyton": 1.0, "rust": 1.0})
    with pytest.raises(ConfigError, match=r"unknown source 'Tw'.*two"):
        c.preferences(topics={"rust": 1.0}, muted_sources=["Tw"])
