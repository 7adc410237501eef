"""Email delivery against a real SMTP server on loopback, read back the way a mail client reads it."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import importlib
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.channels.base import OutgoingDigest
from bot.channels.email import (
    SmtpChannel,
    build_message,
    make_message_id,
    message_bytes,
    message_id_domain,
    parse_smtp_url,
)
from bot.config import EmailSettings
from bot.digest.render import DigestRenderer
from bot.digest.view import DigestItemView, DigestView
from bot.errors import ConfigError, DeliveryPermanentError, DeliveryTransientError
from tests.channels.smtp_server import SmtpCertificate, SmtpServer, make_certificate

dkim: Any = importlib.import_module("dkim")

NOW = datetime(2024, 5, 7, 6, 30, tzinfo=UTC)
BASE = "https://flarestart.example.com"
FROM = "FlareStart <digest@flarestart.example.com>"
USER, PASSWORD = "digest@flarestart.example.com", "p@ss:w/rd%"  # needs percent-encoding in a URL


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> SmtpCertificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def items() -> tuple[DigestItemView, ...]:
    plain = tuple(
        DigestItemView(
            title=f"Story {n}: WebAssembly components land in browsers",
            url=f"https://news.example.com/{n}?a=1&b=2",
            source="TechCrunch",
            author="Grace Hopper",
            published=NOW - timedelta(hours=n + 1),
            excerpt=f"Excerpt number {n} about components, WASI and the component model.",
            chip="Web",
            reason="because you follow WebAssembly",
            also_covered_by=(("The Verge", f"https://verge.example.com/{n}"),),
        )
        for n in range(3)
    )
    hostile = DigestItemView(
        title="<script>alert('pwned')</script> Hostile feed",
        url="javascript:alert(1)",
        source='"><img src=x onerror=alert(2)>',
        author=None,
        published=NOW - timedelta(minutes=5),
        excerpt="<iframe src=https://evil.example.com></iframe> body",
        chip="News",
        reason="because you follow Security",
        also_covered_by=(("Relative", "/not/absolute"),),
    )
    return (*plain, hostile)


RENDERED = DigestRenderer(EmailSettings(), base_url=BASE).render(
    DigestView(
        "Ada",
        "ada@example.com",
        "2024-05-07",
        date(2024, 5, 7),
        items(),
        f"{BASE}/p/PREFS",
        f"{BASE}/u/UNSUB-TOKEN",
        now=NOW,
    )
)


def outgoing(to: str = "ada@example.com", *, subscriber_id: int = 42, name: str = "Ada") -> OutgoingDigest:
    return OutgoingDigest(
        to_name=name,
        to_address=to,
        rendered=RENDERED,
        message_id=make_message_id(subscriber_id, "2024-05-07", "flarestart.example.com"),
        unsubscribe_url=f"{BASE}/u/UNSUB-TOKEN",
        period="2024-05-07",
    )


def settings_for(url: str, **changes: Any) -> EmailSettings:
    values: dict[str, Any] = {
        "smtp_url": url,
        "from_address": FROM,
        "unsubscribe_mailto": "unsubscribe@flarestart.example.com",
        "list_id": "FlareStart digest <digest.flarestart.example.com>",
        "timeout": 5.0,
    }
    values.update(changes)
    return EmailSettings(**values)


def clock() -> Callable[[], datetime]:
    return lambda: NOW


# -- the message as a mail client sees it ---------------------------------------------------


async def test_plain_smtp_with_auth_delivers_a_message_a_mail_client_reads_right() -> None:
    with SmtpServer(users={USER: PASSWORD}) as server:
        channel = SmtpChannel(
            settings_for(
                server.url(USER, PASSWORD), allow_plain=True, reply_to="team@flarestart.example.com"
            ),
            clock=clock(),
        )
        receipt = await channel.send(outgoing())
        await channel.aclose()

    assert receipt.channel == "email" and receipt.destination == "ada@example.com"
    assert receipt.message_id == outgoing().message_id
    assert "queued as TEST00001" in receipt.detail
    [received] = server.messages
    assert received.login == USER and not received.tls
    assert received.mail_from == "digest@flarestart.example.com"
    assert received.rcpt_tos == ["ada@example.com"]
    msg = received.message()
    assert msg["From"] == FROM
    assert msg["To"] == "Ada <ada@example.com>"
    assert msg["Reply-To"] == "team@flarestart.example.com"
    assert msg["Subject"] == RENDERED.subject
    assert parsedate_to_datetime(msg["Date"]) == NOW
    assert msg["Message-ID"] == make_message_id(42, "2024-05-07", "flarestart.example.com")
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Id"] == "FlareStart digest <digest.flarestart.example.com>"
    assert msg["List-Unsubscribe"] == (
        f"<{BASE}/u/UNSUB-TOKEN>, <mailto:unsubscribe@flarestart.example.com?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"List-Unsubscribe: <{BASE}/u/UNSUB-TOKEN>".encode() in received.data  # not RFC 2047-mangled
    assert msg.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in msg.iter_parts()] == ["text/plain", "text/html"]

    text_part, html_part = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    page = lxml.html.fromstring(html)
    for item in items():
        assert item.title in text
        assert item.title in page.text_content()
    hrefs = [str(href) for href in page.xpath("//a/@href")]
    assert hrefs and all(href.startswith("https://") for href in hrefs), hrefs
    assert "https://news.example.com/0?a=1&b=2" in hrefs and f"{BASE}/u/UNSUB-TOKEN" in hrefs
    assert not page.xpath("//script | //iframe | //img[@onerror]")
    assert "&lt;script&gt;alert('pwned')&lt;/script&gt;" in html
    assert "javascript:" not in html and "javascript:" not in text
    assert "/not/absolute" not in html


async def test_starttls_with_a_trusted_certificate_and_auth_login(certificate: SmtpCertificate) -> None:
    with SmtpServer(
        tls="starttls", certificate=certificate, users={USER: PASSWORD}, mechanisms=("LOGIN",)
    ) as server:
        channel = SmtpChannel(
            settings_for(server.url(USER, PASSWORD)), tls_context=certificate.client_context()
        )
        await channel.send(outgoing())
        await channel.aclose()

    [received] = server.messages
    assert received.tls and received.login == USER
    assert server.logins == [("LOGIN", USER)]


async def test_smtps_implicit_tls_with_auth_plain(certificate: SmtpCertificate) -> None:
    with SmtpServer(
        tls="implicit", certificate=certificate, users={USER: PASSWORD}, mechanisms=("PLAIN",)
    ) as server:
        assert server.url().startswith("smtps://")
        channel = SmtpChannel(
            settings_for(server.url(USER, PASSWORD)), tls_context=certificate.client_context()
        )
        await channel.send(outgoing())
        await channel.aclose()

    assert server.messages[0].tls
    assert server.logins == [("PLAIN", USER)]


async def test_an_untrusted_certificate_is_a_transient_error_in_words(certificate: SmtpCertificate) -> None:
    with SmtpServer(tls="starttls", certificate=certificate) as server:
        channel = SmtpChannel(settings_for(server.url()))  # the system's trust store only
        with pytest.raises(DeliveryTransientError) as caught:
            await channel.send(outgoing())
        await channel.aclose()

    assert str(caught.value) == "TLS certificate for 127.0.0.1 is not trusted: self-signed certificate"
    assert not server.messages


async def test_a_certificate_for_another_host_is_named(certificate: SmtpCertificate, tmp_path: Path) -> None:
    other = make_certificate(tmp_path, hosts=("smtp.other.example",))
    with SmtpServer(tls="implicit", certificate=other) as server:
        channel = SmtpChannel(settings_for(server.url()), tls_context=other.client_context())
        with pytest.raises(
            DeliveryTransientError, match=r"TLS certificate for 127\.0\.0\.1 is not trusted: .*"
        ):
            await channel.send(outgoing())
        await channel.aclose()


async def test_smtp_without_starttls_is_refused_unless_plain_is_allowed() -> None:
    with SmtpServer() as server:
        channel = SmtpChannel(settings_for(server.url()))
        with pytest.raises(DeliveryTransientError, match=r"does not offer STARTTLS.*email\.allow_plain"):
            await channel.send(outgoing())
        await channel.aclose()
    assert not server.messages


async def test_a_wrong_password_is_a_transient_error_naming_the_user() -> None:
    with SmtpServer(users={USER: PASSWORD}) as server:
        channel = SmtpChannel(settings_for(server.url(USER, "wrong"), allow_plain=True))
        with pytest.raises(DeliveryTransientError, match=rf"refused the login as '{USER}': 535"):
            await channel.send(outgoing())
        await channel.aclose()


# -- connections ----------------------------------------------------------------------------


async def test_one_connection_carries_many_messages() -> None:
    with SmtpServer() as server:
        channel = SmtpChannel(settings_for(server.url(), allow_plain=True, connections=1))
        for number in range(25):
            await channel.send(outgoing(f"reader{number}@example.com", subscriber_id=number))
        await channel.aclose()

    assert len(server.messages) == 25
    assert server.connections == 1
    assert channel.connections_opened == 1


async def test_parallel_sends_share_a_bounded_pool_of_connections() -> None:
    with SmtpServer() as server:
        channel = SmtpChannel(settings_for(server.url(), allow_plain=True, connections=4))
        await asyncio.gather(
            *(channel.send(outgoing(f"reader{n}@example.com", subscriber_id=n)) for n in range(40))
        )
        await channel.aclose()

    assert len(server.messages) == 40
    assert 1 <= server.connections <= 4


async def test_rate_limit_spaces_messages() -> None:
    with SmtpServer() as server:
        channel = SmtpChannel(settings_for(server.url(), allow_plain=True, rate_per_second=20))
        started = time.monotonic()
        for number in range(5):
            await channel.send(outgoing(f"reader{number}@example.com"))
        elapsed = time.monotonic() - started
        await channel.aclose()

    assert elapsed >= 4 / 20 * 0.9
    assert len(server.messages) == 5


# -- failures -------------------------------------------------------------------------------


async def test_a_5xx_for_the_recipient_fails_that_delivery_only() -> None:
    with SmtpServer() as server:
        server.rcpt_replies["nobody@example.com"] = "550 5.1.1 <nobody@example.com>: no such user"
        channel = SmtpChannel(settings_for(server.url(), allow_plain=True))
        with pytest.raises(DeliveryPermanentError) as caught:
            await channel.send(outgoing("nobody@example.com"))
        await channel.send(outgoing("ada@example.com"))  # the same connection goes on
        await channel.aclose()

    assert str(caught.value) == "550 5.1.1 <nobody@example.com>: no such user for <nobody@example.com>"
    assert [m.rcpt_tos for m in server.messages] == [["ada@example.com"]]
    assert server.connections == 1


async def test_a_4xx_for_the_recipient_is_transient() -> None:
    with SmtpServer() as server:
        server.rcpt_replies["ada@example.com"] = "451 4.7.1 greylisted, try again in 5 minutes"
        channel = SmtpChannel(settings_for(server.url(), allow_plain=True))
        with pytest.raises(
            DeliveryTransientError, match=r"^451 4\.7\.1 greylisted.* for <ada@example\.com>$"
        ):
            await channel.send(outgoing())
        await channel.aclose()


async def test_a_5xx_for_the_message_is_permanent() -> None:
    with SmtpServer() as server:
        server.data_reply = "554 5.7.1 message looks like spam"
        channel = SmtpChannel(settings_for(server.url(), allow_plain=True))
        with pytest.raises(DeliveryPermanentError, match=r"554 5\.7\.1 message looks like spam"):
            await channel.send(outgoing())
        await channel.aclose()


async def test_a_server_that_hangs_up_is_transient_and_the_next_send_reconnects() -> None:
    with SmtpServer() as server:
        channel = SmtpChannel(settings_for(server.url(), allow_plain=True))
        await channel.send(outgoing("one@example.com"))
        server.hang_up_at_mail = True
        with pytest.raises(DeliveryTransientError):
            await channel.send(outgoing("two@example.com"))
        await channel.send(outgoing("three@example.com"))
        await channel.aclose()

    assert [m.rcpt_tos[0] for m in server.messages] == ["one@example.com", "three@example.com"]
    assert server.connections == 2
    assert channel.connections_opened == 2


async def test_a_server_that_does_not_answer_times_out_as_transient() -> None:
    with SmtpServer() as server:
        server.data_delay = 2.0
        channel = SmtpChannel(settings_for(server.url(), allow_plain=True, timeout=0.3))
        with pytest.raises(DeliveryTransientError, match=r"did not answer within 0\.3s"):
            await channel.send(outgoing())
        await channel.aclose()


async def test_nobody_listening_is_transient() -> None:
    with SmtpServer() as server:
        url = server.url()
    channel = SmtpChannel(settings_for(url, allow_plain=True, timeout=2))
    with pytest.raises(DeliveryTransientError, match=r"smtp://127\.0\.0\.1:\d+"):
        await channel.send(outgoing())
    await channel.aclose()


# -- DKIM -----------------------------------------------------------------------------------


async def test_dkim_signature_covers_both_list_unsubscribe_headers_and_verifies(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record

    with SmtpServer() as server:
        settings = settings_for(
            server.url(),
            allow_plain=True,
            dkim_private_key_file=key_file,
            dkim_selector="fs2024",
            dkim_domain="flarestart.example.com",
        )
        channel = SmtpChannel(settings, clock=clock())
        await channel.send(outgoing())
        await channel.aclose()

    data = server.messages[0].data
    assert data.startswith(b"DKIM-Signature: ")
    assert dkim.verify(data, dnsfunc=dns)
    assert asked == [b"fs2024._domainkey.flarestart.example.com."]
    signature = server.messages[0].message()["DKIM-Signature"]
    tags = dict(
        (name.strip(), value.strip())
        for name, _, value in (tag.partition("=") for tag in re.sub(r"\s+", "", signature).split(";") if tag)
    )
    signed = tags["h"].lower().split(":")
    assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed
    assert {"from", "to", "subject", "date", "message-id", "list-id"} <= set(signed)
    assert tags["d"] == "flarestart.example.com" and tags["s"] == "fs2024"
    # dropping one-click in transit breaks the signature
    tampered = data.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: no"
    )
    assert not dkim.verify(tampered, dnsfunc=dns)
    # what build_message returns is what went on the wire, up to the signing time (t=)
    built = build_message(outgoing(), settings, now=NOW).as_bytes()
    assert dkim.verify(built, dnsfunc=dns)
    assert built.partition(b"\r\n\r\n")[2] == data.partition(b"\r\n\r\n")[2]


def test_half_configured_dkim_is_a_config_error(tmp_path: Path) -> None:
    settings = settings_for("smtp://127.0.0.1:2525", dkim_selector="fs2024")
    with pytest.raises(ConfigError, match=r"email\.dkim_private_key_file, email\.dkim_domain"):
        SmtpChannel(settings)
    (tmp_path / "bad.pem").write_text("not a key")
    settings = settings_for(
        "smtp://127.0.0.1:2525",
        dkim_private_key_file=tmp_path / "bad.pem",
        dkim_selector="s",
        dkim_domain="example.com",
    )
    with pytest.raises(ConfigError, match=r"bad\.pem is not a PEM RSA private key"):
        SmtpChannel(settings)


# -- building blocks ------------------------------------------------------------------------


def test_message_ids_are_deterministic_per_subscriber_and_period() -> None:
    first = make_message_id(42, "2024-05-07", "flarestart.example.com")

    assert first == make_message_id(42, "2024-05-07", "flarestart.example.com")
    assert re.fullmatch(r"<digest\.2024-05-07\.42\.[0-9a-f]{8}@flarestart\.example\.com>", first)
    assert first != make_message_id(43, "2024-05-07", "flarestart.example.com")
    assert first != make_message_id(42, "2024-05-08", "flarestart.example.com")
    assert first != make_message_id(42, "2024-05-07", "flarestart.example.com", key="secret")
    odd = make_message_id(1, "2024-05-07T07:00 <x>", "Example.COM.")
    assert re.fullmatch(r"<digest\.2024-05-07T07-00-x\.1\.[0-9a-f]{8}@example\.com>", odd)
    with pytest.raises(ValueError):
        make_message_id(1, "p", "bad domain>")
    assert message_id_domain(EmailSettings(from_address=FROM)) == "flarestart.example.com"


def test_header_injection_through_names_and_subjects_is_flattened() -> None:
    rendered = RENDERED.__class__(
        subject="Hi\r\nBcc: victim@example.com", html=RENDERED.html, text=RENDERED.text, preheader=""
    )
    out = OutgoingDigest(
        "Ada\r\nBcc: victim@example.com",
        "ada@example.com",
        rendered,
        make_message_id(1, "p", "example.com"),
        f"{BASE}/u/T",
        "p",
    )

    msg = build_message(out, settings_for("smtp://h"), now=NOW)

    assert msg["Bcc"] is None
    assert b"\r\nBcc:" not in msg.as_bytes()
    assert msg["Subject"] == "Hi Bcc: victim@example.com"


def test_a_malformed_recipient_is_a_permanent_error() -> None:
    out = outgoing("not an address")
    with pytest.raises(DeliveryPermanentError, match="not a valid email address"):
        build_message(out, settings_for("smtp://h"), now=NOW)


def test_mail_without_an_unsubscribe_link_has_no_list_headers() -> None:
    out = OutgoingDigest(
        "Ada", "ada@example.com", RENDERED, make_message_id(1, "confirm", "example.com"), "", "c"
    )
    msg = build_message(out, settings_for("smtp://h"), now=NOW)
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None


def test_smtp_urls() -> None:
    starttls = parse_smtp_url("smtp://digest%40example.com:p%2Fw%3A@mail.example.com", allow_plain=False)
    assert (starttls.host, starttls.port, starttls.start_tls, starttls.implicit_tls) == (
        "mail.example.com",
        587,
        True,
        False,
    )
    assert (starttls.username, starttls.password) == ("digest@example.com", "p/w:")
    assert parse_smtp_url("smtp://relay:25", allow_plain=True).start_tls is None
    implicit = parse_smtp_url("SMTPS://mail.example.com", allow_plain=False)
    assert (implicit.port, implicit.implicit_tls, str(implicit)) == (
        465,
        True,
        "smtps://mail.example.com:465",
    )
    with pytest.raises(ConfigError) as caught:
        parse_smtp_url("http://user:hunter2@mail.example.com", allow_plain=False)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="not set"):
        SmtpChannel(EmailSettings())


def test_non_ascii_names_and_long_links_survive_the_round_trip() -> None:
    long_link = f"{BASE}/u/" + "t" * 120
    out = OutgoingDigest(
        "Zoë Ünïcode, Jr.",
        "zoe@example.com",
        RENDERED,
        make_message_id(5, "p", "example.com"),
        long_link,
        "p",
    )

    raw = build_message(out, settings_for("smtp://h"), now=NOW).as_bytes()

    assert raw.isascii() and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert msg["To"].addresses[0].display_name == "Zoë Ünïcode, Jr."
    assert msg["To"].addresses[0].addr_spec == "zoe@example.com"
    assert msg["List-Unsubscribe"] == (
        f"<{long_link}>, <mailto:unsubscribe@flarestart.example.com?subject=unsubscribe>"
    )
    text_part = msg.get_body(("plain",))
    assert text_part is not None and "FlareStart · your developer morning" in text_part.get_content()
    assert repr(parse_smtp_url("smtp://u:hunter2@h", allow_plain=False)).count("hunter2") == 0


def _html_of(raw: bytes) -> tuple[str, str]:
    """The HTML part as a mail client decodes it, and its Content-Transfer-Encoding."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content()), str(part["Content-Transfer-Encoding"])


