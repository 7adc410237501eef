"""Ingestion end to end: loopback feeds → Ingestor → store, one source's trouble never another's."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Settings
from bot.sources.ingest import Ingestor, SourceReport
from bot.store import NewSource, Store
from bot.testing.httpserver import FixtureServer, Response, redirect, static

NOW = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


def rss(*items: tuple[str, str], ttl: int | None = None) -> bytes:
    body = "".join(
        f"<item><title>{title}</title><link>https://news.example/{guid}</link><guid>{guid}</guid>"
        f"<pubDate>Thu, 26 Nov 2026 08:00:00 GMT</pubDate><description>About {title}</description></item>"
        for guid, title in items
    )
    extra = f"<ttl>{ttl}</ttl>" if ttl else ""
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>News</title>'
        f"<link>https://news.example/</link>{extra}{body}</channel></rss>"
    ).encode()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings)
    yield store
    store.close()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ingestor(store: Store, settings: Settings, clock: Clock) -> Iterator[Ingestor]:
    # Threads stand in for processes here: same code path, faster start-up for small tests.
    with ThreadPoolExecutor(2) as pool:
        ingestor = Ingestor(store, settings, pool=pool, clock=clock)
        yield ingestor
        ingestor.close()


def add(store: Store, name: str, url: str) -> None:
    store.add_source(NewSource(name, url))


def by_name(reports: list[SourceReport]) -> dict[str, SourceReport]:
    return {r.source: r for r in reports}


async def test_new_then_not_modified_then_updated(
    store: Store, ingestor: Ingestor, feed_server: FixtureServer, clock: Clock
) -> None:
    add(store, "News", feed_server.add("/feed", static(rss(("a", "Alpha"), ("b", "Beta")))))
    [first] = await ingestor.run(force=True)
    assert (first.status, first.new) == ("updated", 2)
    [second] = await ingestor.run(force=True)
    assert second.status == "not_modified"
    assert feed_server.hits("/feed")[-1].header("if-none-match") is not None
    feed_server.add("/feed", static(rss(("a", "Alpha, corrected"), ("b", "Beta"), ("c", "Gamma"))))
    [third] = await ingestor.run(force=True)
    assert (third.status, third.new, third.updated, third.unchanged) == ("updated", 1, 1, 1)
    assert store.count_articles() == 3


async def test_one_broken_source_never_stops_the_others(
    store: Store, ingestor: Ingestor, feed_server: FixtureServer
) -> None:
    add(store, "Good", feed_server.add("/good", static(rss(("g", "Good news")))))
    add(
        store,
        "Html",
        feed_server.add("/html", static(b"<html><body>hi</body></html>", "text/html")),
    )
    add(store, "Broken", feed_server.add("/broken", Response(500, b"oops")))
    add(store, "Offline", "http://127.0.0.1:9/feed")  # discard port: connection refused
    reports = by_name(await ingestor.run(force=True))
    assert reports["Good"].new == 1
    assert {reports[n].status for n in ("Html", "Broken", "Offline")} == {"failed"}
    assert "500" in (reports["Broken"].error or "")
    sources = {s.name: s for s in store.list_sources()}
    assert sources["Broken"].error_count == 1 and sources["Broken"].last_error
    assert sources["Good"].error_count == 0


async def test_errors_back_off_and_success_clears_them(
    store: Store, ingestor: Ingestor, feed_server: FixtureServer, clock: Clock
) -> None:
    add(store, "Flaky", feed_server.add("/flaky", Response(503, b"busy")))
    waits = []
    for _ in range(3):
        await ingestor.run(force=True)
        source = store.get_source("Flaky")
        assert source.next_fetch_at is not None
        waits.append(source.next_fetch_at - clock.now)
    assert waits[0] < waits[1] < waits[2] <= timedelta(hours=24)
    feed_server.add("/flaky", static(rss(("x", "Back"))))
    await ingestor.run(force=True)
    source = store.get_source("Flaky")
    assert (source.error_count, source.last_error) == (0, None)
    assert source.next_fetch_at == clock.now + timedelta(minutes=30)


async def test_permanent_redirect_moves_the_source_and_gone_disables_it(
    store: Store, ingestor: Ingestor, feed_server: FixtureServer
) -> None:
    new_url = feed_server.add("/new", static(rss(("m", "Moved"))))
    add(store, "Moved", feed_server.add("/old", redirect(new_url, 301)))
    add(store, "Temp", feed_server.add("/temp", redirect(new_url, 302)))
    add(store, "Gone", feed_server.add("/gone", Response(410, b"")))
    reports = by_name(await ingestor.run(force=True))
    assert reports["Moved"].moved_to == new_url
    assert store.get_source("Moved").url == new_url
    assert store.get_source("Temp").url == feed_server.url("/temp")
    gone = store.get_source("Gone")
    assert reports["Gone"].status == "gone"
    assert not gone.enabled and "410" in (gone.disabled_reason or "")
    assert [s.name for s in store.sources_due(NOW + timedelta(days=2))] != [] and "Gone" not in [
        s.name for s in store.sources_due(NOW + timedelta(days=2))
    ]


async def test_only_due_sources_are_fetched_and_ttl_is_honoured(
    store: Store, ingestor: Ingestor, feed_server: FixtureServer, clock: Clock
) -> None:
    add(store, "Slow", feed_server.add("/ttl", static(rss(("t", "Ttl"), ttl=120))))
    await ingestor.run()
    assert store.get_source("Slow").next_fetch_at == clock.now + timedelta(minutes=120)
    clock.now += timedelta(minutes=60)
    assert await ingestor.run() == []
    clock.now += timedelta(minutes=61)
    assert [r.source for r in await ingestor.run()] == ["Slow"]


async def test_retry_after_is_honoured(
    store: Store, ingestor: Ingestor, feed_server: FixtureServer, clock: Clock
) -> None:
    add(store, "Busy", feed_server.add("/busy", Response(429, b"", {"Retry-After": "7200"})))
    [report] = await ingestor.run(force=True)
    assert report.status == "failed"
    next_fetch = store.get_source("Busy").next_fetch_at
    assert next_fetch is not None and next_fetch >= clock.now + timedelta(hours=2)
