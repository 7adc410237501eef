"""The parser processes: a forkserver pool that parses feeds off the event loop.

Kept apart from ingest.py, which imports the store and the fetcher, so that a command can start
the pool first and let the forkserver import the parser on the other core while it imports the
rest (`flarestart fetch` does).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings

# The parser processes import this module and nothing heavier (it imports parsing and tagging).
PARSE_PRELOAD = ["bot.ranking.setup"]


def parse_workers(settings: Settings) -> int:
    return settings.fetch.parse_workers or os.cpu_count() or 1


def make_parse_pool(settings: Settings) -> ProcessPoolExecutor:
    """Parser processes started from a clean forkserver (forking a threaded process is unsafe)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PARSE_PRELOAD)
    return ProcessPoolExecutor(max_workers=parse_workers(settings), mp_context=context)


def start_parse_pool(settings: Settings) -> ProcessPoolExecutor:
    """A pool whose forkserver is starting already: the first task spawns it, and the caller goes
    on with its own work (imports, opening the store) while the parser loads over there."""
    pool = make_parse_pool(settings)
    pool.submit(int)  # a no-op; its result is never waited for
    return pool
