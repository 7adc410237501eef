"""A real SMTP server on loopback for the email tests: aiosmtpd in its own thread.

    with SmtpServer(tls="starttls", certificate=cert, users={"digest": "s3cret"}) as server:
        url = server.url("digest", "s3cret")          # smtp://digest:s3cret@127.0.0.1:PORT
        ...                                           # send with SmtpChannel
        server.messages[0].message()["Subject"]       # parsed the way a mail client would
        server.connections                            # connections the server accepted

Knobs that make it misbehave like real servers do: `rcpt_replies` answers a recipient with a
chosen reply ("550 5.1.1 no such user"), `data_reply` answers DATA, `hang_up_at_mail` drops the
connection when the next transaction starts, `data_delay` answers DATA late.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import threading
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TlsMode = Literal["none", "starttls", "implicit"]


@dataclass(frozen=True)
class SmtpCertificate:
    """A self-signed certificate made for one test run (trusted only where a test says so)."""

    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.cert_file))


def make_certificate(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> SmtpCertificate:
    """A fresh self-signed certificate (EC P-256) for `hosts`, written to `folder`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FlareStart test SMTP")])
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return SmtpCertificate(cert_file, key_file)


@dataclass
class Received:
    """One message as the server took it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None  # who authenticated, if anyone
    tls: bool  # whether the session was encrypted
    mail_options: list[str] = field(default_factory=list)  # MAIL FROM's parameters (SIZE=, SMTPUTF8)

    def message(self) -> EmailMessage:
        """Parsed with the modern email API, the way a mail client reads it."""
        parsed = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Knobs:
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    hang_up_at_mail: bool = False
    data_delay: float = 0.0


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.owner.hang_up_at_mail:
            self.owner.hang_up_at_mail = False
            assert server.transport is not None
            server.transport.close()  # the client sees the line drop, not a reply
            return "421 4.3.2 going away"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.owner.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.owner.data_delay:
            await asyncio.sleep(self.owner.data_delay)
        if self.owner.data_reply is not None:
            return self.owner.data_reply
        content = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else content.encode()
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else None
        with self.owner.lock:
            self.owner.messages.append(
                Received(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    data=data,
                    login=login,
                    tls=session.ssl is not None or _encrypted(server),
                    mail_options=list(envelope.mail_options),
                )
            )
            number = len(self.owner.messages)
        return f"250 2.0.0 OK queued as TEST{number:05d}"


def _encrypted(server: SMTP) -> bool:
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class _Controller(Controller):
    """aiosmtpd's controller on a free loopback port, counting the connections it accepts."""

    def __init__(self, owner: SmtpServer, **kwargs: Any) -> None:
        super().__init__(_Handler(owner), hostname="127.0.0.1", port=0, **kwargs)
        self.owner = owner

    def factory(self) -> SMTP:
        with self.owner.lock:
            self.owner.connections += 1
        return SMTP(self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        async def create() -> asyncio.AbstractServer:
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=0, ssl=self.ssl_context
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return create()


class SmtpServer(_Knobs):
    """A loopback SMTP server: plain, STARTTLS or implicit TLS, with optional AUTH LOGIN/PLAIN."""

    def __init__(
        self,
        *,
        tls: TlsMode = "none",
        certificate: SmtpCertificate | None = None,
        users: dict[str, str] | None = None,
        mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN"),
        smtputf8: bool = False,
    ) -> None:
        super().__init__()
        if tls != "none" and certificate is None:
            raise ValueError("a TLS server needs a certificate")
        self.tls: TlsMode = tls
        self.users = dict(users or {})
        self.messages: list[Received] = []
        self.logins: list[tuple[str, str]] = []  # (mechanism, user) of each successful AUTH
        self.connections = 0
        self.lock = threading.Lock()
        smtp_kwargs: dict[str, Any] = {"server_hostname": "smtp.test.localhost", "enable_SMTPUTF8": smtputf8}
        if tls == "starttls":
            assert certificate is not None
            smtp_kwargs.update(tls_context=certificate.server_context(), require_starttls=True)
        if tls == "implicit":
            assert certificate is not None
            smtp_kwargs["ssl_context"] = certificate.server_context()
        if self.users:
            excluded = [name for name in ("PLAIN", "LOGIN") if name not in mechanisms]
            smtp_kwargs.update(
                authenticator=self._authenticate,
                # aiosmtpd only knows of STARTTLS sessions as secure and warns when AUTH is demanded
                # elsewhere: over plain and implicit TLS it is offered (and used) but not demanded
                auth_required=tls == "starttls",
                auth_require_tls=tls == "starttls",
                auth_exclude_mechanism=excluded,
            )
        self._controller = _Controller(self, **smtp_kwargs)

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> SmtpServer:
        self._controller.start()
        with self.lock:
            self.connections = 0  # the controller's own readiness probe is not a client
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # helpers ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def url(self, user: str | None = None, password: str | None = None, *, host: str = "127.0.0.1") -> str:
        """The SMTP_URL for this server; credentials are percent-encoded as a URL needs."""
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        credentials = ""
        if user is not None:
            credentials = quote(user, safe="")
            if password is not None:
                credentials += ":" + quote(password, safe="")
            credentials += "@"
        return f"{scheme}://{credentials}{host}:{self.port}"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if user in self.users and self.users[user] == password:
                with self.lock:
                    self.logins.append((mechanism, user))
                return AuthResult(success=True, auth_data=user.encode())
        return AuthResult(success=False, handled=False)
