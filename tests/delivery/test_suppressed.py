"""A suppressed address is never mailed, whoever sends: the check is at the claim itself
(`DeliveryLedger.begin`), so a job planned before the unsubscribe, `send --now` and a row made
anew after a suppression all send nothing. A hard bounce suppresses the address. On SQLite and
PostgreSQL, against aiosmtpd on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import FlareStart
from bot.channels.email import SmtpChannel
from bot.config import Settings, load_settings
from bot.delivery.batch import BatchSender
from bot.delivery.service import DigestService
from bot.errors import DeliveryPermanentError
from bot.store.suppressions import SuppressionStore
from bot.store.types import utcnow
from tests.channels.smtp_server import SmtpServer
from tests.delivery.helpers import add_readers, jobs_by_status, run_until, stocked_store


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


async def test_a_job_planned_before_the_suppression_sends_nothing(
    database_url: str, tmp_path: Path, server: SmtpServer
) -> None:
    settings = settings_for(database_url, tmp_path, server)
    store = stocked_store(settings)
    channel = SmtpChannel(settings.email)
    try:
        add_readers(store, 2)
        service = DigestService(store, settings, channel)
        assert service.plan_due() == 2  # both planned while reader0 was still subscribed
        # The subscriber row stays active (a file's row, say); only the address is suppressed.
        SuppressionStore(store.engine).add("Reader0@example.com", "unsubscribed", now=utcnow())
        sender = BatchSender(service, worker_id="run", poll_interval=0.02)
        await run_until(sender, lambda: jobs_by_status(store) == {"done": 2})
        rows = {row.subscriber_id: row.status for row in service.ledger.list()}
    finally:
        await channel.aclose()
        store.close()
    assert [m.rcpt_tos for m in server.messages] == [["reader1@example.com"]]
    assert sender.stats.sent == 1
    assert "sent" not in [status for sid, status in rows.items() if sid == 1]


def test_send_now_to_a_suppressed_address_sends_nothing_and_records_nothing(
    database_url: str, tmp_path: Path, server: SmtpServer
) -> None:
    settings = settings_for(database_url, tmp_path, server)
    stocked_store(settings).close()
    with FlareStart(settings, seed=False) as app:
        reader = add_readers(app.store, 1)[0]
        app.suppressions.add("reader0@example.com", "operator", now=app.now(), note="asked by phone")
        outcome = app.send(reader, force=True)
        rows = app.list_deliveries(subscriber="reader0@example.com").rows
    assert (outcome.result.status, outcome.result.detail) == (
        "skipped",
        "the address is suppressed (unsubscribed or bounced)",
    )
    assert server.messages == [] and rows == ()


async def test_a_hard_bounce_suppresses_the_address_beyond_its_row(
    database_url: str, tmp_path: Path, server: SmtpServer
) -> None:
    server.rcpt_replies["gone0@example.com"] = "550 5.1.1 no such user"
    settings = settings_for(database_url, tmp_path, server, FLARESTART_DELIVERY_BOUNCE_LIMIT="1")
    store = stocked_store(settings)
    channel = SmtpChannel(settings.email)
    try:
        (reader,) = add_readers(store, 1, prefix="gone")
        service = DigestService(store, settings, channel)
        with pytest.raises(DeliveryPermanentError, match="550"):
            await service.send(reader, "2026-11-27")
        found = SuppressionStore(store.engine).get("gone0@example.com")
        assert found is not None and (found.reason, found.source) == ("hard_bounce", "delivery")
        assert "550 5.1.1 no such user" in found.note

        # The row goes, and comes back active (an operator re-adds it): the address stays suppressed.
        service.subscribers.remove(reader)
        (again,) = add_readers(store, 1, prefix="gone")
        assert service.plan_due() == 0
        result = await service.send(again, "2026-11-28")
    finally:
        await channel.aclose()
        store.close()
    assert result.status == "skipped" and "suppressed" in result.detail
    assert len(server.messages) == 0
