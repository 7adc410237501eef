"""Email the way inboxes demand, over SMTP connections that carry many messages.

    channel = SmtpChannel(settings.email)
    receipt = await channel.send(OutgoingDigest(...))   # or DeliveryTransientError / ...PermanentError
    await channel.aclose()

`message_bytes` writes the RFC 5322 message as it goes on the wire (`build_message` gives the same
as an EmailMessage): multipart/alternative (text, then HTML), From, To,
Subject, Date, a deterministic Message-ID, List-Id, `List-Unsubscribe` with the https link and a
mailto, `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (Gmail and Yahoo, 2024), Reply-To when
set, and a DKIM signature (dkimpy) whose h= covers both List-Unsubscribe headers when a key is
configured.

`SmtpChannel` speaks to one server named by SMTP_URL: smtp:// requires STARTTLS unless
email.allow_plain says otherwise, smtps:// is TLS from the first byte; user and password come from
the URL (percent-decoded). Up to `email.connections` connections are open at once and each carries
many messages; an optional rate limit spaces messages across all of them. A connection that broke
is dropped, and the next send opens a new one.

What a failure means for the delivery:
- the server refuses the recipient (5xx at RCPT) or the message (5xx at DATA) → permanent;
- 4xx, disconnects, timeouts, TLS trouble, a refused login or sender → transient: these are the
  server's or the operator's to fix, and must not count against the subscriber.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import dataclasses
import hashlib
import hmac
import importlib
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aiosmtplib
from aiosmtplib import SMTPStatus

from bot.channels.base import OutgoingDigest, Receipt
from bot.config import EmailSettings, mask
from bot.errors import ConfigError, DeliveryPermanentError, DeliveryTransientError

logger = logging.getLogger(__name__)
_E = TypeVar("_E", bound=BaseException)

__all__ = [
    "MAIL_POLICY",
    "MIME_CHANNELS",
    "DkimSigner",
    "RateLimiter",
    "SmtpChannel",
    "SmtpTarget",
    "build_message",
    "dkim_signer",
    "make_message_id",
    "message_bytes",
    "message_id_domain",
    "parse_smtp_url",
    "with_wire",
]

ONE_CLICK = "List-Unsubscribe=One-Click"
# Headers the DKIM signature covers. dkimpy's default list leaves List-Unsubscribe-Post out, and
# Gmail/Yahoo only honour one-click unsubscribe when both List-Unsubscribe headers are signed.
# "from" is listed twice so that a second From added in transit breaks the signature.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
    b"from",
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# An addr-spec as it may go on MAIL/RCPT: ASCII, no spaces, angle brackets or control characters.
# (Non-ASCII addresses would need SMTPUTF8 and UTF-8 headers, which FlareStart does not write.)
_ENVELOPE = re.compile(r"[!-;=?-~]+@[!-;=?-~]+", re.ASCII)
_MESSAGE_ID = re.compile(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+>")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")
_HTTP_LINK = re.compile(r"https?://[^\s<>,\"]+", re.IGNORECASE)


# -- the message --------------------------------------------------------------------------


# Parsing keeps each header exactly as written (refold_source="none"): a parsed message writes out
# the same bytes it was parsed from, so a DKIM signature over them stays valid.
MAIL_POLICY = EmailPolicy(linesep="\r\n", refold_source="none")
_LINE = 78  # RFC 5322's recommended line length
_MAX_LINE = 998  # RFC 5321/5322's hard limit, without the CRLF
_WORD_BYTES = 39  # UTF-8 bytes per encoded word: base64 makes 52 characters, 64 with =?utf-8?b??=


def make_message_id(
    subscriber_id: int, period: str, domain: str, *, key: bytes | str = b"", kind: str = "digest"
) -> str:
    """`<digest.2024-05-07.42.1a2b3c4d@example.com>`: the same for the same subscriber and period.

    A retried or re-claimed delivery therefore carries the same Message-ID, and mail clients and
    the outbox treat it as one message. `key` (the service's secret) keeps the tag unguessable.
    """
    host = domain.strip().strip(".").lower()
    if not _DOMAIN.fullmatch(host):
        raise ValueError(f"{domain!r} is not a domain for a Message-ID")
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", period).strip("-") or "period"
    kind_label = re.sub(r"[^A-Za-z0-9_-]+", "-", kind).strip("-") or "digest"
    secret = key.encode() if isinstance(key, str) else key
    tag = hmac.new(secret, f"{kind}|{subscriber_id}|{period}|{host}".encode(), hashlib.sha256).hexdigest()
    return f"<{kind_label}.{label}.{subscriber_id}.{tag[:8]}@{host}>"


def message_id_domain(settings: EmailSettings) -> str:
    """The domain for Message-IDs: the DKIM domain, else the From address's domain."""
    if settings.dkim_domain:
        return settings.dkim_domain.strip().lower()
    _, address = parseaddr(settings.from_address)
    return address.rpartition("@")[2].lower() or "localhost"


def _one_line(value: str) -> str:
    return " ".join(_CONTROL.sub(" ", value).split())


def _mailbox(display_name: str, address: str) -> Address:
    address = address.strip()
    if not address or _CONTROL.search(address) or address.count("@") != 1:
        raise DeliveryPermanentError(f"{address!r} is not a valid email address")
    try:
        return Address(display_name=_one_line(display_name), addr_spec=address)
    except (ValueError, IndexError) as exc:
        raise DeliveryPermanentError(f"{address!r} is not a valid email address: {exc}") from None


def _sender_address(settings: EmailSettings) -> str:
    _, address = parseaddr(settings.from_address)
    if "@" not in address:
        raise ConfigError(f"email.from_address {settings.from_address!r} has no address in it")
    return address


def _unsubscribe_mailto(settings: EmailSettings) -> str:
    target = settings.unsubscribe_mailto or _sender_address(settings)
    target = target.strip()
    if target.lower().startswith("mailto:"):
        return target
    return f"mailto:{target}?subject=unsubscribe"


def build_message(out: OutgoingDigest, settings: EmailSettings, *, now: datetime) -> EmailMessage:
    """The full message for one digest, DKIM-signed when email.dkim_* is configured."""
    parsed = BytesParser(policy=MAIL_POLICY).parsebytes(message_bytes(out, settings, now=now))
    assert isinstance(parsed, EmailMessage)
    return parsed


def message_bytes(out: OutgoingDigest, settings: EmailSettings, *, now: datetime) -> bytes:
    """The message as it goes on the wire (CRLF line endings, 7-bit, DKIM-signed if configured).

    Written here rather than through EmailMessage, whose header objects made building a digest
    cost ~10 ms; the email package still encodes any header that is not short plain ASCII, and
    every value is reduced to one line first so nothing can inject a header.
    """
    if now.tzinfo is None:
        raise ValueError("build_message needs an aware datetime for the Date header")
    if not _MESSAGE_ID.fullmatch(out.message_id):
        raise ValueError(f"{out.message_id!r} is not a Message-ID")
    boundary = "=_flarestart_" + hashlib.sha256(out.message_id.encode()).hexdigest()[:24]
    head = [_folded("From", _one_line(settings.from_address))]
    head.append(_recipient(out.to_name, out.to_address))
    if settings.reply_to:
        head.append(_folded("Reply-To", _one_line(settings.reply_to)))
    head += [
        _unstructured("Subject", _one_line(out.rendered.subject)),
        f"Date: {format_datetime(now.astimezone(UTC))}\r\n",
        f"Message-ID: {out.message_id}\r\n",
    ]
    if out.unsubscribe_url:
        head += [
            _folded("List-Id", _one_line(settings.list_id)),
            _list_unsubscribe(out.unsubscribe_url, _unsubscribe_mailto(settings)),
            f"List-Unsubscribe-Post: {ONE_CLICK}\r\n",
        ]
    head += [
        "MIME-Version: 1.0\r\n",
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n',
    ]
    # "=_" cannot occur in quoted-printable text, and the HTML part checks it does not hold it, so
    # the boundary never clashes with a part; taken from the Message-ID, it also makes the same
    # digest the same bytes.
    body = b"".join(
        [
            f"\r\n--{boundary}\r\n".encode(),
            _text_part("plain", out.rendered.text),
            f"\r\n--{boundary}\r\n".encode(),
            _html_part(out.rendered.html, boundary),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    raw = "".join(head).encode("ascii") + body
    signer = dkim_signer(settings)
    return raw if signer is None else signer.signature(raw) + raw


# The channels whose wire form is `message_bytes`: their digests can be encoded ahead of sending.
MIME_CHANNELS = frozenset({"email", "outbox"})


def with_wire(out: OutgoingDigest, settings: EmailSettings, *, now: datetime) -> OutgoingDigest:
    """The digest with its wire bytes made now (Date = now: when it was complete, as RFC 5322 has it).
    The view is dropped: the bytes say it all, and a draft crosses processes lighter without it."""
    return dataclasses.replace(out, wire=message_bytes(out, settings, now=now), view=None)


def _unstructured(name: str, value: str) -> str:
    """An unstructured header (Subject) folded at spaces under 78 characters; non-ASCII text, or
    text a client would take for an encoded word, as RFC 2047 encoded words. Written here: the
    email package's header objects took ~0.13 ms a subject, a third of building a message."""
    if value.isascii() and "=?" not in value:
        return _fold(name, value.split(" "))
    return _fold(name, _encoded_words(value))


def _fold(name: str, words: list[str]) -> str:
    # Folding puts CRLF before a space; unfolding removes the CRLF: the value comes back as it was.
    # (Between encoded words the space is not part of the text: RFC 2047 §6.2.)
    lines: list[str] = []
    line = name + ":"
    for word in words:
        if len(line) + 1 + len(word) > _LINE and len(line) > len(name) + 1:
            lines.append(line)
            line = " " + word
        else:
            line += " " + word
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _encoded_words(value: str) -> list[str]:
    """base64 encoded words of whole characters, at most 64 characters each ("Subject: " + one word
    fits a line)."""
    words: list[str] = []
    chunk = bytearray()
    for char in value:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > _WORD_BYTES:
            words.append(_encoded_word(bytes(chunk)))
            chunk.clear()
        chunk += encoded
    if chunk or not words:
        words.append(_encoded_word(bytes(chunk)))
    return words


def _encoded_word(data: bytes) -> str:
    return "=?utf-8?b?" + binascii.b2a_base64(data, newline=False).decode("ascii") + "?="


@lru_cache(maxsize=32)
def _folded(name: str, value: str) -> str:
    """Headers from the settings (From, Reply-To): parsed and folded once."""
    if not value.isascii() or len(value) + len(name) + 2 > _LINE:
        return str(MAIL_POLICY.header_factory(name, value).fold(policy=MAIL_POLICY))
    return f"{name}: {value}\r\n"


def _recipient(display_name: str, address: str) -> str:
    mailbox = _mailbox(display_name, address)
    text = str(mailbox)
    if text.isascii() and len(text) + 4 <= _LINE:
        return f"To: {text}\r\n"
    return str(MAIL_POLICY.header_factory("To", [mailbox]).fold(policy=MAIL_POLICY))


def _list_unsubscribe(url: str, mailto: str) -> str:
    # Folded by hand at the comma: the email package would turn a long URL into RFC 2047 encoded
    # words, which no mail client follows.
    for link in (url, mailto):
        if not link.isascii() or _CONTROL.search(link) or any(c in link for c in " <>,"):
            raise ValueError(f"{link!r} cannot go into List-Unsubscribe")
    if not _HTTP_LINK.fullmatch(url):
        raise ValueError(f"unsubscribe link {url!r} is not an absolute http(s) URL")
    line = f"List-Unsubscribe: <{url}>, <{mailto}>"
    if len(line) <= _LINE:
        return line + "\r\n"
    return f"List-Unsubscribe: <{url}>,\r\n <{mailto}>\r\n"


def _html_part(html: str, boundary: str) -> bytes:
    """The HTML as 7bit: non-ASCII characters become character references (HTML reads them as the
    same characters) and lines longer than SMTP's 998 octets are broken at one of their spaces
    (whitespace either way, in text, in CSS and around attributes). Against quoted-printable that
    is ~1/15 of the lines, which every hop (the SMTP client's line-ending and dot-stuffing passes,
    the server's line reader) pays for, and no '=3D' for every '=' of the markup. Quoted-printable
    still when a line has no space to break at, or the text holds the boundary."""
    data = html.encode("ascii", "xmlcharrefreplace").rstrip(b"\r\n")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if boundary.encode() in data:
        return _text_part("html", html)
    lines = data.split(b"\n")
    if any(len(line) > _MAX_LINE for line in lines):
        wrapped: list[bytes] = []
        for line in lines:
            while len(line) > _MAX_LINE:
                cut = line.rfind(b" ", 1, _MAX_LINE + 1)
                if cut <= 0:
                    return _text_part("html", html)
                wrapped.append(line[:cut])
                line = line[cut + 1 :]
            wrapped.append(line)
        lines = wrapped
    return (
        b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
        + b"\r\n".join(lines)
        + b"\r\n"
    )


def _text_part(subtype: str, text: str) -> bytes:
    # Every line ending becomes CRLF, and there is one at the end: b2a_qp takes its soft line
    # breaks from the first line ending it sees. (str.replace: ~5x faster than a regex split.)
    text = text.rstrip("\r\n")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = (text.replace("\n", "\r\n") + "\r\n").encode("utf-8")
    encoded = binascii.b2a_qp(lines, quotetabs=False, istext=True, header=False)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode() + encoded


# -- DKIM ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DkimSigner:
    """Signs whole messages with one key (rsa-sha256, relaxed/relaxed)."""

    selector: str
    domain: str
    private_key: bytes

    def signature(self, message: bytes) -> bytes:
        """The `DKIM-Signature:` header line (folded, CRLF-terminated) to put on top of `message`."""
        dkim = _dkim()
        result: bytes = dkim.sign(
            message,
            self.selector.encode(),
            self.domain.encode(),
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
        )
        return result


def _dkim() -> Any:
    try:
        return importlib.import_module("dkim")
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigError(
            "DKIM signing is configured but dkimpy is not installed (pip install dkimpy)"
        ) from None


def dkim_signer(settings: EmailSettings) -> DkimSigner | None:
    """The signer email.dkim_* describes, or None when DKIM is off. Raises ConfigError."""
    values = {
        "email.dkim_private_key_file": settings.dkim_private_key_file,
        "email.dkim_selector": settings.dkim_selector,
        "email.dkim_domain": settings.dkim_domain,
    }
    if all(value is None for value in values.values()):
        return None
    missing = [key for key, value in values.items() if not value]
    if missing:
        raise ConfigError(f"DKIM signing needs {', '.join(missing)} as well")
    path = Path(str(settings.dkim_private_key_file)).expanduser()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"email.dkim_private_key_file {path}: {exc.strerror}") from None
    return _load_signer(str(path), stamp, str(settings.dkim_selector), str(settings.dkim_domain))


@lru_cache(maxsize=8)
def _load_signer(path: str, _stamp: int, selector: str, domain: str) -> DkimSigner:
    try:
        key = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"email.dkim_private_key_file {path}: {exc.strerror}") from None
    try:
        _dkim().crypto.parse_pem_private_key(key)
    except Exception as exc:  # dkimpy raises its own KeyFormatError and friends
        raise ConfigError(f"email.dkim_private_key_file {path} is not a PEM RSA private key: {exc}") from None
    return DkimSigner(selector=selector, domain=domain.strip().lower(), private_key=key)


# -- SMTP ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where and how to connect, from SMTP_URL."""

    host: str
    port: int
    implicit_tls: bool  # smtps://
    start_tls: bool | None  # True: required; None: when offered (allow_plain); False: never
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def parse_smtp_url(url: str, *, allow_plain: bool) -> SmtpTarget:
    """smtp://user:pass@host:587 (STARTTLS), smtps://user:pass@host:465, smtp:// plain if allowed."""
    shown = mask("email.smtp_url", url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"SMTP_URL {shown}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise ConfigError(f"SMTP_URL {shown}: use smtp://host:587 (STARTTLS) or smtps://host:465")
    if not parts.hostname:
        raise ConfigError(f"SMTP_URL {shown}: no host")
    implicit = scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit else 587),
        implicit_tls=implicit,
        start_tls=False if implicit else (None if allow_plain else True),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


class RateLimiter:
    """At most `rate` acquisitions per second, evenly spaced, shared by every caller."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
                now = self._next
            self._next = now + self._interval


@dataclass(eq=False)
class _Connection:
    smtp: aiosmtplib.SMTP
    last_used: float
    sent: int = 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SmtpChannel:
    """Delivers digests through one SMTP server over a small pool of reused connections."""

    name = "email"

    def __init__(
        self,
        settings: EmailSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        clock: Callable[[], datetime] = _utc_now,
        local_hostname: str | None = None,
        idle_check_seconds: float = 30.0,
    ) -> None:
        if not settings.smtp_url:
            raise ConfigError("email.smtp_url (SMTP_URL) is not set; without it digests go to the outbox")
        self.settings = settings
        self.target = parse_smtp_url(settings.smtp_url, allow_plain=settings.allow_plain)
        self._tls_context = tls_context
        self._clock = clock
        self._local_hostname = local_hostname
        self._idle_check = idle_check_seconds
        self._sender = _sender_address(settings)
        if not _ENVELOPE.fullmatch(self._sender):
            raise ConfigError(
                f"email.from_address {settings.from_address!r}: the address must be plain ASCII"
            )
        self._mail_from = b"FROM:<" + self._sender.encode("ascii") + b">"
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._slots = asyncio.Semaphore(settings.connections)
        self._limiter = RateLimiter(settings.rate_per_second) if settings.rate_per_second else None
        self._closed = False
        self.connections_opened = 0
        dkim_signer(settings)  # a bad key fails now, with its file named, not at the first send

    async def send(self, message: OutgoingDigest) -> Receipt:
        if self._closed:
            raise RuntimeError("SmtpChannel.send after aclose")
        data = (
            message.wire
            if message.wire is not None
            else message_bytes(message, self.settings, now=self._clock())
        )
        if self._limiter is not None:
            await self._limiter.wait()
        async with self._slots:
            conn = await self._checkout()
            self._busy.add(conn)
            try:
                reply = await self._transaction(conn.smtp, message.to_address, data)
            except Exception as exc:
                self._busy.discard(conn)
                error = self._explain(exc, message.to_address)
                if self._still_usable(conn, exc):
                    self._checkin(conn)
                else:
                    await self._discard(conn)
                logger.info(
                    "email not delivered: %s",
                    error,
                    extra={"channel": self.name, "to": message.to_address, "server": str(self.target)},
                )
                raise error from exc
            self._busy.discard(conn)
            conn.sent += 1
            self._checkin(conn)
        logger.debug(
            "email delivered",
            extra={"channel": self.name, "to": message.to_address, "message_id": message.message_id},
        )
        return Receipt(self.name, message.to_address, message.message_id, detail=_one_line(reply))

    async def _transaction(self, smtp: aiosmtplib.SMTP, recipient: str, data: bytes) -> str:
        """MAIL, RCPT and DATA for one message on a connection of our own; the reply to DATA.

        What `sendmail` does, less what a digest does not need: it parses both addresses again
        for every message and passes the whole message through its line-ending regex a second
        time to count SIZE, ~0.4 ms of CPU a message. Our bytes are CRLF already (len is the
        size) and the addresses were checked when the digest was made; `_ENVELOPE` checks the
        recipient once more, as nothing may reach a command line unchecked."""
        if not _ENVELOPE.fullmatch(recipient):
            raise ValueError(f"{recipient!r} is not an ASCII address SMTP can carry without SMTPUTF8")
        options = [b"SIZE=%d" % len(data)] if smtp.supports_extension("size") else []
        try:
            reply = await smtp.execute_command(b"MAIL", self._mail_from, *options)
            if reply.code != SMTPStatus.completed:
                raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, self._sender)
            reply = await smtp.execute_command(b"RCPT", b"TO:<" + recipient.encode("ascii") + b">")
            if reply.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
                raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
            reply = await smtp.data(data)
        except aiosmtplib.SMTPResponseException:
            # As sendmail does: reset the envelope so the connection can carry the next message.
            with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
                await smtp.rset()
            raise
        return reply.message

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._discard(conn, polite=True) for conn in idle))

    # connections ---------------------------------------------------------------------

    async def _checkout(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.smtp.is_connected:
                await self._discard(conn)
                continue
            if time.monotonic() - conn.last_used > self._idle_check:
                try:  # servers drop idle clients; find out before a message is on the line
                    await conn.smtp.noop()
                except Exception:
                    await self._discard(conn)
                    continue
            return conn
        return await self._connect()

    def _checkin(self, conn: _Connection) -> None:
        conn.last_used = time.monotonic()
        if self._closed:
            conn.smtp.close()
        else:
            self._idle.append(conn)

    async def _connect(self) -> _Connection:
        target = self.target
        smtp = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.implicit_tls,
            start_tls=target.start_tls,
            tls_context=self._tls_context,
            timeout=self.settings.timeout,
            local_hostname=self._local_hostname,
        )
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:  # connect() greets only when it goes on to TLS or AUTH
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()
        except Exception as exc:
            smtp.close()
            raise self._explain(exc, None) from exc
        self.connections_opened += 1
        logger.debug("smtp connected", extra={"channel": self.name, "server": str(target)})
        return _Connection(smtp=smtp, last_used=time.monotonic())

    async def _discard(self, conn: _Connection, *, polite: bool = False) -> None:
        if polite and conn.smtp.is_connected:
            try:
                await asyncio.wait_for(conn.smtp.quit(), timeout=min(5.0, self.settings.timeout))
                return
            except Exception:
                pass
        conn.smtp.close()

    @staticmethod
    def _still_usable(conn: _Connection, exc: Exception) -> bool:
        """After a refused recipient or message the session is reset and can carry the next one."""
        if not conn.smtp.is_connected:
            return False
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            return all(refused.code != 421 for refused in exc.recipients)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return exc.code != 421
        return isinstance(exc, ValueError)

    # errors --------------------------------------------------------------------------

    def _explain(
        self, exc: BaseException, recipient: str | None
    ) -> DeliveryTransientError | DeliveryPermanentError:
        target = self.target
        cert = _in_chain(exc, ssl.SSLCertVerificationError)
        if cert is not None:
            why = cert.verify_message or cert.reason or str(cert)
            return DeliveryTransientError(f"TLS certificate for {target.host} is not trusted: {why}")
        tls = _in_chain(exc, ssl.SSLError)
        if tls is not None:
            return DeliveryTransientError(f"TLS with {target} failed: {tls.reason or tls}")
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
            exc = exc.recipients[0]
        if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
            return _by_code(exc.code, f"{exc.code} {_one_line(exc.message)} for <{exc.recipient}>")
        if isinstance(exc, aiosmtplib.SMTPDataError):
            text = f"{exc.code} {_one_line(exc.message)}: message for <{recipient}> refused"
            return _by_code(exc.code, text)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return DeliveryTransientError(
                f"{target} refused the login as {target.username!r}: {exc.code} {_one_line(exc.message)}"
            )
        if isinstance(exc, aiosmtplib.SMTPSenderRefused):
            return DeliveryTransientError(
                f"{target} refused the sender <{exc.sender}>: {exc.code} {_one_line(exc.message)}"
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return DeliveryTransientError(f"{target} answered {exc.code} {_one_line(exc.message)}")
        if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
            return DeliveryTransientError(f"{target} did not answer within {self.settings.timeout:g}s: {exc}")
        if isinstance(exc, aiosmtplib.SMTPNotSupported) or (
            isinstance(exc, aiosmtplib.SMTPException) and "not supported" in str(exc)
        ):
            text = str(exc)
            if "STARTTLS" in text.upper():
                return DeliveryTransientError(
                    f"{target} does not offer STARTTLS, so the password and mail would travel in clear; "
                    "use smtps:// or set email.allow_plain for a trusted local relay"
                )
            if "SMTPUTF8" in text.upper():
                return DeliveryPermanentError(f"{target} cannot deliver to <{recipient}>: {text}")
            return DeliveryTransientError(f"{target}: {text}")
        if isinstance(exc, ValueError):  # aiosmtplib refuses addresses it cannot put on the wire
            return DeliveryPermanentError(f"<{recipient}> cannot be sent to: {exc}")
        if isinstance(exc, aiosmtplib.SMTPException | OSError):
            return DeliveryTransientError(f"{target}: {_one_line(str(exc)) or type(exc).__name__}")
        return DeliveryTransientError(f"{target}: {type(exc).__name__}: {_one_line(str(exc))}")


def _by_code(code: int, text: str) -> DeliveryTransientError | DeliveryPermanentError:
    return DeliveryPermanentError(text) if code >= 500 else DeliveryTransientError(text)


def _in_chain(exc: BaseException, kind: type[_E]) -> _E | None:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        todo += [linked for linked in (current.__cause__, current.__context__) if linked is not None]
    return None
