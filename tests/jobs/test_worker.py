"""The worker on both databases: outcomes by error kind, bounded concurrency, leases kept alive,
a clean drain on stop, and a real crash (SIGKILL mid-run) that loses and doubles no digest."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlmodel import Session

from bot.config import DeliverySettings
from bot.delivery.ledger import DeliveryLedger
from bot.errors import DeliveryBusyError, DeliveryPermanentError, DeliveryTransientError
from bot.jobs.queue import ClaimedJob, JobQueue
from bot.jobs.worker import Handler, Worker, default_backoff
from bot.store.engine import make_engine
from bot.store.models import Article, Delivery, Job, Source, Subscriber
from bot.store.types import utcnow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def queue(engine: Engine) -> JobQueue:
    return JobQueue(engine)


def make_worker(
    queue: JobQueue,
    handlers: dict[str, Handler],
    *,
    worker_id: str = "w1",
    workers: int = 4,
    lease: float = 5.0,
    **options: Any,
) -> Worker:
    """A worker with test timings: quick polls, retries at once unless told otherwise."""
    options.setdefault("poll_interval", 0.02)
    options.setdefault("backoff", lambda job: timedelta(0))
    settings = DeliverySettings(workers=workers, lease_seconds=lease)
    return Worker(queue, handlers, worker_id=worker_id, settings=settings, **options)


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        await asyncio.sleep(0.02)


def idle(queue: JobQueue) -> Callable[[], bool]:
    def check() -> bool:
        counts = queue.counts()
        return counts["queued"] == counts["running"] == 0

    return check


async def test_a_job_whose_delivery_is_busy_elsewhere_is_put_back_without_spending_attempts(
    queue: JobQueue,
) -> None:
    # Another door holds the delivery each time: a job with one attempt is still never failed
    # for it, and runs (and is done) once the door let go.
    calls: list[ClaimedJob] = []

    async def handle(job: ClaimedJob) -> None:
        calls.append(job)
        if len(calls) < 3:
            raise DeliveryBusyError("ada@example.com's digest is already being sent", retry_after=0.05)

    job_id = queue.enqueue("send", max_attempts=1)
    worker = make_worker(queue, {"send": handle})
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop))
    await wait_for(idle(queue))
    stop.set()
    stats = await asyncio.wait_for(runner, 5)

    job = queue.get(job_id or 0)
    assert job is not None and (job.status, job.attempts) == ("done", 1)
    assert [c.attempts for c in calls] == [1, 1, 1]  # the busy claims were not counted
    assert job.last_error is not None and "already being sent" in job.last_error
    assert (stats.done, stats.retried, stats.failed) == (1, 2, 0)


async def test_handlers_decide_done_retry_or_fail(queue: JobQueue, caplog: pytest.LogCaptureFixture) -> None:
    calls: dict[str, int] = {}

    def counting(name: str, body: Callable[[int], None]) -> Handler:
        async def handle(job: ClaimedJob) -> None:
            calls[name] = calls.get(name, 0) + 1
            body(calls[name])

        return handle

    def flaky(n: int) -> None:
        if n < 3:
            raise DeliveryTransientError("421 4.7.0 try again later")

    def bounced(n: int) -> None:
        raise DeliveryPermanentError("550 5.1.1 no such user")

    def buggy(n: int) -> None:
        raise KeyError("subscriber")

    ok_ids = [queue.enqueue("ok") for _ in range(3)]
    flaky_id = queue.enqueue("flaky")
    bounced_id = queue.enqueue("bounced")
    buggy_id = queue.enqueue("buggy", max_attempts=2)
    handlers = {
        "ok": counting("ok", lambda n: None),
        "flaky": counting("flaky", flaky),
        "bounced": counting("bounced", bounced),
        "buggy": counting("buggy", buggy),
    }
    worker = make_worker(queue, handlers)
    stop = asyncio.Event()

    with caplog.at_level(logging.INFO, logger="bot.jobs.worker"):
        runner = asyncio.create_task(worker.run(stop))
        await wait_for(idle(queue))
        stop.set()
        stats = await asyncio.wait_for(runner, 5)

    def row(job_id: int | None) -> tuple[str, int]:
        job = queue.get(job_id or 0)
        assert job is not None
        return job.status, job.attempts

    assert [row(i) for i in ok_ids] == [("done", 1)] * 3
    assert row(flaky_id) == ("done", 3) and calls["flaky"] == 3
    assert row(bounced_id) == ("failed", 1) and calls["bounced"] == 1
    assert row(buggy_id) == ("failed", 2)
    bounced_job, buggy_job = queue.get(bounced_id or 0), queue.get(buggy_id or 0)
    assert (
        bounced_job is not None and bounced_job.last_error == "DeliveryPermanentError: 550 5.1.1 no such user"
    )
    assert buggy_job is not None and buggy_job.last_error is not None
    assert "Traceback" in buggy_job.last_error and "KeyError" in buggy_job.last_error
    crashed = [r for r in caplog.records if r.getMessage() == "job crashed"]
    assert len(crashed) == 2 and all(r.exc_info for r in crashed)
    assert {getattr(r, "job", None) for r in crashed} == {buggy_id}
    assert (stats.done, stats.retried, stats.failed, stats.lost) == (4, 3, 2, 0)


async def test_a_transient_failure_waits_out_the_default_backoff(queue: JobQueue) -> None:
    async def busy(job: ClaimedJob) -> None:
        raise DeliveryTransientError("421 busy")

    job_id = queue.enqueue("send")
    worker = make_worker(queue, {"send": busy}, backoff=default_backoff)
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop))
    await wait_for(lambda: queue.counts()["queued"] == 1 and queue.counts()["running"] == 0)
    failed_at = utcnow()
    stop.set()
    await asyncio.wait_for(runner, 5)

    row = queue.get(job_id or 0)
    assert row is not None and (row.status, row.attempts, row.last_error) == (
        "queued",
        1,
        "DeliveryTransientError: 421 busy",
    )
    wait = row.run_at - failed_at
    assert timedelta(seconds=20) < wait <= timedelta(seconds=30)  # 30 s, less up to 25 % jitter


async def test_no_more_jobs_run_at_once_than_settings_allow(queue: JobQueue) -> None:
    running, peak = 0, 0

    async def slow(job: ClaimedJob) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    for _ in range(9):
        queue.enqueue("slow")
    worker = make_worker(queue, {"slow": slow}, workers=3)
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop))
    await wait_for(idle(queue))
    stop.set()
    await asyncio.wait_for(runner, 5)

    assert peak == 3
    assert queue.counts()["done"] == 9


async def test_stop_claims_nothing_new_and_lets_the_running_job_finish(queue: JobQueue) -> None:
    started = asyncio.Event()
    finished: list[int] = []

    async def send(job: ClaimedJob) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(job.id)

    first = queue.enqueue("send")
    second = queue.enqueue("send", run_at=utcnow() + timedelta(milliseconds=50))
    worker = make_worker(queue, {"send": send}, workers=1)
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(started.wait(), 5)
    stop.set()
    began = time.monotonic()
    await asyncio.wait_for(runner, 5)

    assert finished == [first]
    assert time.monotonic() - began < 1.0
    second_job = queue.get(second or 0)
    assert second_job is not None and second_job.status == "queued"
    assert queue.counts()["done"] == 1


async def test_a_job_hanging_past_the_drain_is_cancelled_and_retaken_after_its_lease(queue: JobQueue) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang(job: ClaimedJob) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = queue.enqueue("send")
    lease = 1.0
    worker = make_worker(queue, {"send": hang}, lease=lease, drain_seconds=0.2)
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(started.wait(), 5)
    stop.set()
    began = time.monotonic()
    stats = await asyncio.wait_for(runner, 5)
    stopped_after = time.monotonic() - began

    held = queue.claim("w2", now=utcnow(), lease=timedelta(seconds=30))
    abandoned = queue.get(job_id or 0)
    await asyncio.sleep(lease + 0.1)
    [retaken] = queue.claim("w2", now=utcnow(), lease=timedelta(seconds=30))

    assert cancelled.is_set() and stats.cancelled == 1
    assert 0.2 <= stopped_after < 1.0
    assert held == [], "the lease still held right after the stop"
    assert abandoned is not None and (abandoned.status, abandoned.locked_by) == ("running", "w1")
    assert (retaken.id, retaken.attempts) == (job_id, 2)


async def test_a_long_job_keeps_its_lease_and_runs_once_beside_another_worker(queue: JobQueue) -> None:
    runs: list[str] = []

    def handler(name: str) -> Handler:
        async def long(job: ClaimedJob) -> None:
            runs.append(name)
            await asyncio.sleep(2.4)  # more than two leases long

        return long

    queue.enqueue("long")
    workers = [
        make_worker(queue, {"long": handler(name)}, worker_id=name, lease=1.0) for name in ("w1", "w2")
    ]
    stop = asyncio.Event()
    runners = [asyncio.create_task(w.run(stop)) for w in workers]
    await wait_for(lambda: queue.counts()["done"] == 1, timeout=10)
    stop.set()
    stats = await asyncio.wait_for(asyncio.gather(*runners), 5)

    assert len(runs) == 1
    assert sum(s.done for s in stats) == 1 and sum(s.lost for s in stats) == 0


async def test_a_job_whose_lease_is_taken_over_is_cancelled_here(queue: JobQueue) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang(job: ClaimedJob) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = queue.enqueue("send")
    worker = make_worker(queue, {"send": hang}, lease=0.3)
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(started.wait(), 5)
    # Another worker whose clock runs far ahead sees the lease expired and takes the job.
    [taken] = queue.claim("w2", now=utcnow() + timedelta(hours=1), lease=timedelta(hours=1))
    await asyncio.wait_for(cancelled.wait(), 2)
    stop.set()
    await asyncio.wait_for(runner, 5)

    row = queue.get(job_id or 0)
    assert taken.id == job_id
    assert row is not None and (row.status, row.locked_by) == ("running", "w2")


async def test_wake_runs_new_work_before_the_next_poll(queue: JobQueue) -> None:
    done = asyncio.Event()

    async def send(job: ClaimedJob) -> None:
        done.set()

    worker = make_worker(queue, {"send": send}, poll_interval=30)
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(0.1)  # the worker found nothing and sleeps
    await asyncio.to_thread(queue.enqueue, "send")
    worker.wake()
    await asyncio.wait_for(done.wait(), 2)
    stop.set()
    await asyncio.wait_for(runner, 5)


# -- a real crash ----------------------------------------------------------------------------

DIGESTS = 120
LEASE = timedelta(seconds=2)  # the worker's job lease and the delivery rows' lease
ARTICLES_PER_DIGEST = 3
PERIOD = "2026-11-27"


def _prepare_digests(engine: Engine) -> list[int]:
    """Subscribers, a few articles, one pending delivery and one send job per subscriber, in one
    transaction (what the planner will do one by one through the ledger and the queue)."""
    with Session(engine) as session:
        source = Source(name="Feed", url="https://feed.example/rss")
        session.add(source)
        session.flush()
        assert source.id is not None
        articles = [
            Article(
                source_id=source.id, key=f"guid:{n}", title=f"A{n}", published_at=utcnow(), content_hash="h"
            )
            for n in range(ARTICLES_PER_DIGEST)
        ]
        subscribers = [Subscriber(email=f"reader{n}@example.com") for n in range(DIGESTS)]
        session.add_all([*articles, *subscribers])
        session.flush()
        article_ids = [a.id for a in articles if a.id is not None]
        subscriber_ids = [s.id for s in subscribers if s.id is not None]
        deliveries = [
            Delivery(subscriber_id=s, period=PERIOD, channel="email", article_ids=article_ids)
            for s in subscriber_ids
        ]
        session.add_all(deliveries)
        session.flush()
        session.add_all(
            Job(task="send_digest", payload={"delivery": d.id}, unique_key=f"send:{d.id}") for d in deliveries
        )
        session.commit()
    return subscriber_ids


def _message_id(subscriber_id: int, period: str) -> str:
    return f"<digest.{subscriber_id}.{period}@flarestart.test>"


def _child(url: str, sink: str, worker_id: str) -> None:
    """One worker process: sends digests to the sink file (our stand-in SMTP server) until SIGTERM."""
    if url.startswith("postgresql"):  # named, so the test can see when the server is done with it
        url += ("&" if "?" in url else "?") + f"application_name={worker_id}"
    engine = make_engine(url)
    queue, ledger = JobQueue(engine), DeliveryLedger(engine)

    async def send_digest(job: ClaimedJob) -> None:
        delivery_id = int(str(job.payload["delivery"]))
        # The row is held as long as the job (as DigestService does): a killed sender's rows are
        # taken over once that lease ends.
        if not await asyncio.to_thread(ledger.begin_send, delivery_id, now=utcnow(), lease=LEASE):
            delivery = await asyncio.to_thread(ledger.get, delivery_id)
            if delivery.status == "sending" and delivery.lease_until is not None:  # held: come back
                wait = (delivery.lease_until - utcnow()).total_seconds()
                raise DeliveryBusyError("being sent by another worker", retry_after=wait)
            return  # sent already: do not send
        delivery = await asyncio.to_thread(ledger.get, delivery_id)
        message_id = _message_id(delivery.subscriber_id, delivery.period)
        await asyncio.sleep(0.005)  # the SMTP conversation
        with open(sink, "a", encoding="utf-8") as server:  # one O_APPEND write: the server accepted
            server.write(message_id + "\n")
        await asyncio.to_thread(
            ledger.mark_sent,
            delivery_id,
            message_id=message_id,
            article_ids=delivery.article_ids,
            now=utcnow(),
        )

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        worker = Worker(
            queue,
            {"send_digest": send_digest},
            worker_id=worker_id,
            # Long enough that a loaded machine's stalls never let a live lease lapse (that would
            # re-run a send beside the kill's, beyond the bound below); short for the restart.
            settings=DeliverySettings(workers=8, lease_seconds=LEASE.total_seconds()),
            poll_interval=0.05,
        )
        await worker.run(stop)

    try:
        asyncio.run(main())
    finally:
        engine.dispose()


def _spawn(url: str, sink: Path, worker_id: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.jobs.test_worker", url, str(sink), worker_id],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _wait(check: Callable[[], bool], timeout: float, what: str, *, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(every)


def _wait_for_server_to_let_go(engine: Engine, worker_id: str) -> None:
    """After a SIGKILL, PostgreSQL may still be processing a COMMIT the worker sent just before it
    died: the ledger read until the worker's sessions are gone could miss a row going to
    'sending' or 'sent'. SQLite runs in the worker's process, so its writes ended with it."""
    if engine.dialect.name != "postgresql":
        return
    query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")

    def gone() -> bool:
        with engine.connect() as conn:
            return conn.scalar(query, {"name": worker_id}) == 0

    _wait(gone, 30, f"PostgreSQL to close {worker_id}'s sessions")


