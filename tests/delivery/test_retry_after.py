"""A remote that says "retry after N seconds" (Slack's and Discord's 429) is waited out: the job's
next attempt is no sooner than the hint, the default backoff applies without one, and a hint past
RETRY_AFTER_CAP is capped. Both send paths: a Worker running DigestService.send, and BatchSender."""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.channels.base import OutgoingDigest, Receipt
from bot.config import Settings
from bot.delivery.batch import BatchSender
from bot.delivery.service import SEND_TASK, DigestService
from bot.errors import DeliveryTransientError
from bot.jobs.queue import RETRY_AFTER_CAP, RETRY_BASE, RETRY_JITTER, JobQueue, honour_retry_after
from bot.store import Store
from bot.store.models import Job
from bot.store.types import utcnow
from tests.delivery.helpers import add_readers, all_jobs, run_until, stocked_store, work_until


class RateLimitedChannel:
    """A chat webhook that always answers 429, with the given Retry-After (None: without one)."""

    name = "chat"

    def __init__(self, retry_after: float | None) -> None:
        self.retry_after = retry_after
        self.attempts: list[str] = []

    async def send(self, message: OutgoingDigest) -> Receipt:
        self.attempts.append(message.to_address)
        raise DeliveryTransientError("429 Too Many Requests", retry_after=self.retry_after)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = stocked_store(settings, stories=3)
    yield store
    store.close()


def planned_send(store: Store, settings: Settings, channel: RateLimitedChannel) -> tuple[DigestService, int]:
    """One due reader, and the service with their send job planned; the job's id."""
    add_readers(store, 1)
    service = DigestService(store, settings, channel)
    assert service.plan_due() == 1
    [job] = [job for job in all_jobs(store) if job.task == SEND_TASK]
    assert job.id is not None
    return service, job.id


def retried(queue: JobQueue, job_id: int) -> Job | None:
    job = queue.get(job_id)
    return job if job is not None and job.status == "queued" and job.attempts == 1 else None


async def through_the_worker(service: DigestService, job_id: int) -> Job:
    await work_until(service, lambda: retried(service.queue, job_id) is not None)
    job = retried(service.queue, job_id)
    assert job is not None
    return job


async def through_the_batch_sender(service: DigestService, job_id: int) -> Job:
    sender = BatchSender(service, worker_id="sender-test", poll_interval=0.02)
    await run_until(sender, lambda: retried(service.queue, job_id) is not None)
    job = retried(service.queue, job_id)
    assert job is not None
    return job


PATHS = {"worker": through_the_worker, "batch": through_the_batch_sender}

# The default backoff of a first failure: RETRY_BASE, shortened by up to RETRY_JITTER.
DEFAULT_BACKOFF = (RETRY_BASE * (1 - RETRY_JITTER), RETRY_BASE)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("retry_after", "waits"),
    [
        pytest.param(120.0, (timedelta(seconds=120),) * 2, id="hint"),
        pytest.param(None, DEFAULT_BACKOFF, id="no-hint"),
        pytest.param(1.0, DEFAULT_BACKOFF, id="hint-shorter-than-backoff"),
        pytest.param(10.0**9, (RETRY_AFTER_CAP,) * 2, id="huge-hint"),
    ],
)
async def test_a_transient_failure_waits_out_the_remotes_retry_after(
    store: Store,
    settings: Settings,
    path: str,
    retry_after: float | None,
    waits: tuple[timedelta, timedelta],
) -> None:
    channel = RateLimitedChannel(retry_after)
    service, job_id = planned_send(store, settings, channel)
    before = utcnow()

    job = await PATHS[path](service, job_id)

    after = utcnow()
    shortest, longest = waits
    assert channel.attempts == ["reader0@example.com"]
    assert before + shortest <= job.run_at <= after + longest
    assert job.last_error == "DeliveryTransientError: 429 Too Many Requests"
    [delivery] = service.ledger.list()
    assert delivery.status == "pending"  # retried later, not failed


def test_the_hint_survives_pickling() -> None:
    error = DeliveryTransientError("429 Too Many Requests", retry_after=120.0)

    copy = pickle.loads(pickle.dumps(error))

    assert (type(copy), str(copy), copy.retry_after) == (DeliveryTransientError, str(error), 120.0)
    assert pickle.loads(pickle.dumps(DeliveryTransientError("421 busy"))).retry_after is None


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (None, timedelta(seconds=30)),
        (120, timedelta(seconds=120)),
        (10.0, timedelta(seconds=30)),  # the backoff is longer: it stands
        (-5.0, timedelta(seconds=30)),
        (math.nan, timedelta(seconds=30)),
        (math.inf, RETRY_AFTER_CAP),
        (RETRY_AFTER_CAP.total_seconds() + 1, RETRY_AFTER_CAP),
    ],
)
def test_the_wait_is_the_longer_of_backoff_and_hint_within_the_cap(
    retry_after: float | None, expected: timedelta
) -> None:
    assert honour_retry_after(timedelta(seconds=30), retry_after) == expected


def test_the_cap_limits_only_the_hint() -> None:
    long_backoff = RETRY_AFTER_CAP * 2
    assert honour_retry_after(long_backoff, 10.0**9) == long_backoff
