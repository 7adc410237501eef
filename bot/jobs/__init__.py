"""Jobs: work as database rows, claimed with a lease, run by workers, scheduled by the clock."""

from bot.jobs.clock import Clock, Recurring, schedule_recurring
from bot.jobs.queue import ClaimedJob, JobQueue, retry_delay
from bot.jobs.worker import Handler, Worker, WorkerStats

__all__ = [
    "ClaimedJob",
    "Clock",
    "Handler",
    "JobQueue",
    "Recurring",
    "Worker",
    "WorkerStats",
    "retry_delay",
    "schedule_recurring",
]
