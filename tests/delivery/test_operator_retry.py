"""`deliveries retry`'s engine room: digests that failed for good go back to pending with their
send job runnable again, one transaction per delivery, on both databases; a sent row is never
selected, readers who are not active are skipped, and the daemon then sends each exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.channels.email import SmtpChannel
from bot.config import Settings, load_settings
from bot.delivery.ledger import DeliveryLedger
from bot.delivery.retry import REQUEUED, SKIPPED, WOULD_REQUEUE, RetryOutcome, retry_failed
from bot.delivery.service import SEND_TASK, DigestService, send_job, send_job_key
from bot.jobs.queue import JobQueue, NewJob
from bot.store import Store
from bot.store.models import Delivery, Job, Subscriber
from bot.store.subscribers import SubscriberStore
from tests.channels.smtp_server import SmtpServer
from tests.delivery.helpers import NOW, all_jobs, stocked_store, work_until

HOUR = timedelta(hours=1)
RECENT = NOW - 48 * HOUR  # the CLI's default look-back


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as smtp:
        yield smtp


@pytest.fixture
def smtp_settings(tmp_path: Path, server: SmtpServer, database_url: str) -> Settings:
    return load_settings(
        {
            "FLARESTART_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": database_url,
            "SMTP_URL": server.url(),
            "FLARESTART_EMAIL_ALLOW_PLAIN": "1",
        }
    )


@pytest.fixture
def store(smtp_settings: Settings) -> Iterator[Store]:
    store = stocked_store(smtp_settings, stories=3)
    yield store
    store.close()


@pytest.fixture
def service(store: Store, smtp_settings: Settings) -> Iterator[DigestService]:
    channel = SmtpChannel(smtp_settings.email)
    yield DigestService(store, smtp_settings, channel)
    asyncio.run(channel.aclose())


def add_reader(store: Store, email: str, *, status: str = "active") -> Subscriber:
    due = (NOW - timedelta(minutes=5)).strftime("%H:%M")
    values = {"email": email, "timezone": "UTC", "delivery_time": due, "topics": {"python": 1.0}}
    return SubscriberStore(store.engine).add(values, status=status)


def period_at(service: DigestService, reader: Subscriber, moment: datetime) -> str:
    due = service.due(reader, moment)
    assert due is not None
    return due.period


def failed_delivery(service: DigestService, reader: Subscriber, *, days_ago: int = 0) -> Delivery:
    """A delivery of `days_ago`'s period that failed for good then, with no job left (pruned)."""
    assert reader.id is not None
    moment = NOW - timedelta(days=days_ago)
    period = period_at(service, reader, moment)
    opened = service.ledger.begin(reader.id, period, service.channels.name_for("email"), now=moment)
    service.ledger.mark_failed(opened.id, error="550 5.1.1 no such user", permanent=True, now=moment)
    return service.ledger.get(opened.id)


def failed_job(service: DigestService, job: NewJob) -> int:
    """`job` enqueued, claimed and failed for good, as the worker leaves a refused send."""
    job_id = service.queue.enqueue_one(job)
    assert job_id is not None
    [claimed] = service.queue.claim("w", now=NOW + HOUR, lease=timedelta(minutes=1))
    assert service.queue.fail(claimed.id, "w", error="550", attempt=claimed.attempts)
    return job_id


def by_key(outcomes: list[RetryOutcome]) -> dict[tuple[str, str], str]:
    return {(o.subscriber, o.delivery.period): o.outcome for o in outcomes}


