"""The database part log: what a split chat digest has posted survives the process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from bot.store.engine import make_engine
from bot.store.migrate import upgrade
from bot.store.parts import DatabasePartLog

NOW = datetime(2026, 12, 5, 7, 0, tzinfo=UTC)


@pytest.fixture
def migrated(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_parts_are_recorded_once_and_read_back_by_another_log(migrated: Engine) -> None:
    async def scenario() -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
        log = DatabasePartLog(migrated, clock=lambda: NOW)
        assert await log.posted("<d1@flarestart>") == {}
        await log.record("<d1@flarestart>", 1, "1733380000.000100")
        await log.record("<d1@flarestart>", 2, "1733380001.000200")
        await log.record("<d1@flarestart>", 2, "9999999999.000000")  # found again later: first stays
        await log.record("<d2@flarestart>", 1, "")  # a webhook part has no ts
        restarted = DatabasePartLog(migrated)  # another process, the same table
        return (
            await restarted.posted("<d1@flarestart>"),
            await restarted.posted("<d2@flarestart>"),
            await restarted.posted("<d3@flarestart>"),
        )

    first, second, none = asyncio.run(scenario())
    assert first == {1: "1733380000.000100", 2: "1733380001.000200"}
    assert (second, none) == ({1: ""}, {})
    assert DatabasePartLog(migrated).forget("<d1@flarestart>") == 2
    assert DatabasePartLog(migrated).posted_now("<d1@flarestart>") == {}


class CountingLog(DatabasePartLog):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.transactions: list[int] = []

    def record_many_now(self, rows: Sequence[tuple[str, int, str]]) -> None:
        self.transactions.append(len(rows))
        super().record_many_now(rows)


def test_parts_recorded_at_once_share_transactions_and_each_returns_once_committed(
    migrated: Engine,
) -> None:
    """200 channels' parts accepted at the same tick: a few commits, not 200, and every record
    has returned only when its row can be read back."""
    log = CountingLog(migrated)

    async def one(channel: int) -> bool:
        key = f"<d{channel}@flarestart>"
        await log.record(key, 1, f"17333800{channel:02d}.000100")
        return (await DatabasePartLog(migrated).posted(key)) == {1: f"17333800{channel:02d}.000100"}

    async def scenario() -> list[bool]:
        return list(await asyncio.gather(*(one(n) for n in range(200))))

    assert all(asyncio.run(scenario()))
    assert sum(log.transactions) == 200 and len(log.transactions) < 50
