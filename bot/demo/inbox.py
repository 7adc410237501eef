"""Where the demo's digests land: a real SMTP server on loopback that files mail into a Maildir.

    async with maildir_smtp_server(folder / "mail") as server:
        settings.email.smtp_url = server.url                  # smtp://127.0.0.1:PORT
        channel = PreviewingChannel(SmtpChannel(settings.email), folder)
        ...                                                   # DigestService(…, channel).send(…)

The server (aiosmtpd) runs on the caller's event loop, so it lives exactly as long as the
`async with` block: no thread or process outlives the demo. Messages are stored byte for byte as
they came off the wire, so what a mail client opens is what an inbox would have received.
"""

from __future__ import annotations

import asyncio
import mailbox
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from bot.channels.base import Channel, OutgoingDigest, Receipt
from bot.channels.outbox import preview_name
from bot.config import EmailSettings

__all__ = ["MaildirSmtpServer", "Preview", "PreviewingChannel", "maildir_smtp_server"]

SERVER_NAME = "smtp.demo.flarestart.localhost"


class _MaildirHandler:
    """aiosmtpd handler: every accepted message becomes one file in the Maildir's new/."""

    def __init__(self, maildir: mailbox.Maildir) -> None:
        self.maildir = maildir
        self.received: list[tuple[str, list[str]]] = []  # (envelope sender, recipients)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        key = self.maildir.add(data)
        self.received.append((envelope.mail_from or "", list(envelope.rcpt_tos)))
        return f"250 2.0.0 Ok: filed as {key}"


@dataclass
class MaildirSmtpServer:
    host: str
    port: int
    maildir_path: Path
    received: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The SMTP_URL for it (plain SMTP: it is loopback only, so allow_plain must be set)."""
        return f"smtp://{self.host}:{self.port}"


@asynccontextmanager
async def maildir_smtp_server(
    maildir_path: Path, *, host: str = "127.0.0.1"
) -> AsyncIterator[MaildirSmtpServer]:
    """An SMTP server on a free loopback port that files what it receives into `maildir_path`."""
    maildir_path.parent.mkdir(parents=True, exist_ok=True)
    maildir = mailbox.Maildir(maildir_path, create=True)
    handler = _MaildirHandler(maildir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=SERVER_NAME, loop=loop), host=host, port=0
    )
    port = int(server.sockets[0].getsockname()[1])
    try:
        yield MaildirSmtpServer(host, port, maildir_path, handler.received)
    finally:
        server.close()
        await server.wait_closed()


@dataclass(frozen=True, slots=True)
class Preview:
    path: Path  # the digest's HTML, as the mail carries it
    subject: str
    period: str


class PreviewingChannel:
    """A channel that also writes each digest's HTML beside the inbox, then hands it on.

    The name is the wrapped channel's, so the delivery ledger records the real channel.
    """

    def __init__(self, inner: Channel, folder: Path) -> None:
        self.inner = inner
        self.folder = folder
        self.name = inner.name
        self.previews: dict[str, Preview] = {}  # recipient address → its latest digest

    async def send(self, message: OutgoingDigest) -> Receipt:
        path = self.folder / preview_name(message.period, message.to_address)
        await asyncio.to_thread(_write_text, path, message.rendered.html)
        receipt = await self.inner.send(message)
        self.previews[message.to_address] = Preview(path, message.rendered.subject, message.period)
        return receipt

    async def aclose(self) -> None:
        await self.inner.aclose()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def previewing_smtp_channel(settings: EmailSettings, folder: Path) -> PreviewingChannel:
    """SMTP to the demo's loopback server, keeping an HTML preview of each digest in `folder`."""
    from bot.channels.email import SmtpChannel

    return PreviewingChannel(SmtpChannel(settings), folder)