def snapshot(engine: Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every delivery and job, as far as a retry could change them."""
    with Session(engine) as session:
        deliveries = sorted(
            (d.id, d.status, d.attempts, d.last_error, d.updated_at) for d in session.exec(select(Delivery))
        )
        jobs = sorted((j.id, j.unique_key, j.status, j.attempts, j.run_at) for j in session.exec(select(Job)))
    return deliveries, jobs


# -- end to end ------------------------------------------------------------------------------


async def test_a_refused_digest_is_sent_exactly_once_after_the_operator_retries(
    store: Store, smtp_settings: Settings, server: SmtpServer
) -> None:
    channel = SmtpChannel(smtp_settings.email)
    try:
        await _refused_then_retried_then_sent(DigestService(store, smtp_settings, channel), store, server)
    finally:
        await channel.aclose()


async def _refused_then_retried_then_sent(service: DigestService, store: Store, server: SmtpServer) -> None:
    reader = add_reader(store, "ada@example.com")
    server.rcpt_replies["ada@example.com"] = "550 5.1.1 mailbox unavailable"
    assert service.plan_due() == 1
    [job] = [job for job in all_jobs(store) if job.task == SEND_TASK]
    assert job.id is not None
    job_id = job.id

    def job_is(status: str) -> bool:
        found = service.queue.get(job_id)
        return found is not None and found.status == status

    await work_until(service, lambda: job_is("failed"))
    [failed] = service.ledger.list(subscriber_id=reader.id)
    assert failed.status == "failed" and failed.id is not None

    [outcome] = await asyncio.to_thread(retry_failed, service, since=RECENT)

    assert (outcome.outcome, outcome.detail) == (REQUEUED, "send job queued again")
    reopened, requeued = service.ledger.get(failed.id), service.queue.get(job_id)
    assert requeued is not None
    assert (reopened.status, reopened.attempts, reopened.last_error) == ("pending", 1, failed.last_error)
    assert (requeued.status, requeued.attempts, requeued.last_error, requeued.locked_by) == (
        "queued",
        0,
        None,
        None,
    )

    server.rcpt_replies.clear()  # the operator fixed the cause
    await work_until(service, lambda: job_is("done"))

    sent = service.ledger.get(failed.id)
    assert [m.rcpt_tos for m in server.messages] == [["ada@example.com"]]
    assert (sent.status, sent.attempts) == ("sent", 2)
    assert await asyncio.to_thread(retry_failed, service, since=RECENT) == []  # sent: never again


# -- selection -------------------------------------------------------------------------------


@pytest.fixture
def ledger_rows(store: Store, service: DigestService) -> dict[str, Delivery]:
    """ada: failed today, yesterday and 3 days ago; bob: sent today; carl (bouncing) and dora
    (unsubscribed): failed today."""
    ada, bob = add_reader(store, "ada@example.com"), add_reader(store, "bob@example.com")
    carl = add_reader(store, "carl@example.com", status="bouncing")
    dora = add_reader(store, "dora@example.com", status="unsubscribed")
    assert bob.id is not None
    rows = {
        "ada-today": failed_delivery(service, ada),
        "ada-yesterday": failed_delivery(service, ada, days_ago=1),
        "ada-3-days": failed_delivery(service, ada, days_ago=3),
        "carl-today": failed_delivery(service, carl),
        "dora-today": failed_delivery(service, dora),
    }
    opened = service.ledger.begin(bob.id, period_at(service, bob, NOW), "email", now=NOW)
    service.ledger.mark_sent(opened.id, message_id="<bob@test>", article_ids=[], now=NOW)
    rows["bob-today"] = service.ledger.get(opened.id)
    return rows


def _period(rows: dict[str, Delivery], name: str) -> str:
    return rows[name].period


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({}, {"ada-today": REQUEUED, "ada-yesterday": REQUEUED}, id="default-48h"),
        pytest.param({"period": "ada-yesterday"}, {"ada-yesterday": REQUEUED}, id="period"),
        pytest.param(
            {"subscriber": "ada"}, {"ada-today": REQUEUED, "ada-yesterday": REQUEUED}, id="subscriber"
        ),
        pytest.param(
            {"since": timedelta(days=4)},
            {"ada-today": REQUEUED, "ada-yesterday": REQUEUED, "ada-3-days": REQUEUED},
            id="since-4d",
        ),
        pytest.param({"since": timedelta(hours=1)}, {"ada-today": REQUEUED}, id="since-1h"),
    ],
)
def test_filters_select_only_matching_failed_rows_of_active_readers(
    service: DigestService,
    ledger_rows: dict[str, Delivery],
    filters: dict[str, Any],
    expected: dict[str, str],
) -> None:
    since = NOW - filters.get("since", 48 * HOUR)
    period = _period(ledger_rows, filters["period"]) if "period" in filters else None
    subscriber_id = ledger_rows["ada-today"].subscriber_id if "subscriber" in filters else None

    outcomes = retry_failed(service, since=since, period=period, subscriber_id=subscriber_id)

    names = {(row.id): name for name, row in ledger_rows.items()}
    chosen = {names[o.delivery.id]: o.outcome for o in outcomes if o.outcome != SKIPPED}
    assert chosen == expected
    statuses = {name: service.ledger.get(row.id).status for name, row in ledger_rows.items() if row.id}
    assert statuses == {
        "ada-today": "pending" if "ada-today" in expected else "failed",
        "ada-yesterday": "pending" if "ada-yesterday" in expected else "failed",
        "ada-3-days": "pending" if "ada-3-days" in expected else "failed",
        "carl-today": "failed",
        "dora-today": "failed",
        "bob-today": "sent",
    }
    # every requeued delivery has a runnable send job again (these were pruned: new ones)
    queued = {j.unique_key for j in all_jobs(service.store) if j.status == "queued"}
    assert queued == {
        send_job_key(ledger_rows[name].subscriber_id, ledger_rows[name].period, "email") for name in expected
    }


def test_readers_who_are_not_active_are_skipped_with_the_reason(
    service: DigestService, ledger_rows: dict[str, Delivery]
) -> None:
    outcomes = retry_failed(service, since=RECENT)

    skipped = {o.subscriber: o.detail for o in outcomes if o.outcome == SKIPPED}
    assert skipped == {
        "carl@example.com": "subscriber is bouncing: nothing is sent to them",
        "dora@example.com": "subscriber is unsubscribed: nothing is sent to them",
    }
    not_active = {ledger_rows["carl-today"].subscriber_id, ledger_rows["dora-today"].subscriber_id}
    assert not [j for j in all_jobs(service.store) if j.payload.get("subscriber_id") in not_active]
    assert {service.ledger.get(ledger_rows[n].id).status for n in ("carl-today", "dora-today")} == {"failed"}  # type: ignore[arg-type]


def test_dry_run_changes_nothing(service: DigestService, ledger_rows: dict[str, Delivery]) -> None:
    ada = ledger_rows["ada-today"]
    failed_job(
        service,
        send_job(
            ada.subscriber_id,
            {"period": ada.period, "window_start": "x", "window_end": "y"},
            channel="email",
            max_attempts=3,
        ),
    )
    before = snapshot(service.store.engine)

    outcomes = retry_failed(service, since=RECENT, dry_run=True)

    assert snapshot(service.store.engine) == before
    assert {(o.subscriber, o.outcome, o.detail) for o in outcomes if o.outcome != SKIPPED} == {
        ("ada@example.com", WOULD_REQUEUE, "would queue its send job again"),
        ("ada@example.com", WOULD_REQUEUE, "would enqueue a new send job (the old one was pruned)"),
    }


def test_a_row_that_changed_meanwhile_is_left_alone_and_reported(
    service: DigestService, ledger_rows: dict[str, Delivery], monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = ledger_rows["ada-today"]
    assert ada.id is not None
    selected = service.ledger.failed_since

    def selected_then_sent_by_someone_else(*args: Any, **kwargs: Any) -> list[Delivery]:
        rows = selected(*args, **kwargs)
        # a concurrent retry and send win the race after the rows were read
        service.ledger.reopen(ada.id, now=NOW)  # type: ignore[arg-type]
        service.ledger.begin(ada.subscriber_id, ada.period, "email", now=NOW)
        service.ledger.mark_sent(ada.id, message_id="<other@test>", article_ids=[], now=NOW)  # type: ignore[arg-type]
        return rows

    monkeypatch.setattr(service.ledger, "failed_since", selected_then_sent_by_someone_else)

    outcomes = retry_failed(service, since=RECENT, subscriber_id=ada.subscriber_id)

    assert by_key(outcomes) == {
        ("ada@example.com", ada.period): SKIPPED,
        ("ada@example.com", ledger_rows["ada-yesterday"].period): REQUEUED,
    }
    [changed] = [o for o in outcomes if o.delivery.id == ada.id]
    assert changed.detail == "changed meanwhile (now sent): left alone"
    assert service.ledger.get(ada.id).status == "sent"
    assert send_job_key(ada.subscriber_id, ada.period, "email") not in {
        j.unique_key for j in all_jobs(service.store)
    }


def test_a_running_send_job_is_never_touched(
    service: DigestService, ledger_rows: dict[str, Delivery]
) -> None:
    ada = ledger_rows["ada-today"]
    assert ada.id is not None
    payload = {"period": ada.period, "window_start": "x", "window_end": "y"}
    service.queue.enqueue_one(send_job(ada.subscriber_id, payload, channel="email", max_attempts=3))
    [running] = service.queue.claim("w", now=NOW + HOUR, lease=timedelta(minutes=5))

    outcomes = retry_failed(service, since=RECENT, period=ada.period, subscriber_id=ada.subscriber_id)

    assert [(o.outcome, o.detail) for o in outcomes] == [
        (SKIPPED, "its send job is running: try again once it has finished")
    ]
    assert service.ledger.get(ada.id).status == "failed"  # the whole retry rolled back
    job = service.queue.get(running.id)
    assert job is not None and (job.status, job.locked_by, job.attempts) == ("running", "w", 1)


# -- a pruned job ----------------------------------------------------------------------------


def test_a_pruned_job_is_enqueued_again_with_the_payload_plan_due_makes(
    store: Store, service: DigestService
) -> None:
    reader = add_reader(store, "ada@example.com")
    assert reader.id is not None
    assert service.plan_due() == 1
    [planned] = all_jobs(store)
    [claimed] = service.queue.claim("w", now=NOW + HOUR, lease=timedelta(minutes=1))
    assert service.queue.fail(claimed.id, "w", error="550", attempt=claimed.attempts)
    failed_delivery(service, reader)
    assert service.queue.prune(finished_before=NOW + 2 * HOUR) == 1

    [outcome] = retry_failed(service, since=RECENT)

    assert (outcome.outcome, outcome.detail) == (REQUEUED, "new send job (the old one was pruned)")
    [job] = all_jobs(store)
    assert (job.task, job.unique_key, job.payload, job.max_attempts) == (
        planned.task,
        planned.unique_key,
        planned.payload,
        planned.max_attempts,
    )
    assert (job.status, job.attempts) == ("queued", 0)


def test_a_digest_sent_early_by_hand_is_retried_with_the_job_its_delivery_time_makes(
    store: Store, service: DigestService
) -> None:
    # `send --now` at 03:00 sends that day's 07:00 digest early; it failed, its job is gone. The
    # row's moment lies before its period's delivery: the retry finds the period in the schedule.
    reader = SubscriberStore(store.engine).add(
        {"email": "early@example.com", "timezone": "UTC", "delivery_time": "07:00", "topics": {"python": 1.0}}
    )
    assert reader.id is not None
    early = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
    opened = service.ledger.begin(reader.id, "2026-03-10", service.channels.name_for("email"), now=early)
    service.ledger.mark_failed(opened.id, error="550 5.1.1 no such user", permanent=True, now=early)

    [outcome] = retry_failed(service, since=early - HOUR)

    assert (outcome.outcome, outcome.detail) == (REQUEUED, "new send job (the old one was pruned)")
    [job] = all_jobs(store)
    assert job.payload == {
        "subscriber_id": reader.id,
        "period": "2026-03-10",
        "window_start": "2026-03-09T07:00:00+00:00",
        "window_end": "2026-03-10T07:00:00+00:00",
    }
    assert service.send_job_for(reader, "2026-03-11", around=early) is None  # not a day further


# -- the two guarded primitives --------------------------------------------------------------


def test_reopen_moves_only_a_failed_row(engine: Engine) -> None:
    ledger = DeliveryLedger(engine)
    reader = SubscriberStore(engine).add({"email": "r@example.com"}).id
    assert reader is not None
    rows = {
        status: ledger.begin(reader, f"2026-11-2{n}", "email", now=NOW).id
        for n, status in enumerate(("pending", "failed", "sent", "skipped"))
    }
    ledger.mark_failed(rows["pending"], error="421 later", permanent=False, now=NOW)
    ledger.mark_failed(rows["failed"], error="550 no", permanent=True, now=NOW)
    ledger.mark_sent(rows["sent"], message_id="<m@test>", article_ids=[], now=NOW)
    ledger.mark_skipped(rows["skipped"], reason="quiet", now=NOW)

    moved = {status: ledger.reopen(row, now=NOW + HOUR) for status, row in rows.items()}

    assert moved == {"pending": False, "failed": True, "sent": False, "skipped": False}
    reopened = ledger.get(rows["failed"])
    assert (reopened.status, reopened.attempts, reopened.last_error, reopened.updated_at) == (
        "pending",
        1,
        "550 no",
        NOW + HOUR,
    )
    assert ledger.failed_since(NOW - HOUR) == []


def test_requeue_takes_only_a_finished_job(engine: Engine) -> None:
    queue = JobQueue(engine)
    names = ("done", "failed", "running", "queued")
    ids = {name: queue.enqueue_one(NewJob("t", {"n": name}, unique_key=name)) for name in names}
    # the first three (oldest first) are claimed; "queued" stays queued
    claims = queue.claim("w", now=NOW + HOUR, lease=timedelta(minutes=5), limit=3)
    claimed = {job.payload["n"]: job for job in claims}
    assert set(claimed) == {"done", "failed", "running"}
    assert queue.finish(claimed["done"].id, "w", now=NOW + HOUR)
    assert queue.fail(claimed["failed"].id, "w", error="boom")
    later = NOW + 2 * HOUR

    requeued = {name: queue.requeue(name, now=later) for name in (*ids, "missing")}

    assert requeued == {"done": True, "failed": True, "running": False, "queued": False, "missing": False}
    for name in ("done", "failed"):
        job = queue.get(ids[name])  # type: ignore[arg-type]
        assert job is not None
        assert (job.status, job.attempts, job.run_at, job.last_error, job.finished_at, job.locked_by) == (
            "queued",
            0,
            later,
            None,
            None,
            None,
        )
    assert {name: queue.status_of(name) for name in (*ids, "missing")} == {
        "done": "queued",
        "failed": "queued",
        "running": "running",
        "queued": "queued",
        "missing": None,
    }
