"""DigestService against real parts: the store, the outbox Maildir and aiosmtpd on loopback."""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete

from bot.channels.base import OutgoingDigest, Receipt
from bot.channels.email import SmtpChannel
from bot.channels.outbox import OutboxChannel
from bot.channels.registry import ChannelRegistry
from bot.config import Settings, load_settings
from bot.delivery.confirmations import CONFIRM_TASK
from bot.delivery.service import SEND_TASK, DigestService
from bot.errors import DeliveryPermanentError
from bot.jobs.queue import JOBS, JobQueue
from bot.links.secret import resolve_secret
from bot.links.tokens import read_token, read_view_token
from bot.store import NewSource, Store
from bot.store.subscribers import SubscriberStore
from bot.subscribers.files import make_spec
from tests.channels.smtp_server import SmtpServer
from tests.delivery.helpers import NOW, article


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings)
    source = store.add_source(NewSource("Py Weekly", "https://py.example/feed")).id
    assert source
    store.save_entries(
        source, [article("a", "Python 3.14 is out", 2), article("b", "Django 6 ships", 3)], now=NOW
    )
    yield store
    store.close()


def add_reader(store: Store, email: str, *, status: str = "active") -> int:
    due = (NOW - timedelta(minutes=5)).strftime("%H:%M")
    spec = make_spec(email=email, name="Ada", timezone="UTC", delivery_time=due, topics=["python"])
    subscriber_id = SubscriberStore(store.engine).add(spec, status=status).id
    assert subscriber_id is not None
    return subscriber_id


def outbox_messages(folder: Path) -> list[mailbox.MaildirMessage]:
    return list(mailbox.Maildir(folder / "mail", create=False))


async def test_digest_is_sent_once_and_its_articles_never_again(store: Store, settings: Settings) -> None:
    reader = add_reader(store, "ada@example.com")
    service = DigestService(store, settings, OutboxChannel(settings.outbox_dir, settings=settings.email))
    assert service.plan_due() == 1 and service.plan_due() == 0  # one job per subscriber and period
    period = NOW.strftime("%Y-%m-%d")
    first = await service.send(reader, period)
    assert (first.status, first.items) == ("sent", 2)
    again = await service.send(reader, period)
    assert again.status == "already-sent"
    assert len(outbox_messages(settings.outbox_dir)) == 1
    assert service.ledger.sent_article_ids(reader) == {a.id for a, _ in store.list_articles()}
    tomorrow = await service.send(reader, "next-period")
    assert tomorrow.status == "skipped" and "already sent" in tomorrow.detail


async def test_the_digest_links_itself_in_the_browser_and_the_ledger_keeps_its_order(
    store: Store, settings: Settings
) -> None:
    reader = add_reader(store, "ada@example.com")
    service = DigestService(store, settings, OutboxChannel(settings.outbox_dir, settings=settings.email))
    period = NOW.strftime("%Y-%m-%d")

    await service.send(reader, period)

    [message] = outbox_messages(settings.outbox_dir)
    body = message.get_payload(0).get_payload(decode=True).decode()
    link = re.search(r"View in browser: https?://\S+/d/(\S+)", body)
    assert link is not None
    assert read_view_token(resolve_secret(settings), link.group(1)) == (reader, period)
    sent = service.ledger.sent_digest(reader, period)
    assert sent is not None
    titles = [a.title for a in store.articles_by_ids(sent.article_ids)]
    assert body.index(titles[0]) < body.index(titles[1])  # the row's order is the mail's


async def test_pending_reader_gets_one_confirmation_with_a_working_link(
    store: Store, settings: Settings
) -> None:
    reader = add_reader(store, "new@example.com", status="pending")
    service = DigestService(store, settings, OutboxChannel(settings.outbox_dir, settings=settings.email))
    service.plan_due()
    tasks = {
        job.task
        for job in JobQueue(store.engine).claim(
            "t", now=datetime.now(UTC) + timedelta(seconds=1), lease=timedelta(minutes=1), limit=10
        )
    }
    assert tasks == {CONFIRM_TASK}  # no digest before the reader confirms
    assert await service.send_confirmation(reader) is True
    assert await service.send_confirmation(reader) is False
    with store.engine.begin() as conn:  # the finished job pruned: the planner would make it anew
        conn.execute(delete(JOBS))
    assert service.plan_due() == 0  # the mail went: nothing owed, no job each minute
    [message] = outbox_messages(settings.outbox_dir)
    assert message["List-Unsubscribe"] is None
    body = message.get_payload(0).get_payload(decode=True).decode()
    link = re.search(r"https?://\S+/confirm/(\S+)", body)
    assert link is not None
    token = link.group(1).rstrip(".>)")
    assert read_token(resolve_secret(settings), token, purpose="confirm", max_age=None, now=NOW) == reader


