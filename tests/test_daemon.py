"""`flarestart run` as a real process: fetches, sends due digests to the outbox, survives offline
sources, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import mailbox
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from bot.config import Settings
from bot.testing.httpserver import FixtureServer, static

FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Daemon feed</title>
<item><title>Python 3.14 released with a faster interpreter</title><link>https://d.example/py</link>
<guid>1</guid><category>Python</category><description>The CPython team ships a release.</description>
</item></channel></rss>"""


def _wait_for(check: object, timeout: float = 40.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return True
        except (sqlite3.OperationalError, FileNotFoundError, mailbox.NoSuchMailboxError):
            pass  # schema or folder not created yet
        time.sleep(0.2)
    return False


def test_run_fetches_sends_the_due_digest_and_stops_cleanly(
    tmp_path: Path, feed_server: FixtureServer
) -> None:
    url = feed_server.add("/feed.xml", static(FEED))
    readers = tmp_path / "subscribers"
    readers.mkdir()
    due = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%H:%M")
    (readers / "team.toml").write_text(
        f'[[subscriber]]\nemail = "ada@example.com"\nname = "Ada"\ntimezone = "UTC"\n'
        f'delivery_time = "{due}"\ntopics = ["python"]\n',
        encoding="utf-8",
    )
    config = tmp_path / "flarestart.toml"
    config.write_text(
        f'subscribers_dir = "{readers}"\n'
        f'[[sources]]\nname = "Local"\nurl = "{url}"\n'
        '[[sources]]\nname = "Offline"\nurl = "http://127.0.0.1:9/feed"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "FLARESTART_CONFIG": str(config), "FLARESTART_DATA_DIR": str(tmp_path / "data")}
    env.pop("DATABASE_URL", None)
    env.pop("SMTP_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    maildir = tmp_path / "data" / "outbox" / "mail"
    try:
        assert _wait_for(lambda: len(mailbox.Maildir(maildir, create=False)) == 1), "no digest in the outbox"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    [message] = mailbox.Maildir(maildir, create=False)
    assert message["To"] == "Ada <ada@example.com>"
    assert "Python 3.14 released" in message.as_string()
    assert "source=Offline" in err and "fetch failed" in err
    assert "stopped" in err and "Traceback" not in err
    with sqlite3.connect(tmp_path / "data" / "flarestart.db") as conn:
        assert conn.execute("SELECT status FROM deliveries").fetchall() == [("sent",)]


async def test_the_fetch_loop_outlives_a_database_that_goes_away(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A PostgreSQL restart under `run` (bench/chaos.py's pg phase) failed a fetch cycle, and the
    daemon exited with it; now the cycle's failure is logged and the loop tries again."""
    import bot.daemon as daemon
    from bot.store import Store
    from bot.store.types import utcnow

    monkeypatch.setattr(daemon, "FAILED_CYCLE_WAIT", 0.05)
    store = Store.open(settings)
    calls: list[int] = []
    real = store.sources_due

    def away_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT sources", {}, ConnectionRefusedError("the server restarts"))
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "sources_due", away_once)
    stop, ready = asyncio.Event(), asyncio.Event()
    loop = asyncio.create_task(daemon._fetch_loop(store, settings, stop, utcnow, 0.05, ready))
    try:
        for _ in range(200):
            if len(calls) >= 2 and ready.is_set():
                break
            await asyncio.sleep(0.02)
        stop.set()
        cycles = await asyncio.wait_for(loop, 10)
    finally:
        store.close()
    assert len(calls) >= 2 and cycles >= 1
    assert "fetch cycle failed; trying again" in caplog.text


def test_run_sends_a_slack_channels_digest_beside_the_email_one(
    tmp_path: Path, feed_server: FixtureServer
) -> None:
    """The same planner, jobs and sender serve a Slack channel from a subscriber file: the worker
    asks the registry for the channel, the digest lands in the (fake) Slack channel once."""
    from bot.testing.fake_slack import FakeSlack, seen

    url = feed_server.add("/feed.xml", static(FEED))
    readers = tmp_path / "subscribers"
    readers.mkdir()
    due = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%H:%M")
    (readers / "team.toml").write_text(
        f'[[subscriber]]\nemail = "ada@example.com"\ndelivery_time = "{due}"\ntopics = ["python"]\n\n'
        f'[[subscriber]]\nname = "Team"\nslack = {{ channel = "C0DAEMON1" }}\ndelivery_time = "{due}"\n'
        'topics = ["python"]\n',
        encoding="utf-8",
    )
    config = tmp_path / "flarestart.toml"
    config.write_text(
        f'subscribers_dir = "{readers}"\n[[sources]]\nname = "Local"\nurl = "{url}"\n', encoding="utf-8"
    )
    with FakeSlack(token="xoxb-daemon", rate_limit=False) as slack:
        slack.add_channel("C0DAEMON1")
        env = {
            **os.environ,
            "FLARESTART_CONFIG": str(config),
            "FLARESTART_DATA_DIR": str(tmp_path / "data"),
            "SLACK_BOT_TOKEN": "xoxb-daemon",
            "FLARESTART_SLACK_API_URL": slack.api_url,
        }
        env.pop("DATABASE_URL", None)
        env.pop("SMTP_URL", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        maildir = tmp_path / "data" / "outbox" / "mail"
        try:
            assert _wait_for(lambda: len(slack.history("C0DAEMON1")) == 1), "no digest in the Slack channel"
            assert _wait_for(lambda: len(mailbox.Maildir(maildir, create=False)) == 1), (
                "no digest in the outbox"
            )
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=40)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, err
        [message] = slack.history("C0DAEMON1")
        assert "Python 3.14 released" in seen(message).text
    with sqlite3.connect(tmp_path / "data" / "flarestart.db") as conn:
        rows = conn.execute("SELECT channel, status FROM deliveries ORDER BY channel").fetchall()
    assert rows == [("outbox", "sent"), ("slack", "sent")]


def test_run_posts_a_discord_channels_digest_once_and_records_its_parts(
    tmp_path: Path, feed_server: FixtureServer
) -> None:
    from bot.testing.fake_discord import FakeDiscord

    url = feed_server.add("/feed.xml", static(FEED))
    readers = tmp_path / "subscribers"
    readers.mkdir()
    due = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%H:%M")
    (readers / "community.toml").write_text(
        f'[[subscriber]]\nname = "Community"\ndiscord = {{ channel = "770000000000000001" }}\n'
        f'timezone = "UTC"\ndelivery_time = "{due}"\ntopics = ["python"]\n',
        encoding="utf-8",
    )
    config = tmp_path / "flarestart.toml"
    config.write_text(
        f'subscribers_dir = "{readers}"\n[[sources]]\nname = "Local"\nurl = "{url}"\n', encoding="utf-8"
    )
    with FakeDiscord(token="daemon-bot") as discord:
        discord.add_channel("770000000000000001")
        env = {
            **os.environ,
            "FLARESTART_CONFIG": str(config),
            "FLARESTART_DATA_DIR": str(tmp_path / "data"),
            "DISCORD_BOT_TOKEN": "daemon-bot",
            "FLARESTART_DISCORD_API_URL": discord.api_url,
        }
        env.pop("DATABASE_URL", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert _wait_for(lambda: len(discord.history("770000000000000001")) == 1), "nothing posted"
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=40)
        finally:
            if process.poll() is None:
                process.kill()
        [message] = discord.history("770000000000000001")
    assert process.returncode == 0, err
    assert "Python 3.14 released" in message["embeds"][0]["title"].replace("\\", "")
    with sqlite3.connect(tmp_path / "data" / "flarestart.db") as conn:
        assert conn.execute("SELECT status, channel FROM deliveries").fetchall() == [("sent", "discord")]
        parts = conn.execute("SELECT part, ref FROM delivery_parts ORDER BY part").fetchall()
        assert parts == [(0, ""), (1, message["id"])]  # the "begun" mark, then the posted part
