"""One claim per delivery, from any door: two sends of one digest at once (two `send --now`, the
CLI and `flarestart run`) mail it once; the other hears it is already being sent, and a job put
back for it is sent later, never dropped. A sender that crashed mid-send is taken over once its
lease ends. On SQLite and PostgreSQL, against aiosmtpd on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import FlareStart
from bot.channels.email import SmtpChannel
from bot.config import Settings, load_settings
from bot.delivery.batch import BatchSender
from bot.delivery.ledger import DeliveryLedger
from bot.delivery.service import SEND_TASK, DigestService
from bot.errors import DeliveryBusyError
from bot.jobs.queue import JobQueue
from bot.store.types import utcnow
from tests.channels.smtp_server import SmtpServer
from tests.delivery.helpers import add_readers, all_jobs, run_until, stocked_store


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as smtp:
        yield smtp


def settings_for(database_url: str, tmp_path: Path, server: SmtpServer, **more: str) -> Settings:
    return load_settings(
        {
            "FLARESTART_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": database_url,
            "SMTP_URL": server.url(),
            "FLARESTART_EMAIL_ALLOW_PLAIN": "1",
            **more,
        }
    )


@pytest.fixture
def settings(database_url: str, tmp_path: Path, server: SmtpServer) -> Settings:
    return settings_for(database_url, tmp_path, server)


@pytest.fixture
def reader(settings: Settings) -> Iterator[int]:
    store = stocked_store(settings)
    yield add_readers(store, 1)[0]
    store.close()


def message_ids(server: SmtpServer) -> list[str]:
    return [str(m.message()["Message-ID"]) for m in server.messages]


def test_two_sends_at_once_mail_one_message_and_the_other_is_told_it_is_being_sent(
    settings: Settings, server: SmtpServer, reader: int
) -> None:
    server.data_delay = 1.5  # the first send is still in DATA when the second one claims
    start = threading.Barrier(2)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def send() -> None:
        with FlareStart(settings, seed=False) as app:  # each its own engine, as two processes
            start.wait()
            try:
                outcome: Any = app.send("reader0@example.com", force=True)
            except DeliveryBusyError as exc:
                outcome = exc
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    busy = [o for o in outcomes if isinstance(o, DeliveryBusyError)]
    sent = [o for o in outcomes if not isinstance(o, DeliveryBusyError)]
    assert len(busy) == 1 and len(sent) == 1, outcomes
    assert sent[0].result.status == "sent"
    assert "already being sent" in str(busy[0]) and "nothing was sent" in str(busy[0])
    assert len(server.messages) == 1
    with FlareStart(settings, seed=False) as app:
        (row,) = app.list_deliveries(subscriber="reader0@example.com").rows
    assert (row.status, row.attempts, row.lease_until) == ("sent", 1, None)
    assert row.message_id == message_ids(server)[0]


def test_a_send_whose_sender_crashed_is_taken_over_once_its_lease_ended(
    settings: Settings, server: SmtpServer, reader: int
) -> None:
    lease = timedelta(seconds=settings.delivery.lease_seconds)
    with FlareStart(settings, seed=False) as app:
        # The period `send` picks: the reader's due one (their delivery time passed minutes ago),
        # which is yesterday's when the suite started before midnight and this test runs after it.
        upcoming = app.subscriber(reader).next_delivery
        assert upcoming is not None and upcoming.due_now
        period = upcoming.period
        ledger = DeliveryLedger(app.store.engine)
        # A sender began it a lease ago and died before it finished: still 'sending', lease over.
        crashed = ledger.begin(reader, period, "email", now=utcnow() - lease - timedelta(seconds=1))
        assert crashed.began and ledger.get(crashed.id).status == "sending"
        outcome = app.send(reader, force=True)
        again = app.send(reader, force=True)  # sent is final: no second copy
        row = ledger.get(crashed.id)

    assert (outcome.result.status, again.result.status) == ("sent", "already-sent")
    assert len(server.messages) == 1
    assert (row.status, row.attempts, row.message_id) == ("sent", 2, message_ids(server)[0])


async def test_a_send_job_whose_delivery_is_busy_is_put_back_and_sent_after_the_lease(
    database_url: str, tmp_path: Path, server: SmtpServer
) -> None:
    settings = settings_for(database_url, tmp_path, server, FLARESTART_DELIVERY_LEASE_SECONDS="2")
    store = stocked_store(settings)
    channel = SmtpChannel(settings.email)
    try:
        reader = add_readers(store, 1)[0]
        service = DigestService(store, settings, channel)
        assert service.plan_due() == 1
        (job,) = all_jobs(store)
        period = str(job.payload["period"])
        # `send --now` from a terminal holds the row right now (and then dies: it never finishes).
        held = service.ledger.begin(reader, period, "email", now=utcnow(), lease=timedelta(seconds=2))
        sender = BatchSender(service, worker_id="run", poll_interval=0.02)
        queue = JobQueue(store.engine)
        seen: list[tuple[str, int, int, str]] = []  # (job status, attempts, messages, error) as it runs

        def watch() -> bool:
            current = queue.get(job.id or 0)
            assert current is not None
            seen.append((current.status, current.attempts, len(server.messages), current.last_error or ""))
            return len(server.messages) == 1 and sender.stats.sent == 1

        await run_until(sender, watch, timeout=15)
        done = JobQueue(store.engine).get(job.id or 0)
        row = service.ledger.get(held.id)
    finally:
        await channel.aclose()
        store.close()

    # Put back while the other door held it (queued, no attempt spent, nothing sent), then sent.
    postponed = ("queued", 0, 0, "its delivery was being sent by another process")
    assert postponed in seen and sender.stats.retried == 1
    assert done is not None and (done.status, done.attempts) == ("done", 1)
    assert (row.status, row.attempts) == ("sent", 2)
    assert [m.rcpt_tos for m in server.messages] == [["reader0@example.com"]]
    assert job.task == SEND_TASK