def test_sigkill_mid_run_then_restart_delivers_every_digest_once(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    subscriber_ids = _prepare_digests(engine)
    ledger, queue = DeliveryLedger(engine), JobQueue(engine)
    sink, log = tmp_path / "smtp-sink.txt", tmp_path / "workers.log"

    first = _spawn(database_url, sink, "worker-a", log)
    try:
        _wait(
            lambda: len(_lines(sink)) >= DIGESTS // 3 or first.poll() is not None,
            30,
            "first sends",
            every=0.01,
        )
        first.kill()  # SIGKILL: no drain, no cleanup, leases left behind
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    _wait_for_server_to_let_go(engine, "worker-a")
    sent_before_restart = len(_lines(sink))
    in_flight_at_kill = ledger.counts()["sending"]

    second = _spawn(database_url, sink, "worker-b", log)
    try:
        _wait(lambda: ledger.counts()["sent"] == DIGESTS, 60, "all digests sent after the restart")
        second.send_signal(signal.SIGTERM)
        returncode = second.wait(30)
    finally:
        if second.poll() is None:
            second.kill()

    received = _lines(sink)
    expected = {_message_id(s, PERIOD) for s in subscriber_ids}
    duplicates = len(received) - len(set(received))
    errors = log.read_text(encoding="utf-8")
    assert DIGESTS // 3 <= sent_before_restart < DIGESTS, "the kill did not land mid-run"
    assert returncode == 0, errors
    assert "Traceback" not in errors, errors
    assert set(received) == expected, "a digest was lost"
    # Only a send the server accepted but the ledger had not yet recorded can repeat, with its
    # Message-ID unchanged; a receiver deduplicates on it.
    assert duplicates <= in_flight_at_kill
    retaken = [d for d in ledger.list(limit=DIGESTS) if d.attempts == 2]
    assert len(retaken) == in_flight_at_kill, "a send cut off by the kill was not taken over"
    assert ledger.counts()["sent"] == DIGESTS
    assert queue.counts() == {"queued": 0, "running": 0, "done": DIGESTS, "failed": 0}
    ledgers = ledger.sent_article_ids_many(subscriber_ids)
    assert {len(ids) for ids in ledgers.values()} == {ARTICLES_PER_DIGEST}
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Subscriber)) == DIGESTS


if __name__ == "__main__":
    _child(*sys.argv[1:4])
