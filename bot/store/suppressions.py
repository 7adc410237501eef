"""Suppressions: the addresses no digest may go to, kept by address behind a narrow interface.

A subscriber row is the files' or the operator's to add, change and delete; a suppression is the
reader's word (an unsubscribe, a complaint) or the mail system's (a hard bounce), and outlives
every row. Sending asks here at its claim (`DeliveryLedger.begin`), planning leaves suppressed
addresses out (`suppressed_address`), and a sync never makes one active. Only the reader's own
re-opt-in through the web (a confirmed mail) or an operator's `suppressions remove` lifts one.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.store.connections import connected, transaction
from bot.store.models import Subscriber, Suppression

SUPPRESSIONS: Table = Suppression.__table__  # type: ignore[attr-defined]
SUBSCRIBERS: Table = Subscriber.__table__  # type: ignore[attr-defined]
REASONS = ("unsubscribed", "hard_bounce", "complaint", "operator")
MAX_NOTE = 2000
ID_BATCH = 500


@dataclass(frozen=True, slots=True)
class SuppressionRecord:
    """One suppressed address, as the doors show it."""

    id: int
    address: str
    reason: str
    source: str
    note: str
    subscriber_id: int | None
    created_at: datetime
    reoptin_sent_at: datetime | None


_COLUMNS = [SUPPRESSIONS.c[name] for name in SuppressionRecord.__slots__]


def normalise_address(address: str) -> str:
    """The form addresses are kept in (as subscribers.email): trimmed and lower-cased."""
    return address.strip().lower()


def suppressed_address(email: ColumnElement[str | None]) -> ColumnElement[bool]:
    """True where `email` (a column of the statement it goes into) is suppressed."""
    return exists().where(SUPPRESSIONS.c.address == email)


class SuppressionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        # The claim's check, built once: is this subscriber's address suppressed?
        self._subscriber_suppressed = select(SUBSCRIBERS.c.id).where(
            SUBSCRIBERS.c.id == bindparam("subscriber_id"), suppressed_address(SUBSCRIBERS.c.email)
        )

    def add(
        self,
        address: str,
        reason: str,
        *,
        now: datetime,
        source: str = "",
        note: str = "",
        subscriber_id: int | None = None,
        connection: Connection | None = None,
    ) -> bool:
        """Suppress `address`; True when it is new. An address suppressed already keeps its first
        reason and date (the earliest word stands)."""
        if reason not in REASONS:
            raise ValueError(f"reason must be one of {', '.join(REASONS)}, got {reason!r}")
        statement = (
            self._insert(SUPPRESSIONS)
            .values(
                address=normalise_address(address),
                reason=reason,
                source=source[:200],
                note=note[:MAX_NOTE],
                subscriber_id=subscriber_id,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=[SUPPRESSIONS.c.address])
            .returning(SUPPRESSIONS.c.id)
        )
        with transaction(self.engine, connection) as conn:
            return conn.execute(statement).scalar_one_or_none() is not None

    def get(self, address: str) -> SuppressionRecord | None:
        query = select(*_COLUMNS).where(SUPPRESSIONS.c.address == normalise_address(address))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else SuppressionRecord(*row)

    def get_by_id(self, suppression_id: int) -> SuppressionRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_COLUMNS).where(SUPPRESSIONS.c.id == suppression_id)).first()
        return None if row is None else SuppressionRecord(*row)

    def for_old_link(self, subscriber_id: int, issued_at: datetime) -> SuppressionRecord | None:
        """The suppression recorded for a subscriber row (perhaps deleted since) after a link to
        it was made: what an old unsubscribe link is about once its row is gone or re-made."""
        query = (
            select(*_COLUMNS)
            .where(SUPPRESSIONS.c.subscriber_id == subscriber_id, SUPPRESSIONS.c.created_at >= issued_at)
            .order_by(SUPPRESSIONS.c.created_at, SUPPRESSIONS.c.id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else SuppressionRecord(*row)

    def list(self) -> builtins.list[SuppressionRecord]:
        """Every suppression, by address."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_COLUMNS).order_by(SUPPRESSIONS.c.address))
            return [SuppressionRecord(*row) for row in rows]

    def among(
        self, addresses: Collection[str], *, connection: Connection | None = None
    ) -> dict[str, SuppressionRecord]:
        """The suppressed ones of `addresses`, by (normalised) address."""
        wanted = sorted({normalise_address(a) for a in addresses})
        found: dict[str, SuppressionRecord] = {}
        with connected(self.engine, connection) as conn:
            for start in range(0, len(wanted), ID_BATCH):
                query = select(*_COLUMNS).where(SUPPRESSIONS.c.address.in_(wanted[start : start + ID_BATCH]))
                for row in conn.execute(query):
                    found[str(row.address)] = SuppressionRecord(*row)
        return found

    def subscriber_suppressed(self, subscriber_id: int, *, connection: Connection | None = None) -> bool:
        """Whether the address of subscriber `subscriber_id` is suppressed (one indexed lookup)."""
        with connected(self.engine, connection) as conn:
            params = {"subscriber_id": subscriber_id}
            return conn.execute(self._subscriber_suppressed, params).first() is not None

    def remove(self, address: str, *, connection: Connection | None = None) -> SuppressionRecord | None:
        """Lift the suppression of `address`; the record that was lifted, or None when there was none."""
        wanted = normalise_address(address)
        with transaction(self.engine, connection) as conn:
            row = conn.execute(select(*_COLUMNS).where(SUPPRESSIONS.c.address == wanted)).first()
            if row is None:
                return None
            conn.execute(delete(SUPPRESSIONS).where(SUPPRESSIONS.c.id == row.id))
        return SuppressionRecord(*row)

    def lift(
        self, suppression_id: int, *, made_before: datetime, connection: Connection | None = None
    ) -> bool:
        """Lift suppression `suppression_id` if it was recorded before `made_before` (a re-opt-in
        link made for it; a newer suppression with a reused id is not the link's). True when lifted."""
        statement = delete(SUPPRESSIONS).where(
            SUPPRESSIONS.c.id == suppression_id, SUPPRESSIONS.c.created_at <= made_before
        )
        with transaction(self.engine, connection) as conn:
            return conn.execute(statement).rowcount == 1

    def take_reoptin_turn(self, suppression_id: int, *, now: datetime, every: timedelta) -> bool:
        """Whether a "subscribe again" mail may go out now: at most one per `every` per address,
        however often (and by whomever) the button is pressed. Taking the turn is one update."""
        column = SUPPRESSIONS.c.reoptin_sent_at
        statement = (
            update(SUPPRESSIONS)
            .where(
                SUPPRESSIONS.c.id == suppression_id,
                or_(column.is_(None), and_(column.is_not(None), column <= now - every)),
            )
            .values(reoptin_sent_at=now)
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def give_back_reoptin_turn(self, suppression_id: int, *, taken_at: datetime) -> None:
        """The mail of the turn taken at `taken_at` did not go out: the next press may send one."""
        column = SUPPRESSIONS.c.reoptin_sent_at
        statement = (
            update(SUPPRESSIONS)
            .where(SUPPRESSIONS.c.id == suppression_id, column == taken_at)
            .values(reoptin_sent_at=None)
        )
        with self.engine.begin() as conn:
            conn.execute(statement)