async def test_three_permanent_failures_mark_the_reader_bouncing(store: Store, tmp_path: Path) -> None:
    with SmtpServer() as server:
        server.rcpt_replies["gone@example.com"] = "550 5.1.1 no such user"
        settings = load_settings(
            {
                "FLARESTART_DATA_DIR": str(tmp_path / "data"),
                "SMTP_URL": server.url(),
                "FLARESTART_EMAIL_ALLOW_PLAIN": "1",
            }
        )
        reader = add_reader(store, "gone@example.com")
        channel = SmtpChannel(settings.email)
        service = DigestService(store, settings, channel)
        try:
            for day in ("2026-11-25", "2026-11-26", "2026-11-27"):
                with pytest.raises(DeliveryPermanentError, match="550"):
                    await service.send(reader, day)
        finally:
            await channel.aclose()
    subscriber = SubscriberStore(store.engine).get(reader)
    assert subscriber.status == "bouncing"
    assert {d.status for d in service.ledger.list(subscriber_id=reader)} == {"failed"}
    assert service.plan_due() == 0  # a bouncing reader is not planned again


def test_plan_due_enqueues_exactly_one_job_per_due_subscriber_and_period(
    store: Store, settings: Settings
) -> None:
    clock = datetime(2026, 11, 27, 7, 30, tzinfo=UTC)  # a Friday
    subscribers = SubscriberStore(store.engine)

    def reader(email: str, *, status: str = "active", **fields: object) -> int:
        values = {"email": email, "timezone": "UTC", "delivery_time": "07:00", **fields}
        subscriber_id = subscribers.add(values, status=status).id
        assert subscriber_id is not None
        return subscriber_id

    due = [reader(f"due{n}@example.com") for n in range(30)]  # one schedule shared by many
    due += [
        reader("tokyo@example.com", timezone="Asia/Tokyo", delivery_time="16:00"),  # 16:30 there
        reader("weekly@example.com", frequency="weekly:fri", delivery_time="06:00"),
        reader("late@example.com", delivery_time="02:00"),  # 5.5 h late: within the catch-up
    ]
    reader("early@example.com", delivery_time="09:00")  # not yet
    reader("missed@example.com", delivery_time="00:30")  # 7 h late: beyond the 6 h catch-up
    reader("monday@example.com", frequency="weekly:mon")  # not today
    reader("paused@example.com", status="paused")
    reader("bouncing@example.com", status="bouncing")
    pending = reader("pending@example.com", status="pending")
    service = DigestService(
        store, settings, OutboxChannel(settings.outbox_dir, settings=settings.email), clock=lambda: clock
    )

    created = service.plan_due()
    again = service.plan_due()

    jobs = JobQueue(store.engine).claim(
        "t", now=clock + timedelta(days=1), lease=timedelta(minutes=1), limit=100
    )
    sends = sorted(
        (job for job in jobs if job.task == SEND_TASK), key=lambda job: job.payload["subscriber_id"]
    )
    assert (created, again) == (len(due) + 1, 0)
    assert [job.payload["subscriber_id"] for job in sends] == sorted(due)
    assert [dict(job.payload) for job in jobs if job.task == CONFIRM_TASK] == [{"subscriber_id": pending}]
    for job in sends:  # the same payload as one subscriber at a time would get
        subscriber = subscribers.get(int(job.payload["subscriber_id"]))
        period = service.due(subscriber, clock)
        assert period is not None
        assert dict(job.payload) == {
            "subscriber_id": subscriber.id,
            "period": period.period,
            "window_start": period.window_start.isoformat(),
            "window_end": period.window_end.isoformat(),
        }
    assert {job.payload["period"] for job in sends} == {"2026-11-27", "2026-W48"}


async def test_each_send_goes_through_the_channel_the_registry_gives_for_the_destination(
    store: Store, settings: Settings
) -> None:
    sent: list[str] = []

    class Recording:
        name = "recording"

        async def send(self, message: OutgoingDigest) -> Receipt:
            sent.append(message.to_address)
            return Receipt(self.name, message.to_address, message.message_id)

        async def aclose(self) -> None:
            pass

    reader = add_reader(store, "ada@example.com")
    service = DigestService(store, settings, ChannelRegistry.serving(Recording()))
    assert service.plan_due() == 1
    period = NOW.strftime("%Y-%m-%d")

    result = await service.send(reader, period)

    assert result.status == "sent" and sent == ["ada@example.com"]
    [row] = service.ledger.list()
    assert (row.channel, row.status) == ("recording", "sent")
    assert not settings.outbox_dir.exists()  # the outbox was never the channel


def test_the_candidate_pool_is_rebuilt_once_new_articles_are_stored(settings: Settings) -> None:
    """The drafting process builds its pool as `run` starts, before the first fetch has stored
    anything: a digest drafted within the pool's lifetime must still see what arrived since."""
    store = Store.open(settings)
    source = store.add_source(NewSource("Py Weekly", "https://py.example/feed")).id
    assert source
    service = DigestService(store, settings, OutboxChannel(settings.outbox_dir, settings=settings.email))
    empty = service.current_composer(NOW)
    assert empty.articles == {}
    assert service.current_composer(NOW) is empty  # nothing arrived: the pool is kept

    store.save_entries(source, [article("fresh", "Python story just fetched", 0.5)], now=NOW)
    rebuilt = service.current_composer(NOW)
    assert rebuilt is not empty
    assert [a.title for a in rebuilt.articles.values()] == ["Python story just fetched"]
