"""Group commit for SQLite: many small writes of one kind in one transaction, by one thread.

SQLite has one writer at a time. When every request writes in a thread of its own, they queue on
the lock one by one, and under load each hand-over also waits for the GIL (the event loop holds
it for up to 5 ms at a time): the last of a burst waited for everyone before it. Here a thread of
its own takes every write waiting when it is free (at most `max_batch`) and commits them together:
one lock, one commit, one wake-up of the event loop for the lot. Each caller hears back only once
its write is committed.

Lock priority: the writer's connection does not sleep in SQLite's busy handler, whose steps grow
to 100 ms; it tries the lock again every `busy_poll` seconds. Another process's background writes
(the worker's sends) back off while a waiting request does not, so the request goes first.

A batch that fails is written again one write a transaction, so one bad write fails only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from bot.store.engine import SQLITE_BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 200
BUSY_POLL = 0.0005  # seconds between two tries of a locked database
STOP_SECONDS = 10.0


@dataclass(slots=True)
class _Write(Generic[T, R]):
    item: T
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[R]


class GroupedWriter(Generic[T, R]):
    """`await writer.submit(item)`: `write(connection, item)` committed (with the others waiting
    at the time), and what it returned. Start with `start()`, stop with `close()`."""

    def __init__(
        self,
        engine: Engine,
        write: Callable[[Connection, T], R],
        *,
        name: str,
        max_batch: int = MAX_BATCH,
        busy_poll: float = BUSY_POLL,
        busy_timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000,
    ) -> None:
        self.engine = engine
        self.write = write
        self.name = name
        self.max_batch = max_batch
        self.busy_poll = busy_poll
        self.busy_timeout = busy_timeout
        self._inbox: queue.SimpleQueue[_Write[T, R] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0  # transactions committed (tests and logs: how much was grouped)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Write what was submitted, then stop the thread."""
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(timeout=STOP_SECONDS)
            self._thread = None

    async def submit(self, item: T) -> R:
        if self._thread is None:
            raise RuntimeError(f"{self.name} is not started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._inbox.put(_Write(item, loop, future))
        return await future

    # -- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        with self.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:  # we poll the lock ourselves (see the module's docstring)
                conn.exec_driver_sql("PRAGMA busy_timeout=0")
                # A commit that fills the WAL past its mark copies it back into the database and
                # syncs it (measured: 100-370 ms under load) before the commit returns. The other
                # connections' commits (the mail's ledger rows, the worker's) do that instead.
                conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
                conn.commit()
            try:
                stopping = False
                while not stopping:
                    first = self._inbox.get()
                    if first is None:
                        break
                    batch = [first]
                    while len(batch) < self.max_batch:
                        try:
                            more = self._inbox.get_nowait()
                        except queue.Empty:
                            break
                        if more is None:
                            stopping = True
                            break
                        batch.append(more)
                    self._commit(conn, batch)
            finally:
                if sqlite:  # its busy_timeout is ours: never hand it back to the pool
                    conn.invalidate()

    def _commit(self, conn: Connection, batch: list[_Write[T, R]]) -> None:
        try:
            results = self._in_transaction(conn, lambda: [self.write(conn, w.item) for w in batch])
        except Exception as exc:
            if len(batch) > 1:
                log.warning(
                    "a grouped write failed; writing its batch one by one",
                    extra={"writer": self.name, "writes": len(batch), "error": type(exc).__name__},
                )
                for write in batch:
                    self._commit(conn, [write])
                return
            _settle(batch, None, exc)
            return
        self.batches += 1
        _settle(batch, results, None)

    def _in_transaction(self, conn: Connection, body: Callable[[], list[R]]) -> list[R]:
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                with conn.begin():
                    return body()
            except OperationalError as exc:
                if not _locked(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(self.busy_poll)


def _locked(exc: OperationalError) -> bool:
    """SQLITE_BUSY: another connection holds the write lock (its transaction rolled back here)."""
    original = exc.orig
    if isinstance(original, sqlite3.OperationalError):
        code = getattr(original, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_BUSY if code is not None else "locked" in str(original)
    return False


def _settle(batch: list[_Write[T, R]], results: list[R] | None, error: Exception | None) -> None:
    """Hand each caller its result, one wake-up per event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[R], R | None]]] = {}
    for index, write in enumerate(batch):
        result = results[index] if results is not None else None
        by_loop.setdefault(write.loop, []).append((write.future, result))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_resolve, settled, error)


def _resolve(settled: list[tuple[asyncio.Future[R], R | None]], error: Exception | None) -> None:
    for future, result in settled:
        if future.cancelled():  # the request went away; its write stands
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]


__all__ = ["GroupedWriter"]
