"""The store behind a narrow interface: callers ask for "sources due", "save these entries", never SQL.

SQLite and PostgreSQL differ only inside this module (and the engine factory).
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.config import Settings
from bot.errors import NotFoundError, SourceError
from bot.store.engine import make_engine
from bot.store.migrate import upgrade
from bot.store.models import Article, Delivery, Meta, Source
from bot.types import ParsedEntry, TopicMatch

# Keys per IN (...) query: well under SQLite's 32k variable limit, few round trips.
KEY_BATCH = 500
MAX_URL, MAX_KEY, MAX_AUTHOR = 2048, 2100, 500  # the column sizes in models.py
# Queries use the tables' typed columns (SQLModel's class attributes confuse type checkers).
SOURCES: Table = Source.__table__  # type: ignore[attr-defined]
ARTICLES: Table = Article.__table__  # type: ignore[attr-defined]
DELIVERIES: Table = Delivery.__table__  # type: ignore[attr-defined]


class DuplicateSourceError(SourceError):
    """A source with this URL or name is already stored."""


@dataclass(frozen=True, slots=True)
class NewSource:
    name: str
    url: str
    site_url: str | None = None
    title: str | None = None
    topics: tuple[str, ...] = ()
    weight: float = 1.0
    category: str | None = None
    trusted: bool = True


@dataclass(frozen=True, slots=True)
class StoredArticle:
    """An article with what ranking and digests need of it and of its source."""

    id: int
    source_id: int
    source_name: str
    source_weight: float
    url: str | None
    title: str
    excerpt: str
    author: str | None
    published: datetime
    tags: tuple[str, ...]
    image_url: str | None
    topics: tuple[TopicMatch, ...]


@dataclass(frozen=True, slots=True)
class SaveCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class FetchRecord:
    """One fetch's outcome for the store: a source's new state, and the entries its body gave.

    `values` are columns of the sources table (etag, next_fetch_at, error_count…). `entries` is
    None when nothing was parsed (304, errors): then only the state changes.
    """

    source_id: int
    now: datetime  # when the entries were seen: their first_seen_at / updated_at
    values: Mapping[str, Any]
    entries: Sequence[ParsedEntry] | None = None


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Store:
        """Open the configured database and bring its schema up to date (migrations run by themselves)."""
        engine = make_engine(settings.effective_database_url)
        if migrate:
            upgrade(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._session() as session:
            row = session.get(Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._session() as session:
            session.merge(Meta(key=key, value=value))
            session.commit()

    # -- sources ----------------------------------------------------------------------------

    def add_sources(self, sources: Sequence[NewSource]) -> list[Source]:
        """Add all or nothing: one transaction, a duplicate URL or name names the culprit."""
        with self._session() as session:
            rows = [
                Source(
                    name=s.name,
                    url=s.url,
                    site_url=s.site_url,
                    title=s.title,
                    topics=list(s.topics),
                    weight=s.weight,
                    category=s.category,
                    trusted=s.trusted,
                )
                for s in sources
            ]
            self._check_duplicates(session, sources)
            session.add_all(rows)
            try:
                session.commit()
            except IntegrityError as exc:  # a concurrent writer won the race
                raise DuplicateSourceError(f"a source with the same name or URL exists: {exc.orig}") from None
            return rows

    def add_source(self, source: NewSource) -> Source:
        return self.add_sources([source])[0]

    def _check_duplicates(self, session: Session, sources: Sequence[NewSource]) -> None:
        names = [s.name for s in sources]
        urls = [s.url for s in sources]
        for label, values in (("name", names), ("URL", urls)):
            seen: set[str] = set()
            for value in values:
                if value in seen:
                    raise DuplicateSourceError(f"the {label} {value!r} is given twice")
                seen.add(value)
        existing = session.scalars(
            select(Source).where(or_(SOURCES.c.name.in_(names), SOURCES.c.url.in_(urls)))
        ).all()
        for source in existing:
            if source.url in urls:
                raise DuplicateSourceError(f"{source.url} is already a source, named {source.name!r}")
            raise DuplicateSourceError(f"a source named {source.name!r} already exists ({source.url})")

    def list_sources(self) -> list[Source]:
        with self._session() as session:
            return list(session.scalars(select(Source).order_by(SOURCES.c.name)))

    def get_source(self, ref: str | int) -> Source:
        """Find a source by id, name or URL; a miss names the closest names."""
        with self._session() as session:
            if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
                found = session.get(Source, int(ref))
                if found:
                    return found
            found = session.scalars(
                select(Source).where(or_(SOURCES.c.name == str(ref), SOURCES.c.url == str(ref)))
            ).first()
            if found:
                return found
            names = [str(name) for name in session.scalars(select(SOURCES.c.name))]
        close = difflib.get_close_matches(str(ref), names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
        raise NotFoundError(f"no source named {ref!r}{hint} (see `flarestart sources list`)")

    def remove_source(self, ref: str | int) -> Source:
        source = self.get_source(ref)
        with self._session() as session:
            session.execute(delete(SOURCES).where(SOURCES.c.id == source.id))
            session.commit()
        return source

    def update_source(self, source_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(SOURCES).where(SOURCES.c.id == source_id).values(**values))

    def set_enabled(self, ref: str | int, enabled: bool) -> Source:
        source = self.get_source(ref)
        values: dict[str, Any] = {"enabled": enabled}
        if enabled:  # a re-enabled source is due at once and starts with a clean slate
            values |= {"disabled_reason": None, "error_count": 0, "next_fetch_at": None}
        assert source.id is not None
        self.update_source(source.id, **values)
        return self.get_source(source.id)

    def sources_due(self, now: datetime, *, refs: Iterable[str] = (), force: bool = False) -> list[Source]:
        """Enabled sources whose next fetch time has come (all enabled ones with force)."""
        wanted = [self.get_source(ref) for ref in refs]
        if wanted:
            return wanted
        with self._session() as session:
            query = select(Source).where(SOURCES.c.enabled.is_(True))
            if not force:
                query = query.where(or_(SOURCES.c.next_fetch_at.is_(None), SOURCES.c.next_fetch_at <= now))
            return list(session.scalars(query.order_by(SOURCES.c.id)))

    def next_due_at(self) -> datetime | None:
        with self.engine.connect() as conn:
            due: datetime | None = conn.scalar(
                select(func.min(SOURCES.c.next_fetch_at)).where(SOURCES.c.enabled.is_(True))
            )
            return due

    # -- articles ---------------------------------------------------------------------------

    def save_entries(self, source_id: int, entries: Sequence[ParsedEntry], *, now: datetime) -> SaveCounts:
        """Insert new entries, update changed ones (same identity), in one transaction per feed.

        The unique (source_id, key) constraint means a crash mid-way can never leave duplicates.
        """
        with self.engine.begin() as conn:
            return _save_entries(conn, source_id, entries, now)

    def record_fetches(self, records: Sequence[FetchRecord]) -> list[SaveCounts]:
        """Store what fetches gave, all in ONE transaction: each feed's entries with its state.

        A source's new ETag / Last-Modified is written in the same transaction as the entries of
        the body it came with, so a crash can never leave a stored validator whose entries are
        missing (the next fetch would be a 304 and the entries lost for good). One transaction
        for many sources also spares a commit per source. All or nothing: the caller retries
        the records one by one when it must find the culprit.
        """
        counts: list[SaveCounts] = []
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        with self.engine.begin() as conn:
            for record in records:
                if record.entries is None:
                    counts.append(SaveCounts())
                else:
                    counts.append(_save_entries(conn, record.source_id, record.entries, record.now))
                if record.values:
                    columns = tuple(sorted(record.values))
                    by_columns.setdefault(columns, []).append({"_sid": record.source_id, **record.values})
            for columns, rows in by_columns.items():
                # One executemany per shape of state (304, failed, gone, with a body…).
                conn.execute(
                    update(SOURCES)
                    .where(SOURCES.c.id == bindparam("_sid"))
                    .values({name: bindparam(name) for name in columns}),
                    rows,
                )
        return counts

    def list_articles(
        self, *, source: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[tuple[Article, str]]:
        """Newest first, with each article's source name."""
        with self._session() as session:
            query = select(Article, SOURCES.c.name).join(SOURCES, SOURCES.c.id == ARTICLES.c.source_id)
            if source is not None:
                query = query.where(ARTICLES.c.source_id == self.get_source(source).id)
            if since is not None:
                query = query.where(ARTICLES.c.published_at >= since)
            query = query.order_by(ARTICLES.c.published_at.desc(), ARTICLES.c.id.desc()).limit(limit)
            return [(article, str(name)) for article, name in session.execute(query)]

    def recent_articles(self, since: datetime, *, until: datetime | None = None) -> list[StoredArticle]:
        """Articles published in [since, until] from enabled sources: the day's candidates."""
        a, s = ARTICLES.c, SOURCES.c
        query = _stored_articles().where(a.published_at >= since, s.enabled.is_(True)).order_by(a.id)
        if until is not None:
            query = query.where(a.published_at <= until)
        with self.engine.connect() as conn:
            return [_stored_article(row) for row in conn.execute(query)]

    def articles_by_ids(self, ids: Sequence[int]) -> list[StoredArticle]:
        """These articles, in the order given (a digest's, as the ledger keeps it); ids pruned
        meanwhile are left out."""
        found: dict[int, StoredArticle] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), KEY_BATCH):
                batch = list(ids[start : start + KEY_BATCH])
                query = _stored_articles().where(ARTICLES.c.id.in_(batch))
                found.update((row[0], _stored_article(row)) for row in conn.execute(query))
        return [found[i] for i in ids if i in found]

    def count_articles(self, source_id: int | None = None) -> int:
        with self._session() as session:
            query = select(func.count()).select_from(ARTICLES)
            if source_id is not None:
                query = query.where(ARTICLES.c.source_id == source_id)
            return int(session.scalar(query) or 0)

    def newest_published_at(self) -> datetime | None:
        """When the newest stored article was published (an index lookup; None when there are none)."""
        with self.engine.connect() as conn:
            newest: datetime | None = conn.scalar(select(func.max(ARTICLES.c.published_at)))
            return newest

    def newest_article_id(self) -> int | None:
        """The id of the article stored last (ids only grow): a cheap "did articles arrive?" mark."""
        with self.engine.connect() as conn:
            newest: int | None = conn.scalar(select(func.max(ARTICLES.c.id)))
            return newest

    def article_counts(self) -> dict[int, int]:
        """Articles stored per source id."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(ARTICLES.c.source_id, func.count()).group_by(ARTICLES.c.source_id))
            return {int(source_id): int(count) for source_id, count in rows}

    def prune_articles(self, older_than: datetime) -> int:
        """Delete articles published before `older_than`, except those a digest still being
        delivered refers to; returns how many went."""
        with self.engine.begin() as conn:
            keep: set[int] = set()
            for (ids,) in conn.execute(
                select(DELIVERIES.c.article_ids).where(DELIVERIES.c.status.in_(("pending", "sending")))
            ):
                keep.update(ids or ())
            query = delete(ARTICLES).where(ARTICLES.c.published_at < older_than)
            if keep:
                query = query.where(ARTICLES.c.id.not_in(sorted(keep)))
            result = conn.execute(query)
            return int(result.rowcount or 0)


def _save_entries(
    conn: Connection, source_id: int, entries: Sequence[ParsedEntry], now: datetime
) -> SaveCounts:
    """Insert new entries, update changed ones (same identity), inside the caller's transaction."""
    unique: dict[str, ParsedEntry] = {}
    for entry in entries:
        unique.setdefault(_fit_key(entry.key), entry)
    if not unique:
        return SaveCounts()
    known: dict[str, tuple[int, str, datetime]] = {}
    keys = list(unique)
    for start in range(0, len(keys), KEY_BATCH):
        chunk = keys[start : start + KEY_BATCH]
        rows = conn.execute(
            select(
                ARTICLES.c.key,
                ARTICLES.c.id,
                ARTICLES.c.content_hash,
                ARTICLES.c.published_at,
            )
            .where(ARTICLES.c.source_id == source_id)
            .where(ARTICLES.c.key.in_(chunk))
        )
        known.update({key: (id_, digest, published) for key, id_, digest, published in rows})
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for key, entry in unique.items():
        published = min(entry.published, now) if entry.published else None
        if key not in known:
            inserts.append(_article_values(source_id, entry, published or now, now))
        elif known[key][1] != entry.content_hash:
            values = _article_values(source_id, entry, published or known[key][2], now)
            del values["first_seen_at"], values["source_id"], values["key"]
            updates.append({"_id": known[key][0], **values})
    if inserts:
        conn.execute(insert(ARTICLES), inserts)
    if updates:
        columns: dict[str, Any] = {n: bindparam(n) for n in updates[0] if n != "_id"}
        conn.execute(
            update(ARTICLES).where(ARTICLES.c.id == bindparam("_id")).values(**columns),
            updates,
        )
    return SaveCounts(len(inserts), len(updates), len(unique) - len(inserts) - len(updates))


