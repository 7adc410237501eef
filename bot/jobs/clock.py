"""Recurring work: every process may run the clock; each slot becomes one job, never two.

A recurring entry says "run `task` every `interval`". Slots are aligned to the Unix epoch in UTC
(every 5 minutes means :00, :05, :10 …), so every clock agrees on them without talking. Each slot
is enqueued with the unique key "task@run_at": the database's unique index turns the race between
clocks into one insert and some no-ops (the Solid Queue / Oban pattern).

Only the current slot is scheduled: after downtime the clock does not replay every missed slot,
it runs the task once. Recurring tasks are meant to be "do what is due now" (fetch due sources,
plan the digests due), so one run catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.jobs.queue import JobQueue
from bot.store.types import utcnow

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Recurring:
    """Run `task` every `interval` (aligned to the epoch), with this payload."""

    task: str
    interval: timedelta
    payload: Mapping[str, Any] = field(default_factory=dict)
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.interval < timedelta(seconds=1):
            raise ValueError(f"recurring task {self.task!r}: the interval must be at least 1 second")


def slot_start(now: datetime, interval: timedelta) -> datetime:
    """The latest slot boundary at or before `now`."""
    if now.tzinfo is None:
        raise ValueError(f"naive datetime {now!r}: give an aware (UTC) datetime")
    elapsed = now.astimezone(UTC) - EPOCH
    return EPOCH + (elapsed // interval) * interval


def recurring_key(task: str, run_at: datetime) -> str:
    """The unique key of one slot: the same instant gives the same key in any time zone."""
    if run_at.tzinfo is None:
        raise ValueError(f"naive datetime {run_at!r}: give an aware (UTC) datetime")
    return f"{task}@{run_at.astimezone(UTC).isoformat()}"


def schedule_recurring(
    queue: JobQueue,
    task: str,
    *,
    run_at: datetime,
    payload: Mapping[str, Any] | None = None,
    max_attempts: int = 3,
) -> bool:
    """Enqueue `task` for the slot `run_at` unless some clock already did; True if we created it."""
    job_id = queue.enqueue(
        task,
        payload,
        run_at=run_at.astimezone(UTC),
        unique_key=recurring_key(task, run_at),
        max_attempts=max_attempts,
    )
    return job_id is not None


class Clock:
    """Turns recurring entries into jobs, one per slot, however many clocks run."""

    def __init__(
        self,
        queue: JobQueue,
        entries: Sequence[Recurring],
        *,
        clock: Callable[[], datetime] = utcnow,
        on_scheduled: Callable[[], None] | None = None,
    ) -> None:
        tasks = [entry.task for entry in entries]
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"a recurring task is listed twice: {tasks}")
        self.queue = queue
        self.entries = tuple(entries)
        self.clock = clock
        # e.g. Worker.wake, so a new slot runs now rather than at the next poll
        self.on_scheduled = on_scheduled

    def due(self, now: datetime) -> list[tuple[Recurring, datetime]]:
        """Each entry with its current slot."""
        return [(entry, slot_start(now, entry.interval)) for entry in self.entries]

    def next_slot(self, now: datetime) -> datetime | None:
        """The earliest slot boundary after `now` over all entries."""
        starts = [slot_start(now, entry.interval) + entry.interval for entry in self.entries]
        return min(starts, default=None)

    async def tick(self, now: datetime | None = None) -> list[tuple[str, datetime]]:
        """Schedule the current slots; returns the (task, run_at) this call created."""
        now = now or self.clock()
        created: list[tuple[str, datetime]] = []
        for entry, run_at in self.due(now):
            fresh = await asyncio.to_thread(
                schedule_recurring,
                self.queue,
                entry.task,
                run_at=run_at,
                payload=entry.payload,
                max_attempts=entry.max_attempts,
            )
            if fresh:
                created.append((entry.task, run_at))
                log.debug("recurring job scheduled", extra={"task": entry.task, "run_at": run_at.isoformat()})
        if created and self.on_scheduled is not None:
            self.on_scheduled()
        return created

    async def run(self, stop: asyncio.Event, *, max_sleep: float = 60.0) -> None:
        """Tick at every slot boundary until `stop` is set; a database hiccup is logged, not fatal."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("the clock could not schedule recurring jobs")
            upcoming = self.next_slot(self.clock())
            wait = max_sleep if upcoming is None else (upcoming - self.clock()).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(max(wait, 0.05), max_sleep))