def _same_page(a: str, b: str) -> bool:
    """Two HTML texts a browser shows alike: the same tree, whitespace runs counted as one."""

    def norm(html: str) -> str:
        tree = lxml.html.document_fromstring(html)
        return re.sub(r"\s+", " ", lxml.html.tostring(tree, encoding="unicode"))

    return norm(a.strip()) == norm(b.strip())


@pytest.mark.parametrize(
    ("html", "encoding"),
    [
        # Plain markup: 7bit, as it is.
        ("<p>Hello</p>", "7bit"),
        # Non-ASCII becomes character references; long lines break at a space, in text and in
        # CSS inside a style attribute.
        ("<p>Zoë’s café 🚀 " + "word " * 400 + "</p>", "7bit"),
        ('<td style="' + "padding: 0 24px; " * 120 + '">x</td>', "7bit"),
        # No space to break a 2,000-character line at: quoted-printable.
        ('<a href="https://example.com/' + "a" * 2000 + '">x</a>', "quoted-printable"),
    ],
)
def test_the_html_part_is_7bit_when_it_can_be_and_reads_the_same(html: str, encoding: str) -> None:
    rendered = dataclasses.replace(RENDERED, html=html)
    out = dataclasses.replace(outgoing(), rendered=rendered)

    raw = message_bytes(out, settings_for("smtp://h"), now=NOW)

    assert raw.isascii() and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    decoded, used = _html_of(raw)
    assert used == encoding
    assert _same_page(decoded, html)


