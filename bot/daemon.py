"""`flarestart run`: one process that keeps sources fetched, plans digests on a clock and sends
them: a job worker runs the planning and confirmation jobs, a `BatchSender` the digest sends
(claimed, looked up and ranked in batches, drafted in a child process; see bot.delivery.batch).
Several processes on PostgreSQL share the same job table.

SIGTERM / Ctrl-C stop it cleanly: no new fetch cycle or job starts, running sends get 25 s.
A database that goes away (a PostgreSQL restart) stops nothing: every loop logs the failure and
tries again (the fetch loop with a growing wait), and the engine's pre-ping reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.channels.base import Channel
from bot.channels.registry import ChannelRegistry
from bot.config import Settings
from bot.delivery.batch import BatchSender
from bot.delivery.confirmations import CONFIRM_TASK
from bot.delivery.service import PLAN_TASK, DigestService
from bot.jobs.clock import Clock, Recurring
from bot.jobs.queue import ClaimedJob
from bot.jobs.worker import Worker
from bot.sources.ingest import Ingestor
from bot.store import Store
from bot.store.types import utcnow

if TYPE_CHECKING:
    from bot.app import FlareStart

log = logging.getLogger(__name__)

MAX_SLEEP = 60.0  # re-read the schedule at least this often (sources added by another process)
MIN_SLEEP = 1.0
STOP_GRACE = 10.0  # seconds a running fetch cycle gets to finish after a stop signal
PLAN_EVERY = timedelta(minutes=1)  # how often due digests are looked for
# After a fetch cycle failed (the database went away: a restart, a failover), the next try waits
# this long, doubling up to MAX_SLEEP: the service keeps running and picks up when it is back.
FAILED_CYCLE_WAIT = 5.0


async def run_daemon(
    app: FlareStart,
    *,
    stop: asyncio.Event | None = None,
    clock: Callable[[], datetime] = utcnow,
    max_sleep: float = MAX_SLEEP,
    channel: Channel | None = None,
    poll_interval: float = 1.0,
) -> int:
    """Run until `stop` is set (or SIGTERM/SIGINT); returns the number of fetch cycles run."""
    stop = stop or asyncio.Event()
    _install_signal_handlers(stop)
    store, settings = app.store, app.settings
    channels = app.channels if channel is None else ChannelRegistry.serving(channel)
    service = DigestService(store, settings, channels, clock=clock)
    service.sources_ready.clear()
    sender = BatchSender(
        service, clock=clock, poll_interval=poll_interval, drafting=drafting_for_this_machine()
    )

    async def plan(job: ClaimedJob) -> None:
        await service.handle_plan(job)
        sender.wake()  # the new send jobs are due now

    worker = Worker(
        service.queue,
        {PLAN_TASK: plan, CONFIRM_TASK: service.handle_confirm},
        settings=settings.delivery,
        clock=clock,
        poll_interval=poll_interval,
    )
    ticker = Clock(service.queue, [Recurring(PLAN_TASK, PLAN_EVERY)], clock=clock, on_scheduled=worker.wake)
    email = channels.name_for("email")
    log.info("delivering email through %s", email, extra={"channel": email})
    if settings.email.smtp_url:  # real mail: the shipped placeholders must not reach inboxes
        for warning in app.placeholder_warnings():
            log.warning("still a placeholder: %s", warning, extra={"channel": email})
    try:
        cycles, *_ = await asyncio.gather(
            _fetch_loop(store, settings, stop, clock, max_sleep, service.sources_ready),
            ticker.run(stop, max_sleep=max_sleep),
            worker.run(stop),
            sender.run(stop),
        )
    finally:
        await channels.aclose()
        log.info("stopped")
    return int(cycles)


def drafting_for_this_machine() -> str:
    """Draft digests (rank, render) in a child process when there is a core to spare for it, so
    that CPU never holds up the SMTP conversations of the event loop; on one core, inline."""
    return "process" if (os.cpu_count() or 1) > 1 else "inline"


async def _fetch_loop(
    store: Store,
    settings: Settings,
    stop: asyncio.Event,
    clock: Callable[[], datetime],
    max_sleep: float,
    first_cycle_done: asyncio.Event,
) -> int:
    ingestor = Ingestor(store, settings, clock=clock)
    cycles = 0
    failures = 0
    try:
        while not stop.is_set():
            cycle = asyncio.create_task(ingestor.run())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({cycle, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not cycle.done():
                log.info("stopping: letting the running fetches finish", extra={"grace_s": STOP_GRACE})
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(cycle, STOP_GRACE)
                break
            try:
                reports = cycle.result()
            except Exception:  # the database (or a bug) failed the whole cycle: log it, try again
                failures += 1
                wait = min(FAILED_CYCLE_WAIT * 2 ** (failures - 1), max_sleep)
                log.exception("fetch cycle failed; trying again", extra={"retry_in_s": wait})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                continue
            failures = 0
            cycles += 1
            first_cycle_done.set()
            if reports:
                log.info(
                    "fetch cycle done",
                    extra={
                        "sources": len(reports),
                        "new": sum(r.new for r in reports),
                        "updated": sum(r.updated for r in reports),
                        "failed": sum(r.status in ("failed", "gone") for r in reports),
                    },
                )
            await _sleep_until_due(store, stop, clock, max_sleep)
    finally:
        first_cycle_done.set()  # never leave planning waiting on a loop that has ended
        ingestor.close()
    return cycles


async def _sleep_until_due(
    store: Store, stop: asyncio.Event, clock: Callable[[], datetime], max_sleep: float
) -> None:
    try:
        due = store.next_due_at()
    except Exception:  # the database is away: the next cycle says so, and backs off
        log.warning("could not read when the next source is due", exc_info=True)
        due = None
    wait = max_sleep if due is None else (due - clock()).total_seconds()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), min(max(wait, MIN_SLEEP), max_sleep))


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread
            loop.add_signal_handler(sig, stop.set)
