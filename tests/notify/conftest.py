"""Real counterparts for the notification channels: an SMTP server (aiosmtpd, plain, STARTTLS
and implicit TLS, under a private test CA), a webhook receiver (http.server, HTTP or HTTPS),
and a member's OpenPGP key (pysequoia). Nothing is mocked: what the tests see is what a real
mail server or webhook endpoint would have received.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pysequoia
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets
from app.notify.sender import NotificationSender

LOOPBACK = "127.0.0.1"
SMTP_USERNAME = "notifier"
SMTP_PASSWORD = "correct horse battery staple"


def free_loopback_port() -> int:
    # The kernel picks a free port; the servers bind it again (SO_REUSEADDR), so an SMTP server
    # can be stopped and restarted on the same address, as a real one coming back would be.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


# --- a private CA and a server certificate for 127.0.0.1 ---------------------------------------


@dataclass(frozen=True)
class LoopbackCertificate:
    ca_file: Path  # the test CA: what a client passes as ca_file to trust the server
    certificate_file: Path  # the server's certificate, for 127.0.0.1 and localhost
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certificate_file, self.key_file)
        return context


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="session")
def loopback_certificate(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCertificate:
    """A CA and a server certificate it signed, as a private CA would issue: a self-signed leaf
    would pass with some TLS stacks and fail with stricter ones."""
    directory = tmp_path_factory.mktemp("loopback-tls")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Daylight test CA")])
    ca_certificate = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return LoopbackCertificate(
        ca_file=_write_pem(directory / "ca.pem", ca_certificate.public_bytes(serialization.Encoding.PEM)),
        certificate_file=_write_pem(
            directory / "server.pem", server_certificate.public_bytes(serialization.Encoding.PEM)
        ),
        key_file=_write_pem(
            directory / "server-key.pem",
            server_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ),
    )


# --- SMTP ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    envelope_from: str
    recipients: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)


class RecordingMailHandler:
    """aiosmtpd handler: keeps every accepted message, and refuses the recipients it is told to
    refuse with the 550 a real server sends (echoing the address, as real servers do)."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMail] = []
        self.helo_names: list[str] = []
        self.refused_recipients: set[str] = set()
        self._lock = threading.Lock()

    async def handle_EHLO(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        with self._lock:
            self.helo_names.append(hostname)
        session.host_name = hostname
        return responses

    async def handle_RCPT(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refused_recipients:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        with self._lock:
            self.messages.append(
                ReceivedMail(
                    envelope_from=envelope.mail_from or "",
                    recipients=list(envelope.rcpt_tos),
                    raw=content,
                )
            )
        return "250 Message accepted for delivery"


def accept_only_test_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    accepted = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USERNAME.encode(),
        SMTP_PASSWORD.encode(),
    )
    # handled=False: aiosmtpd then answers the refusal itself (535); with its default (True)
    # it says nothing and the client waits for an answer that never comes.
    return AuthResult(success=accepted, handled=False)


class RecordingSmtpServer:
    """A real SMTP server on 127.0.0.1 that records what it accepts; stop() and start() bring it
    down and back on the same port, as a relay restarting would."""

    def __init__(
        self,
        *,
        scheme: str,
        implicit_tls: ssl.SSLContext | None = None,
        ca_file: Path | None = None,
        **smtp_options: Any,
    ) -> None:
        self.host = LOOPBACK
        self.port = free_loopback_port()
        self.scheme = scheme
        self.ca_file = ca_file
        self.handler = RecordingMailHandler()
        self._implicit_tls = implicit_tls
        self._smtp_options = smtp_options
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[ReceivedMail]:
        return self.handler.messages

    @property
    def helo_names(self) -> list[str]:
        return self.handler.helo_names

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def url_with_login(self, username: str, password: str) -> str:
        return (
            f"{self.scheme}://{quote(username, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}"
        )

    def refuse_recipient(self, address: str) -> None:
        self.handler.refused_recipients.add(address)

    def start(self) -> None:
        if self._controller is not None:
            return
        # A fresh Controller each time: a stopped one has closed its event loop.
        controller = Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            ssl_context=self._implicit_tls,
            server_hostname="mail.test",
            **self._smtp_options,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def _running(server: RecordingSmtpServer) -> Iterator[RecordingSmtpServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server() -> Iterator[RecordingSmtpServer]:
    """Plain SMTP on loopback, no TLS: url smtp://127.0.0.1:PORT."""
    yield from _running(RecordingSmtpServer(scheme="smtp"))


@pytest.fixture
def tls_smtp_server(loopback_certificate: LoopbackCertificate) -> Iterator[RecordingSmtpServer]:
    """SMTP that requires STARTTLS before anything else, with a certificate for 127.0.0.1 from
    the test CA (`.ca_file`); url smtp+starttls://127.0.0.1:PORT."""
    yield from _running(
        RecordingSmtpServer(
            scheme="smtp+starttls",
            ca_file=loopback_certificate.ca_file,
            tls_context=loopback_certificate.server_context(),
            require_starttls=True,
        )
    )


@pytest.fixture
def authenticating_smtp_server(loopback_certificate: LoopbackCertificate) -> Iterator[RecordingSmtpServer]:
    """The STARTTLS server, also requiring AUTH (after TLS) as SMTP_USERNAME / SMTP_PASSWORD."""
    yield from _running(
        RecordingSmtpServer(
            scheme="smtp+starttls",
            ca_file=loopback_certificate.ca_file,
            tls_context=loopback_certificate.server_context(),
            require_starttls=True,
            authenticator=accept_only_test_login,
            auth_required=True,
            auth_require_tls=True,
        )
    )


@pytest.fixture
def smtps_server(loopback_certificate: LoopbackCertificate) -> Iterator[RecordingSmtpServer]:
    """SMTP over implicit TLS (port 465 style); url smtps://127.0.0.1:PORT."""
    yield from _running(
        RecordingSmtpServer(
            scheme="smtps",
            ca_file=loopback_certificate.ca_file,
            implicit_tls=loopback_certificate.server_context(),
        )
    )


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A port that accepts connections (the kernel completes them) and never says a word: what
    a stalled server or a black-holing firewall looks like to a client waiting for a greeting."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(8)
    try:
        yield LOOPBACK, listener.getsockname()[1]
    finally:
        listener.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    return free_loopback_port()


# --- webhooks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]  # names lower-cased: HTTP header names are case-insensitive
    body: bytes


class RecordingWebhookReceiver(ThreadingHTTPServer):
    """A webhook endpoint on 127.0.0.1 that records each request and answers `.status`
    (a 3xx carries a Location on the same server, so that a followed redirect would show)."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None, *, ca_file: Path | None = None) -> None:
        self.requests: list[ReceivedRequest] = []
        self.status = 200
        self.ca_file = ca_file
        self._scheme = "https" if tls is not None else "http"
        self._lock = threading.Lock()
        super().__init__((LOOPBACK, 0), RecordingWebhookHandler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"{self._scheme}://{LOOPBACK}:{self.port}/hook"

    def record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(request)


class RecordingWebhookHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RecordingWebhookReceiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.server.record(
            ReceivedRequest(
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
        )
        answer = b"ok"
        self.send_response(self.server.status)
        if 300 <= self.server.status < 400:
            self.send_header("Location", "/redirected-hook")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serving(receiver: RecordingWebhookReceiver) -> Iterator[RecordingWebhookReceiver]:
    # A short poll interval: shutdown() waits for the next poll, 0.5 s by default, per test.
    thread = threading.Thread(target=receiver.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join(timeout=10)


@pytest.fixture
def webhook_receiver() -> Iterator[RecordingWebhookReceiver]:
    """Plain HTTP on loopback (a local bridge); url http://127.0.0.1:PORT/hook."""
    yield from _serving(RecordingWebhookReceiver())


@pytest.fixture
def tls_webhook_receiver(loopback_certificate: LoopbackCertificate) -> Iterator[RecordingWebhookReceiver]:
    """HTTPS with the test CA's certificate for 127.0.0.1 (`.ca_file`)."""
    yield from _serving(
        RecordingWebhookReceiver(loopback_certificate.server_context(), ca_file=loopback_certificate.ca_file)
    )


# --- a member's OpenPGP key ---------------------------------------------------------------------


@dataclass(frozen=True)
class OpenPgpMemberKey:
    """A member's key pair, as their mail client would hold it."""

    secret_key: pysequoia.Tsk = field(repr=False)

    @property
    def public_cert(self) -> pysequoia.Cert:
        return self.secret_key.extract_certificate()

    @property
    def public_armored(self) -> str:
        return str(self.public_cert)

    @property
    def secret_armored(self) -> str:
        return str(self.secret_key)

    @property
    def fingerprint(self) -> str:
        return self.public_cert.fingerprint.upper()

    def decrypt(self, armored_ciphertext: str | bytes) -> bytes:
        data = armored_ciphertext.encode() if isinstance(armored_ciphertext, str) else armored_ciphertext
        plaintext = pysequoia.decrypt(data, decryptor=self.secret_key.decryptor()).bytes
        assert plaintext is not None
        return plaintext


def generate_member_key(user_id: str = "Member <member@example.org>", **options: Any) -> OpenPgpMemberKey:
    return OpenPgpMemberKey(pysequoia.Tsk.generate(user_id, **options))


@pytest.fixture
def openpgp_member_key() -> OpenPgpMemberKey:
    return generate_member_key()


@pytest.fixture
def member_key_factory() -> Callable[..., OpenPgpMemberKey]:
    """Generates further keys: generate_member_key(user_id, validity_seconds=...)."""
    return generate_member_key


# --- the sender's clock, and a sender on the test's database --------------------------------------

# Today (the day the intake app stamps on reports), mid-morning, UTC.
START = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(10, 0, 5), dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.moment = START

    def __call__(self) -> dt.datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += dt.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sender_for(
    database: Database, server_secrets: ServerSecrets, clock: Clock
) -> Callable[[Settings], NotificationSender]:
    def make(settings: Settings) -> NotificationSender:
        return NotificationSender(database, settings, server_secrets.key_integrity_key, now=clock)

    return make


@pytest.fixture
def mail_settings(settings: Settings, smtp_server: RecordingSmtpServer) -> Settings:
    """The organisation's settings, sending through the test's SMTP server."""
    return settings.model_copy(
        update={
            "smtp_url": SecretStr(smtp_server.url),
            "mail_from": "notices@daylight.example",
            "notify_batch_seconds": 60,
        }
    )


@pytest.fixture
def mail_sender(
    sender_for: Callable[[Settings], NotificationSender], mail_settings: Settings
) -> NotificationSender:
    return sender_for(mail_settings)
