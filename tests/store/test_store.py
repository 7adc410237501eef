"""The Store interface on both databases: sources, entries saved once, updated in place."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from bot.errors import NotFoundError
from bot.sources.types import ParsedEntry
from bot.store import DuplicateSourceError, NewSource, Store
from bot.store.engine import make_engine
from bot.store.migrate import upgrade
from bot.store.store import FetchRecord

NOW = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = make_engine(database_url)
    upgrade(engine)
    store = Store(engine)
    yield store
    store.close()


def entry(key: str, **changes: object) -> ParsedEntry:
    base = ParsedEntry(
        key=key,
        guid=key,
        url=f"https://example.com/{key}",
        title=f"Title {key}",
        excerpt="An excerpt.",
        author="Ada",
        published=NOW - timedelta(hours=1),
        tags=("python",),
        image_url=None,
        content_hash=f"hash-{key}",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def add(store: Store, name: str = "Blog", url: str = "https://example.com/feed") -> int:
    source_id = store.add_source(NewSource(name, url)).id
    assert source_id is not None
    return source_id


def test_duplicate_url_or_name_is_refused_and_nothing_written(store: Store) -> None:
    add(store)
    with pytest.raises(DuplicateSourceError, match="already a source"):
        store.add_source(NewSource("Other", "https://example.com/feed"))
    with pytest.raises(DuplicateSourceError, match="named 'Blog' already exists"):
        store.add_sources(
            [NewSource("New", "https://new.example/feed"), NewSource("Blog", "https://b.example/")]
        )
    assert [s.name for s in store.list_sources()] == ["Blog"]


def test_unknown_source_suggests_close_names(store: Store) -> None:
    add(store, "The Verge", "https://www.theverge.com/rss/index.xml")
    with pytest.raises(NotFoundError, match="did you mean 'The Verge'"):
        store.get_source("The Verg")
    assert store.get_source("https://www.theverge.com/rss/index.xml").name == "The Verge"


def test_entries_are_stored_once_and_counted(store: Store) -> None:
    source_id = add(store)
    first = store.save_entries(source_id, [entry("a"), entry("b"), entry("a")], now=NOW)
    assert (first.new, first.updated, first.unchanged) == (2, 0, 0)
    again = store.save_entries(source_id, [entry("a"), entry("b")], now=NOW)
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)
    assert store.count_articles() == 2


def test_changed_entry_updates_in_place_and_keeps_identity(store: Store) -> None:
    source_id = add(store)
    store.save_entries(source_id, [entry("a")], now=NOW)
    [(before, _)] = store.list_articles()
    later = NOW + timedelta(hours=2)
    counts = store.save_entries(
        source_id, [entry("a", title="Corrected title", content_hash="hash-a2")], now=later
    )
    assert (counts.new, counts.updated) == (0, 1)
    [(after, name)] = store.list_articles()
    assert name == "Blog"
    assert after.id == before.id
    assert after.title == "Corrected title"
    assert after.first_seen_at == NOW
    assert after.updated_at == later


def test_dates_missing_or_in_the_future_are_clamped_to_now(store: Store) -> None:
    source_id = add(store)
    store.save_entries(
        source_id,
        [entry("undated", published=None), entry("future", published=NOW + timedelta(days=3))],
        now=NOW,
    )
    published = {a.key: a.published_at for a, _ in store.list_articles()}
    assert published == {"undated": NOW, "future": NOW}


def test_same_key_in_two_sources_is_two_articles(store: Store) -> None:
    one, two = (
        add(store, "One", "https://one.example/feed"),
        add(store, "Two", "https://two.example/feed"),
    )
    store.save_entries(one, [entry("x")], now=NOW)
    store.save_entries(two, [entry("x")], now=NOW)
    assert store.article_counts() == {one: 1, two: 1}


def test_oversized_keys_and_urls_do_not_fail_the_feed(store: Store) -> None:
    source_id = add(store)
    huge = entry("guid:" + "g" * 5000, url="https://e.example/" + "p" * 3000, content_hash="h1")
    first = store.save_entries(source_id, [huge], now=NOW)
    again = store.save_entries(source_id, [huge], now=NOW)
    assert (first.new, again.unchanged) == (1, 1)
    [(article, _)] = store.list_articles()
    assert article.url is None
    assert article.key.startswith("guid:sha256:") and len(article.key) <= 2100


def test_sources_due_respects_schedule_and_enabled(store: Store) -> None:
    due, later, off = (
        add(store, "Due", "https://d/"),
        add(store, "Later", "https://l/"),
        add(store, "Off", "https://o/"),
    )
    store.update_source(later, next_fetch_at=NOW + timedelta(minutes=30))
    store.update_source(off, enabled=False)
    assert [s.id for s in store.sources_due(NOW)] == [due]
    assert {s.id for s in store.sources_due(NOW, force=True)} == {due, later}
    assert store.next_due_at() is None or store.next_due_at() <= NOW + timedelta(minutes=30)
    assert [s.name for s in store.sources_due(NOW, refs=["Off"])] == ["Off"]


def test_prune_removes_only_old_articles_and_removing_a_source_cascades(store: Store) -> None:
    source_id = add(store)
    store.save_entries(source_id, [entry("old", published=NOW - timedelta(days=40)), entry("new")], now=NOW)
    assert store.prune_articles(NOW - timedelta(days=30)) == 1
    assert [a.key for a, _ in store.list_articles()] == ["new"]
    store.remove_source("Blog")
    assert store.count_articles() == 0


def test_prune_keeps_articles_a_pending_delivery_needs(store: Store) -> None:
    from sqlmodel import Session

    from bot.store.models import Delivery, Subscriber

    source_id = add(store)
    store.save_entries(
        source_id,
        [entry("a", published=NOW - timedelta(days=40)), entry("b", published=NOW - timedelta(days=40))],
        now=NOW,
    )
    ids = {a.key: a.id for a, _ in store.list_articles()}
    with Session(store.engine) as session:
        subscriber = Subscriber(email="ada@example.com")
        session.add(subscriber)
        session.flush()
        assert subscriber.id is not None
        session.add(
            Delivery(
                subscriber_id=subscriber.id, period="2026-11-27", channel="email", article_ids=[ids["a"]]
            )
        )
        session.commit()
    assert store.prune_articles(NOW - timedelta(days=30)) == 1
    assert [a.key for a, _ in store.list_articles()] == ["a"]


def test_recent_articles_carry_topics_and_source(store: Store) -> None:
    from bot.ranking.types import TopicMatch

    source_id = add(store)
    tagged = entry("t", topics=(TopicMatch("python", 0.9, ("Python",)),))
    store.save_entries(source_id, [tagged, entry("old", published=NOW - timedelta(days=3))], now=NOW)
    [article] = store.recent_articles(NOW - timedelta(hours=24))
    assert (article.source_name, article.title) == ("Blog", "Title t")
    assert article.topics == (TopicMatch("python", 0.9, ("Python",)),)
    assert article.published == NOW - timedelta(hours=1)


def test_record_fetches_writes_entries_with_their_state_in_one_transaction(store: Store) -> None:
    fresh, unchanged = add(store, "A", "https://a/"), add(store, "B", "https://b/")
    failed = add(store, "C", "https://c/")
    later = NOW + timedelta(minutes=30)
    counts = store.record_fetches(
        [
            FetchRecord(fresh, NOW, {"etag": '"a1"', "last_fetch_at": NOW, "error_count": 0}, [entry("x")]),
            FetchRecord(unchanged, NOW, {"last_fetch_at": NOW, "next_fetch_at": later}),
            FetchRecord(failed, NOW, {"last_fetch_at": NOW, "error_count": 3, "last_error": "HTTP 500"}),
        ]
    )
    assert [(c.new, c.updated, c.unchanged) for c in counts] == [(1, 0, 0), (0, 0, 0), (0, 0, 0)]
    sources = {s.id: s for s in store.list_sources()}
    assert (sources[fresh].etag, sources[fresh].last_fetch_at) == ('"a1"', NOW)
    assert sources[unchanged].next_fetch_at == later and sources[unchanged].etag is None
    assert (sources[failed].error_count, sources[failed].last_error) == (3, "HTTP 500")
    assert store.article_counts() == {fresh: 1}


def test_record_fetches_is_all_or_nothing(store: Store) -> None:
    kept = add(store)
    with pytest.raises(IntegrityError):
        store.record_fetches(
            [
                FetchRecord(kept, NOW, {"etag": '"a1"'}, [entry("a")]),
                FetchRecord(kept + 1000, NOW, {"etag": '"b1"'}, [entry("b")]),  # no such source
            ]
        )
    assert store.count_articles() == 0
    assert store.get_source(kept).etag is None  # never a validator without its entries