def _fit_url(url: str | None) -> str | None:
    """A URL longer than the column is useless cut short; drop it rather than fail the feed."""
    return url if url is None or len(url) <= MAX_URL else None


def _fit_key(key: str) -> str:
    if len(key) <= MAX_KEY:
        return key
    kind, sep, _ = key.partition(":")
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{kind}:sha256:{digest}" if sep and len(kind) < 10 else f"sha256:{digest}"


def _article_values(source_id: int, entry: ParsedEntry, published: datetime, now: datetime) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "key": _fit_key(entry.key),
        "guid": entry.guid if entry.guid is None or len(entry.guid) <= MAX_URL else entry.guid[:MAX_URL],
        "url": _fit_url(entry.url),
        "title": entry.title,
        "excerpt": entry.excerpt,
        "author": entry.author[:MAX_AUTHOR] if entry.author else None,
        "published_at": published,
        "first_seen_at": now,
        "updated_at": now,
        "tags": list(entry.tags),
        "image_url": _fit_url(entry.image_url),
        "content_hash": entry.content_hash,
        "topics": [
            {"slug": t.slug, "weight": round(t.weight, 4), "terms": list(t.terms)} for t in entry.topics
        ]
        if entry.topics
        else None,
    }


def _stored_articles() -> Select[Any]:
    """What a StoredArticle is made of: the article's columns and its source's."""
    a, s = ARTICLES.c, SOURCES.c
    return select(
        a.id,
        a.source_id,
        s.name,
        s.weight,
        a.url,
        a.title,
        a.excerpt,
        a.author,
        a.published_at,
        a.tags,
        a.image_url,
        a.topics,
    ).join(SOURCES, s.id == a.source_id)


def _stored_article(row: Any) -> StoredArticle:
    return StoredArticle(
        id=row[0],
        source_id=row[1],
        source_name=row[2],
        source_weight=row[3],
        url=row[4],
        title=row[5],
        excerpt=row[6],
        author=row[7],
        published=row[8],
        tags=tuple(row[9] or ()),
        image_url=row[10],
        topics=tuple(
            TopicMatch(t["slug"], float(t["weight"]), tuple(t.get("terms", ()))) for t in (row[11] or ())
        ),
    )
