"""`flarestart send`, `deliveries list` and `preview --html`: one digest by hand, sent once.

With no SMTP_URL, digests go to the outbox Maildir in the data folder, so every test can read
exactly what was "sent".
"""

from __future__ import annotations

import mailbox
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from pathlib import Path

import pytest

from bot.subscribers.schedule import current_period
from bot.testing.httpserver import FixtureServer, static
from tests.cli.conftest import Runner

TITLES = (
    "Faster builds with <cargo> & friends",
    "Python packaging gets a lock file",
    "asyncio tips for busy services",
)


def _feed(now: datetime) -> bytes:
    items = "".join(
        f"<item><title>{title.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</title>"
        f"<link>https://loop.example/{n}</link><guid>loop-{n}</guid>"
        f"<pubDate>{format_datetime(now - timedelta(hours=n + 1), usegmt=True)}</pubDate>"
        f"<category>Python</category><description>Notes on Python number {n}.</description></item>"
        for n, title in enumerate(TITLES)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Loop</title>'
        f"<link>https://loop.example/</link>{items}</channel></rss>"
    ).encode()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"  # where the `cli` fixture keeps the database and the outbox


@pytest.fixture
def fetched(cli: Runner, feed_server: FixtureServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loopback source whose articles about Python are fetched and stored; all fit one digest."""
    monkeypatch.setenv("FLARESTART_RANKING_MAX_PER_SOURCE", str(len(TITLES)))
    url = feed_server.add("/feed.xml", static(_feed(datetime.now(UTC)), "application/rss+xml"))
    assert cli("sources", "add", url, "--name", "Loop", "--topics", "python").code == 0
    fetch = cli("fetch", "--all", "--json")
    assert fetch.code == 0 and fetch.json()[0]["new"] == len(TITLES), fetch.err


def _add_subscriber(cli: Runner, email: str, *, hours_from_now: float) -> None:
    """A daily reader in UTC whose delivery time is `hours_from_now` away (negative: passed)."""
    at = datetime.now(UTC) + timedelta(hours=hours_from_now)
    added = cli("subscribers", "add", email, "--name", "Ada", "--topics", "python", "--time", f"{at:%H:%M}")
    assert added.code == 0, added.err


def _outbox(data_dir: Path) -> list[EmailMessage]:
    folder = data_dir / "outbox" / "mail"
    if not folder.exists():
        return []
    box = mailbox.Maildir(folder, create=False)
    parsed = [BytesParser(policy=policy.default).parsebytes(box.get_bytes(key)) for key in box.iterkeys()]
    return [message for message in parsed if isinstance(message, EmailMessage)]


def _body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None, f"no text/{kind} part"
    return str(part.get_content())


def test_send_writes_one_message_and_the_ledger_shows_it_sent(
    cli: Runner, fetched: None, data_dir: Path
) -> None:
    _add_subscriber(cli, "ada@example.com", hours_from_now=-1)

    result = cli("send", "ada@example.com")

    assert result.code == 0, result.err
    assert result.out.startswith("Sent ada@example.com's digest") and "outbox" in result.out
    messages = _outbox(data_dir)
    assert len(messages) == 1
    assert messages[0]["To"].addresses[0].addr_spec == "ada@example.com"
    assert "asyncio tips for busy services" in _body(messages[0], "plain")
    rows = cli("deliveries", "list", "--json").json()
    assert [(r["subscriber"], r["status"], r["channel"], r["attempts"]) for r in rows] == [
        ("ada@example.com", "sent", "outbox", 1)
    ]
    assert rows[0]["sent_at"] is not None and rows[0]["last_error"] is None
    table = cli("deliveries", "list")
    assert table.code == 0 and "ada@example.com" in table.out and "1 sent" in table.out


def test_a_second_send_says_already_sent_and_writes_nothing(
    cli: Runner, fetched: None, data_dir: Path
) -> None:
    _add_subscriber(cli, "ada@example.com", hours_from_now=-1)
    assert cli("send", "ada@example.com").code == 0

    again = cli("send", "ada@example.com")

    assert again.code == 0, again.err
    assert again.out.startswith("Already sent: ada@example.com's digest")
    assert len(_outbox(data_dir)) == 1
    assert len(cli("deliveries", "list", "--json").json()) == 1


def test_dry_run_composes_but_writes_nothing(cli: Runner, fetched: None, data_dir: Path) -> None:
    _add_subscriber(cli, "ada@example.com", hours_from_now=-1)

    result = cli("send", "ada@example.com", "--dry-run", "--json")

    assert result.code == 0, result.err
    report = result.json()
    assert (report["status"], report["items"]) == ("dry-run", len(TITLES))
    assert report["subject"] and report["channel"] == "outbox"
    assert _outbox(data_dir) == []
    assert cli("deliveries", "list", "--json").json() == []


def test_nothing_due_exits_1_with_the_next_time_unless_now(
    cli: Runner, fetched: None, data_dir: Path
) -> None:
    _add_subscriber(cli, "ada@example.com", hours_from_now=3)
    next_time = f"{datetime.now(UTC) + timedelta(hours=3):%H:%M}"

    early = cli("send", "ada@example.com")

    assert early.code == 1
    assert "error: nothing due for ada@example.com" in early.err and next_time in early.err
    assert "--now" in early.err
    assert _outbox(data_dir) == []

    forced = cli("send", "ada@example.com", "--now")
    assert forced.code == 0, forced.err
    assert forced.out.startswith("Sent") and len(_outbox(data_dir)) == 1


def test_unknown_subscriber_is_one_line_with_a_hint(cli: Runner, fetched: None) -> None:
    _add_subscriber(cli, "ada@example.com", hours_from_now=-1)

    result = cli("send", "ada@exmaple.com")

    assert result.code == 3
    assert result.err.count("\n") == 1
    assert "no subscriber 'ada@exmaple.com'" in result.err and "did you mean 'ada@example.com'" in result.err


def test_deliveries_list_refuses_an_unknown_status(cli: Runner) -> None:
    result = cli("deliveries", "list", "--status", "lost")
    assert result.code == 2 and "expected one of pending, sending, sent, failed, skipped" in result.err


def test_preview_html_writes_the_digest_with_titles_escaped(
    cli: Runner, fetched: None, tmp_path: Path
) -> None:
    _add_subscriber(cli, "ada@example.com", hours_from_now=-1)
    out = tmp_path / "ada.html"

    result = cli("preview", "ada@example.com", "--html", str(out))

    assert result.code == 0, result.err
    assert f"to {out}" in result.out
    html = out.read_text(encoding="utf-8")
    assert "Faster builds with &lt;cargo&gt; &amp; friends" in html
    assert "<cargo>" not in html
    assert "Python packaging gets a lock file" in html


def test_preview_html_with_topics_uses_a_stand_in_reader(cli: Runner, fetched: None, tmp_path: Path) -> None:
    out = tmp_path / "topics.html"

    result = cli("preview", "--topics", "python", "--html", str(out))

    assert result.code == 0, result.err
    assert "preview@example.com" in result.out
    assert "asyncio tips for busy services" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("frequency", "day", "expected"),
    [
        ("daily", date(2026, 11, 28), "2026-11-28"),
        ("weekdays", date(2026, 11, 27), "2026-11-27"),
        ("weekdays", date(2026, 11, 28), None),  # a Saturday
        ("weekly:mon", date(2026, 11, 27), "2026-W48"),  # any day of the week, not only Monday
    ],
)
def test_current_period_for_send_now(frequency: str, day: date, expected: str | None) -> None:
    assert current_period(frequency, day) == expected


def test_an_early_quiet_send_does_not_burn_the_day(
    cli: Runner, feed_server: FixtureServer, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add_subscriber(cli, "ada@example.com", hours_from_now=-1)

    early = cli("send", "ada@example.com", "--now")  # no articles yet: a quiet period, skipped

    assert early.code == 0 and early.out.startswith("Skipped") and "no articles at all yet" in early.out
    assert [r["status"] for r in cli("deliveries", "list", "--json").json()] == ["skipped"]
    monkeypatch.setenv("FLARESTART_RANKING_MAX_PER_SOURCE", str(len(TITLES)))
    url = feed_server.add("/feed.xml", static(_feed(datetime.now(UTC)), "application/rss+xml"))
    assert cli("sources", "add", url, "--name", "Loop", "--topics", "python").code == 0
    assert cli("fetch", "--all").code == 0

    dry = cli("send", "ada@example.com", "--now", "--dry-run", "--json").json()
    assert (dry["status"], dry["items"]) == ("dry-run", len(TITLES))  # composed now, not the ledger's verdict
    sent = cli("send", "ada@example.com", "--now")
    assert sent.code == 0 and sent.out.startswith("Sent"), sent.out + sent.err
    again = cli("send", "ada@example.com", "--now")
    assert again.out.startswith("Already sent")  # sent stays exactly once
    assert len(_outbox(data_dir)) == 1
    rows = cli("deliveries", "list", "--json").json()
    assert [(r["status"], r["attempts"]) for r in rows] == [("sent", 2)]
    dry_after = cli("send", "ada@example.com", "--now", "--dry-run")
    assert "a real send sends nothing" in dry_after.out
