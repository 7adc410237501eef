"""The outbox: where digests go when no SMTP server is configured.

    channel = OutboxChannel(settings.outbox_dir, settings=settings.email)

Each digest becomes the full RFC 5322 message (the one SMTP would carry) in a Maildir that any
mail client or `mailbox.Maildir` can open, plus `<period>-<address>.html` beside it to look at in a
browser:

    outbox/
      mail/{cur,new,tmp}/        the Maildir
      2024-05-07-ada@example.com.html

A message is filed under a name derived from its Message-ID and linked into new/ atomically, so
sending the same digest twice (a retried delivery) leaves one message, even from two processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import mailbox
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bot.channels.base import OutgoingDigest, Receipt
from bot.channels.email import message_bytes
from bot.config import EmailSettings

__all__ = ["OutboxChannel", "preview_name"]

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9@._+-]+")


def preview_name(period: str, address: str) -> str:
    """`2024-05-07-ada@example.com.html`: safe as a file name on any system."""
    stem = f"{period}-{address}".strip()
    stem = _UNSAFE_NAME.sub("_", stem).strip("._") or "digest"
    return f"{stem[:180]}.html"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class OutboxChannel:
    """Writes digests into a Maildir plus an HTML preview each, instead of sending them."""

    name = "outbox"

    def __init__(
        self,
        folder: Path,
        *,
        settings: EmailSettings | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.folder = folder
        self.maildir_path = folder / "mail"
        self.settings = settings if settings is not None else EmailSettings()
        self._clock = clock

    def maildir(self) -> mailbox.Maildir:
        """The outbox's Maildir (created on first use)."""
        self._create()
        return mailbox.Maildir(self.maildir_path, create=False)

    async def send(self, message: OutgoingDigest) -> Receipt:
        data = (
            message.wire
            if message.wire is not None
            else message_bytes(message, self.settings, now=self._clock())
        )
        return await asyncio.to_thread(self._write, message, data)

    async def aclose(self) -> None:
        return None

    def _write(self, message: OutgoingDigest, data: bytes) -> Receipt:
        self._create()
        key = "flarestart." + hashlib.sha256(message.message_id.encode()).hexdigest()[:32]
        preview = self.folder / preview_name(message.period, message.to_address)
        _write_atomically(preview, message.rendered.html.encode())
        if self._has(key):
            return Receipt(self.name, str(preview), message.message_id, detail="already in the outbox")
        self._deliver(key, data)
        return Receipt(self.name, str(preview), message.message_id, detail=f"written to {self.maildir_path}")

    def _create(self) -> None:
        # mkdir with exist_ok, unlike mailbox.Maildir(create=True), is safe when two sends race
        for sub in ("tmp", "new", "cur"):
            (self.maildir_path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)

    def _has(self, key: str) -> bool:
        if (self.maildir_path / "new" / key).exists():
            return True
        # A mail client that has read the message moves it to cur/ with ":2,FLAGS" appended.
        with os.scandir(self.maildir_path / "cur") as entries:
            return any(entry.name == key or entry.name.startswith(key + ":") for entry in entries)

    def _deliver(self, key: str, data: bytes) -> None:
        # The Maildir way: write in tmp/, then make it appear in new/ in one step. os.link fails
        # when the name exists, so two writers of the same Message-ID leave one message.
        tmp = self.maildir_path / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex}"
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, self.maildir_path / "new" / key)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".html")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
