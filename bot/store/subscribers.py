"""Subscribers behind a narrow interface: add, find, change status, count bounces, sync in batches.

Every subscriber has one destination (kind + address, unique together); email addresses are kept
lower-cased, so lookups by email ignore case. A subscriber is found by id, email address or a
chat reference ("slack:C0123ABCD").
"""

from __future__ import annotations

import builtins
import difflib
import functools
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, Table, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.errors import NotFoundError
from bot.errors import StatusChangedError as StatusChangedError
from bot.errors import SubscriberError as SubscriberError
from bot.store.connections import connected, transaction
from bot.store.models import Delivery, Subscriber
from bot.store.suppressions import SuppressionRecord, SuppressionStore, suppressed_address
from bot.store.types import utcnow
from bot.types import Destination, SubscriberColumns, subscriber_ref

SUBSCRIBERS: Table = Subscriber.__table__  # type: ignore[attr-defined]
DELIVERIES: Table = Delivery.__table__  # type: ignore[attr-defined]
STATUSES = ("active", "paused", "pending", "bouncing", "unsubscribed")
# Columns callers may set; id, status and the timestamps have methods of their own.
EDITABLE = frozenset(
    {
        "email",
        "destination_kind",
        "address",
        "name",
        "timezone",
        "delivery_time",
        "frequency",
        "topics",
        "muted_topics",
        "muted_keywords",
        "muted_sources",
        "source_weights",
        "max_items",
        "origin",
        "consecutive_bounces",
    }
)


ID_BATCH = 500  # ids per IN (...) query


@dataclass(frozen=True, slots=True)
class SubscriberRecord:
    """What sending needs of a subscriber, read with one Core query (no ORM object behind it).

    It has the attributes of `Subscriber` that composing, rendering and addressing a digest read,
    so code that takes either can use the `SubscriberLike` protocols of those modules.
    """

    id: int
    email: str | None
    destination_kind: str
    address: str
    name: str
    timezone: str
    delivery_time: str
    frequency: str
    topics: dict[str, float]
    muted_topics: list[str]
    muted_keywords: list[str]
    muted_sources: list[str]
    source_weights: dict[str, float]
    max_items: int
    status: str
    consecutive_bounces: int


class Schedule(NamedTuple):
    """When a subscriber is due: the columns planning reads, and no more."""

    id: int
    status: str
    timezone: str
    delivery_time: str
    frequency: str
    destination_kind: str = "email"  # which channel serves them (the job key names it)


_RECORD_COLUMNS = [SUBSCRIBERS.c[name] for name in SubscriberRecord.__slots__]
_RECORDS = select(*_RECORD_COLUMNS).where(SUBSCRIBERS.c.id.in_(bindparam("ids", expanding=True)))


class DuplicateSubscriberError(SubscriberError):
    """A subscriber with this destination already exists."""


class SubscriberStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def add(
        self,
        spec_or_fields: SubscriberColumns | Mapping[str, Any],
        *,
        status: str = "active",
        now: datetime | None = None,
    ) -> Subscriber:
        """Add one subscriber. Files and the CLI add them active; web and chat sign-ups pending."""
        _check_status(status)
        values = _values(spec_or_fields)
        moment = now or utcnow()
        with self._session() as session:
            ref = subscriber_ref(_Named(None, values["email"], values["destination_kind"], values["address"]))
            known = session.scalars(
                select(Subscriber).where(
                    SUBSCRIBERS.c.destination_kind == values["destination_kind"],
                    SUBSCRIBERS.c.address == values["address"],
                )
            ).first()
            if known is not None:
                raise DuplicateSubscriberError(
                    f"{ref} is already a subscriber ({known.status}, from {known.origin})"
                )
            row = Subscriber(**values, status=status, created_at=moment, updated_at=moment)
            session.add(row)
            try:
                session.commit()
            except IntegrityError:  # a concurrent writer added the same destination first
                raise DuplicateSubscriberError(f"{ref} is already a subscriber") from None
            return row

    def add_new(
        self,
        spec_or_fields: SubscriberColumns | Mapping[str, Any],
        *,
        status: str,
        now: datetime,
        connection: Connection | None = None,
    ) -> int | None:
        """`add` for a door that takes strangers (the sign-up page): the new subscriber's id, or
        None (nothing written) when the destination or the email address is taken. One INSERT,
        in the caller's transaction when it passes one (the sign-up commits its mail job with it)."""
        _check_status(status)
        values = _values(spec_or_fields)
        row = {**values, "status": status, "created_at": now, "updated_at": now}
        with transaction(self.engine, connection) as conn:
            new_id = conn.execute(_insert_new(self.engine.dialect.name), row).scalar_one_or_none()
        return None if new_id is None else int(new_id)

    def get(self, ref: str | int) -> Subscriber:
        """Find a subscriber by id, email or chat reference ("slack:C0123ABCD"); a miss names
        the closest ones."""
        with self._session() as session:
            if isinstance(ref, int) or ref.strip().isdigit():
                found = session.get(Subscriber, int(ref))
                if found is not None:
                    return found
            destination = Destination.from_ref(str(ref))
            found = session.scalars(
                select(Subscriber).where(
                    SUBSCRIBERS.c.destination_kind == destination.kind,
                    SUBSCRIBERS.c.address == destination.address,
                )
            ).first()
            if found is not None:
                return found
            wanted = str(destination)
            columns = (
                SUBSCRIBERS.c.id,
                SUBSCRIBERS.c.email,
                SUBSCRIBERS.c.destination_kind,
                SUBSCRIBERS.c.address,
            )
            emails = [subscriber_ref(_Named(*row)) for row in session.execute(select(*columns))]
        close = _close_emails(wanted, emails)
        hint = f"; did you mean {', '.join(repr(e) for e in close)}?" if close else ""
        raise NotFoundError(f"no subscriber {str(ref)!r}{hint} (see `flarestart subscribers list`)")

    def records(
        self, subscriber_ids: Iterable[int], *, connection: Connection | None = None
    ) -> dict[int, SubscriberRecord]:
        """The subscribers with these ids (the ones that exist), by id: one query per 500 ids."""
        wanted = sorted({int(s) for s in subscriber_ids})
        found: dict[int, SubscriberRecord] = {}
        with connected(self.engine, connection) as conn:
            for start in range(0, len(wanted), ID_BATCH):
                rows = conn.execute(_RECORDS, {"ids": wanted[start : start + ID_BATCH]})
                for row in rows:
                    found[int(row.id)] = SubscriberRecord(*row)
        return found

    def record(self, subscriber_id: int, *, connection: Connection | None = None) -> SubscriberRecord:
        """One subscriber by id as a `SubscriberRecord`; NotFoundError when there is none."""
        found = self.records([subscriber_id], connection=connection).get(int(subscriber_id))
        if found is None:
            raise NotFoundError(f"no subscriber with id {subscriber_id}")
        return found

    def schedules(
        self, statuses: Collection[str] = ("active",), *, settled_mail: str | None = None
    ) -> builtins.list[Schedule]:
        """Id, status and delivery schedule of every subscriber with a destination (an email
        address that is not suppressed) and one of `statuses`, by id: what planning reads,
        without loading whole rows. With `settled_mail` (a ledger period: the opt-in mail's),
        pending subscribers whose mail of that period is sent or failed for good are left out:
        a job for it would find nothing to do."""
        for status in statuses:
            _check_status(status)
        columns = SUBSCRIBERS.c
        query = (
            select(
                columns.id,
                columns.status,
                columns.timezone,
                columns.delivery_time,
                columns.frequency,
                columns.destination_kind,
            )
            .where(columns.status.in_(builtins.list(statuses)), columns.address != "")
            .where(~suppressed_address(columns.email))  # never planned, whatever the row says
            .order_by(columns.id)
        )
        if settled_mail is not None:
            mail = DELIVERIES.c
            settled = (
                select(mail.id)
                .where(mail.subscriber_id == columns.id, mail.period == settled_mail)
                .where(mail.status.in_(("sent", "failed")))
                .exists()
            )
            query = query.where(or_(columns.status != "pending", ~settled))
        with self.engine.connect() as conn:
            return [Schedule(*row) for row in conn.execute(query)]

    def list(self, status: str | None = None) -> builtins.list[Subscriber]:
        """All subscribers (or those with one status), by kind and address (email first)."""
        with self._session() as session:
            query = select(Subscriber)
            if status is not None:
                _check_status(status)
                query = query.where(SUBSCRIBERS.c.status == status)
            order = (SUBSCRIBERS.c.destination_kind != "email", SUBSCRIBERS.c.destination_kind)
            return builtins.list(
                session.scalars(query.order_by(*order, SUBSCRIBERS.c.address, SUBSCRIBERS.c.id))
            )

    def active(self) -> builtins.list[Subscriber]:
        """The subscribers digests go to."""
        return self.list("active")

    def counts(self) -> dict[str, int]:
        """Subscribers per status; every known status is present, zero when none."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(SUBSCRIBERS.c.status, func.count()).group_by(SUBSCRIBERS.c.status))
            found = {str(status): int(count) for status, count in rows}
        return {status: 0 for status in STATUSES} | found

    def update(self, subscriber_id: int, *, now: datetime | None = None, **values: Any) -> Subscriber:
        """Set preference columns (see EDITABLE); status has `set_status`."""
        unknown = set(values) - EDITABLE
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))} with update()")
        if "email" in values and values["email"] is not None:
            values["email"] = str(values["email"]).strip().lower()
            values.setdefault("address", values["email"])  # only email subscribers have one
        self._update(subscriber_id, {**values, "updated_at": now or utcnow()})
        return self.get(subscriber_id)

    def set_status(
        self, subscriber_id: int, status: str, *, now: datetime, expect: Collection[str] | None = None
    ) -> Subscriber:
        """Change status, stamping what it means: unsubscribed_at, confirmed_at (pending → active).

        With `expect`, only a subscriber whose status is one of those is changed, else
        StatusChangedError; the update itself checks the status it read, so a concurrent change
        (an unsubscribe while a pause is saved) is never overwritten.
        """
        _check_status(status)
        current = self.get(subscriber_id)
        if expect is not None and current.status not in expect:
            raise StatusChangedError(
                f"subscriber {subscriber_id} is {current.status}, not {' or '.join(expect)}"
            )
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if status == "unsubscribed" and current.status != "unsubscribed":
            values["unsubscribed_at"] = now
        if status == "active":
            if current.status == "pending":
                values["confirmed_at"] = now
            if current.status == "bouncing":  # someone fixed the address: start counting afresh
                values["consecutive_bounces"] = 0
            values["unsubscribed_at"] = None
        if status != current.status:
            values["status_reason"] = None  # a reason said why the last status was set
        self._update(subscriber_id, values, only_status=current.status if expect is not None else None)
        return self.get(subscriber_id)

    def pause_for(self, subscriber_id: int, reason: str, *, now: datetime) -> bool:
        """FlareStart pauses an active subscriber whose destination cannot work (a Slack channel
        archived, the app removed from it), saying why; True when this call paused them."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(SUBSCRIBERS)
                .where(SUBSCRIBERS.c.id == subscriber_id, SUBSCRIBERS.c.status == "active")
                .values(status="paused", status_reason=reason[:500], updated_at=now)
            )
            return bool(result.rowcount)

    def remove(self, ref: str | int) -> Subscriber:
        """Delete a subscriber; their deliveries and sent-article records go with them."""
        subscriber = self.get(ref)
        with self.engine.begin() as conn:
            conn.execute(delete(SUBSCRIBERS).where(SUBSCRIBERS.c.id == subscriber.id))
        return subscriber

    def record_bounce(self, subscriber_id: int, *, limit: int) -> bool:
        """Count a permanent failure; at `limit` in a row the subscriber becomes bouncing.

        True only for the call that made them bouncing, so one notice is logged, however many
        workers record bounces at once.
        """
        with self.engine.begin() as conn:
            conn.execute(
                update(SUBSCRIBERS)
                .where(SUBSCRIBERS.c.id == subscriber_id)
                .values(consecutive_bounces=SUBSCRIBERS.c.consecutive_bounces + 1)
            )
            result = conn.execute(
                update(SUBSCRIBERS)
                .where(SUBSCRIBERS.c.id == subscriber_id)
                .where(SUBSCRIBERS.c.consecutive_bounces >= limit)
                .where(SUBSCRIBERS.c.status.not_in(("bouncing", "unsubscribed")))
                .values(status="bouncing", updated_at=utcnow())
            )
            return bool(result.rowcount)

    def reset_bounces(self, subscriber_id: int, *, connection: Connection | None = None) -> None:
        """A delivery got through: the bounce count starts again from zero."""
        with transaction(self.engine, connection) as conn:
            conn.execute(
                update(SUBSCRIBERS)
                .where(SUBSCRIBERS.c.id == subscriber_id)
                .where(SUBSCRIBERS.c.consecutive_bounces != 0)
                .values(consecutive_bounces=0)
            )

    @contextmanager
    def batch(self, *, now: datetime | None = None) -> Iterator[SubscriberBatch]:
        """One transaction for many changes (a sync): all of them are written, or none."""
        with self._session() as session, session.begin():
            yield SubscriberBatch(session, now or utcnow())

    def _update(
        self, subscriber_id: int, values: Mapping[str, Any], *, only_status: str | None = None
    ) -> None:
        statement = update(SUBSCRIBERS).where(SUBSCRIBERS.c.id == subscriber_id)
        if only_status is not None:
            statement = statement.where(SUBSCRIBERS.c.status == only_status)
        with self.engine.begin() as conn:
            try:
                result = conn.execute(statement.values(**values))
            except IntegrityError:
                who = values.get("address") or values.get("email")
                raise DuplicateSubscriberError(f"{who} is already a subscriber") from None
            if not result.rowcount:
                if (
                    only_status is not None
                    and conn.execute(
                        select(SUBSCRIBERS.c.id).where(SUBSCRIBERS.c.id == subscriber_id)
                    ).first()
                ):
                    raise StatusChangedError(f"subscriber {subscriber_id} is no longer {only_status}")
                raise NotFoundError(f"no subscriber with id {subscriber_id}")


