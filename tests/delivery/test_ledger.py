"""The delivery ledger on both databases: one row per (subscriber, period, channel), guarded
moves between states, and the articles recorded in the same transaction as the send."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlmodel import Session

from bot.delivery.ledger import LEASE, SENT_ARTICLES, DeliveryLedger
from bot.errors import NotFoundError
from bot.store.engine import make_engine
from bot.store.models import Article, Source, Subscriber

NOW = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=1)
EXPIRED = NOW + LEASE + timedelta(seconds=1)  # a sender that began at NOW and never finished is gone


@pytest.fixture
def ledger(engine: Engine) -> DeliveryLedger:
    return DeliveryLedger(engine)


@pytest.fixture
def readers(engine: Engine) -> list[int]:
    with Session(engine) as session:
        rows = [Subscriber(email=f"reader{n}@example.com") for n in range(3)]
        session.add_all(rows)
        session.commit()
        return [row.id for row in rows if row.id is not None]


@pytest.fixture
def articles(engine: Engine) -> list[int]:
    with Session(engine) as session:
        source = Source(name="Feed", url="https://feed.example/rss")
        session.add(source)
        session.flush()
        assert source.id is not None
        rows = [
            Article(source_id=source.id, key=f"guid:{n}", title=f"A{n}", published_at=NOW, content_hash="h")
            for n in range(4)
        ]
        session.add_all(rows)
        session.commit()
        return [row.id for row in rows if row.id is not None]


def test_open_is_insert_or_get_and_leaves_an_existing_row_alone(
    ledger: DeliveryLedger, readers: list[int], articles: list[int]
) -> None:
    first = ledger.open(readers[0], "2026-11-27", "email", article_ids=articles[:2], now=NOW)
    again = ledger.open(readers[0], "2026-11-27", "email", article_ids=articles[2:], now=LATER)
    other_channel = ledger.open(readers[0], "2026-11-27", "slack", article_ids=articles[:1])
    next_day = ledger.open(readers[0], "2026-11-28", "email", article_ids=articles[:1])

    assert again.id == first.id
    assert (again.status, again.article_ids, again.created_at) == ("pending", articles[:2], NOW)
    assert len({first.id, other_channel.id, next_day.id}) == 3
    assert len(ledger.list()) == 3


def test_planners_racing_on_one_digest_get_one_row(
    ledger: DeliveryLedger, database_url: str, readers: list[int]
) -> None:
    barrier = threading.Barrier(6)
    ids: list[int | None] = []

    def plan() -> None:
        engine = make_engine(database_url)
        try:
            barrier.wait()
            ids.append(DeliveryLedger(engine).open(readers[1], "2026-W48", "discord", article_ids=[]).id)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=plan) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(ids) == 6 and len(set(ids)) == 1
    assert len(ledger.list(subscriber_id=readers[1])) == 1


def test_a_sent_delivery_is_never_begun_again(
    ledger: DeliveryLedger, readers: list[int], articles: list[int]
) -> None:
    delivery = ledger.open(readers[0], "2026-11-27", "email", article_ids=articles)
    assert delivery.id is not None

    began = ledger.begin_send(delivery.id, now=NOW)
    sent = ledger.mark_sent(delivery.id, message_id="<d.1@x>", article_ids=articles[:3], now=LATER)
    began_again = ledger.begin_send(delivery.id, now=LATER)
    sent_again = ledger.mark_sent(delivery.id, message_id="<d.1@x>", article_ids=articles, now=LATER)

    row = ledger.get(delivery.id)
    assert (began, sent, began_again, sent_again) == (True, True, False, False)
    assert (row.status, row.attempts, row.sent_at, row.message_id) == ("sent", 1, LATER, "<d.1@x>")
    assert row.article_ids == articles[:3]
    assert ledger.sent_article_ids(readers[0]) == set(articles[:3])


def test_a_crashed_send_is_begun_again_and_keeps_counting_attempts(
    ledger: DeliveryLedger, readers: list[int]
) -> None:
    delivery = ledger.open(readers[0], "2026-11-27", "email", article_ids=[])
    assert delivery.id is not None
    ledger.begin_send(delivery.id, now=NOW)  # ... and the worker died before mark_sent

    assert not ledger.begin_send(delivery.id, now=LATER)  # its lease still runs: busy
    assert ledger.begin_send(delivery.id, now=EXPIRED)
    row = ledger.get(delivery.id)
    assert (row.status, row.attempts, row.lease_until) == ("sending", 2, EXPIRED + LEASE)


def test_a_row_being_sent_is_busy_until_its_lease_ends(
    ledger: DeliveryLedger, readers: list[int], articles: list[int]
) -> None:
    lease = timedelta(seconds=30)
    first = ledger.begin(readers[0], "2026-11-27", "email", now=NOW, lease=lease)
    second = ledger.begin(readers[0], "2026-11-27", "email", now=NOW + timedelta(seconds=29), lease=lease)
    assert not ledger.begin_send(first.id, now=NOW + timedelta(seconds=29), lease=lease)
    # A sender that never began it (its draft failed) leaves a held row to its holder.
    assert not ledger.mark_failed(
        first.id, error="could not draft", permanent=True, now=NOW + timedelta(seconds=29), unheld=True
    )
    taken_over = ledger.begin(readers[0], "2026-11-27", "email", now=NOW + lease, lease=lease)

    assert (first.began, first.lease_until) == (True, NOW + lease)
    assert (second.id, second.status, second.began, second.busy) == (first.id, "sending", False, True)
    assert second.lease_until == NOW + lease  # whom to wait for, and how long
    assert (taken_over.id, taken_over.began, taken_over.busy) == (first.id, True, False)
    assert ledger.get(first.id).attempts == 2  # the busy calls changed nothing

    # Settled rows hold no lease: a transient failure may be retried at once, a sent row is final.
    assert ledger.mark_failed(first.id, error="421 busy", permanent=False, now=NOW + lease)
    assert ledger.get(first.id).lease_until is None
    again = ledger.begin(readers[0], "2026-11-27", "email", now=NOW + lease, lease=lease)
    assert again.began
    assert ledger.mark_sent(first.id, message_id="<d@x>", article_ids=articles[:1], now=NOW + lease)
    after = ledger.begin(readers[0], "2026-11-27", "email", now=NOW + 3 * lease, lease=lease)
    assert (after.status, after.began, after.busy) == ("sent", False, False)
    assert ledger.get(first.id).lease_until is None


def _race(engine: Engine, subscriber_id: int, senders: int) -> list[Any]:
    """`senders` threads, each its own ledger, begin one row at the same moment."""
    start, lock = threading.Barrier(senders), threading.Lock()
    results: list[Any] = []

    def claim() -> None:
        ledger = DeliveryLedger(engine)
        start.wait()
        opened = ledger.begin(subscriber_id, "2026-11-27", "email", now=NOW)
        with lock:
            results.append(opened)

    threads = [threading.Thread(target=claim) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_begins_of_one_row_begin_it_once(engine: Engine, readers: list[int]) -> None:
    """Senders racing on one row (new, then pending again): exactly one begins each time, the
    others hear busy. On PostgreSQL these are real concurrent transactions."""
    ledger = DeliveryLedger(engine)
    for _ in range(2):
        results = _race(engine, readers[0], 4)
        assert sum(o.began for o in results) == 1, results
        assert sum(o.busy for o in results) == 3
        (row,) = ledger.list(subscriber_id=readers[0])
        assert ledger.mark_failed(row.id or 0, error="421", permanent=False, now=NOW)  # pending again


def test_mark_sent_records_the_articles_in_the_same_transaction(
    ledger: DeliveryLedger, engine: Engine, readers: list[int], articles: list[int]
) -> None:
    delivery = ledger.open(readers[0], "2026-11-27", "email", article_ids=articles)
    assert delivery.id is not None
    ledger.begin_send(delivery.id, now=NOW)

    def refuse(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO SENT_ARTICLES"):
            raise RuntimeError("disk full")

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            ledger.mark_sent(delivery.id, message_id="<d@x>", article_ids=articles, now=LATER)
    finally:
        event.remove(engine, "before_cursor_execute", refuse)

    assert ledger.get(delivery.id).status == "sending", "the status moved without its articles"
    assert ledger.sent_article_ids(readers[0]) == set()
    assert ledger.mark_sent(delivery.id, message_id="<d@x>", article_ids=articles, now=LATER)
    assert ledger.sent_article_ids(readers[0]) == set(articles)


def test_articles_already_sent_or_since_pruned_do_not_fail_a_send(
    ledger: DeliveryLedger, engine: Engine, readers: list[int], articles: list[int]
) -> None:
    monday = ledger.open(readers[0], "2026-11-23", "email", article_ids=articles[:2])
    tuesday = ledger.open(readers[0], "2026-11-24", "email", article_ids=articles)
    assert monday.id is not None and tuesday.id is not None
    ledger.begin_send(monday.id, now=NOW)
    ledger.mark_sent(monday.id, message_id="<mon@x>", article_ids=articles[:2], now=NOW)
    ledger.begin_send(tuesday.id, now=LATER)

    pruned = 999_999
    assert ledger.mark_sent(tuesday.id, message_id="<tue@x>", article_ids=[*articles, pruned], now=LATER)

    assert ledger.sent_article_ids(readers[0]) == set(articles)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(SENT_ARTICLES)) == len(articles)


def test_transient_failure_reopens_permanent_failure_and_skip_close(
    ledger: DeliveryLedger, readers: list[int]
) -> None:
    flaky = ledger.open(readers[0], "2026-11-27", "email", article_ids=[])
    bounced = ledger.open(readers[1], "2026-11-27", "email", article_ids=[])
    quiet = ledger.open(readers[2], "2026-11-27", "email", article_ids=[])
    assert flaky.id is not None and bounced.id is not None and quiet.id is not None

    ledger.begin_send(flaky.id, now=NOW)
    assert ledger.mark_failed(flaky.id, error="421 busy", permanent=False, now=NOW)
    retried = ledger.begin_send(flaky.id, now=LATER)
    ledger.begin_send(bounced.id, now=NOW)
    assert ledger.mark_failed(bounced.id, error="550 no such user", permanent=True, now=NOW)
    assert ledger.mark_skipped(quiet.id, reason="quiet day: nothing new")

    flaky_row, bounced_row, quiet_row = (ledger.get(i) for i in (flaky.id, bounced.id, quiet.id))
    assert retried and (flaky_row.status, flaky_row.attempts, flaky_row.last_error) == (
        "sending",
        2,
        "421 busy",
    )
    assert (bounced_row.status, bounced_row.last_error) == ("failed", "550 no such user")
    assert (quiet_row.status, quiet_row.last_error) == ("skipped", "quiet day: nothing new")
    assert not ledger.begin_send(bounced.id, now=LATER)
    assert not ledger.mark_failed(quiet.id, error="late", permanent=True, now=LATER)  # skipped: closed
    assert [d.id for d in ledger.list(status="failed")] == [bounced.id]
    assert ledger.counts() == {"pending": 0, "sending": 1, "sent": 0, "failed": 1, "skipped": 1}
    # A quiet period is not final: once there is something to send it may begin again.
    assert ledger.begin_send(quiet.id, now=LATER)
    assert ledger.get(quiet.id).status == "sending"


def test_sent_articles_for_many_readers_at_once(
    ledger: DeliveryLedger, readers: list[int], articles: list[int]
) -> None:
    for reader, ids in ((readers[0], articles[:2]), (readers[1], articles[1:])):
        delivery = ledger.open(reader, "2026-11-27", "email", article_ids=ids)
        assert delivery.id is not None
        ledger.begin_send(delivery.id, now=NOW)
        ledger.mark_sent(delivery.id, message_id=f"<{reader}@x>", article_ids=ids, now=NOW)

    found = ledger.sent_article_ids_many([readers[0], readers[1], readers[2], readers[0]])

    assert found == {readers[0]: set(articles[:2]), readers[1]: set(articles[1:]), readers[2]: set()}
    assert ledger.sent_article_ids_many([]) == {}


def test_list_filters_and_get_names_a_missing_delivery(ledger: DeliveryLedger, readers: list[int]) -> None:
    for day in ("2026-11-25", "2026-11-26", "2026-11-27"):
        ledger.open(
            readers[0], day, "email", article_ids=[], now=datetime.fromisoformat(day + "T07:00+00:00")
        )
    ledger.open(readers[1], "2026-11-27", "email", article_ids=[])

    newest_first = [d.period for d in ledger.list(subscriber_id=readers[0])]
    assert newest_first == ["2026-11-27", "2026-11-26", "2026-11-25"]
    assert len(ledger.list(limit=2)) == 2
    assert len(ledger.list(status="pending")) == 4
    with pytest.raises(NotFoundError, match="no delivery with id 424242"):
        ledger.get(424242)


def test_begin_opens_and_begins_in_one_statement_and_never_reopens_a_sent_row(
    ledger: DeliveryLedger, readers: list[int], articles: list[int]
) -> None:
    new = ledger.begin(readers[0], "2026-11-27", "email", now=NOW)
    busy = ledger.begin(readers[0], "2026-11-27", "email", now=LATER)  # it is being sent right now
    crashed = ledger.begin(readers[0], "2026-11-27", "email", now=EXPIRED)  # the attempt died: again
    pending = ledger.open(readers[1], "2026-11-27", "email", article_ids=[], now=NOW)
    assert pending.id is not None
    from_pending = ledger.begin(readers[1], "2026-11-27", "email", now=LATER)
    ledger.mark_sent(new.id, message_id="<d@x>", article_ids=articles[:1], now=LATER)
    after_sent = ledger.begin(readers[0], "2026-11-27", "email", now=LATER)
    skipped = ledger.open(readers[2], "2026-11-27", "email", article_ids=[])
    assert skipped.id is not None and ledger.mark_skipped(skipped.id, reason="quiet")
    after_skip = ledger.begin(readers[2], "2026-11-27", "email", now=LATER)  # quiet then, not final
    ledger.mark_sent(after_skip.id, message_id="<q@x>", article_ids=articles[1:2], now=LATER)
    after_skip_sent = ledger.begin(readers[2], "2026-11-27", "email", now=LATER)

    assert (new.status, new.began) == ("sending", True)
    assert (busy.id, busy.status, busy.began, busy.busy) == (new.id, "sending", False, True)
    assert (crashed.id, crashed.began) == (new.id, True)
    assert (from_pending.id, from_pending.began) == (pending.id, True)
    assert (after_sent.id, after_sent.status, after_sent.began) == (new.id, "sent", False)
    assert (after_skip.id, after_skip.status, after_skip.began) == (skipped.id, "sending", True)
    assert (after_skip_sent.status, after_skip_sent.began) == ("sent", False)  # sent stays once
    sent_row, begun_row = ledger.get(new.id), ledger.get(pending.id)
    assert (sent_row.status, sent_row.attempts, sent_row.created_at) == ("sent", 2, NOW)
    assert (begun_row.status, begun_row.attempts, begun_row.updated_at) == ("sending", 1, LATER)


def test_begin_joins_the_callers_transaction(
    ledger: DeliveryLedger, engine: Engine, readers: list[int]
) -> None:
    with engine.connect() as conn:
        opened = ledger.begin(readers[0], "2026-11-27", "email", now=NOW, connection=conn)
        assert opened.began
        conn.rollback()
    assert ledger.list(subscriber_id=readers[0]) == []
