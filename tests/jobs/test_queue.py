"""The job queue on both databases: one row per unique key, exclusive claims, leases, fences."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from bot.jobs.queue import JobQueue, retry_delay
from bot.store.engine import make_engine

NOW = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@pytest.fixture
def queue(engine: Engine) -> JobQueue:
    return JobQueue(engine)


def add(queue: JobQueue, task: str = "send", **options: Any) -> int:
    """Enqueue a job that is not a duplicate; its id."""
    job_id = queue.enqueue(task, run_at=options.pop("run_at", NOW), **options)
    assert job_id is not None
    return job_id


def test_unique_key_enqueues_once_even_when_producers_race(queue: JobQueue, database_url: str) -> None:
    first = queue.enqueue("digest", {"subscriber": 1}, run_at=NOW, unique_key="digest:1:2026-11-27")
    again = queue.enqueue("digest", {"subscriber": 1}, run_at=NOW, unique_key="digest:1:2026-11-27")
    plain = [queue.enqueue("fetch", run_at=NOW), queue.enqueue("fetch", run_at=NOW)]

    barrier = threading.Barrier(6)
    results: list[int | None] = []

    def produce() -> None:
        engine = make_engine(database_url)
        try:
            barrier.wait()
            results.append(JobQueue(engine).enqueue("clock", run_at=NOW, unique_key="clock@07:00"))
        finally:
            engine.dispose()

    threads = [threading.Thread(target=produce) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert isinstance(first, int) and again is None
    assert None not in plain and len(set(plain)) == 2
    assert len([r for r in results if r is not None]) == 1
    assert queue.counts() == {"queued": 4, "running": 0, "done": 0, "failed": 0}


def test_claim_takes_due_jobs_of_the_asked_tasks_oldest_first(queue: JobQueue) -> None:
    late = queue.enqueue("send", {"n": 2}, run_at=NOW - timedelta(minutes=1))
    early = queue.enqueue("send", {"n": 1}, run_at=NOW - timedelta(minutes=5))
    queue.enqueue("send", run_at=NOW + timedelta(minutes=1))  # not due yet
    queue.enqueue("fetch", run_at=NOW - timedelta(hours=1))  # another task

    first = queue.claim("w1", now=NOW, lease=LEASE, tasks=["send"])
    rest = queue.claim("w1", now=NOW, lease=LEASE, tasks=["send"], limit=10)

    assert [(j.id, j.task, dict(j.payload), j.attempts) for j in first] == [(early, "send", {"n": 1}, 1)]
    assert first[0].locked_until == NOW + LEASE
    assert [j.id for j in rest] == [late]
    assert queue.claim("w1", now=NOW, lease=LEASE, tasks=[]) == []
    assert queue.counts()["running"] == 2


def test_concurrent_claimers_get_every_job_exactly_once(queue: JobQueue, database_url: str) -> None:
    ids = {add(queue, payload={"n": n}) for n in range(200)}
    barrier = threading.Barrier(4)
    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def work(worker: str, batch: int) -> None:
        engine = make_engine(database_url)
        mine: list[int] = []
        try:
            q = JobQueue(engine)
            barrier.wait()
            while jobs := q.claim(worker, now=NOW, lease=LEASE, limit=batch):
                for job in jobs:
                    mine.append(job.id)
                    assert q.finish(job.id, worker, now=NOW, attempt=job.attempts)
        except BaseException as exc:
            errors.append(exc)
        finally:
            claimed[worker] = mine
            engine.dispose()

    threads = [threading.Thread(target=work, args=(f"w{i}", 1 + i % 3)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    everything = [job_id for mine in claimed.values() for job_id in mine]
    assert not errors
    assert sorted(everything) == sorted(ids), "a job was claimed twice or never"
    assert sum(1 for mine in claimed.values() if mine) >= 2, "the claimers did not overlap"
    assert queue.counts() == {"queued": 0, "running": 0, "done": 200, "failed": 0}


def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced_out(queue: JobQueue) -> None:
    job_id = add(queue)
    [old] = queue.claim("w-old", now=NOW, lease=LEASE)

    still_leased = queue.claim("w-new", now=NOW + LEASE - timedelta(seconds=1), lease=LEASE)
    [new] = queue.claim("w-new", now=NOW + LEASE + timedelta(seconds=1), lease=LEASE)

    assert still_leased == []
    assert (new.id, new.attempts) == (job_id, 2)
    assert not queue.extend(job_id, "w-old", until=NOW + 2 * LEASE)
    assert not queue.finish(job_id, "w-old", now=NOW + LEASE)
    assert not queue.retry(job_id, "w-old", error="late", run_at=NOW)
    assert not queue.fail(job_id, "w-old", error="late")
    assert queue.finish(job_id, "w-new", now=NOW + LEASE + timedelta(seconds=2), attempt=new.attempts)
    row = queue.get(job_id)
    assert row is not None and (row.status, row.locked_by, row.attempts) == ("done", "w-new", 2)
    assert old.attempts == 1
    assert not queue.finish(job_id, "w-new", now=NOW), "a second finish must not match"


def test_extended_lease_is_not_taken_over(queue: JobQueue) -> None:
    queue.enqueue("send", run_at=NOW)
    [job] = queue.claim("w1", now=NOW, lease=LEASE)

    assert queue.extend(job.id, "w1", until=NOW + 3 * LEASE, attempt=job.attempts)
    assert queue.claim("w2", now=NOW + 2 * LEASE, lease=LEASE) == []


def test_the_claim_number_fences_a_worker_against_its_own_older_claim(queue: JobQueue) -> None:
    queue.enqueue("send", run_at=NOW)
    [first] = queue.claim("w1", now=NOW, lease=LEASE)
    [second] = queue.claim("w1", now=NOW + 2 * LEASE, lease=LEASE)

    assert not queue.finish(first.id, "w1", now=NOW, attempt=first.attempts)
    assert queue.finish(second.id, "w1", now=NOW, attempt=second.attempts)


def test_retry_waits_for_its_time_and_fails_when_attempts_are_used_up(queue: JobQueue) -> None:
    job_id = add(queue, max_attempts=2)
    [job] = queue.claim("w1", now=NOW, lease=LEASE)
    assert queue.retry(job_id, "w1", error="421 try later", run_at=NOW + timedelta(minutes=1))

    too_soon = queue.claim("w1", now=NOW + timedelta(seconds=59), lease=LEASE)
    [again] = queue.claim("w1", now=NOW + timedelta(minutes=1), lease=LEASE)
    assert again.last_attempt and not job.last_attempt
    assert queue.retry(job_id, "w1", error="421 still later", run_at=NOW + timedelta(minutes=3), now=NOW)

    row = queue.get(job_id)
    assert too_soon == []
    assert row is not None
    assert (row.status, row.attempts, row.last_error) == ("failed", 2, "421 still later")
    assert row.finished_at == NOW and row.locked_until is None
    assert queue.claim("w1", now=NOW + timedelta(hours=1), lease=LEASE) == []


def test_fail_is_final(queue: JobQueue) -> None:
    job_id = add(queue)
    [job] = queue.claim("w1", now=NOW, lease=LEASE)
    assert queue.fail(job_id, "w1", error="550 no such user", attempt=job.attempts)

    row = queue.get(job_id)
    assert row is not None and (row.status, row.last_error) == ("failed", "550 no such user")
    assert queue.claim("w1", now=NOW + timedelta(days=1), lease=LEASE) == []


def test_a_lease_that_expires_on_the_last_attempt_fails_the_job(queue: JobQueue) -> None:
    job_id = add(queue, "poison", max_attempts=2)
    queue.claim("w1", now=NOW, lease=LEASE)  # the worker dies
    queue.claim("w2", now=NOW + 2 * LEASE, lease=LEASE)  # and the next one too

    assert queue.claim("w3", now=NOW + 4 * LEASE, lease=LEASE) == []
    row = queue.get(job_id)
    assert row is not None and row.status == "failed" and row.attempts == 2
    assert row.last_error is not None and "lease expired" in row.last_error


def test_prune_removes_old_finished_jobs_only(queue: JobQueue) -> None:
    old = add(queue)
    waiting = add(queue, run_at=NOW + timedelta(days=9))
    [job] = queue.claim("w1", now=NOW, lease=LEASE)
    queue.finish(job.id, "w1", now=NOW)

    assert queue.prune(finished_before=NOW + timedelta(days=1)) == 1
    assert queue.get(old) is None and queue.get(waiting) is not None
    assert queue.next_run_at() == NOW + timedelta(days=9)


def test_retry_delay_doubles_up_to_a_cap_with_deterministic_jitter() -> None:
    delays = [retry_delay(n) for n in (1, 2, 3, 4)]
    jittered = [retry_delay(3, jitter_key=job_id) for job_id in range(50)]

    assert delays == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert retry_delay(40) == retry_delay(1000) == timedelta(hours=1)
    assert all(timedelta(seconds=90) <= d <= timedelta(seconds=120) for d in jittered)
    assert len(set(jittered)) > 40, "jitter should spread jobs apart"
    assert jittered == [retry_delay(3, jitter_key=job_id) for job_id in range(50)]