def test_an_html_part_holding_the_boundary_falls_back_to_quoted_printable() -> None:
    out = outgoing()
    boundary = b"=_flarestart_" + hashlib.sha256(out.message_id.encode()).hexdigest()[:24].encode()
    html = f"<p>--{boundary.decode()}</p>"
    raw = message_bytes(
        dataclasses.replace(out, rendered=dataclasses.replace(RENDERED, html=html)),
        settings_for("smtp://h"),
        now=NOW,
    )

    decoded, used = _html_of(raw)
    assert used == "quoted-printable" and decoded.strip() == html


@pytest.mark.parametrize(
    "subject",
    [
        "Short and plain",
        "Redshift releases Quarry 9.15 with a redesigned dashboard · your developer morning",
        "A long plain subject that goes on and on past the seventy-eight characters of a line, twice over",
        "Zoë’s café ships 🚀 and 日本語のニュース, all in one morning digest that is long enough to fold",
        "Looks like =?utf-8?b?SGk=?= an encoded word but is text",
        "  leading and   inner   spaces kept",
        "x" * 120,
    ],
)
def test_subjects_come_back_as_written_in_lines_a_server_takes(subject: str) -> None:
    out = dataclasses.replace(outgoing(), rendered=dataclasses.replace(RENDERED, subject=subject))

    raw = message_bytes(out, settings_for("smtp://h"), now=NOW)

    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    subject_lines = re.search(rb"^Subject:.*?(?=\r\n\S)", head, re.MULTILINE | re.DOTALL)
    assert subject_lines is not None
    for line in subject_lines.group(0).split(b"\r\n"):  # too long only when it cannot break
        assert len(line) <= 78 or len(line.removeprefix(b"Subject:").split()) == 1
    # Runs of whitespace become one space (headers are one line of text), nothing else changes.
    assert BytesParser(policy=policy.default).parsebytes(raw)["Subject"] == " ".join(subject.split())


