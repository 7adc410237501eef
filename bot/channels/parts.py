"""Which parts of a split chat digest are already in the channel: Slack and Discord post a digest
as several messages, and a retry must post only the parts that are not there yet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from bot.channels.base import Receipt


class PartLog(Protocol):
    """Where each posted part's ts is kept (the database in service; `MemoryPartLog` for tests)."""

    async def posted(self, key: str) -> dict[int, str]:
        """The parts of delivery `key` already posted: part number → ts ("" for webhooks)."""
        ...

    async def record(self, key: str, part: int, ts: str) -> None:
        """Remember that part `part` of `key` is in the channel; called as soon as the chat service answers."""
        ...


class MemoryPartLog:
    """A PartLog in memory: for tests, benchmarks and the demo."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[int, str]] = {}

    async def posted(self, key: str) -> dict[int, str]:
        return dict(self.parts.get(key, {}))

    async def record(self, key: str, part: int, ts: str) -> None:
        self.parts.setdefault(key, {})[part] = ts


def parts_receipt(
    channel: str, destination: str, total: int, done: Mapping[int, str], *, posted: int, found: int
) -> Receipt:
    """What sending a split chat digest did: parts posted now, found in the channel (posted by an
    attempt that crashed before recording them), or recorded before; part 1's ref names it."""
    detail = f"{total} part(s): {posted} posted"
    if found:
        detail += f", {found} found already in the channel"
    skipped = total - posted - found
    if skipped:
        detail += f", {skipped} recorded before"
    return Receipt(channel=channel, destination=destination, message_id=done.get(1) or None, detail=detail)
