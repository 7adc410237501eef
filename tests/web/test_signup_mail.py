"""The sign-up mail as a job: committed with the pending subscriber, sent by `flarestart run`'s
worker (a real Worker here, mailing a real SMTP server on loopback), retried when the server
fails, sent once when a worker dies mid-way, and sent by `serve` itself when no worker took it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.channels.registry import registry_for
from bot.config import Settings
from bot.delivery.confirmations import CONFIRM_TASK
from bot.delivery.service import DigestService
from bot.jobs.queue import JOBS, JobQueue
from bot.jobs.worker import Worker, WorkerStats
from bot.store import Store
from bot.store.subscribers import SubscriberStore
from bot.web.app import create_app
from tests.channels.smtp_server import SmtpServer
from tests.web.conftest import running
from tests.web.test_public import NOW, Public, confirm_link


def mail_settings(settings: Settings, smtp: SmtpServer, **web: Any) -> Settings:
    return settings.model_copy(
        update={
            "email": settings.email.model_copy(update={"smtp_url": smtp.url(), "allow_plain": True}),
            "web": settings.web.model_copy(update=web),
        }
    )


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def no_standin(web_settings: Settings, smtp: SmtpServer) -> Iterator[tuple[Public, Settings]]:
    """The web app whose own sender waits an hour: only a worker sends the sign-up mails."""
    settings = mail_settings(web_settings, smtp, signup_mail_wait=3600.0)
    app = create_app(settings, clock=lambda: NOW)
    with running(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        store = app.state.store
        yield Public(client, url, store, SubscriberStore(store.engine), smtp), settings


def jobs(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(JOBS).where(JOBS.c.task == CONFIRM_TASK).order_by(JOBS.c.id)))


def settled_status(store: Store, timeout: float = 10.0) -> str:
    """The first confirmation job's status once it is no longer running (`timeout` at most)."""
    deadline = time.monotonic() + timeout
    while (status := str(jobs(store)[0].status)) == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    return status


