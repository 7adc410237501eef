"""The worker loop: claim due jobs, run their handlers concurrently, keep the leases alive.

A handler is `async def handle(job: ClaimedJob) -> None`. How it ends decides the job's fate:
- returns → done (a fenced finish: if our lease was lost meanwhile, the other worker's run stands);
- raises DeliveryTransientError → queued again after an exponential backoff (or the error's
  `retry_after`, when the remote asked for longer), failed when the attempts are used up;
- raises DeliveryPermanentError → failed at once, no retry;
- raises anything else → a bug or an unforeseen outage: logged with its traceback, retried like a
  transient error.

Stopping (SIGTERM → `stop.set()`): no new claims; in-flight jobs get `drain_seconds` to finish;
the rest are cancelled and their rows left alone, so their leases expire and another worker (or
this one after a restart) takes them over. That is why handlers must be safe to run again: the
delivery ledger makes sending so.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.config import DeliverySettings
from bot.errors import DeliveryBusyError, DeliveryPermanentError, DeliveryTransientError
from bot.jobs.queue import ClaimedJob, JobQueue, honour_retry_after, retry_delay
from bot.store.types import utcnow

log = logging.getLogger(__name__)

Handler = Callable[[ClaimedJob], Awaitable[None]]
Backoff = Callable[[ClaimedJob], timedelta]

DRAIN_SECONDS = 25.0
POLL_SECONDS = 1.0
CANCEL_GRACE = 5.0  # how long a cancelled handler may take to unwind before we stop waiting


def default_backoff(job: ClaimedJob) -> timedelta:
    return retry_delay(job.attempts, jitter_key=job.id)


def new_worker_id() -> str:
    """Unique per process and start: a restarted worker must not pass the fences of its past life."""
    return f"worker-{uuid.uuid4().hex[:12]}"


@dataclass
class WorkerStats:
    claimed: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0  # our lease was taken over before we could write the outcome
    cancelled: int = 0


@dataclass
class _Running:
    job: ClaimedJob
    settling: bool = False  # the handler returned; the outcome is being written


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        handlers: Mapping[str, Handler],
        *,
        worker_id: str | None = None,
        settings: DeliverySettings,
        clock: Callable[[], datetime] = utcnow,
        poll_interval: float = POLL_SECONDS,
        drain_seconds: float = DRAIN_SECONDS,
        backoff: Backoff = default_backoff,
        waits_for_others: timedelta = timedelta(0),
    ) -> None:
        """`waits_for_others`: a queued job is claimed here only once it has been due that long,
        so this worker stands in for others (that claim at once) instead of competing with them."""
        if not handlers:
            raise ValueError("a worker needs at least one handler")
        self.queue = queue
        self.handlers = dict(handlers)
        self.worker_id = worker_id or new_worker_id()
        self.concurrency = settings.workers
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.clock = clock
        self.poll_interval = poll_interval
        self.drain_seconds = drain_seconds
        self.backoff = backoff
        self.waits_for_others = waits_for_others
        self.stats = WorkerStats()
        self._running: dict[asyncio.Task[None], _Running] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for work now instead of at the next poll (call from the worker's event loop)."""
        self._wake.set()

    @property
    def in_flight(self) -> list[ClaimedJob]:
        return [state.job for state in self._running.values()]

    async def run(self, stop: asyncio.Event) -> WorkerStats:
        """Work until `stop` is set, then drain; returns what this worker did."""
        log.info(
            "worker started",
            extra={
                "worker": self.worker_id,
                "tasks": ",".join(sorted(self.handlers)),
                "slots": self.concurrency,
            },
        )
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"{self.worker_id}-heartbeat")
        try:
            while not stop.is_set():
                await self._claim_free_slots()
                await self._wait_for_something(stop)
            await self._drain()
        finally:
            heartbeat.cancel()
            leftovers = list(self._running)
            for task in leftovers:  # only when run() itself was cancelled
                task.cancel()
            await asyncio.gather(heartbeat, *leftovers, return_exceptions=True)
        log.info("worker stopped", extra={"worker": self.worker_id, **vars(self.stats)})
        return self.stats

    # -- claiming ---------------------------------------------------------------------------

    async def _claim_free_slots(self) -> None:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return
        try:
            jobs = await asyncio.to_thread(
                self.queue.claim,
                self.worker_id,
                now=self.clock(),
                lease=self.lease,
                tasks=list(self.handlers),
                limit=free,
                waited=self.waits_for_others,
            )
        except Exception:
            log.exception("could not claim jobs; trying again later", extra={"worker": self.worker_id})
            return
        for job in jobs:
            self._start(job)

    def _start(self, job: ClaimedJob) -> None:
        for task, state in list(self._running.items()):
            if state.job.id == job.id:  # we lost the lease to ourselves: the old run is stale
                log.warning("job re-claimed while still running here; restarting it", extra=_about(job))
                task.cancel()
        self.stats.claimed += 1
        state = _Running(job)
        task = asyncio.create_task(self._execute(state), name=f"job-{job.id}")
        self._running[task] = state
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)

    async def _wait_for_something(self, stop: asyncio.Event) -> None:
        """Sleep until stop, wake(), a job ending (a slot frees up) or the poll interval."""
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        try:
            await asyncio.wait(
                [*waiters, *self._running], timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
            self._wake.clear()

    # -- running one job --------------------------------------------------------------------

    async def _execute(self, state: _Running) -> None:
        job = state.job
        about = _about(job)
        handler = self.handlers[job.task]
        try:
            try:
                await handler(job)
            except asyncio.CancelledError:
                self.stats.cancelled += 1
                log.warning("job cancelled; its lease will expire and it runs again", extra=about)
                raise
            except DeliveryPermanentError as exc:
                state.settling = True
                await self._fail(job, f"{type(exc).__name__}: {exc}", about)
            except DeliveryBusyError as exc:
                state.settling = True
                await self._postpone(job, exc, about)
            except DeliveryTransientError as exc:
                state.settling = True
                await self._retry(job, f"{type(exc).__name__}: {exc}", about, retry_after=exc.retry_after)
            except Exception as exc:
                state.settling = True
                log.exception("job crashed", extra=about | {"error": type(exc).__name__})
                await self._retry(job, traceback.format_exc(), about)
            else:
                state.settling = True
                await self._finish(job, about)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database failed us while recording the outcome
            log.exception("could not record the job's outcome; it runs again after its lease", extra=about)

    async def _finish(self, job: ClaimedJob, about: dict[str, Any]) -> None:
        ours = await asyncio.to_thread(
            self.queue.finish, job.id, self.worker_id, now=self.clock(), attempt=job.attempts
        )
        if ours:
            self.stats.done += 1
            log.debug("job done", extra=about)
        else:
            self.stats.lost += 1
            log.warning("job finished after its lease was lost; the other run's outcome stands", extra=about)

    async def _retry(
        self, job: ClaimedJob, error: str, about: dict[str, Any], *, retry_after: float | None = None
    ) -> None:
        now = self.clock()
        delay = honour_retry_after(self.backoff(job), retry_after)
        ours = await asyncio.to_thread(
            self.queue.retry,
            job.id,
            self.worker_id,
            error=error,
            run_at=now + delay,
            attempt=job.attempts,
            now=now,
        )
        if not ours:
            self.stats.lost += 1
            log.warning("job failed after its lease was lost; not requeued by us", extra=about)
        elif job.last_attempt:
            self.stats.failed += 1
            log.error("job failed: attempts used up", extra=about | {"error": _summary(error)})
        else:
            self.stats.retried += 1
            log.warning(
                "job will retry",
                extra=about | {"retry_in_s": round(delay.total_seconds(), 1), "error": _summary(error)},
            )

    async def _postpone(self, job: ClaimedJob, exc: DeliveryBusyError, about: dict[str, Any]) -> None:
        """Another door is sending this delivery: back in the queue until its lease ends, with no
        attempt counted, so a send that crashed there is still made here (never dropped)."""
        run_at = self.clock() + timedelta(seconds=exc.retry_after or 0.0)
        ours = await asyncio.to_thread(
            self.queue.postpone, job.id, self.worker_id, run_at=run_at, attempt=job.attempts, reason=str(exc)
        )
        if ours:
            self.stats.retried += 1
            log.info(
                "delivery is being sent elsewhere; job postponed", extra=about | {"until": run_at.isoformat()}
            )
        else:
            self.stats.lost += 1
            log.warning("job postponed after its lease was lost; not requeued by us", extra=about)

    async def _fail(self, job: ClaimedJob, error: str, about: dict[str, Any]) -> None:
        ours = await asyncio.to_thread(
            self.queue.fail, job.id, self.worker_id, error=error, attempt=job.attempts, now=self.clock()
        )
        if ours:
            self.stats.failed += 1
            log.error("job failed permanently", extra=about | {"error": error})
        else:
            self.stats.lost += 1
            log.warning("job failed after its lease was lost; not marked by us", extra=about)

    # -- leases -----------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Renew the leases of running jobs every lease/3; a lease we no longer hold stops its job."""
        interval = max(self.lease.total_seconds() / 3, 0.01)
        while True:
            await asyncio.sleep(interval)
            for task, state in list(self._running.items()):
                if task.done() or state.settling:
                    continue
                job = state.job
                try:
                    ours = await asyncio.to_thread(
                        self.queue.extend,
                        job.id,
                        self.worker_id,
                        until=self.clock() + self.lease,
                        attempt=job.attempts,
                    )
                except Exception:
                    log.exception("could not renew a job's lease", extra=_about(job))
                    continue
                if not ours and not state.settling:
                    log.warning(
                        "lost the lease of a running job (taken over); cancelling it", extra=_about(job)
                    )
                    task.cancel()

    # -- stopping ---------------------------------------------------------------------------

    async def _drain(self) -> None:
        running = set(self._running)
        if not running:
            return
        log.info(
            "stopping: letting in-flight jobs finish",
            extra={"worker": self.worker_id, "jobs": len(running), "drain_s": self.drain_seconds},
        )
        _, late = await asyncio.wait(running, timeout=self.drain_seconds)
        if not late:
            return
        log.warning(
            "cancelling jobs still running after the drain; they run again once their leases expire",
            extra={"worker": self.worker_id, "jobs": ",".join(str(self._running[t].job.id) for t in late)},
        )
        for task in late:
            task.cancel()
        await asyncio.wait(late, timeout=CANCEL_GRACE)


def _about(job: ClaimedJob) -> dict[str, Any]:
    return {"job": job.id, "task": job.task, "attempt": job.attempts}


def _summary(error: str) -> str:
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else error  # a traceback's last line names the exception
