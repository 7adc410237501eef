"""SQLModel tables. Rows stay in and near the store; other layers get plain dataclasses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, String, UniqueConstraint
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
    # [{"slug", "weight", "terms"}] from ranking.topics; NULL until tagged.
    topics: list[dict[str, object]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Meta(SQLModel, table=True):
    """Small facts about the store itself, e.g. whether default sources were seeded once."""

    __tablename__ = "meta"

    key: str = Field(primary_key=True, max_length=100)
    value: str = ""


def _address_default(context: Any) -> str:
    """A row inserted with an email and no address (written before destinations) is an email
    subscriber: its address is its email."""
    return str(context.get_current_parameters().get("email") or "")


class Subscriber(SQLModel, table=True):
    """A reader or a team and what they want, with exactly one destination (kind + address).
    Preferences are plain JSON so files, CLI and chat share them."""

    __tablename__ = "subscribers"
    __table_args__ = (UniqueConstraint("destination_kind", "address", name="uq_subscribers_destination"),)

    id: int | None = Field(default=None, primary_key=True)
    # The email address of an email subscriber (None for chat destinations): mail and the web
    # pages read it; every kind's address is in `address`.
    email: str | None = Field(default=None, unique=True, max_length=320)
    destination_kind: str = Field(default="email", max_length=20)  # email | slack | discord
    # email: the address; slack: a channel id or "webhook_env:NAME"; discord: a channel id,
    # "webhook_env:NAME" or "user:ID". Never a secret: webhook URLs stay in the environment.
    address: str = Field(
        default=None, sa_column=Column(String(400), nullable=False, default=_address_default)
    )
    name: str = Field(default="", max_length=200)
    timezone: str = Field(default="UTC", max_length=64)  # IANA name
    delivery_time: str = Field(default="07:00", max_length=5)  # local HH:MM
    frequency: str = Field(default="daily", max_length=20)  # daily | weekdays | weekly:mon … weekly:sun
    topics: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    muted_topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    muted_keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    muted_sources: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    source_weights: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    max_items: int = 10
    # active | paused | pending (awaiting double opt-in) | bouncing | unsubscribed
    status: str = Field(default="active", max_length=20, index=True)
    origin: str = Field(default="cli", max_length=500)  # "file:subscribers/team.toml", "cli", "web", "chat"
    consecutive_bounces: int = 0
    # Why the subscriber was paused by FlareStart itself (a Slack channel archived, the app
    # removed from it); None when paused by a person or not paused.
    status_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    confirmed_at: datetime | None = Field(default=None, sa_column=_utc())
    unsubscribed_at: datetime | None = Field(default=None, sa_column=_utc())


class Delivery(SQLModel, table=True):
    """The ledger of digests: one row per (subscriber, period, channel), so nothing is sent twice."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint(
            "subscriber_id", "period", "channel", name="uq_deliveries_subscriber_period_channel"
        ),
        # Finding rows by status, and counting them by status and channel (/metrics) from the
        # index alone: the table is never pruned.
        Index("ix_deliveries_status_channel", "status", "channel"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False)
    )
    period: str = Field(max_length=20)  # "2026-11-27" (daily) or "2026-W48" (weekly)
    channel: str = Field(max_length=20)  # email | slack | discord | outbox
    status: str = Field(default="pending", max_length=20)  # pending|sending|sent|failed|skipped
    attempts: int = 0
    last_error: str | None = None
    message_id: str | None = Field(default=None, max_length=300)
    article_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=_utc())
    # While sending: until when the sender holds the row. Another door finds it busy until
    # then; past it, the sender is taken for crashed and the row may be taken over.
    lease_until: datetime | None = Field(default=None, sa_column=_utc())


class DeliveryPart(SQLModel, table=True):
    """One posted part of a chat digest split into several messages (see bot/channels/parts.py):
    written as soon as the chat service accepts the part, so a retry after a crash posts only
    the parts that are not there yet."""

    __tablename__ = "delivery_parts"

    delivery_key: str = Field(sa_column=Column(String(300), primary_key=True, nullable=False))
    part: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False, nullable=False))
    ref: str = Field(default="", max_length=100)  # Slack's ts, Discord's message id; "" for webhooks
    posted_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))


class SentArticle(SQLModel, table=True):
    """Subscriber × article: written after a send so an article never reaches a reader twice."""

    __tablename__ = "sent_articles"

    subscriber_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True, nullable=False
        )
    )
    article_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True, nullable=False
        )
    )
    sent_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))


class Job(SQLModel, table=True):
    """Work as rows: claimed atomically with a lease, finished only by the worker holding it.

    `unique_key` deduplicates recurring work: the clock inserts (task, run_at) once, however many
    workers run the clock.
    """

    __tablename__ = "jobs"
    # The claim reads due jobs in (run_at, id) order within a status: see JobQueue.claim.
    __table_args__ = (Index("ix_jobs_claim", "status", "run_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(max_length=100)
    payload: dict[str, object] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    unique_key: str | None = Field(default=None, unique=True, max_length=300)
    status: str = Field(default="queued", max_length=20)  # queued | running | done | failed
    run_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    attempts: int = 0
    max_attempts: int = 5
    locked_by: str | None = Field(default=None, max_length=200)
    locked_until: datetime | None = Field(default=None, sa_column=_utc())
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=_utc())


class Suppression(SQLModel, table=True):
    """An address no digest may go to, whatever the subscriber rows say: kept by address, so an
    unsubscribe or a hard bounce outlives the row (a sync that deletes and re-adds a file
    subscriber, a removal and a new sign-up). Only the person's own re-opt-in or an operator lifts it."""

    __tablename__ = "suppressions"

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(unique=True, max_length=320)  # lower-cased, as subscribers.email
    reason: str = Field(max_length=20)  # unsubscribed | hard_bounce | complaint | operator
    source: str = Field(default="", max_length=200)  # what recorded it: "web", "cli", "delivery", …
    note: str = Field(default="", max_length=2000)
    # The subscriber row it was recorded for (rows come and go: no foreign key). An old
    # unsubscribe link finds the suppression through it after its row was deleted.
    subscriber_id: int | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    # When the last "subscribe again" mail went out: one per REOPT_INTERVAL, whoever asks.
    reoptin_sent_at: datetime | None = Field(default=None, sa_column=_utc())
