"""The delivery ledger: one row per (subscriber, period, channel), so a digest is sent once.

A row moves pending → sending → sent, or ends failed (permanent) or skipped (nothing to send).
A transient failure puts it back to pending with the error and the attempt count, ready for the
job's retry. Each move is its own small transaction and is conditional on the state it leaves,
so a stale or repeated call changes nothing and says so (returns False).

How a send is made exactly-once, and where it honestly is only at-least-once:

1. The planner calls `open()`: insert-or-get on the unique key. Any number of planners, retries
   or clocks get the same row; a period's digest cannot be created twice.
2. The sender calls `begin_send()`: pending → sending, with a lease (`lease_until`). It returns
   False for a row that is already sent or failed for good, or that another sender holds (sending
   under a live lease), and the caller must then not send. A skipped row (a quiet period:
   nothing to send then) may begin again, so a period skipped early is sent once articles
   arrive; "sent" stays final, so that never makes a second digest. The row's lease is what
   keeps two doors apart (two `send --now`, the CLI and the worker, the batch sender and a
   retry): one statement claims it, so exactly one of them begins; the others hear "busy" (a job
   is put back until the lease ends, a person is told it is already being sent). The lease is
   taken when the row's send starts and is as long as a job's (`delivery.lease_seconds`); a
   send takes seconds. `begin()` does 1 and 2 in one statement (an upsert: inserted as sending,
   or moved to sending if pending, skipped, or sending under an expired lease), which is what
   every door does.
3. The channel sends with a Message-ID that is deterministic per (subscriber, period), so every
   attempt of this digest carries the same id.
4. Right after the server accepted (the SMTP DATA reply, the API's 2xx), the job calls
   `mark_sent()`: sending → sent, and in the same transaction the subscriber × article rows go
   into sent_articles, so ranking never offers those articles to this reader again. The row and
   the article ledger cannot disagree.

The window: a crash after the server accepted and before `mark_sent()` committed leaves the row
in "sending" under a lease that runs out. The retry finds "sending" with its lease expired,
which `begin_send()` accepts (the previous holder is gone), and sends again with the same
Message-ID. So on the wire the guarantee is at-least-once, with duplicates that carry one
Message-ID and can be dropped by it (mail clients and list archives do; our test receivers
do). Keeping `mark_sent()` immediately after the accept, with nothing slow in between, keeps
that window to milliseconds. No protocol can close it entirely: the server's "accepted" and our
commit are two systems' writes.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from bot.errors import ConfigError, NotFoundError
from bot.store.models import Article, Delivery, SentArticle
from bot.store.suppressions import SuppressionStore
from bot.store.types import UTCDateTime, utcnow

DELIVERIES: Table = Delivery.__table__  # type: ignore[attr-defined]
SENT_ARTICLES: Table = SentArticle.__table__  # type: ignore[attr-defined]
ARTICLES: Table = Article.__table__  # type: ignore[attr-defined]

PENDING, SENDING, SENT, FAILED, SKIPPED = "pending", "sending", "sent", "failed", "skipped"
# Not a row's status: what `begin` says for a subscriber whose address is suppressed.
SUPPRESSED = "suppressed"
STATUSES = (PENDING, SENDING, SENT, FAILED, SKIPPED)
OPEN = (PENDING, SENDING)  # states a delivery can still leave
LEASE = timedelta(seconds=120)  # as DeliverySettings.lease_seconds: how long a sender holds a row
ID_BATCH = 500  # ids per IN (...) query
MAX_ERROR_CHARS = 4000
MAX_MESSAGE_ID = 300  # the column size


class Opened(NamedTuple):
    """A delivery row after `begin()`: its id, its status, and whether this call began the send.
    Not begun and still sending means busy: another sender holds it until `lease_until`."""

    id: int
    status: str
    began: bool
    lease_until: datetime | None = None

    @property
    def busy(self) -> bool:
        return not self.began and self.status == SENDING


def _claimable(d: Any, now: ColumnElement[datetime]) -> ColumnElement[bool]:
    """A row a send may (re)begin: pending, or skipped (a quiet period is sent once there is
    something to send), or sending under no lease or an expired one (its sender crashed). Sent
    and failed-for-good rows are final."""
    expired = or_(d.lease_until.is_(None), d.lease_until <= now)
    return or_(d.status.in_((PENDING, SKIPPED)), and_(d.status == SENDING, expired))


class DeliveryLedger:
    """Deliveries and the subscriber × article ledger, behind a narrow interface."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ConfigError(f"the delivery ledger needs SQLite or PostgreSQL, not {dialect}")
        self._insert = pg_insert if dialect == "postgresql" else sqlite_insert
        self._suppressions = SuppressionStore(engine)
        # The send path's statements, built once with bound parameters: each call then costs the
        # database's time, not SQLAlchemy's statement construction.
        d = DELIVERIES.c
        now = bindparam("now", type_=UTCDateTime())
        until = bindparam("lease_until", type_=UTCDateTime())
        key = [d.subscriber_id, d.period, d.channel]
        self._begin = (
            self._insert(DELIVERIES)
            .values(
                subscriber_id=bindparam("subscriber_id"),
                period=bindparam("period"),
                channel=bindparam("channel"),
                status=SENDING,
                attempts=1,
                article_ids=[],
                created_at=now,
                updated_at=now,
                lease_until=until,
            )
            .on_conflict_do_update(
                index_elements=key,
                set_={"status": SENDING, "attempts": d.attempts + 1, "updated_at": now, "lease_until": until},
                where=_claimable(d, now),
            )
            .returning(d.id)
        )
        self._find = select(d.id, d.status, d.lease_until).where(
            d.subscriber_id == bindparam("subscriber_id"),
            d.period == bindparam("period"),
            d.channel == bindparam("channel"),
        )
        self._begin_send = (
            update(DELIVERIES)
            .where(d.id == bindparam("delivery_id"), _claimable(d, now))
            .values(status=SENDING, attempts=d.attempts + 1, updated_at=now, lease_until=until)
        )
        self._mark_sent = (
            update(DELIVERIES)
            .where(d.id == bindparam("delivery_id"), d.status == SENDING)
            .values(
                status=SENT,
                sent_at=now,
                updated_at=now,
                message_id=bindparam("message_id"),
                article_ids=bindparam("article_ids", type_=DELIVERIES.c.article_ids.type),
                last_error=None,
                lease_until=None,
            )
            .returning(d.subscriber_id)
        )
        # The ids go in as one array parameter, not an expanding IN (...): the statement is then
        # compiled once, not for every send (that was half of mark_sent's CPU).
        if dialect == "postgresql":
            listed = ARTICLES.c.id == func.any(bindparam("article_ids", type_=postgresql.ARRAY(Integer)))
        else:
            json_ids = func.json_each(bindparam("article_ids", type_=JSON)).table_valued("value")
            listed = ARTICLES.c.id.in_(select(json_ids.c.value))
        existing = select(
            bindparam("subscriber_id", type_=SENT_ARTICLES.c.subscriber_id.type),
            ARTICLES.c.id,
            bindparam("now", type_=UTCDateTime()),
        ).where(listed)
        self._record_articles = (
            self._insert(SENT_ARTICLES)
            .from_select(["subscriber_id", "article_id", "sent_at"], existing)
            .on_conflict_do_nothing(
                index_elements=[SENT_ARTICLES.c.subscriber_id, SENT_ARTICLES.c.article_id]
            )
        )
        self._sent_articles = select(SENT_ARTICLES.c.subscriber_id, SENT_ARTICLES.c.article_id).where(
            SENT_ARTICLES.c.subscriber_id.in_(bindparam("ids", expanding=True))
        )

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def _transaction(self, connection: Connection | None) -> Iterator[Connection]:
        """The caller's connection (its transaction goes on), or a transaction of our own."""
        if connection is not None:
            yield connection
        else:
            with self.engine.begin() as conn:
                yield conn

    # -- the row's life ---------------------------------------------------------------------

    def open(
        self,
        subscriber_id: int,
        period: str,
        channel: str,
        *,
        article_ids: Sequence[int],
        now: datetime | None = None,
    ) -> Delivery:
        """The delivery for (subscriber, period, channel): created pending, or the existing row
        returned unchanged (whatever its state and articles)."""
        now = now or utcnow()
        create = (
            self._insert(DELIVERIES)
            .values(
                subscriber_id=subscriber_id,
                period=period,
                channel=channel,
                status=PENDING,
                attempts=0,
                article_ids=[int(a) for a in article_ids],
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=[DELIVERIES.c.subscriber_id, DELIVERIES.c.period, DELIVERIES.c.channel]
            )
        )
        with self._session() as session:
            # Write first, read after: the insert waits for a racing insert of the same key to
            # commit, and the read then sees the winner's row.
            session.execute(create)
            session.commit()
            return session.scalars(
                select(Delivery)
                .where(DELIVERIES.c.subscriber_id == subscriber_id)
                .where(DELIVERIES.c.period == period)
                .where(DELIVERIES.c.channel == channel)
            ).one()

    def begin(
        self,
        subscriber_id: int,
        period: str,
        channel: str,
        *,
        now: datetime,
        lease: timedelta = LEASE,
        connection: Connection | None = None,
    ) -> Opened:
        """`open()` and `begin_send()` in one statement: the row is created as sending, or moved
        pending/skipped/sending-under-an-expired-lease → sending (attempts + 1), held for `lease`.
        `began` is False when the row is sent or failed for good, or busy (another sender holds
        it: `Opened.busy`), or the subscriber's address is suppressed (status SUPPRESSED, the row
        left as it was: a planned job made before an unsubscribe sends nothing); the caller must
        then not send. The suppression is read in the claim's own transaction, right before it,
        so every door's send checks it at the last moment before the channel."""
        params = {
            "subscriber_id": subscriber_id,
            "period": period,
            "channel": channel,
            "now": now,
            "lease_until": now + lease,
        }
        with self._transaction(connection) as conn:
            if self._suppressions.subscriber_suppressed(subscriber_id, connection=conn):
                found = conn.execute(self._find, params).first()
                return Opened(int(found.id) if found is not None else 0, SUPPRESSED, False)
            began = conn.execute(self._begin, params).scalar_one_or_none()
            if began is not None:
                return Opened(int(began), SENDING, True, now + lease)
            row = conn.execute(self._find, params).one()
        return Opened(int(row.id), str(row.status), False, row.lease_until)

    def get(self, delivery_id: int) -> Delivery:
        with self._session() as session:
            row = session.get(Delivery, delivery_id)
        if row is None:
            raise NotFoundError(f"no delivery with id {delivery_id}")
        return row

    def begin_send(
        self,
        delivery_id: int,
        *,
        now: datetime,
        lease: timedelta = LEASE,
        connection: Connection | None = None,
    ) -> bool:
        """pending (new or after a transient failure), sending under an expired lease (a crashed
        attempt) or skipped (a quiet period, tried again) → sending, held for `lease`.

        False when the delivery is sent or failed for good, or another sender holds it (sending,
        lease not expired): the caller must not send.
        """
        params = {"delivery_id": delivery_id, "now": now, "lease_until": now + lease}
        with self._transaction(connection) as conn:
            return conn.execute(self._begin_send, params).rowcount == 1

    def mark_sent(
        self,
        delivery_id: int,
        *,
        message_id: str,
        article_ids: Iterable[int],
        now: datetime,
        connection: Connection | None = None,
    ) -> bool:
        """sending → sent, and the articles into the reader's ledger, in one transaction.

        Call it right after the server accepted the message. Article ids that no longer exist
        (pruned meanwhile) are left out of the ledger rather than failing a send that happened.
        False when the row was not sending (already sent by a concurrent retry, for instance).
        """
        if len(message_id) > MAX_MESSAGE_ID:
            raise ValueError(f"message_id is longer than {MAX_MESSAGE_ID} characters")
        # The row keeps the digest's order ("view in browser" shows it as sent); the reader's
        # ledger takes them sorted.
        in_order = list(dict.fromkeys(int(a) for a in article_ids))
        ids = sorted(in_order)
        mark = {"delivery_id": delivery_id, "now": now, "message_id": message_id, "article_ids": in_order}
        with self._transaction(connection) as conn:
            subscriber_id = conn.execute(self._mark_sent, mark).scalar_one_or_none()
            if subscriber_id is None:
                return False
            if ids:
                # INSERT … SELECT from articles: ids pruned meanwhile drop out; the WHERE also
                # settles SQLite's upsert parse.
                record = {"subscriber_id": int(subscriber_id), "article_ids": ids, "now": now}
                conn.execute(self._record_articles, record)
        return True

    def mark_failed(
        self,
        delivery_id: int,
        *,
        error: str,
        permanent: bool,
        now: datetime,
        unheld: bool = False,
        connection: Connection | None = None,
    ) -> bool:
        """A transient failure → pending again (error and attempts kept, the job retries);
        a permanent one (or the last attempt) → failed, which `begin_send` refuses from then on.

        `unheld`: for a caller that never began the row (a digest that could not be drafted):
        a row another sender holds (sending under a live lease) is theirs and is left alone."""
        extra = None
        if unheld:
            d = DELIVERIES.c
            extra = or_(d.status != SENDING, d.lease_until.is_(None), d.lease_until <= now)
        return self._move(
            delivery_id,
            OPEN,
            connection,
            where=extra,
            status=FAILED if permanent else PENDING,
            last_error=_clip(error),
            updated_at=now,
            lease_until=None,
        )

    def mark_skipped(
        self,
        delivery_id: int,
        *,
        reason: str,
        now: datetime | None = None,
        connection: Connection | None = None,
    ) -> bool:
        """Nothing to send this period (a quiet day, a paused reader): the reason goes in last_error."""
        return self._move(
            delivery_id,
            OPEN,
            connection,
            status=SKIPPED,
            last_error=_clip(reason),
            updated_at=now or utcnow(),
            lease_until=None,
        )

    def reopen(self, delivery_id: int, *, now: datetime, connection: Connection | None = None) -> bool:
        """failed → pending, for an operator's retry (`flarestart deliveries retry`) once the
        cause is fixed; attempts and the last error stay as the record of what happened. False
        when the row is no longer failed (a concurrent change wins)."""
        return self._move(delivery_id, (FAILED,), connection, status=PENDING, updated_at=now)

    def _move(
        self,
        delivery_id: int,
        allowed: Sequence[str],
        connection: Connection | None,
        *,
        where: ColumnElement[bool] | None = None,
        **values: Any,
    ) -> bool:
        query = (
            update(DELIVERIES)
            .where(DELIVERIES.c.id == delivery_id)
            .where(DELIVERIES.c.status.in_(list(allowed)))
            .values(**values)
        )
        if where is not None:
            query = query.where(where)
        with self._transaction(connection) as conn:
            return conn.execute(query).rowcount == 1

    def closed(
        self, keys: Iterable[tuple[int, str]], channel: str, *, connection: Connection | None = None
    ) -> dict[tuple[int, str], str]:
        """The status of each (subscriber, period) pair whose row through `channel` is sent,
        skipped or failed; pairs with no such row are left out."""
        wanted = set(keys)
        found: dict[tuple[int, str], str] = {}
        if not wanted:
            return found
        d = DELIVERIES.c
        ids, periods = sorted({k[0] for k in wanted}), sorted({k[1] for k in wanted})
        with self._reading(connection) as conn:
            for start in range(0, len(ids), ID_BATCH):
                rows = conn.execute(
                    select(d.subscriber_id, d.period, d.status).where(
                        d.subscriber_id.in_(ids[start : start + ID_BATCH]),
                        d.period.in_(periods),
                        d.channel == channel,
                        d.status.in_((SENT, SKIPPED, FAILED)),
                    )
                )
                for sid, period, status in rows:
                    if (int(sid), str(period)) in wanted:
                        found[(int(sid), str(period))] = str(status)
        return found

    # -- the article ledger -----------------------------------------------------------------

    def sent_article_ids(self, subscriber_id: int, *, connection: Connection | None = None) -> set[int]:
        """Articles this reader has been sent (ranking leaves them out)."""
        return self.sent_article_ids_many([subscriber_id], connection=connection)[subscriber_id]

    def sent_article_ids_many(
        self, subscriber_ids: Iterable[int], *, connection: Connection | None = None
    ) -> dict[int, set[int]]:
        """Sent articles per reader; every asked-for id is a key, with an empty set if none."""
        wanted = sorted({int(s) for s in subscriber_ids})
        found: dict[int, set[int]] = {subscriber_id: set() for subscriber_id in wanted}
        with self._reading(connection) as conn:
            for start in range(0, len(wanted), ID_BATCH):
                rows = conn.execute(self._sent_articles, {"ids": wanted[start : start + ID_BATCH]})
                for subscriber_id, article_id in rows:
                    found[int(subscriber_id)].add(int(article_id))
        return found

    @contextmanager
    def _reading(self, connection: Connection | None) -> Iterator[Connection]:
        if connection is not None:
            yield connection
        else:
            with self.engine.connect() as conn:
                yield conn

    # -- looking ----------------------------------------------------------------------------

    def sent_digest(self, subscriber_id: int, period: str) -> Delivery | None:
        """The digest of this period as it was sent (its articles in the digest's order), or None
        while it is not sent; the newest when several channels sent it."""
        d = DELIVERIES.c
        query = (
            select(Delivery)
            .where(d.subscriber_id == subscriber_id, d.period == period, d.status == SENT)
            .order_by(d.sent_at.desc())
            .limit(1)
        )
        with self._session() as session:
            return session.scalars(query).first()

    def counts(self) -> dict[str, int]:
        """Deliveries per status; every known status is present."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(DELIVERIES.c.status, func.count()).group_by(DELIVERIES.c.status))
            found = {str(status): int(count) for status, count in rows}
        return {status: 0 for status in STATUSES} | found

    def counts_by_channel(self) -> dict[str, dict[str, int]]:
        """Deliveries per channel, then per status; every known status is present for each
        channel that has deliveries. Grouped as the (status, channel) index is ordered, so the
        count is read from the index alone."""
        d = DELIVERIES.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(d.channel, d.status, func.count()).group_by(d.status, d.channel))
            found: dict[str, dict[str, int]] = {}
            for channel, status, count in rows:
                found.setdefault(str(channel), {s: 0 for s in STATUSES})[str(status)] = int(count)
        return found

    def failed_since(
        self,
        since: datetime,
        *,
        subscriber_id: int | None = None,
        period: str | None = None,
        channel: str | None = None,
    ) -> builtins.list[Delivery]:
        """Deliveries that failed for good and were last updated at or after `since`, oldest first."""
        query = select(Delivery).where(DELIVERIES.c.status == FAILED, DELIVERIES.c.updated_at >= since)
        if subscriber_id is not None:
            query = query.where(DELIVERIES.c.subscriber_id == subscriber_id)
        if period is not None:
            query = query.where(DELIVERIES.c.period == period)
        if channel is not None:
            query = query.where(DELIVERIES.c.channel == channel)
        query = query.order_by(DELIVERIES.c.updated_at, DELIVERIES.c.id)
        with self._session() as session:
            return builtins.list(session.scalars(query))

    # Last: a method named `list` would shadow the builtin in the annotations after it.
    def list(
        self, *, status: str | None = None, subscriber_id: int | None = None, limit: int = 100
    ) -> builtins.list[Delivery]:
        """Newest first."""
        query = select(Delivery)
        if status is not None:
            query = query.where(DELIVERIES.c.status == status)
        if subscriber_id is not None:
            query = query.where(DELIVERIES.c.subscriber_id == subscriber_id)
        query = query.order_by(DELIVERIES.c.created_at.desc(), DELIVERIES.c.id.desc()).limit(limit)
        with self._session() as session:
            return builtins.list(session.scalars(query))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else "…" + text[-(MAX_ERROR_CHARS - 1) :]