# -- the envelope ------------------------------------------------------------------------------


async def test_the_envelope_declares_the_size_and_carries_the_message_unchanged() -> None:
    with SmtpServer() as server:
        channel = SmtpChannel(settings_for(server.url(), allow_plain=True), clock=clock())
        await channel.send(outgoing())
        await channel.send(outgoing("bob@example.com", subscriber_id=7))
        await channel.aclose()

    first, second = server.messages
    wire = message_bytes(outgoing(), settings_for(server.url(), allow_plain=True), now=NOW)
    assert first.mail_options == [f"SIZE={len(wire)}"]
    assert first.data == wire  # dot-stuffing undone, nothing else touched
    assert second.rcpt_tos == ["bob@example.com"] and server.connections == 1


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com\r\nRCPT TO:<eve@example.com>",
        "a b@example.com",
        "<ada@example.com>",
        "zoë@example.com",
    ],
)
async def test_an_address_that_could_break_the_command_line_never_reaches_the_server(address: str) -> None:
    with SmtpServer() as server:
        channel = SmtpChannel(settings_for(server.url(), allow_plain=True), clock=clock())
        out = dataclasses.replace(outgoing(), to_address=address, wire=b"Subject: x\r\n\r\nbody\r\n")
        with pytest.raises(DeliveryPermanentError):
            await channel.send(out)
        await channel.send(outgoing())  # the connection is fine for the next one
        await channel.aclose()

    assert [m.rcpt_tos for m in server.messages] == [["ada@example.com"]]
