"""What the delivery tests share: the clock, a store with a day of Python stories, readers due
now, and ways to watch the job queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session

from bot.config import Settings
from bot.delivery.batch import BatchSender
from bot.delivery.service import SEND_TASK, DigestService
from bot.jobs.queue import JobQueue
from bot.jobs.worker import Worker
from bot.ranking.types import TopicMatch
from bot.sources.types import ParsedEntry
from bot.store import NewSource, Store
from bot.store.models import Job
from bot.store.subscribers import SubscriberStore

NOW = datetime.now(UTC).replace(microsecond=0)


def article(key: str, title: str, hours: float, topic: str = "python") -> ParsedEntry:
    return ParsedEntry(
        key=key,
        guid=key,
        url=f"https://n.example/{key}",
        title=title,
        excerpt=f"About {title}.",
        author="Lin",
        published=NOW - timedelta(hours=hours),
        content_hash=key,
        topics=(TopicMatch(topic, 0.9, (topic,)),),
    )


def stocked_store(settings: Settings, *, stories: int = 3) -> Store:
    """A store with one source and `stories` Python stories published in the last hours."""
    store = Store.open(settings)
    source = store.add_source(NewSource("Py Weekly", "https://py.example/feed")).id
    assert source
    store.save_entries(
        source, [article(f"a{n}", f"Python story {n}", 1 + n) for n in range(stories)], now=NOW
    )
    return store


def add_readers(store: Store, count: int, *, prefix: str = "reader", **fields: object) -> list[int]:
    due = (NOW - timedelta(minutes=5)).strftime("%H:%M")
    subscribers = SubscriberStore(store.engine)
    ids = []
    for n in range(count):
        values = {"email": f"{prefix}{n}@example.com", "timezone": "UTC", "delivery_time": due}
        added = subscribers.add({**values, "topics": {"python": 1.0}, **fields})
        assert added.id is not None
        ids.append(added.id)
    return ids


async def run_until(sender: BatchSender, done: Callable[[], bool], timeout: float = 30.0) -> None:
    stop = asyncio.Event()
    runner = asyncio.create_task(sender.run(stop))
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline or runner.done():
            stop.set()
            await runner
            raise AssertionError("the sender did not get there in time")
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(runner, timeout)


def jobs_by_status(store: Store) -> dict[str, int]:
    return {status: n for status, n in JobQueue(store.engine).counts().items() if n}


def all_jobs(store: Store) -> list[Job]:
    with Session(store.engine) as session:
        return list(session.scalars(select(Job)))


async def work_until(service: DigestService, done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Run a Worker with the send handler, as `flarestart run` does, until `done()`."""
    worker = Worker(
        service.queue,
        {SEND_TASK: service.handle_send},
        settings=service.settings.delivery,
        poll_interval=0.02,
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while not await asyncio.to_thread(done):
            assert time.monotonic() < deadline and not runner.done(), "the worker did not get there"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 10)
