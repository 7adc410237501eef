"""`flarestart demo`: the whole pipeline offline, ending in a Maildir filled over real SMTP."""

from __future__ import annotations

import json
import mailbox
import threading
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from bot.demo import DEMO_FEEDS, SAMPLE_SUBSCRIBERS
from bot.testing.fake_slack import seen
from tests.cli.conftest import Runner

DEMO_TITLES = {article.title for feed in DEMO_FEEDS for article in feed.articles}


def _messages(maildir: Path) -> list[EmailMessage]:
    box = mailbox.Maildir(maildir, create=False)
    parsed = [BytesParser(policy=policy.default).parsebytes(box.get_bytes(key)) for key in box.iterkeys()]
    return [message for message in parsed if isinstance(message, EmailMessage)]


def _body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None, f"no text/{kind} part"
    return str(part.get_content())


def _threads_settle(before: set[threading.Thread], timeout: float = 3.0) -> set[threading.Thread]:
    deadline = time.monotonic() + timeout
    while True:
        extra = set(threading.enumerate()) - before
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.05)


def test_demo_delivers_one_digest_per_sample_reader_and_says_where(
    cli: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "demo"
    threads = set(threading.enumerate())
    started = time.monotonic()

    result = cli("demo", "--keep", str(folder))

    elapsed = time.monotonic() - started
    assert result.code == 0, result.err
    assert elapsed < 20
    maildir = folder / "inbox" / "mail"
    messages = _messages(maildir)
    readers = [s.email for s in SAMPLE_SUBSCRIBERS[:3]]
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == sorted(readers)
    for message in messages:
        assert message.get_content_type() == "multipart/alternative"
        text = _body(message, "plain")
        html = _body(message, "html")
        shown = [title for title in DEMO_TITLES if title in text]
        assert len(shown) >= 3, text
        assert any(title in html for title in shown if "'" not in title)
    assert any("Also covered by" in _body(m, "plain") for m in messages)
    assert str(maildir) in result.out
    previews = sorted(p.name for p in (folder / "inbox").glob("*.html"))
    assert len(previews) == 3 and all(str(folder / "inbox" / name) in result.out for name in previews)
    assert "flarestart articles list" in result.out
    assert not _threads_settle(threads), "the demo left threads running"

    monkeypatch.setenv("FLARESTART_DATA_DIR", str(folder))  # the printed commands work on its data
    ledger = cli("deliveries", "list", "--json").json()
    assert {(row["subscriber"], row["status"], row["channel"]) for row in ledger} == {
        (email, "sent", "email") for email in readers
    } | {("slack:C0DEMOTEAM", "sent", "slack")}
    posted = json.loads((folder / "inbox" / "slack-C0DEMOTEAM.json").read_text(encoding="utf-8"))
    assert posted and posted[0]["blocks"][0]["type"] == "header"
    assert sum(title in seen(message).text for message in posted for title in DEMO_TITLES) >= 3
    assert str(folder / "inbox" / "slack-C0DEMOTEAM.json") in result.out
    assert len(cli("articles", "list", "--json", "--limit", "100").json()) == len(DEMO_TITLES)


def test_demo_refuses_a_folder_that_is_not_empty(cli: Runner, tmp_path: Path) -> None:
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")

    result = cli("demo", "--keep", str(folder), "--subscribers", "1")

    assert result.code == 2
    assert "is not an empty folder" in result.err and result.err.count("\n") == 1
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
