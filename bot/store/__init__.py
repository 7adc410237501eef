"""Storage: engine, tables, migrations and the one Store interface the rest of the code uses."""

from bot.store.store import DuplicateSourceError, NewSource, SaveCounts, Store

__all__ = ["DuplicateSourceError", "NewSource", "SaveCounts", "Store"]
