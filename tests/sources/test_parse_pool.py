"""The parse pool a command starts before its imports: it works, and stopping it at once is quiet."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from bot.config import load_settings
from bot.sources.parse_pool import start_parse_pool

SETTINGS = load_settings({"FLARESTART_FETCH_PARSE_WORKERS": "1"}, config_file=None)


def starter_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "parse-pool-start"]


def test_a_started_pool_runs_work() -> None:
    pool = start_parse_pool(SETTINGS)
    try:
        assert pool.submit(len, [1, 2, 3]).result(timeout=60) == 3
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for thread in starter_threads():
        thread.join(timeout=60)
    assert starter_threads() == []


def test_stopping_it_before_its_first_worker_is_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """An early error (a bad database URL) can shut the pool down before the starter thread has
    asked for a worker: that thread then finds nothing to do, and says nothing."""
    deferred: list[Callable[[], None]] = []

    class Deferred:  # the starter thread, run by hand after the shutdown
        def __init__(self, *, target: Callable[..., None], args: tuple[object, ...], **_: object) -> None:
            self.run = lambda: target(*args)

        def start(self) -> None:
            deferred.append(self.run)

    monkeypatch.setattr(threading, "Thread", Deferred)
    pool = start_parse_pool(SETTINGS)
    pool.shutdown(wait=True, cancel_futures=True)

    [run] = deferred
    run()  # raised RuntimeError ("cannot schedule new futures after shutdown") before


def test_a_parser_process_has_the_shipped_tagger_before_its_first_feed() -> None:
    """The forkserver builds the tagger once (bot/sources/parse_warm.py, preloaded) and every
    parser process is forked with it, instead of each building one for its first feed."""
    pool = start_parse_pool(SETTINGS)
    try:  # (hits, misses, maxsize, currsize) of the tagger cache, as a tuple: CacheInfo won't pickle
        ask = "tuple(__import__('bot.ranking.setup', fromlist=['_']).tagger_for.cache_info())"
        hits, misses, _, size = pool.submit(eval, ask).result(timeout=60)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    assert (hits, misses, size) == (0, 1, 1)  # built before the fork, not asked for since
