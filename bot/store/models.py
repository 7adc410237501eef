"""SQLModel tables. Rows stay in and near the store; other layers get plain dataclasses."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot.store.types import UTCDateTime, utcnow


def _utc(*, nullable: bool = True, index: bool = False) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable, index=index)


class Source(SQLModel, table=True):
    __tablename__ = "sources"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)
    url: str = Field(unique=True, max_length=2048)
    site_url: str | None = Field(default=None, max_length=2048)
    title: str | None = Field(default=None, max_length=500)
    category: str | None = Field(default=None, max_length=200)
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    weight: float = 1.0
    enabled: bool = True
    # Sources from the CLI or config are trusted; chat/web ones may not point at private hosts.
    trusted: bool = True
    etag: str | None = Field(default=None, max_length=1024)
    last_modified: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    last_fetch_at: datetime | None = Field(default=None, sa_column=_utc())
    last_success_at: datetime | None = Field(default=None, sa_column=_utc())
    next_fetch_at: datetime | None = Field(default=None, sa_column=_utc(index=True))
    error_count: int = 0
    last_error: str | None = None
    disabled_reason: str | None = None


class Article(SQLModel, table=True):
    __tablename__ = "articles"
    __table_args__ = (
        UniqueConstraint("source_id", "key", name="uq_articles_source_key"),
        Index("ix_articles_published_at", "published_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(
        sa_column=Column(Integer, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False)
    )
    # Identity inside its source: "guid:…", "link:…" or "hash:…" (see sources.normalize).
    key: str = Field(max_length=2100)
    guid: str | None = Field(default=None, max_length=2048)
    url: str | None = Field(default=None, max_length=2048)
    title: str = ""
    excerpt: str = ""
    author: str | None = Field(default=None, max_length=500)
    published_at: datetime = Field(sa_column=_utc(nullable=False))
    first_seen_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    image_url: str | None = Field(default=None, max_length=2048)
    content_hash: str = Field(max_length=64)


class Meta(SQLModel, table=True):
    """Small facts about the store itself, e.g. whether default sources were seeded once."""

    __tablename__ = "meta"

    key: str = Field(primary_key=True, max_length=100)
    value: str = ""
