"""The posted parts of split chat digests, in the database: the part log of a real process.

`DatabasePartLog` implements bot.channels.parts.PartLog (structurally; the store does not import
the channels). `record` returns once the part is committed, as soon as the chat service has
accepted the part, so a process killed one part later leaves every part it posted on record and
the retry posts only the rest. Recording the same part twice keeps the first record: the chat
service's answer for a part does not change.

Group commit: hundreds of channels are posted to at once, and their parts are accepted at about
the same moments (the pacer's ticks). One transaction per part would queue those writes behind
SQLite's one writer and hold every channel's next part back; instead the records waiting when a
write starts go into the next transaction together, and each `record` still returns only after
the transaction holding its part has committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from bot.store.models import DeliveryPart
from bot.store.types import utcnow

PARTS: Table = DeliveryPart.__table__  # type: ignore[attr-defined]

_Row = tuple[str, int, str]  # (delivery key, part, ref)


class DatabasePartLog:
    """PartLog over the `delivery_parts` table; the blocking queries run in a worker thread."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._waiting: list[tuple[_Row, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def posted(self, key: str) -> dict[int, str]:
        return await asyncio.to_thread(self.posted_now, key)

    async def record(self, key: str, part: int, ts: str) -> None:
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()
        self._waiting.append(((key, part, ts), committed))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_waiting())
        await asyncio.shield(committed)  # a cancelled caller's part is still written

    async def _write_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await asyncio.to_thread(self.record_many_now, [row for row, _ in batch])
            except Exception as exc:  # every caller of the batch hears of it
                for _, committed in batch:
                    if not committed.done():
                        committed.set_exception(exc)
            else:
                for _, committed in batch:
                    if not committed.done():
                        committed.set_result(None)

    def posted_now(self, key: str) -> dict[int, str]:
        """`posted`, for code off the event loop."""
        query = select(PARTS.c.part, PARTS.c.ref).where(PARTS.c.delivery_key == key)
        with self.engine.connect() as conn:
            return {int(part): str(ref) for part, ref in conn.execute(query)}

    def record_now(self, key: str, part: int, ts: str) -> None:
        """`record`, for code off the event loop."""
        self.record_many_now([(key, part, ts)])

    def record_many_now(self, rows: Sequence[_Row]) -> None:
        """Record parts in one transaction; a part recorded before keeps its first record."""
        now = self.clock()
        values = [{"delivery_key": k, "part": p, "ref": t, "posted_at": now} for k, p, t in rows]
        dialect = self.engine.dialect.name
        statement: Any
        if dialect == "sqlite":
            statement = sqlite.insert(PARTS).on_conflict_do_nothing()
        elif dialect == "postgresql":
            statement = postgresql.insert(PARTS).on_conflict_do_nothing()
        else:  # no portable "insert or ignore": one row at a time
            for value in values:
                try:
                    with self.engine.begin() as conn:
                        conn.execute(insert(PARTS).values(**value))
                except IntegrityError:
                    pass
            return
        with self.engine.begin() as conn:
            conn.execute(statement, values)

    def forget(self, key: str) -> int:
        """Drop the parts of `key` (a delivery that will be posted afresh); how many there were."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(PARTS).where(PARTS.c.delivery_key == key)).rowcount)
