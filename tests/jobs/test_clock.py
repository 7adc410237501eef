"""The recurring clock: aligned slots, one job per slot however many clocks run."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine

from bot.jobs.clock import Clock, Recurring, recurring_key, schedule_recurring, slot_start
from bot.jobs.queue import JobQueue
from bot.store.engine import make_engine

NOW = datetime(2026, 11, 27, 7, 3, 20, tzinfo=UTC)
ENTRIES = [
    Recurring("fetch", timedelta(minutes=5)),
    Recurring("plan_digests", timedelta(minutes=1), payload={"catch_up": True}),
]


def test_slots_align_to_the_epoch_and_keys_ignore_the_time_zone() -> None:
    paris = timezone(timedelta(hours=1))

    assert slot_start(NOW, timedelta(minutes=5)) == datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    assert slot_start(NOW, timedelta(hours=1)) == datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    assert slot_start(NOW, timedelta(seconds=30)) == datetime(2026, 11, 27, 7, 3, tzinfo=UTC)
    assert recurring_key("fetch", NOW) == recurring_key("fetch", NOW.astimezone(paris))
    assert recurring_key("fetch", NOW) == "fetch@2026-11-27T07:03:20+00:00"
    with pytest.raises(ValueError, match="naive"):
        slot_start(NOW.replace(tzinfo=None), timedelta(minutes=1))


async def test_two_clocks_on_the_same_slot_create_one_job_each_task(
    database_url: str, engine: Engine
) -> None:
    other_engine = make_engine(database_url)  # a second process, as far as the database can tell
    try:
        clocks = [Clock(JobQueue(engine), ENTRIES), Clock(JobQueue(other_engine), ENTRIES)]
        created = await asyncio.gather(*(clock.tick(NOW) for clock in clocks))
        again = await clocks[1].tick(NOW + timedelta(seconds=20))  # same slots
    finally:
        other_engine.dispose()

    scheduled = sorted(task for batch in created for task, _ in batch)
    assert scheduled == ["fetch", "plan_digests"]
    assert again == []
    queue = JobQueue(engine)
    jobs = queue.claim("w", now=NOW, lease=timedelta(seconds=30), limit=10)
    assert sorted((j.task, dict(j.payload)) for j in jobs) == [
        ("fetch", {}),
        ("plan_digests", {"catch_up": True}),
    ]


def test_racing_threads_schedule_a_slot_once(database_url: str, engine: Engine) -> None:
    run_at = slot_start(NOW, timedelta(minutes=1))
    barrier = threading.Barrier(6)
    results: list[bool] = []

    def schedule() -> None:
        own = make_engine(database_url)
        try:
            barrier.wait()
            results.append(schedule_recurring(JobQueue(own), "plan_digests", run_at=run_at))
        finally:
            own.dispose()

    threads = [threading.Thread(target=schedule) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 5 + [True]
    assert JobQueue(engine).counts()["queued"] == 1


async def test_the_next_slot_makes_a_new_job_and_wakes_the_worker(engine: Engine) -> None:
    wakes: list[bool] = []
    clock = Clock(JobQueue(engine), ENTRIES, on_scheduled=lambda: wakes.append(True))

    first = await clock.tick(NOW)
    same = await clock.tick(NOW + timedelta(seconds=30))
    later = await clock.tick(NOW + timedelta(seconds=40))  # 07:04:00: a new minute slot

    assert [task for task, _ in first] == ["fetch", "plan_digests"]
    assert same == []
    assert later == [("plan_digests", datetime(2026, 11, 27, 7, 4, tzinfo=UTC))]
    assert wakes == [True, True]
    assert clock.next_slot(NOW) == datetime(2026, 11, 27, 7, 4, tzinfo=UTC)


async def test_run_ticks_until_stopped(engine: Engine) -> None:
    queue = JobQueue(engine)
    clock = Clock(queue, [Recurring("beat", timedelta(seconds=1))])
    stop = asyncio.Event()

    runner = asyncio.create_task(clock.run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(runner, 2)

    assert 1 <= queue.counts()["queued"] <= 2  # 2 when a second boundary fell inside the wait


def test_a_recurring_entry_needs_a_real_interval_and_unique_tasks(engine: Engine) -> None:
    with pytest.raises(ValueError, match="at least 1 second"):
        Recurring("fetch", timedelta(0))
    with pytest.raises(ValueError, match="listed twice"):
        Clock(JobQueue(engine), [ENTRIES[0], ENTRIES[0]])