class SubscriberBatch:
    """Reads and writes inside one `SubscriberStore.batch()` transaction."""

    def __init__(self, session: Session, now: datetime) -> None:
        self._session = session
        self.now = now

    def find(self, *, destinations: Collection[Destination], origin_prefix: str) -> builtins.list[Subscriber]:
        """Subscribers with one of `destinations`, or whose origin starts with `origin_prefix`."""
        # LIKE treats % and _ as wildcards; escape them so the prefix is taken literally.
        escaped = origin_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        by_kind: dict[str, builtins.list[str]] = {}
        for destination in destinations:
            by_kind.setdefault(destination.kind, []).append(destination.address)
        query = select(Subscriber).where(
            or_(
                *(
                    and_(SUBSCRIBERS.c.destination_kind == kind, SUBSCRIBERS.c.address.in_(addresses))
                    for kind, addresses in by_kind.items()
                ),
                SUBSCRIBERS.c.origin.like(f"{escaped}%", escape="\\"),
            )
        )
        return builtins.list(self._session.scalars(query.order_by(SUBSCRIBERS.c.id)))

    def insert(self, values: Mapping[str, Any], *, status: str = "active") -> None:
        _check_status(status)
        self._session.execute(
            insert(SUBSCRIBERS).values(**values, status=status, created_at=self.now, updated_at=self.now)
        )

    def update(self, subscriber_id: int, values: Mapping[str, Any]) -> None:
        self._session.execute(
            update(SUBSCRIBERS).where(SUBSCRIBERS.c.id == subscriber_id).values(**values, updated_at=self.now)
        )

    def suppressions(self, emails: Collection[str]) -> dict[str, SuppressionRecord]:
        """The suppressed ones of `emails` (a sync never makes them active)."""
        store = SuppressionStore(self._session.get_bind())  # type: ignore[arg-type]
        return store.among(emails, connection=self._session.connection())

    def delete(self, subscriber_ids: Collection[int]) -> None:
        if subscriber_ids:
            self._session.execute(
                delete(SUBSCRIBERS).where(SUBSCRIBERS.c.id.in_(builtins.list(subscriber_ids)))
            )


