"""A send that breaks before the channel names its subscriber and settles its ledger row.

A subscriber whose preferences name a source that does not exist (stored before sync checked
source names, or the source was removed since) used to crash their send job on every attempt,
with only the job's id in the log, while `deliveries list` showed them 'sending' for ever. Both
send paths (the daemon's BatchSender and DigestService.send under a Worker) now fail that
delivery for good at once, with the reason, and go on with everybody else. The clock is fixed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.channels.outbox import OutboxChannel
from bot.config import Settings
from bot.delivery.batch import BatchSender
from bot.delivery.service import SEND_TASK, DigestService
from bot.errors import DeliveryPermanentError
from bot.jobs.worker import Worker
from bot.ranking.types import TopicMatch
from bot.sources.types import ParsedEntry
from bot.store import NewSource, Store
from bot.store.subscribers import SubscriberStore

T = datetime(2026, 12, 4, 13, 45, tzinfo=UTC)


def clock() -> datetime:
    return T


def entry(key: str, hours: float) -> ParsedEntry:
    return ParsedEntry(
        key=key,
        guid=key,
        url=f"https://n.example/{key}",
        title=f"Python story {key}",
        excerpt="About Python.",
        author="Lin",
        published=T - timedelta(hours=hours),
        content_hash=key,
        topics=(TopicMatch("python", 0.9, ("python",)),),
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings)
    source = store.add_source(NewSource("Py Weekly", "https://py.example/feed")).id
    assert source
    store.save_entries(source, [entry(f"a{n}", 1 + n) for n in range(3)], now=T)
    yield store
    store.close()


def add(store: Store, email: str, **fields: object) -> int:
    values = {"email": email, "timezone": "UTC", "delivery_time": "13:30", "topics": {"python": 1.0}}
    added = SubscriberStore(store.engine).add({**values, **fields})
    assert added.id is not None
    return added.id


def service_for(store: Store, settings: Settings) -> DigestService:
    channel = OutboxChannel(settings.outbox_dir, settings=settings.email)
    return DigestService(store, settings, channel, clock=clock)


async def until(done: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(done):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, "did not get there in time"
        await asyncio.sleep(0.02)


async def test_batch_sender_fails_an_unknown_source_for_good_and_names_the_subscriber(
    store: Store, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    broken = add(store, "hn@example.com", muted_sources=["Hacker News"])
    fine = add(store, "ada@example.com")
    service = service_for(store, settings)
    assert service.plan_due() == 2
    sender = BatchSender(service, worker_id="sender-test", poll_interval=0.02)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO)

    runner = asyncio.create_task(sender.run(stop))
    try:
        await until(lambda: service.queue.counts().get("queued", 0) == 0 and not sender._held)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 20)

    rows = {row.subscriber_id: row for row in service.ledger.list()}
    assert rows[fine].status == "sent"
    assert rows[broken].status == "failed" and rows[broken].attempts == 0
    assert "unknown source 'Hacker News'" in (rows[broken].last_error or "")
    assert service.queue.counts()["failed"] == 1  # at once: no crash loop of retries
    about = [r for r in caplog.records if getattr(r, "subscriber", None) == "hn@example.com"]
    assert about and any("unknown source" in r.getMessage() for r in about)


async def test_worker_send_fails_an_unknown_source_and_never_leaves_the_row_sending(
    store: Store, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    broken = add(store, "hn@example.com", source_weights={"Slashdot": 2.0})
    service = service_for(store, settings)
    assert service.plan_due() == 1
    worker = Worker(
        service.queue,
        {SEND_TASK: service.handle_send},
        settings=settings.delivery,
        clock=clock,
        poll_interval=0.02,
    )
    stop = asyncio.Event()
    caplog.set_level(logging.INFO)

    runner = asyncio.create_task(worker.run(stop))
    try:
        await until(lambda: service.queue.counts().get("failed", 0) == 1)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 20)

    [row] = service.ledger.list(subscriber_id=broken)
    assert row.status == "failed"
    assert "unknown source 'Slashdot'" in (row.last_error or "")
    assert any(getattr(r, "subscriber", None) == "hn@example.com" for r in caplog.records)


async def test_a_crash_while_composing_leaves_the_row_pending_with_the_error_then_failed(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = add(store, "ada@example.com")
    service = service_for(store, settings)
    period = "2026-12-04"

    def broken_render(*args: object, **kwargs: object) -> None:
        raise RuntimeError("template exploded")

    monkeypatch.setattr(service, "outgoing", broken_render)
    with pytest.raises(RuntimeError, match="template exploded"):
        await service.send(reader, period, last_attempt=False)
    retrying = service.ledger.list(subscriber_id=reader)[0]
    with pytest.raises(RuntimeError):
        await service.send(reader, period, last_attempt=True)
    final = service.ledger.list(subscriber_id=reader)[0]

    assert (retrying.status, retrying.last_error) == (
        "pending",
        "could not compose the digest: RuntimeError: template exploded",
    )
    assert final.status == "failed"


async def test_send_raises_a_permanent_error_for_unknown_sources(store: Store, settings: Settings) -> None:
    reader = add(store, "hn@example.com", muted_sources=["Hacker News"])
    service = service_for(store, settings)

    with pytest.raises(DeliveryPermanentError, match=r"hn@example\.com's digest cannot be composed"):
        await service.send(reader, "2026-12-04", last_attempt=False)

    assert service.ledger.list(subscriber_id=reader)[0].status == "failed"


async def test_a_channel_crash_settles_the_row_instead_of_leaving_it_sending(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = add(store, "ada@example.com")
    service = service_for(store, settings)

    async def broken_send(message: object) -> None:
        raise RuntimeError("channel bug")

    monkeypatch.setattr(service.channels.for_kind("email"), "send", broken_send)
    with pytest.raises(RuntimeError, match="channel bug"):
        await service.send(reader, "2026-12-04", last_attempt=False)

    [row] = service.ledger.list(subscriber_id=reader)
    assert (row.status, row.last_error) == ("pending", "RuntimeError: channel bug")


async def test_a_period_skipped_early_is_sent_when_planned_once_articles_arrived(
    settings: Settings,
) -> None:
    # `send --now` before any article: the period is recorded as skipped. At the delivery time
    # the planner's job must still send it now that there is something to send.
    store = Store.open(settings)
    try:
        reader = add(store, "ada@example.com")
        service = service_for(store, settings)
        early = await service.send(reader, "2026-12-04")
        assert early.status == "skipped" and early.detail.startswith("no articles at all yet")
        source = store.add_source(NewSource("Py Weekly", "https://py.example/feed")).id
        assert source
        store.save_entries(source, [entry(f"a{n}", 1 + n) for n in range(3)], now=T)
        service = service_for(store, settings)  # a fresh candidate pool, as after its time to live
        assert service.plan_due() == 1
        sender = BatchSender(service, worker_id="sender-test", poll_interval=0.02)
        stop = asyncio.Event()
        runner = asyncio.create_task(sender.run(stop))
        try:
            await until(lambda: service.queue.counts().get("done", 0) == 1)
        finally:
            stop.set()
            await asyncio.wait_for(runner, 20)

        [row] = service.ledger.list(subscriber_id=reader)
        assert (row.status, row.attempts, len(row.article_ids)) == ("sent", 2, 2)
        assert len(list((settings.outbox_dir / "mail" / "new").iterdir())) == 1
    finally:
        store.close()
