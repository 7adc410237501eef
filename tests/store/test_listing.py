"""The ORM-free read of `sources list` (bot/store/listing.py) on both databases: the same sources,
columns and article counts as the Store, and a bare engine only for a database that needs nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest

from bot.store import NewSource, Store
from bot.store.engine import make_engine
from bot.store.listing import SEEDED_FLAG, SourceListing, open_ready, read_source_listing
from bot.store.migrate import downgrade, upgrade
from bot.store.models import Source
from bot.types import ParsedEntry

NOW = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = make_engine(database_url)
    upgrade(engine)
    store = Store(engine)
    yield store
    store.close()


def entry(key: str) -> ParsedEntry:
    return ParsedEntry(
        key=key,
        guid=key,
        url=f"https://example.com/{key}",
        title=f"Title {key}",
        excerpt="An excerpt.",
        author=None,
        published=NOW - timedelta(hours=1),
        tags=(),
    )


def test_the_listing_has_every_column_of_the_source_table() -> None:
    columns = {f.name for f in fields(SourceListing)} - {"articles"}
    assert columns == set(Source.__table__.columns.keys())  # type: ignore[attr-defined]


def test_the_listing_reads_what_the_store_holds(store: Store) -> None:
    zeta, alpha = store.add_sources(
        [
            NewSource("Zeta", "https://zeta.example/feed", topics=("python", "ai"), weight=2.5),
            NewSource("alpha", "https://alpha.example/feed", category="News"),
        ]
    )
    assert zeta.id is not None and alpha.id is not None
    store.save_entries(zeta.id, [entry("a"), entry("b")], now=NOW)
    store.update_source(
        alpha.id, enabled=False, error_count=3, last_error="boom", last_fetch_at=NOW, next_fetch_at=NOW
    )

    listed = read_source_listing(store.engine)

    by_store = {s.name: s.model_dump() for s in store.list_sources()}
    assert [s.name for s in listed] == [s.name for s in store.list_sources()]
    for row in listed:
        values = row.as_dict()
        assert values.pop("articles") == {"Zeta": 2, "alpha": 0}[row.name]
        assert values == by_store[row.name]
    on, off = sorted(listed, key=lambda row: row.name.lower())[::-1]
    assert (on.topics, on.weight, on.articles) == (["python", "ai"], 2.5, 2)
    assert (off.enabled, off.error_count, off.last_fetch_at, off.category) == (False, 3, NOW, "News")


def test_a_bare_engine_only_for_a_database_at_the_head_and_seeded(database_url: str) -> None:
    assert open_ready(database_url) is None  # empty: the Store must migrate it first
    engine = make_engine(database_url)
    upgrade(engine)
    store = Store(engine)
    try:
        assert open_ready(database_url) is None  # not seeded yet: the Store seeds first
        ready = open_ready(database_url, seeded=False)
        assert ready is not None
        ready.dispose()

        store.set_meta(SEEDED_FLAG, "1")
        ready = open_ready(database_url)
        assert ready is not None
        ready.dispose()

        downgrade(engine, "-1")  # an older schema: the Store must migrate it first
        assert open_ready(database_url) is None
    finally:
        store.close()
