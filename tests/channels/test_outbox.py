"""The outbox: digests land in a Maildir (once each) with an HTML preview beside it."""

from __future__ import annotations

import asyncio
import mailbox
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from bot.channels.base import Channel, OutgoingDigest
from bot.channels.email import make_message_id
from bot.channels.outbox import OutboxChannel, preview_name
from bot.config import EmailSettings
from bot.digest.view import RenderedDigest

NOW = datetime(2024, 5, 7, 6, 30, tzinfo=UTC)
RENDERED = RenderedDigest(
    subject="Rust 2.0 · your developer morning",
    html="<!DOCTYPE html><html><body><h2>Rust 2.0</h2><a href='https://flarestart.example.com/u/T'>"
    "Unsubscribe</a></body></html>",
    text="Rust 2.0\nUnsubscribe: https://flarestart.example.com/u/T\n",
    preheader="",
)


def outgoing(
    period: str = "2024-05-07", to: str = "ada@example.com", subscriber_id: int = 7
) -> OutgoingDigest:
    return OutgoingDigest(
        to_name="Ada",
        to_address=to,
        rendered=RENDERED,
        message_id=make_message_id(subscriber_id, period, "flarestart.example.com"),
        unsubscribe_url="https://flarestart.example.com/u/T",
        period=period,
    )


def messages(box: mailbox.Maildir) -> list[EmailMessage]:
    parsed = []
    for key in box.iterkeys():
        message = BytesParser(policy=policy.default).parsebytes(box.get_bytes(key))
        assert isinstance(message, EmailMessage)
        parsed.append(message)
    return parsed


async def test_a_digest_sent_twice_is_in_the_maildir_once_with_a_preview(tmp_path: Path) -> None:
    outbox: Channel = OutboxChannel(tmp_path / "outbox", settings=EmailSettings(), clock=lambda: NOW)

    first = await outbox.send(outgoing())
    again = await outbox.send(outgoing())
    await outbox.aclose()

    [message] = messages(mailbox.Maildir(tmp_path / "outbox" / "mail", create=False))
    assert message["Message-ID"] == outgoing().message_id
    assert message["To"] == "Ada <ada@example.com>"
    assert message["Subject"] == "Rust 2.0 · your developer morning"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    preview = tmp_path / "outbox" / "2024-05-07-ada@example.com.html"
    assert preview.read_text() == RENDERED.html
    assert first.channel == "outbox" and first.destination == str(preview)
    assert first.message_id == again.message_id == outgoing().message_id
    assert "already in the outbox" in again.detail


async def test_each_period_and_subscriber_gets_its_own_message_and_preview(tmp_path: Path) -> None:
    outbox = OutboxChannel(tmp_path)

    await asyncio.gather(
        outbox.send(outgoing("2024-05-07")),
        outbox.send(outgoing("2024-05-08")),
        outbox.send(outgoing("2024-05-08", "bob@example.com", subscriber_id=8)),
        outbox.send(outgoing("2024-05-08", "bob@example.com", subscriber_id=8)),
    )

    assert len(outbox.maildir()) == 3
    assert sorted(path.name for path in tmp_path.glob("*.html")) == [
        "2024-05-07-ada@example.com.html",
        "2024-05-08-ada@example.com.html",
        "2024-05-08-bob@example.com.html",
    ]
    assert not list((tmp_path / "mail" / "tmp").iterdir())


async def test_a_message_a_mail_client_has_read_is_not_filed_again(tmp_path: Path) -> None:
    outbox = OutboxChannel(tmp_path)
    await outbox.send(outgoing())
    box = outbox.maildir()
    [key] = box.keys()
    seen = box.get_message(key)
    seen.set_subdir("cur")
    seen.add_flag("S")
    box[key] = seen  # what a mail client does: new/ → cur/ with ":2,S"

    receipt = await outbox.send(outgoing())

    assert len(outbox.maildir()) == 1
    assert "already" in receipt.detail


def test_preview_names_are_safe_file_names() -> None:
    assert preview_name("2024-05-07", "ada@example.com") == "2024-05-07-ada@example.com.html"
    assert preview_name("../../etc", "x/y\\z@example.com") == "etc-x_y_z@example.com.html"
    assert "/" not in preview_name("a/b", "../c")
