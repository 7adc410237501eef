"""The parser processes: a forkserver pool that parses feeds off the event loop.

Kept apart from ingest.py, which imports the store and the fetcher, so that a command can start
the pool first and let the forkserver import the parser on the other core while it imports the
rest (`flarestart fetch` does).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

from bot.lifeline import watch_owner

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.ranking.types import Topic
    from bot.sources.types import PackedEntries, ParsedFeed

# The parser processes import these and nothing heavier: parsing and tagging, this module, whose
# `parse_job` is what they run, and parse_warm, which builds the tagger before they are forked.
PARSE_PRELOAD = ["bot.ranking.setup", "bot.sources.parse_pool", "bot.sources.parse_warm"]


def parse_job(
    body: bytes, url: str, content_type: str | None, extra: tuple[Topic, ...]
) -> tuple[ParsedFeed, PackedEntries]:
    """What ingest sends to the pool: `parse_and_pack`, imported where it runs. The parser
    processes have it preloaded; the process that only submits (the `fetch` command's) never
    imports lxml, feedparser and the tagger."""
    from bot.ranking.setup import parse_and_pack

    return parse_and_pack(body, url, content_type, extra)


def parse_workers(settings: Settings) -> int:
    return settings.fetch.parse_workers or os.cpu_count() or 1


def make_parse_pool(settings: Settings) -> ProcessPoolExecutor:
    """Parser processes started from a clean forkserver (forking a threaded process is unsafe);
    each ends with this process, even when it is killed."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PARSE_PRELOAD)
    return ProcessPoolExecutor(
        max_workers=parse_workers(settings),
        mp_context=context,
        initializer=watch_owner,
        initargs=(os.getpid(),),
    )


def start_parse_pool(settings: Settings) -> ProcessPoolExecutor:
    """A pool whose forkserver is starting already, while the caller goes on with its own work
    (imports, opening the store). The first task spawns it, and a submit waits until the
    forkserver has imported the parser: so the no-op task is submitted from a thread."""
    pool = make_parse_pool(settings)
    threading.Thread(target=_spawn_a_worker, args=(pool,), name="parse-pool-start", daemon=True).start()
    return pool


def _spawn_a_worker(pool: ProcessPoolExecutor) -> None:
    # RuntimeError: the caller shut the pool down first (an early error), nothing to warm.
    with contextlib.suppress(RuntimeError):
        pool.submit(int)  # a no-op: spawning its worker starts the forkserver
