"""`flarestart run`: the long-running process. Today it keeps every source fetched on schedule;
digests and delivery join the same loop in later steps.

SIGTERM / Ctrl-C stop it cleanly: no new cycle starts, the running one gets a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from datetime import datetime

from bot.config import Settings
from bot.sources.ingest import Ingestor
from bot.store import Store
from bot.store.types import utcnow

log = logging.getLogger(__name__)

MAX_SLEEP = 60.0  # re-read the schedule at least this often (sources added by another process)
MIN_SLEEP = 1.0
STOP_GRACE = 10.0  # seconds a running cycle gets to finish after a stop signal


async def run_daemon(
    store: Store,
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    clock: Callable[[], datetime] = utcnow,
    max_sleep: float = MAX_SLEEP,
) -> int:
    """Run until `stop` is set (or SIGTERM/SIGINT); returns the number of cycles run."""
    stop = stop or asyncio.Event()
    _install_signal_handlers(stop)
    ingestor = Ingestor(store, settings, clock=clock)
    cycles = 0
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
            reports = cycle.result()
            cycles += 1
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
        ingestor.close()
        log.info("stopped", extra={"cycles": cycles})
    return cycles


async def _sleep_until_due(
    store: Store, stop: asyncio.Event, clock: Callable[[], datetime], max_sleep: float
) -> None:
    due = store.next_due_at()
    wait = max_sleep if due is None else (due - clock()).total_seconds()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), min(max(wait, MIN_SLEEP), max_sleep))


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread
            loop.add_signal_handler(sig, stop.set)