@functools.cache
def _insert_new(dialect: str) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id, built once: the values come as parameters,
    so a sign-up pays neither the statement's construction nor its cache key (~0.3 ms)."""
    insert_row = (pg_insert if dialect == "postgresql" else sqlite_insert)(SUBSCRIBERS)
    # No conflict target: either unique constraint (destination, email) makes it a duplicate.
    return insert_row.on_conflict_do_nothing().returning(SUBSCRIBERS.c.id)


def _close_emails(wanted: str, emails: builtins.list[str]) -> builtins.list[str]:
    """Addresses like the one asked for: a typo in it, or just its local part ("ada")."""
    # Addresses share domains, so plain similarity needs a high bar to mean something.
    close = difflib.get_close_matches(wanted, emails, n=3, cutoff=0.8)
    if "@" not in wanted and wanted:
        close += [e for e in emails if e.split("@")[0] == wanted or e.startswith(wanted)]
    return builtins.list(dict.fromkeys(close))[:3]


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")


def _values(spec_or_fields: SubscriberColumns | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spec_or_fields, Mapping):
        values = dict(spec_or_fields)
        unknown = set(values) - EDITABLE - {"confirmed_at"}
        if unknown:
            raise ValueError(f"unknown subscriber fields: {', '.join(sorted(unknown))}")
    else:
        values = spec_or_fields.column_values()
    if values.get("email") is not None:
        values["email"] = str(values["email"]).strip().lower()
    values.setdefault("destination_kind", "email")
    if values["destination_kind"] == "email":
        values["address"] = values.get("email") or values.get("address") or ""
        values["email"] = values["address"] or None
    else:
        values["email"] = None
        values["address"] = str(values.get("address") or "").strip()
    return values


class _Named(NamedTuple):
    id: int | None
    email: str | None
    destination_kind: str
    address: str
