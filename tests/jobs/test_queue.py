"""The job queue on both databases: one row per unique key, exclusive claims, leases, fences."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from bot.jobs.queue import JobQueue, NewJob, retry_delay
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


def test_a_stand_in_claims_a_queued_job_only_once_it_has_waited_but_expired_leases_at_once(
    queue: JobQueue,
) -> None:
    dead = add(queue, run_at=NOW - timedelta(hours=1))
    [crashed] = queue.claim("crashed", now=NOW - LEASE * 2, lease=LEASE, limit=10)  # its lease ended
    fresh = add(queue, run_at=NOW - timedelta(seconds=4))
    waited = add(queue, run_at=NOW - timedelta(seconds=6))
    wait = timedelta(seconds=5)

    taken = queue.claim("stand-in", now=NOW, lease=LEASE, limit=10, waited=wait)

    assert crashed.id == dead
    assert sorted(j.id for j in taken) == sorted([waited, dead])
    assert queue.claim("stand-in", now=NOW, lease=LEASE, limit=10, waited=wait) == []
    assert [j.id for j in queue.claim("worker", now=NOW, lease=LEASE, limit=10)] == [fresh]


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


def test_enqueue_many_creates_one_job_per_unique_key_in_one_go(queue: JobQueue) -> None:
    existing = queue.enqueue("digest", {"n": 0}, run_at=NOW, unique_key="digest:0")
    jobs = [NewJob("digest", {"n": n}, run_at=NOW, unique_key=f"digest:{n}") for n in range(5)]
    jobs += [NewJob("digest", {"n": 1, "again": True}, run_at=NOW, unique_key="digest:1")]  # same key twice
    jobs += [NewJob("fetch", run_at=NOW), NewJob("fetch", run_at=NOW)]  # no key: never a duplicate

    created = queue.enqueue_many(jobs, chunk=3)  # several statements, one transaction
    again = queue.enqueue_many(jobs)

    assert existing is not None
    assert (created, again) == (6, 2)  # digest:1..4 and the two fetches; then only fetches
    claimed = queue.claim("w1", now=NOW, lease=LEASE, tasks=["digest"], limit=10)
    assert sorted(dict(job.payload)["n"] for job in claimed) == [0, 1, 2, 3, 4]
    assert all("again" not in job.payload for job in claimed)  # the first job of a key stands
    assert queue.counts() == {"queued": 4, "running": 5, "done": 0, "failed": 0}


def test_enqueue_many_racing_producers_create_each_key_once(queue: JobQueue, database_url: str) -> None:
    keys = [f"send:{n}" for n in range(300)]
    barrier = threading.Barrier(4)
    created: list[int] = []
    errors: list[BaseException] = []

    def produce(offset: int) -> None:
        engine = make_engine(database_url)
        try:
            barrier.wait()
            mine = keys[offset:] + keys[:offset]  # everyone inserts every key, in another order
            created.append(JobQueue(engine).enqueue_many(NewJob("send", unique_key=k) for k in mine))
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=produce, args=(n * 75,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert sum(created) == len(keys)
    assert queue.counts()["queued"] == len(keys)


def test_enqueue_many_checks_every_job_before_writing(queue: JobQueue) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        queue.enqueue_many([NewJob("ok"), NewJob("bad", max_attempts=0)])
    with pytest.raises(ValueError, match="unique_key is longer"):
        queue.enqueue_many([NewJob("bad", unique_key="k" * 301)])
    assert queue.counts()["queued"] == 0  # the transaction took nothing


def test_claim_takes_queued_jobs_and_expired_leases_in_run_at_order(queue: JobQueue) -> None:
    orphan = add(queue, run_at=NOW - timedelta(minutes=10))
    [held] = queue.claim("w-dead", now=NOW - timedelta(minutes=9), lease=LEASE)  # its worker dies
    fresh = [add(queue, run_at=NOW - timedelta(minutes=n)) for n in (5, 3, 1)]
    later = add(queue, run_at=NOW + timedelta(minutes=1))  # not due
    other = add(queue, "fetch", run_at=NOW - timedelta(hours=1))  # not asked for

    first = queue.claim("w1", now=NOW, lease=LEASE, tasks=["send"], limit=2)
    rest = queue.claim("w1", now=NOW, lease=LEASE, tasks=["send"], limit=10)

    assert held.id == orphan
    assert [(job.id, job.attempts) for job in first] == sorted([(orphan, 2), (fresh[0], 1)])
    assert sorted(job.id for job in rest) == sorted(fresh[1:])
    assert queue.claim("w1", now=NOW, lease=LEASE, tasks=["send"], limit=10) == []
    assert later not in [job.id for job in first + rest] and other not in [job.id for job in first + rest]


def test_released_jobs_go_back_untouched_and_only_by_their_holder(queue: JobQueue) -> None:
    ids = [add(queue) for _ in range(3)]
    claimed = queue.claim("w1", now=NOW, lease=LEASE, limit=3)

    assert queue.release(claimed[:1], "w2") == 0  # not w2's to give back
    assert queue.release(claimed[:2], "w1") == 2
    again = queue.claim("w2", now=NOW, lease=LEASE, limit=3)

    assert sorted(job.id for job in again) == ids[:2]
    assert [job.attempts for job in again] == [1, 1]  # the released claim did not count
    assert not queue.finish(claimed[0].id, "w1", now=NOW, attempt=claimed[0].attempts)


def test_extend_many_renews_what_is_still_ours(queue: JobQueue) -> None:
    [add(queue) for _ in range(2)]
    mine = queue.claim("w1", now=NOW, lease=LEASE, limit=2)
    queue.finish(mine[1].id, "w1", now=NOW, attempt=mine[1].attempts)

    held = queue.extend_many(mine, "w1", until=NOW + 3 * LEASE)

    assert held == {mine[0].id}
    assert queue.claim("w2", now=NOW + 2 * LEASE, lease=LEASE) == []  # renewed, not taken over


def test_finish_can_join_the_callers_transaction(queue: JobQueue, engine: Engine) -> None:
    add(queue)
    [job] = queue.claim("w1", now=NOW, lease=LEASE)
    with engine.connect() as conn:
        assert queue.finish(job.id, "w1", now=NOW, attempt=job.attempts, connection=conn)
        conn.rollback()  # the caller's transaction failed: the finish goes with it
    assert queue.counts()["running"] == 1
    assert queue.finish(job.id, "w1", now=NOW, attempt=job.attempts)