async def run_worker(
    store: Store,
    settings: Settings,
    clock: Callable[[], datetime],
    done: Callable[[], bool],
    timeout: float = 10.0,
) -> WorkerStats:
    """`flarestart run`'s worker for the confirmation jobs, until `done()` (`timeout` at most)."""
    service = DigestService(store, settings, registry_for(settings), clock=clock)
    worker = Worker(
        service.queue,
        {CONFIRM_TASK: service.handle_confirm},
        settings=settings.delivery,
        clock=clock,
        poll_interval=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # time for a second mail, were one sent
    stop.set()
    stats = await task
    await service.channels.aclose()
    return stats


async def test_the_mail_is_a_job_committed_with_the_sign_up_and_the_worker_sends_it(
    no_standin: tuple[Public, Settings],
) -> None:
    public, settings = no_standin
    response = public.client.post("/subscribe", data=public.form(email="ada@example.com"))
    assert response.status_code == 200
    row = public.subscribers.get("ada@example.com")
    assert row.status == "pending"
    [job] = jobs(public.store)
    assert (job.status, job.unique_key, job.payload) == (
        "queued",
        f"{CONFIRM_TASK}:{row.id}:email",  # the planner's key: it makes no second job
        {"subscriber_id": row.id},
    )
    await asyncio.sleep(0.3)
    assert public.smtp.messages == []  # the web process sent nothing itself

    stats = await run_worker(public.store, settings, lambda: NOW, lambda: len(public.smtp.messages) >= 1)

    [mail] = [m.message() for m in public.smtp.messages]
    assert mail["To"].addresses[0].addr_spec == "ada@example.com"
    assert (stats.done, jobs(public.store)[0].status) == (1, "done")
    public.client.post(confirm_link(mail))  # the button in the mail
    assert public.subscribers.get("ada@example.com").status == "active"


async def test_a_known_address_gets_its_own_mail_job_each_time_it_signs_up(
    no_standin: tuple[Public, Settings],
) -> None:
    public, settings = no_standin
    public.subscribers.add({"email": "grace@example.com"}, status="active")
    public.client.post("/subscribe", data=public.form(email="grace@example.com"))

    [job] = jobs(public.store)
    assert job.payload["statuses"] == ["active", "paused", "bouncing", "pending"]
    assert job.unique_key.startswith(f"{CONFIRM_TASK}:") and ":confirm-" in job.unique_key
    await run_worker(public.store, settings, lambda: NOW, lambda: len(public.smtp.messages) >= 1)
    [mail] = public.smtp.messages
    assert mail.message()["To"].addresses[0].addr_spec == "grace@example.com"


async def test_a_mail_the_server_refused_for_now_is_retried_and_sent_once(
    no_standin: tuple[Public, Settings],
) -> None:
    public, settings = no_standin
    public.client.post("/subscribe", data=public.form(email="ada@example.com"))
    public.smtp.data_reply = "451 4.3.0 try again later"
    stats = await run_worker(public.store, settings, lambda: NOW, lambda: jobs(public.store)[0].attempts >= 1)
    [job] = jobs(public.store)
    assert (stats.retried, job.status, public.smtp.messages) == (1, "queued", [])
    assert job.run_at > NOW  # backed off

    public.smtp.data_reply = None
    later = NOW + timedelta(hours=1)
    stats = await run_worker(public.store, settings, lambda: later, lambda: len(public.smtp.messages) >= 1)
    assert stats.done == 1
    assert [m.message()["To"].addresses[0].addr_spec for m in public.smtp.messages] == ["ada@example.com"]


@pytest.mark.parametrize("sent_before_dying", [False, True])
async def test_a_worker_that_dies_mid_way_leaves_the_mail_to_the_next_sent_once(
    no_standin: tuple[Public, Settings], sent_before_dying: bool
) -> None:
    public, settings = no_standin
    public.client.post("/subscribe", data=public.form(email="ada@example.com"))
    lease = timedelta(seconds=settings.delivery.lease_seconds)
    [claimed] = JobQueue(public.store.engine).claim("dead-worker", now=NOW, lease=lease, tasks=[CONFIRM_TASK])
    if sent_before_dying:  # it sent the mail, and died before it could mark the job done
        service = DigestService(public.store, settings, registry_for(settings), clock=lambda: NOW)
        await service.handle_confirm(claimed)
        await service.channels.aclose()
        assert len(public.smtp.messages) == 1

    # Before the lease ends nobody takes the job over; after it, the next worker does.
    stats = await run_worker(public.store, settings, lambda: NOW + lease / 2, lambda: False, timeout=0.5)
    assert stats.claimed == 0
    after = NOW + lease + timedelta(seconds=1)
    stats = await run_worker(
        public.store, settings, lambda: after, lambda: jobs(public.store)[0].status == "done"
    )
    assert stats.done == 1
    assert [m.message()["To"].addresses[0].addr_spec for m in public.smtp.messages] == ["ada@example.com"]


def test_serve_sends_a_mail_itself_once_no_worker_took_it_in_time(
    web_settings: Settings, smtp: SmtpServer
) -> None:
    now = [NOW]
    settings = mail_settings(web_settings, smtp, signup_mail_wait=5.0)
    app = create_app(settings, clock=lambda: now[0])
    with running(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        store = app.state.store
        public = Public(client, url, store, SubscriberStore(store.engine), smtp)
        assert client.post("/subscribe", data=public.form(email="ada@example.com")).status_code == 200
        time.sleep(1.5)  # a poll of serve's sender or more: the job is not due for it yet
        assert smtp.messages == []
        now[0] = NOW + timedelta(seconds=6)
        [mail] = public.mails(1)
        assert mail["To"].addresses[0].addr_spec == "ada@example.com"
        assert settled_status(store) == "done"  # the sender marks the job once the SMTP session ends
