"""The README's path to a first real inbox: `send --test` through a real SMTP server (aiosmtpd on
loopback), plain SMTP refused unless email.allow_plain, and `run` warning about placeholders."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from bot import daemon
from bot.app import FlareStart
from bot.config import load_settings
from bot.testing.httpserver import FixtureServer, static
from tests.channels.smtp_server import SmtpServer
from tests.cli.conftest import Runner


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as smtp:
        yield smtp


def _feed() -> bytes:
    now = datetime.now(UTC)  # the articles are fresh whatever the date of the run
    items = "".join(
        f"<item><title>{title}</title><link>https://t.example/{n}</link><guid>t{n}</guid>"
        f"<pubDate>{format_datetime(now - timedelta(hours=n + 1), usegmt=True)}</pubDate>"
        f"<category>{topic}</category><description>About {topic}.</description></item>"
        for n, (title, topic) in enumerate(
            [("Python 3.14 ships a JIT", "python"), ("Rust 2027 edition plans", "rust")]
        )
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()
    )


@pytest.fixture
def fetched(cli: Runner, feed_server: FixtureServer) -> None:
    url = feed_server.add("/t.xml", static(_feed(), "application/rss+xml"))
    assert cli("sources", "add", url, "--name", "T").code == 0
    assert cli("fetch", "--all").code == 0


def _ledger_rows(data_dir: Path) -> tuple[int, int]:
    with sqlite3.connect(data_dir / "flarestart.db") as conn:
        deliveries = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        sent = conn.execute("SELECT count(*) FROM sent_articles").fetchone()[0]
    return int(deliveries), int(sent)


def test_send_test_mails_todays_sample_digest_and_records_nothing(
    cli: Runner, fetched: None, server: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_URL", server.url())
    monkeypatch.setenv("FLARESTART_EMAIL_ALLOW_PLAIN", "1")  # a local relay without TLS

    result = cli("send", "--test", "You@Example.com")

    assert result.code == 0, result.err
    assert result.out.startswith("Sent a test digest (2 items") and "Nothing was recorded" in result.out
    [message] = server.messages
    assert message.rcpt_tos == ["you@example.com"]
    parsed = message.message()
    assert parsed["Subject"].startswith("[test] ")
    body = parsed.as_string()
    assert (
        "Python 3.14 ships a JIT" in body and "Rust 2027 edition plans" in body
    )  # the day's best, every topic
    assert _ledger_rows(tmp_path / "data") == (0, 0)  # no delivery row, no sent articles
    # The defaults are still placeholders: said before sending, not after.
    assert "email.from_address is the placeholder" in result.err
    assert "1 Example Street" in result.err and "web.base_url" in result.err


def test_send_test_dry_run_and_json_send_nothing(
    cli: Runner, fetched: None, server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_URL", server.url())
    monkeypatch.setenv("FLARESTART_EMAIL_ALLOW_PLAIN", "1")

    dry = cli("send", "--test", "you@example.com", "--dry-run", "--json")

    assert dry.code == 0, dry.err
    report = dry.json()
    assert (report["status"], report["items"], report["recorded"]) == ("dry-run", 2, False)
    assert report["subject"].startswith("[test] ")
    assert server.messages == []


def test_plain_smtp_is_refused_without_allow_plain_in_one_line(
    cli: Runner, fetched: None, server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_URL", server.url())  # the server offers no STARTTLS

    result = cli("send", "--test", "you@example.com")

    assert result.code != 0
    assert "does not offer STARTTLS" in result.err and "email.allow_plain" in result.err
    assert "Traceback" not in result.err and server.messages == []


def test_send_needs_a_subscriber_or_test_and_not_both(cli: Runner) -> None:
    neither = cli("send")
    both = cli("send", "ada@example.com", "--test", "you@example.com")
    bad = cli("send", "--test", "not-an-address")

    assert neither.code == 2 and "--test ADDRESS" in neither.err
    assert both.code == 2 and "not both" in both.err
    assert bad.code == 2 and "--test: 'not-an-address' is not an email address" in bad.err


async def test_run_warns_at_start_while_placeholders_remain_with_smtp_set(
    tmp_path: Path, server: SmtpServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "drafting_for_this_machine", lambda: "inline")
    base = {
        "FLARESTART_DATA_DIR": str(tmp_path / "data"),
        "SMTP_URL": server.url(),
        "FLARESTART_EMAIL_ALLOW_PLAIN": "1",
    }
    real = {
        **base,
        "FLARESTART_EMAIL_FROM_ADDRESS": "Digest <digest@news.example.org>",
        "FLARESTART_EMAIL_POSTAL_ADDRESS": "News Ltd, 12 Harbour Road, Leith",
        "FLARESTART_WEB_BASE_URL": "https://news.example.org",
    }
    warnings = {}
    for name, env in (("placeholders", base), ("real", real)):
        settings = load_settings(env)
        app = FlareStart(settings)
        stop = asyncio.Event()
        stop.set()  # start, say what it says at start, stop
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="bot.daemon"):
            await daemon.run_daemon(app, stop=stop, max_sleep=0.1, poll_interval=0.02)
        app.close()
        warnings[name] = [r.getMessage() for r in caplog.records if r.name == "bot.daemon"]

    assert len(warnings["placeholders"]) == 3
    assert any("email.postal_address" in w and "1 Example Street" in w for w in warnings["placeholders"])
    assert any("web.base_url" in w and "localhost:8000" in w for w in warnings["placeholders"])
    assert warnings["real"] == []
