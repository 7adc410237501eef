"""The grouped writer (SQLite's sign-up writer): writes waiting together are committed together,
each caller hears back only after the commit, a bad write fails only itself, and a database
locked by another connection is waited for, not failed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text

from bot.store.engine import make_engine
from bot.store.grouped_writes import GroupedWriter


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'grouped.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE)"))
    yield engine
    engine.dispose()


def insert(conn: Connection, body: str) -> int:
    if body == "boom":
        raise ValueError("a write that fails")
    return int(
        conn.execute(text("INSERT INTO notes (body) VALUES (:b) RETURNING id"), {"b": body}).scalar_one()
    )


def bodies(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(str(row.body) for row in conn.execute(text("SELECT body FROM notes")))


async def test_writes_waiting_together_share_one_transaction_and_all_come_back(engine: Engine) -> None:
    writer: GroupedWriter[str, int] = GroupedWriter(engine, insert, name="test writer")
    writer.start()
    try:
        ids = await asyncio.gather(*(writer.submit(f"note {n}") for n in range(50)))
    finally:
        writer.close()

    assert sorted(ids) == list(range(1, 51))
    assert bodies(engine) == sorted(f"note {n}" for n in range(50))
    assert 1 <= writer.batches < 50  # grouped: fewer transactions than writes


async def test_a_bad_write_fails_alone_and_the_rest_of_its_group_is_committed(engine: Engine) -> None:
    writer: GroupedWriter[str, int] = GroupedWriter(engine, insert, name="test writer")
    writer.start()
    try:
        with locked(engine) as release:  # the writes queue up behind the lock: one group
            first = asyncio.ensure_future(writer.submit("a"))
            await asyncio.sleep(0.05)
            rest = [asyncio.ensure_future(writer.submit(body)) for body in ("boom", "b", "c")]
            await asyncio.sleep(0.05)
            release()
            results = await asyncio.gather(first, *rest, return_exceptions=True)
    finally:
        writer.close()

    assert isinstance(results[1], ValueError)
    assert all(isinstance(results[i], int) for i in (0, 2, 3))
    assert bodies(engine) == ["a", "b", "c", "theirs"]


@contextmanager
def locked(engine: Engine) -> Iterator[Callable[[], None]]:
    """Another connection holds the write lock (as another process's writer does) until released."""
    holder = engine.raw_connection()
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        cursor = holder.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute("INSERT INTO notes (body) VALUES ('theirs')")
        taken.set()
        release.wait(10)
        holder.commit()

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait(10)
    try:
        yield release.set
    finally:
        release.set()
        thread.join()
        holder.close()


async def test_a_database_locked_by_another_connection_is_waited_for(engine: Engine) -> None:
    writer: GroupedWriter[str, int] = GroupedWriter(engine, insert, name="test writer")
    writer.start()
    try:
        with locked(engine) as release:
            began = time.monotonic()
            pending = asyncio.ensure_future(writer.submit("ours"))
            await asyncio.sleep(0.3)
            assert not pending.done()  # still waiting for the lock, not failed
            release()
            assert await asyncio.wait_for(pending, 5) == 2
            assert time.monotonic() - began >= 0.3
    finally:
        writer.close()
    assert bodies(engine) == ["ours", "theirs"]


async def test_submitting_before_start_is_an_error(engine: Engine) -> None:
    writer: GroupedWriter[str, int] = GroupedWriter(engine, insert, name="test writer")
    with pytest.raises(RuntimeError, match="not started"):
        await writer.submit("a")
