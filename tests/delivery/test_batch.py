"""The daemon's send path: BatchSender against the store and aiosmtpd on loopback.

What it must keep from DigestService.send under a Worker: one digest per due subscriber and period,
nothing sent for inactive readers, quiet periods or rows already sent, the ledger moved the same
way, failures retried or failed the same way; and what it adds: batches, drafting elsewhere, and
jobs it never started given back on stop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from bot.channels.email import SmtpChannel, message_bytes
from bot.config import Settings, load_settings
from bot.delivery.batch import BatchSender
from bot.delivery.drafts import DraftProcess, DraftRequest, InlineDrafts
from bot.delivery.service import DigestService
from bot.store import Store
from bot.store.subscribers import SubscriberStore
from tests.channels.smtp_server import SmtpServer
from tests.delivery.helpers import NOW, add_readers, all_jobs, jobs_by_status, run_until, stocked_store


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as smtp:
        yield smtp


@pytest.fixture
def smtp_settings(tmp_path: Path, server: SmtpServer) -> Settings:
    return load_settings(
        {
            "FLARESTART_DATA_DIR": str(tmp_path / "data"),
            "SMTP_URL": server.url(),
            "FLARESTART_EMAIL_ALLOW_PLAIN": "1",
            "FLARESTART_DELIVERY_WORKERS": "3",
        }
    )


@pytest.fixture
def store(smtp_settings: Settings) -> Iterator[Store]:
    store = stocked_store(smtp_settings, stories=6)
    yield store
    store.close()


def make_sender(service: DigestService, **options: object) -> BatchSender:
    options.setdefault("poll_interval", 0.02)
    options.setdefault("backoff", lambda job: timedelta(minutes=5))
    return BatchSender(service, worker_id="sender-test", **options)  # type: ignore[arg-type]


async def test_every_due_digest_is_sent_once_and_recorded(
    store: Store, smtp_settings: Settings, server: SmtpServer
) -> None:
    readers = add_readers(store, 23)
    quiet = add_readers(store, 1, prefix="rust", topics={"rust": 1.0})  # nothing matches: a quiet day
    paused = add_readers(store, 1, prefix="paused")
    channel = SmtpChannel(smtp_settings.email)
    service = DigestService(store, smtp_settings, channel)
    assert service.plan_due() == 25
    SubscriberStore(store.engine).set_status(paused[0], "paused", now=NOW)  # after planning
    due = service.due(SubscriberStore(store.engine).get(readers[0]), NOW)
    assert due is not None
    already = service.ledger.begin(readers[0], due.period, "email", now=NOW)  # sent by someone else
    service.ledger.mark_sent(already.id, message_id="<earlier@x>", article_ids=[], now=NOW)
    sender = make_sender(service, batch=7)  # several batches

    try:
        await run_until(sender, lambda: jobs_by_status(store) == {"done": 25})
    finally:
        await channel.aclose()

    received = sorted(to for message in server.messages for to in message.rcpt_tos)
    assert received == sorted(f"reader{n}@example.com" for n in range(1, 23))
    assert len({message.message()["Message-ID"] for message in server.messages}) == 22
    counts = service.ledger.counts()
    assert (counts["sent"], counts["skipped"], counts["sending"], counts["pending"]) == (23, 1, 0, 0)
    [skipped] = service.ledger.list(status="skipped")
    assert skipped.subscriber_id == quiet[0] and skipped.last_error
    assert service.ledger.list(subscriber_id=paused[0]) == []  # not begun for an inactive reader
    assert all(service.ledger.sent_article_ids(r) for r in readers[1:])
    assert (sender.stats.claimed, sender.stats.sent, sender.stats.skipped) == (25, 22, 3)
    assert sender.stats.lost == sender.stats.retried == sender.stats.failed == 0


async def test_failures_retry_or_fail_as_the_worker_would(
    store: Store, smtp_settings: Settings, server: SmtpServer
) -> None:
    [ok, gone, busy] = add_readers(store, 3)
    server.rcpt_replies["reader1@example.com"] = "550 5.1.1 no such user"
    server.rcpt_replies["reader2@example.com"] = "421 4.7.0 try again later"
    channel = SmtpChannel(smtp_settings.email)
    service = DigestService(store, smtp_settings, channel)
    service.plan_due()
    sender = make_sender(service)

    try:
        await run_until(sender, lambda: jobs_by_status(store) == {"done": 1, "failed": 1, "queued": 1})
    finally:
        await channel.aclose()

    jobs = {int(job.payload["subscriber_id"]): job for job in all_jobs(store)}
    assert (jobs[ok].status, jobs[gone].status, jobs[busy].status) == ("done", "failed", "queued")
    assert jobs[busy].attempts == 1 and jobs[busy].run_at > NOW  # backed off
    assert "550" in (jobs[gone].last_error or "") and "421" in (jobs[busy].last_error or "")
    states = {d.subscriber_id: (d.status, d.last_error) for d in service.ledger.list()}
    assert states[ok][0] == "sent"
    assert states[gone][0] == "failed" and "550" in (states[gone][1] or "")
    assert states[busy][0] == "pending" and "421" in (states[busy][1] or "")
    assert SubscriberStore(store.engine).get(gone).consecutive_bounces == 1
    assert (sender.stats.sent, sender.stats.failed, sender.stats.retried) == (1, 1, 1)


async def test_stopping_gives_back_the_jobs_it_never_started(
    store: Store, smtp_settings: Settings, server: SmtpServer
) -> None:
    add_readers(store, 40)
    server.data_delay = 0.05  # a slow server: most jobs are still waiting when the stop comes
    channel = SmtpChannel(smtp_settings.email)
    service = DigestService(store, smtp_settings, channel)
    service.plan_due()
    sender = make_sender(service, batch=40)

    try:
        await run_until(sender, lambda: len(server.messages) >= 3)
    finally:
        await channel.aclose()

    jobs = jobs_by_status(store)
    counts = service.ledger.counts()
    assert counts["sending"] == 0, "a send was left half-recorded"
    assert jobs["done"] == counts["sent"] == len(server.messages) == sender.stats.sent
    assert jobs.get("queued", 0) == sender.stats.released == 40 - jobs["done"]
    queued = [job for job in all_jobs(store) if job.status == "queued"]
    assert all(job.attempts == 0 and job.locked_by is None for job in queued)


async def test_a_draft_is_the_same_in_the_drafting_process(store: Store, smtp_settings: Settings) -> None:
    readers = add_readers(store, 3)
    service = DigestService(store, smtp_settings, SmtpChannel(smtp_settings.email))
    records = service.subscribers.records(readers)
    requests = [
        DraftRequest(n, records[r], "2026-11-27", timedelta(days=1), frozenset())
        for n, r in enumerate(readers)
    ]
    requests.append(
        DraftRequest(9, records[readers[0]], "2026-11-27", timedelta(days=1), frozenset(range(99)))
    )
    process = DraftProcess(smtp_settings, {"email": "email"})
    try:
        elsewhere = await process.draft(requests, NOW)
    finally:
        process.close()
    here = await InlineDrafts(service).draft(requests, NOW)

    assert elsewhere == here
    assert [d.outgoing is not None for d in here] == [True, True, True, False]
    assert here[3].empty_reason and here[0].article_ids
    # The message is encoded where it is drafted: what the sender hands over is message_bytes'
    # output for that digest, Date being the drafting time.
    first = here[0].outgoing
    assert first is not None and first.wire is not None
    assert first.wire == message_bytes(dataclasses.replace(first, wire=None), smtp_settings.email, now=NOW)
    assert b"Date: " + format_datetime(NOW).encode() in first.wire


class SlowCommits(BatchSender):
    """A sender whose database answers slowly (a busy disk, a far PostgreSQL) when a lane commits
    its last send alone, and whose producer takes a moment to claim and draft."""

    async def _commit(self, sent: Any, ready: Any) -> Any:
        if ready is None:
            await asyncio.sleep(0.15)
        return await super()._commit(sent, ready)

    async def _claim(self) -> bool:
        await asyncio.sleep(0.03)
        return await super()._claim()


async def test_a_batch_readied_while_every_lane_commits_is_still_sent(
    store: Store, smtp_settings: Settings, server: SmtpServer
) -> None:
    # Every lane runs dry and commits its last send, and meanwhile the producer readies the next
    # batch: the lanes must find it when their commits return, not sleep for ever (they did, and
    # the daemon stalled with a full batch ready and its leases kept alive).
    add_readers(store, 9)
    channel = SmtpChannel(smtp_settings.email)
    service = DigestService(store, smtp_settings, channel)
    assert service.plan_due() == 9
    assert smtp_settings.delivery.workers == 3
    sender = SlowCommits(service, worker_id="sender-test", batch=3, poll_interval=0.02)

    try:
        await run_until(sender, lambda: jobs_by_status(store) == {"done": 9}, timeout=10)
    finally:
        await channel.aclose()

    assert len(server.messages) == 9 and sender.stats.sent == 9


async def test_two_senders_on_one_database_send_every_digest_once(
    database_url: str, tmp_path: Path, server: SmtpServer
) -> None:
    # Two workers (each its own Store and engine, as two `flarestart run` processes have) drain
    # one queue: claims never overlap, so every digest goes out once and both take a share.
    settings = load_settings(
        {
            "FLARESTART_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": database_url,
            "SMTP_URL": server.url(),
            "FLARESTART_EMAIL_ALLOW_PLAIN": "1",
            "FLARESTART_DELIVERY_WORKERS": "3",
        }
    )
    stores = [stocked_store(settings, stories=6), Store.open(settings)]
    add_readers(stores[0], 40)
    channels = [SmtpChannel(settings.email), SmtpChannel(settings.email)]
    services = [
        DigestService(store, settings, channel) for store, channel in zip(stores, channels, strict=True)
    ]
    assert services[0].plan_due() == 40
    senders = [
        BatchSender(service, worker_id=f"sender-{n}", batch=5, poll_interval=0.02)
        for n, service in enumerate(services)
    ]

    stop = asyncio.Event()
    runs = [asyncio.create_task(sender.run(stop)) for sender in senders]
    try:
        deadline = time.monotonic() + 30
        while jobs_by_status(stores[0]) != {"done": 40}:
            assert time.monotonic() < deadline, jobs_by_status(stores[0])
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*runs)
        for channel in channels:
            await channel.aclose()
        for store in stores:
            store.close()

    received = sorted(to for message in server.messages for to in message.rcpt_tos)
    assert received == sorted(f"reader{n}@example.com" for n in range(40))
    assert sum(s.stats.sent for s in senders) == 40 and all(s.stats.sent > 0 for s in senders)
    assert all(s.stats.lost == 0 for s in senders)
