"""The sources as `sources list` shows them, read with SQLAlchemy Core: no ORM to import.

`flarestart sources list` is a read that people type often; importing the ORM (sqlmodel,
sqlalchemy.orm and the table classes) costs about 70 ms of its start. So when the database is
already at this code's schema head and seeded (the usual case after the first start), the app
layer opens a bare engine and reads here; otherwise it opens the `Store`, which migrates and seeds
first, and reads here through the store's engine. One reader, the same tables, the same SQL.

The column list below must match `Source` in models.py: tests/store/test_listing.py holds it to
the model, so a new column cannot be forgotten here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import JSON, Boolean, Engine, Float, Integer, String, column, func, select, table

from bot.store.engine import make_engine
from bot.store.migrate import shipped_head, stored_revision
from bot.store.types import UTCDateTime

SEEDED_FLAG = "sources_seeded"  # set in meta once the first sources are in (bot/sources/defaults.py)


@dataclass(frozen=True, slots=True)
class SourceListing:
    """One source's columns (those of `Source`), and how many articles it has stored."""

    id: int
    name: str
    url: str
    site_url: str | None
    title: str | None
    category: str | None
    topics: list[str]
    weight: float
    enabled: bool
    trusted: bool
    etag: str | None
    last_modified: str | None
    created_at: datetime
    last_fetch_at: datetime | None
    last_success_at: datetime | None
    next_fetch_at: datetime | None
    error_count: int
    last_error: str | None
    disabled_reason: str | None
    articles: int

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_TYPES = {
    "id": Integer,
    "topics": JSON,
    "weight": Float,
    "enabled": Boolean,
    "trusted": Boolean,
    "error_count": Integer,
    "created_at": UTCDateTime,
    "last_fetch_at": UTCDateTime,
    "last_success_at": UTCDateTime,
    "next_fetch_at": UTCDateTime,
}
SOURCE_COLUMNS = tuple(f.name for f in fields(SourceListing) if f.name != "articles")
_SOURCES = table("sources", *(column(name, _TYPES.get(name, String)()) for name in SOURCE_COLUMNS))
_ARTICLES = table("articles", column("source_id", Integer()))
_META = table("meta", column("key", String()), column("value", String()))


def read_source_listing(engine: Engine) -> list[SourceListing]:
    """Every source by name, with its stored article count, in one query."""
    counts = (
        select(_ARTICLES.c.source_id, func.count().label("articles"))
        .group_by(_ARTICLES.c.source_id)
        .subquery()
    )
    query = (
        select(*_SOURCES.c, func.coalesce(counts.c.articles, 0).label("articles"))
        .select_from(_SOURCES.outerjoin(counts, counts.c.source_id == _SOURCES.c.id))
        .order_by(_SOURCES.c.name)
    )
    with engine.connect() as connection:
        return [SourceListing(**row._mapping) for row in connection.execute(query)]


def open_ready(database_url: str, *, seeded: bool = True) -> Engine | None:
    """A bare engine on the database when it needs nothing before a read: at the schema head of
    this code and (with `seeded`) holding its first sources. None otherwise: open the `Store`,
    which migrates and seeds."""
    engine = make_engine(database_url)
    try:
        head = shipped_head()
        ready = head is not None and stored_revision(engine) == head
        if ready and seeded:
            with engine.connect() as connection:
                flag = connection.scalar(select(_META.c.value).where(_META.c.key == SEEDED_FLAG))
            ready = bool(flag)
    except BaseException:
        engine.dispose()
        raise
    if not ready:
        engine.dispose()
        return None
    return engine
