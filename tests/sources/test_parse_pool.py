"""The parse pool a command starts before its imports: it works, and stopping it at once is quiet."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

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


# A process that owns a pool, with a module preloaded before parse_warm that leaves a mark at its
# process's exit in the forkserver and in the owner, if their interpreter's teardown runs.
OWNER = """
import bot.sources.parse_pool as parse_pool
import bot.sources.parse_warm  # an ordinary import: this process still exits as usual
from bot.config import load_settings

parse_pool.PARSE_PRELOAD = ["mark_at_exit", *parse_pool.PARSE_PRELOAD]
import mark_at_exit

if __name__ == "__main__":
    pool = parse_pool.make_parse_pool(load_settings({}, config_file=None))
    print(pool.submit(len, "abc").result(timeout=60))
    pool.shutdown(wait=True)
"""
MARK_AT_EXIT = """
import atexit, os, sys
from pathlib import Path

atexit.register(lambda: (Path(os.environ["MARKS"]) / str(os.getpid())).write_text(sys.argv[0]))
"""


def test_the_forkserver_ends_without_the_interpreters_teardown(tmp_path: Path) -> None:
    """When its owner has gone, the forkserver leaves at once: its teardown only freed the parser
    and tagger, while whoever read the owner's output (it holds the same pipes) waited for it."""
    (tmp_path / "mark_at_exit.py").write_text(MARK_AT_EXIT, encoding="utf-8")
    marks = tmp_path / "marks"
    marks.mkdir()
    owner = tmp_path / "owner.py"
    owner.write_text(OWNER, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(owner)],
        cwd=tmp_path,  # where the forkserver finds mark_at_exit (Python 3.11's ignores the owner's sys.path)
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MARKS": str(marks)},
    )  # returns once every process holding its pipes has ended, the forkserver included

    assert (done.returncode, done.stdout) == (0, "3\n"), done.stderr
    assert [path.read_text() for path in marks.iterdir()] == [str(owner)]  # the owner's mark only
