"""The double opt-in mail as a job: what the planner and the sign-up page enqueue, and a worker runs.

A sign-up commits its pending subscriber and this job in one transaction, so the mail is owed the
moment the page answers: a crash before the send leaves the job queued (or its lease expiring),
and a worker sends it; the delivery ledger keeps it to one mail. Light on purpose: the web process
imports it without the digest machinery.
"""

from __future__ import annotations

from datetime import datetime

from bot.jobs.queue import NewJob

CONFIRM_TASK = "send_confirmation"
CONFIRM_PERIOD = "confirm"  # the ledger period of the one double opt-in mail
# The mail of a known address, or of a reader who signs up again: a ledger period of its own each
# time (the first one is CONFIRM_PERIOD); at most 20 characters like every period.
AGAIN_PREFIX = "confirm-"
# Whom a known address's mail may go to: anyone we know (the mail leads them to their page).
KNOWN_STATUSES = ("active", "paused", "bouncing", "pending")


def confirm_job_key(subscriber_id: int, channel: str, again: str | None = None) -> str:
    """One first opt-in mail per subscriber and channel; one more per `again` period."""
    key = f"{CONFIRM_TASK}:{subscriber_id}:{channel}"
    return key if again is None else f"{key}:{again}"


def confirm_job(subscriber_id: int, *, channel: str, max_attempts: int) -> NewJob:
    """The first opt-in mail of a pending subscriber (CONFIRM_PERIOD); the planner enqueues the
    same key for every pending subscriber, so either producer makes the one job."""
    return NewJob(
        CONFIRM_TASK,
        {"subscriber_id": subscriber_id},
        unique_key=confirm_job_key(subscriber_id, channel),
        max_attempts=max_attempts,
    )


def again_job(
    subscriber_id: int, *, channel: str, now: datetime, statuses: tuple[str, ...], max_attempts: int
) -> NewJob:
    """The mail of a reader who signs up again: the first opt-in mail if theirs was never sent,
    else one in a period of its own (named by the second it was asked for, so a retried job
    finds its own ledger row). `statuses`: whom it may still go to when it runs."""
    again = f"{AGAIN_PREFIX}{int(now.timestamp()):x}"
    return NewJob(
        CONFIRM_TASK,
        {"subscriber_id": subscriber_id, "again": again, "statuses": list(statuses)},
        unique_key=confirm_job_key(subscriber_id, channel, again),
        max_attempts=max_attempts,
    )


__all__ = [
    "AGAIN_PREFIX",
    "CONFIRM_PERIOD",
    "CONFIRM_TASK",
    "KNOWN_STATUSES",
    "again_job",
    "confirm_job",
    "confirm_job_key",
]
