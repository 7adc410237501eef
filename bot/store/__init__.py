"""Storage: engine, tables, migrations and the one Store interface the rest of the code uses.

The Store (and with it the ORM: sqlmodel, sqlalchemy.orm, the tables) is imported on first use of
its names, so a module of this package that needs only SQLAlchemy Core (engine.py, migrate.py,
listing.py) does not pay for it: `sources list` reads through listing.py alone.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.store.store import DuplicateSourceError, NewSource, SaveCounts, Store

__all__ = ["DuplicateSourceError", "NewSource", "SaveCounts", "Store"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from bot.store import store

        return getattr(store, name)
    raise AttributeError(f"module 'bot.store' has no attribute {name!r}")
