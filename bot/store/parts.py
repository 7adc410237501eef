"""The posted parts of split chat digests, in the database: the part log of a real process.

`DatabasePartLog` implements bot.channels.parts.PartLog (structurally; the store does not import
the channels). Each `record` is its own committed transaction, written as soon as the chat service
has accepted the part, so a process killed one part later leaves every part it posted on record
and the retry posts only the rest. Recording the same part twice keeps the first record: the
chat service's answer for a part does not change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, Table, delete, insert, select
from sqlalchemy.exc import IntegrityError

from bot.store.models import DeliveryPart
from bot.store.types import utcnow

PARTS: Table = DeliveryPart.__table__  # type: ignore[attr-defined]


class DatabasePartLog:
    """PartLog over the `delivery_parts` table; the blocking queries run in a worker thread."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    async def posted(self, key: str) -> dict[int, str]:
        return await asyncio.to_thread(self.posted_now, key)

    async def record(self, key: str, part: int, ts: str) -> None:
        await asyncio.to_thread(self.record_now, key, part, ts)

    def posted_now(self, key: str) -> dict[int, str]:
        """`posted`, for code off the event loop."""
        query = select(PARTS.c.part, PARTS.c.ref).where(PARTS.c.delivery_key == key)
        with self.engine.connect() as conn:
            return {int(part): str(ref) for part, ref in conn.execute(query)}

    def record_now(self, key: str, part: int, ts: str) -> None:
        """`record`, for code off the event loop."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(PARTS).values(delivery_key=key, part=part, ref=ts, posted_at=self.clock())
                )
        except IntegrityError:  # recorded before (history search, a concurrent retry): keep it
            pass

    def forget(self, key: str) -> int:
        """Drop the parts of `key` (a delivery that will be posted afresh); how many there were."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(PARTS).where(PARTS.c.delivery_key == key)).rowcount)
