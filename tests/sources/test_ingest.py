"""Ingestion end to end: loopback feeds → Ingestor → store, one source's trouble never another's."""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

import bot.store.store as store_module
from bot.config import Settings, load_settings
from bot.ranking.setup import parse_and_pack, parse_and_tag
from bot.sources.ingest import Ingestor, SourceReport, _Writer
from bot.sources.parse_pool import PARSE_PRELOAD, parse_job
from bot.sources.types import PackedEntries
from bot.store import NewSource, SaveCounts, Store
from bot.store.models import Source
from bot.store.store import FetchRecord
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


# --- one transaction per feed, batched writes, bounded memory, a light parse pool ---------------


def test_parse_pool_job_is_picklable_and_imports_nothing_heavy() -> None:
    """Parser processes import bot.ranking.setup and the pool's job (the forkserver preload) and
    nothing else: no store, SQLAlchemy, HTTP client or settings, which cost each of them tens of MB."""
    assert pickle.loads(pickle.dumps(parse_and_tag)) is parse_and_tag
    assert pickle.loads(pickle.dumps(parse_job)) is parse_job
    assert PARSE_PRELOAD == ["bot.ranking.setup", "bot.sources.parse_pool", "bot.sources.parse_warm"]
    code = (
        "import sys, bot.ranking.setup, bot.sources.parse_pool, bot.sources.parse_warm\n"
        "heavy = ('sqlalchemy', 'sqlmodel', 'alembic', 'pydantic', 'httpx', 'numpy', 'scipy', 'bot.config',"
        " 'bot.store', 'bot.sources.fetch', 'bot.sources.ingest')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tagged_entries_survive_the_trip_from_the_parse_pool() -> None:
    body = rss(("a", "Rust async runtimes compared"), ("b", "Beta"))
    feed = parse_and_tag(body, "https://n.example/", None, ())
    assert any(entry.topics for entry in feed.entries)
    assert pickle.loads(pickle.dumps(feed)) == feed
    # What the pool sends ingest: the feed without entries, the entries as one blob that only
    # the writer unpacks.
    bare, packed = pickle.loads(pickle.dumps(parse_and_pack(body, "https://n.example/", None, ())))
    assert bare == replace(feed, entries=())
    assert isinstance(packed, PackedEntries) and len(packed) == 2
    assert tuple(packed) == packed.unpack() == feed.entries
    assert packed[1] == feed.entries[1] and packed[:1] == feed.entries[:1]
    assert packed == PackedEntries(feed.entries)


@pytest.mark.parametrize("crash", ["before the entries", "after the entries"])
async def test_an_etag_is_never_stored_without_its_entries(
    store: Store,
    ingestor: Ingestor,
    feed_server: FixtureServer,
    monkeypatch: pytest.MonkeyPatch,
    crash: str,
) -> None:
    add(store, "News", feed_server.add("/feed", static(rss(("a", "Alpha"), ("b", "Beta")))))
    original = store_module._save_entries

    def crashing(*args: Any) -> Any:
        if crash == "after the entries":
            original(*args)
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(store_module, "_save_entries", crashing)
    [report] = await ingestor.run(force=True)
    assert report.status == "failed" and "disk I/O error" in (report.error or "")
    source = store.get_source("News")
    assert (source.etag, source.last_modified, store.count_articles()) == (None, None, 0)

    monkeypatch.setattr(store_module, "_save_entries", original)
    [again] = await ingestor.run(force=True)
    assert feed_server.hits("/feed")[-1].header("if-none-match") is None  # fetched in full again
    assert (again.status, again.new) == ("updated", 2)
    assert store.get_source("News").etag is not None


async def test_a_source_removed_mid_run_fails_alone(
    store: Store, ingestor: Ingestor, feed_server: FixtureServer
) -> None:
    for n in range(6):
        add(store, f"Feed {n}", feed_server.add(f"/feed{n}", static(rss((f"e{n}", f"Entry {n}")))))

    def remove_one(sources: list[Source]) -> None:
        # `sources remove` racing the fetch: the row is gone by the time its entries arrive, so
        # they cannot be stored; whatever batch they share with others, only they fail.
        store.remove_source("Feed 3")

    reports = by_name(await ingestor.run(force=True, on_start=remove_one))
    assert reports["Feed 3"].status == "failed"
    assert all(reports[f"Feed {n}"].status == "updated" for n in (0, 1, 2, 4, 5))
    assert store.count_articles() == 5


async def test_writes_waiting_together_share_a_transaction_and_a_failure_stays_its_own(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = []
    for n in range(3):
        source_id = store.add_source(NewSource(f"S{n}", f"https://s{n}.example/feed")).id
        assert source_id is not None
        ids.append(source_id)
    entries = parse_and_tag(rss(("x", "X")), "https://s.example/", None, ()).entries
    records = [
        FetchRecord(i, NOW, {"etag": f'"{i}"', "last_fetch_at": NOW}, PackedEntries(entries)) for i in ids
    ]
    records.append(FetchRecord(10_000, NOW, {"etag": '"gone"'}, entries))  # no such source any more
    calls: list[int] = []
    original = store.record_fetches

    def spy(batch: Sequence[FetchRecord]) -> list[SaveCounts]:
        calls.append(len(batch))
        return original(batch)

    monkeypatch.setattr(store, "record_fetches", spy)
    with ThreadPoolExecutor(1) as thread:
        writer = _Writer(store, thread)
        outcomes = await asyncio.gather(*(writer.write(r) for r in records), return_exceptions=True)
        await writer.drained()
    assert calls == [4, 1, 1, 1, 1]  # together first; one by one once that failed
    assert [o.new for o in outcomes[:3] if isinstance(o, SaveCounts)] == [1, 1, 1]
    assert isinstance(outcomes[3], IntegrityError)
    assert [s.etag for s in store.list_sources()] == ['"' + str(i) + '"' for i in ids]


async def test_not_modified_sources_are_written_in_batches(
    store: Store, ingestor: Ingestor, feed_server: FixtureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(12):
        add(store, f"Feed {n}", feed_server.add(f"/feed{n}", static(rss((f"e{n}", f"Entry {n}")))))
    await ingestor.run(force=True)
    calls: list[int] = []
    original = store.record_fetches

    def spy(batch: Sequence[FetchRecord]) -> list[SaveCounts]:
        calls.append(len(batch))
        return original(batch)

    monkeypatch.setattr(store, "record_fetches", spy)
    hold = threading.Event()
    ingestor._writer_thread.submit(hold.wait, 5)  # the writer is busy while the 304s come in
    answered = len(feed_server.requests)

    def release_once_all_answered() -> None:
        # Not a fixed delay: on a loaded machine the 304s can take longer than any guess.
        deadline = time.monotonic() + 5
        while len(feed_server.requests) < answered + 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        hold.set()

    threading.Thread(target=release_once_all_answered, daemon=True).start()
    reports = await ingestor.run(force=True)
    assert {r.status for r in reports} == {"not_modified"}
    assert sum(calls) == 12 and len(calls) <= 3
    assert all(s.next_fetch_at == NOW + timedelta(minutes=30) for s in store.list_sources())


class GatedPool(ThreadPoolExecutor):
    """A parse pool whose jobs wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(1)
        self.gate = threading.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def gated() -> Any:
            self.gate.wait(10)
            return fn(*args, **kwargs)

        return super().submit(gated)


async def test_fetching_waits_for_parsing(tmp_path: Path, feed_server: FixtureServer) -> None:
    """However many sources are due, bodies waiting for the parse pool stay bounded."""
    settings = load_settings(
        {
            "FLARESTART_DATA_DIR": str(tmp_path / "data"),
            "FLARESTART_ALLOW_PRIVATE_URLS": "1",
            "FLARESTART_FETCH_CONCURRENCY": "2",
            "FLARESTART_FETCH_PARSE_WORKERS": "1",
        }
    )
    store = Store.open(settings)
    for n in range(12):
        add(store, f"Feed {n}", feed_server.add(f"/feed{n}", static(rss((f"e{n}", f"Entry {n}")))))
    pool = GatedPool()
    ingestor = Ingestor(store, settings, pool=pool)
    try:
        run = asyncio.create_task(ingestor.run(force=True))
        await asyncio.sleep(0.5)
        lanes = 2 + 2 * 1  # concurrency + 2 × parse workers
        assert len(feed_server.requests) == lanes  # each lane holds one body, waiting for the pool
        pool.gate.set()
        reports = await run
    finally:
        pool.gate.set()
        ingestor.close()
        pool.shutdown()
        store.close()
    assert [r.status for r in reports] == ["updated"] * 12
    assert [r.source for r in reports] == [f"Feed {n}" for n in range(12)]  # reports keep source order
    assert len(feed_server.requests) == 12
