"""Digests that failed for good, sent again once the cause is fixed (`flarestart deliveries retry`).

Each delivery goes failed → pending with its send job runnable again, in one transaction; a row
that changed meanwhile is left alone, so a sent digest is never selected twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.delivery.confirmations import CONFIRM_PERIOD
from bot.delivery.service import DigestService, send_job_key
from bot.store.models import Delivery, Subscriber
from bot.types import subscriber_ref

REQUEUED, WOULD_REQUEUE, SKIPPED = "requeued", "would-requeue", "skipped"


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    """What `deliveries retry` did (or, in a dry run, would do) with one failed delivery."""

    delivery: Delivery
    subscriber: str
    outcome: str  # requeued | would-requeue | skipped
    detail: str


class _Rollback(Exception):
    """Undo one delivery's retry: the reason it is skipped."""


def retry_failed(
    service: DigestService,
    *,
    since: datetime,
    subscriber_id: int | None = None,
    period: str | None = None,
    channel: str | None = None,
    dry_run: bool = False,
) -> list[RetryOutcome]:
    """Put digests that failed for good back in the queue: each delivery failed → pending and its
    send job runnable again (requeued, or enqueued anew when it was pruned), in one transaction
    per delivery. Subscribers who are not active are skipped; so is a row that changed meanwhile
    (the ledger's guarded move says so), which keeps a sent digest from ever going twice."""
    rows = service.ledger.failed_since(since, subscriber_id=subscriber_id, period=period, channel=channel)
    subscribers = {s.id: s for s in service.subscribers.list()}
    outcomes = []
    for row in rows:
        subscriber = subscribers.get(row.subscriber_id)
        who = subscriber_ref(subscriber) if subscriber is not None else f"#{row.subscriber_id}"
        serving = service.channels.name_for_subscriber(subscriber) if subscriber is not None else ""
        reason = _not_retried(row, subscriber, serving)
        if reason is not None or subscriber is None:
            outcomes.append(RetryOutcome(row, who, SKIPPED, reason or "the subscriber is gone"))
            continue
        try:
            detail = (_dry_retry if dry_run else _retry_one)(service, row, subscriber)
        except _Rollback as exc:
            outcomes.append(RetryOutcome(row, who, SKIPPED, str(exc)))
            continue
        outcomes.append(RetryOutcome(row, who, WOULD_REQUEUE if dry_run else REQUEUED, detail))
    return outcomes


def _not_retried(row: Delivery, subscriber: Subscriber | None, channel: str) -> str | None:
    if row.period == CONFIRM_PERIOD:
        return "a double opt-in mail, not a digest"
    if subscriber is None:
        return "the subscriber is gone"
    if subscriber.status != "active" or not subscriber.address:
        return f"subscriber is {subscriber.status}: nothing is sent to them"
    if row.channel != channel:
        return f"failed through {row.channel}, but the configured channel is {channel}"
    return None


def _retry_one(service: DigestService, row: Delivery, subscriber: Subscriber) -> str:
    assert row.id is not None
    key = send_job_key(row.subscriber_id, row.period, row.channel)
    now = service.clock()
    with service.store.engine.begin() as conn:
        if not service.ledger.reopen(row.id, now=now, connection=conn):
            raise _Rollback(f"changed meanwhile (now {service.ledger.get(row.id).status}): left alone")
        if service.queue.requeue(key, now=now, connection=conn):
            return "send job queued again"
        job_status = service.queue.status_of(key, connection=conn)
        if job_status == "queued":
            return "its send job was still queued"
        if job_status is not None:
            raise _Rollback(f"its send job is {job_status}: try again once it has finished")
        job = service.send_job_for(subscriber, row.period, around=row.created_at)
        if job is None:
            raise _Rollback(_SCHEDULE_CHANGED)
        service.queue.enqueue_one(job, connection=conn)
        return "new send job (the old one was pruned)"


def _dry_retry(service: DigestService, row: Delivery, subscriber: Subscriber) -> str:
    job_status = service.queue.status_of(send_job_key(row.subscriber_id, row.period, row.channel))
    if job_status in ("done", "failed"):
        return "would queue its send job again"
    if job_status == "queued":
        return "its send job is still queued"
    if job_status is not None:
        raise _Rollback(f"its send job is {job_status}: try again once it has finished")
    if service.send_job_for(subscriber, row.period, around=row.created_at) is None:
        raise _Rollback(_SCHEDULE_CHANGED)
    return "would enqueue a new send job (the old one was pruned)"


_SCHEDULE_CHANGED = "its send job was pruned and the subscriber's schedule no longer has this period"
