"""How a content-free staff notice leaves the server: SMTP mail, optionally OpenPGP-encrypted
(PGP/MIME, RFC 3156), or an HTTPS webhook signed with HMAC-SHA256.

Every function here is blocking, keeps no state and may run on several threads at once. A
failed delivery raises `DeliveryFailed`, whose `reason` is a fixed phrase: what a mail server
or a webhook said (banners, addresses echoed in refusals, certificate subjects) never reaches
the admin page or the audit log, where it could carry a member's address or an attacker's text.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import hashlib
import hmac
import http.client
import ipaddress
import json
import re
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Literal, get_args

import pysequoia
from pysequoia.packet import Packet, PacketPile, SignatureType, Tag

from app.kit.clock import utc_now

SmtpSecurity = Literal["starttls", "tls", "plain"]

# The outer Subject of an encrypted notice: the real one travels inside the ciphertext, so a
# mail provider or anyone on the path learns only that a notice was sent.
ENCRYPTED_NOTICE_SUBJECT = "Daylight notice"
# What smtplib says in EHLO instead of this machine's name, which would otherwise end up in
# the Received header of every notice (an onion service's host must not be named in mail).
SMTP_LOCAL_HOSTNAME = "localhost"
MAX_OPENPGP_KEY_BYTES = 64 * 1024
MAX_WEBHOOK_URL_LENGTH = 500
MAX_WEBHOOK_RESPONSE_BYTES = 64 * 1024
WEBHOOK_USER_AGENT = "Daylight-Notify"
MIN_WEBHOOK_SIGNING_KEY_BYTES = 16
# A server configuration URL is a line of settings, not a document.
MAX_SMTP_URL_LENGTH = 2048

_SMTP_SCHEMES: dict[str, tuple[SmtpSecurity, int]] = {
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
    "smtp": ("plain", 25),
}
_LOOPBACK_NAMES = frozenset({"localhost"})
# Host names and IP literals only: anything else in a host is a typo or an injection attempt.
_HOST_PATTERN = re.compile(r"[A-Za-z0-9._:-]+")
# Message-ID and Idempotency-Key tokens go into headers verbatim: no spaces, no line breaks.
_HEADER_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~+=-]{1,200}")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class MailServer:
    """Where and how notices are handed over for delivery by mail."""

    host: str
    port: int
    security: SmtpSecurity
    username: str | None
    # Kept out of repr so that a logged or printed MailServer never shows it.
    password: str | None = field(repr=False)
    sender: str
    timeout_seconds: float = 20.0
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if self.security not in get_args(SmtpSecurity):
            raise ValueError("security must be one of starttls, tls, plain")
        if not 0 < self.port < 65536:
            raise ValueError("the SMTP port must be between 1 and 65535")
        if self.security == "plain" and not is_loopback_host(self.host):
            raise ValueError("plain SMTP is only allowed to this machine; use STARTTLS or TLS")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both an SMTP user name and a password, or neither")
        if self.timeout_seconds <= 0:
            raise ValueError("the SMTP timeout must be positive")
        parse_mail_address(self.sender, what="sender")


class DeliveryFailed(Exception):
    """A delivery that did not happen; `reason` is a short, content-free phrase the admin page
    shows and the audit log records."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # Retrying will not help until someone changes something (an address, a key, a URL);
        # the sender still retries later, but shows the failure to the admin as needing action.
        self.permanent = permanent


def is_loopback_host(host: str) -> bool:
    """Whether `host` names this machine: 'localhost' or a loopback IP literal."""
    normalized = host.strip("[]").lower()
    if normalized in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(normalized).is_loopback
    except ValueError:
        return False


def parse_mail_address(address: str, *, what: str) -> Address:
    """One bare address (local@domain), or ValueError naming `what` without echoing it."""
    # A line break in an address is header injection; a comma is a second recipient.
    if _CONTROL_CHARACTERS.search(address) or "," in address:
        raise ValueError(f"the {what} address is not a single e-mail address")
    try:
        parsed = Address(addr_spec=address)
    except (HeaderParseError, ValueError, IndexError):
        raise ValueError(f"the {what} address is not a valid e-mail address") from None
    if not parsed.username or not parsed.domain:
        raise ValueError(f"the {what} address is not a valid e-mail address")
    return parsed


def parse_smtp_url(
    url: str, *, sender: str, ca_file: Path | None = None, timeout_seconds: float = 20.0
) -> MailServer:
    """Read the admin's SMTP setting.

    smtp+starttls://user:pass@host[:587], smtps://user:pass@host[:465], or smtp://host[:25] to
    this machine only (a relay on loopback): a notice in the clear over the network would show
    who gets notified, and when, to anyone on the path. User and password are percent-decoded.
    Error messages never repeat the URL, which holds the password.
    """
    if len(url) > MAX_SMTP_URL_LENGTH:
        raise ValueError("the SMTP URL is too long")
    if _CONTROL_CHARACTERS.search(url):
        raise ValueError("the SMTP URL must not contain spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
        host = parts.hostname
        raw_username = parts.username
        raw_password = parts.password
    except ValueError:
        # `from None`: the parser's own message may quote the URL, password included.
        raise ValueError("the SMTP URL is malformed (check the host and port)") from None
    scheme = parts.scheme.lower()
    if scheme not in _SMTP_SCHEMES:
        raise ValueError("the SMTP URL must start with smtp+starttls://, smtps:// or smtp:// (loopback only)")
    security, default_port = _SMTP_SCHEMES[scheme]
    if not host or not _HOST_PATTERN.fullmatch(host):
        raise ValueError("the SMTP URL has no valid host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the SMTP URL must not have a path, query or fragment")
    if port == 0:
        raise ValueError("the SMTP URL has an invalid port")
    if security == "plain" and not is_loopback_host(host):
        raise ValueError(
            "smtp:// sends in the clear and is only allowed to this machine; use smtp+starttls:// or smtps://"
        )
    username = urllib.parse.unquote(raw_username) if raw_username else None
    password = urllib.parse.unquote(raw_password) if raw_password is not None else None
    if (username is None) != (password is None):
        raise ValueError("the SMTP URL must give both a user name and a password, or neither")
    return MailServer(
        host=host,
        port=port or default_port,
        security=security,
        username=username,
        password=password,
        sender=sender,
        timeout_seconds=timeout_seconds,
        ca_file=ca_file,
    )


# ---------------------------------------------------------------------------------------------
# OpenPGP


def read_openpgp_key(armored: str) -> str:
    """Check a member's pasted public key; returns its fingerprint (upper-case hex).

    ValueError, with a message for the member, when the text is not one OpenPGP certificate,
    carries secret key material, is revoked or expired, fails Sequoia's standard policy, or has
    no live key that may encrypt.
    """
    return _checked_encryption_cert(armored, now=utc_now()).fingerprint.upper()


def _checked_encryption_cert(armored: str, *, now: dt.datetime) -> pysequoia.Cert:
    """`_usable_encryption_cert`, where anything the parser raises on a damaged key (Sequoia
    raises RuntimeError from deep inside) is the member's plain ValueError, never a 500."""
    try:
        return _usable_encryption_cert(armored, now=now)
    except ValueError:
        raise
    except Exception:
        raise ValueError(
            "this OpenPGP key could not be read; paste the armored public key block again"
        ) from None


def _usable_encryption_cert(armored: str, *, now: dt.datetime) -> pysequoia.Cert:
    encoded = armored.encode("utf-8")
    if len(encoded) > MAX_OPENPGP_KEY_BYTES:
        raise ValueError("the key is larger than 64 KiB; paste one public key")
    if not encoded.strip():
        raise ValueError("paste an OpenPGP public key")
    # Sequoia raises RuntimeError from Rust with a backtrace attached; whatever it raises, the
    # member gets a plain message and none of the parser's text.
    try:
        packets = list(PacketPile.from_bytes(encoded))
        certs = pysequoia.Cert.split_bytes(encoded)
    except Exception:
        raise ValueError("this is not an OpenPGP public key; paste the armored key block") from None
    # Cert.from_bytes would quietly drop the secret parts: refuse instead, so that a member who
    # pasted their private key learns to treat it as exposed rather than think all went well.
    if any(packet.tag in (Tag.SecretKey, Tag.SecretSubkey) for packet in packets):
        raise ValueError("paste the public key, not the private key")
    if len(certs) != 1:
        raise ValueError(
            "paste exactly one OpenPGP public key" if certs else "this is not an OpenPGP public key"
        )
    cert = certs[0]
    if cert.is_revoked:
        raise ValueError("this key has been revoked")
    try:
        expiration = cert.expiration
    except Exception:
        raise ValueError("this key uses algorithms or signatures that are no longer accepted") from None
    if expiration is not None and expiration <= now:
        raise ValueError("this key has expired")
    if not _has_live_encryption_key(cert, now=now):
        raise ValueError("this key has no valid encryption subkey")
    # The authoritative check: Sequoia's own recipient selection under its standard policy.
    try:
        pysequoia.encrypt(b"", recipients=[cert])
    except Exception:
        raise ValueError("this key has no encryption subkey that can be used") from None
    return cert


def _has_live_encryption_key(cert: pysequoia.Cert, *, now: dt.datetime) -> bool:
    # pysequoia.encrypt falls back to an expired subkey when none is alive: a member who renewed
    # the primary key but not the encryption subkey (a common slip) would get mail encrypted to
    # a key they may have discarded. pysequoia has no per-subkey view, so this reads the packets,
    # without verifying their signatures; that is enough here, where only the member pasting
    # their own key could forge them, and the cryptographic check is Sequoia's own recipient
    # selection, which the caller runs next. (A certificate whose primary key is its only
    # encryption key, a PGP 2 era shape, is refused as having no encryption subkey.)
    subkeys: list[tuple[Packet, list[Packet]]] = []
    for packet in PacketPile.from_bytes(bytes(cert)):
        if packet.tag == Tag.PublicSubkey:
            subkeys.append((packet, []))
        elif packet.tag == Tag.Signature and subkeys:
            subkeys[-1][1].append(packet)
    return any(_subkey_is_live_for_encryption(subkey, signatures, now) for subkey, signatures in subkeys)


def _subkey_is_live_for_encryption(subkey: Packet, signatures: Iterable[Packet], now: dt.datetime) -> bool:
    bindings: list[tuple[dt.datetime, Packet]] = []
    for signature in signatures:
        if signature.signature_type == SignatureType.SubkeyRevocation:
            return False
        created = signature.signature_created
        if signature.signature_type == SignatureType.SubkeyBinding and created is not None and created <= now:
            bindings.append((created, signature))
    if not bindings or subkey.key_created is None:
        return False
    # The newest binding states the subkey's current flags and expiry.
    _, newest = max(bindings, key=lambda dated: dated[0])
    if not _may_encrypt(newest):
        return False
    validity = newest.key_validity_period
    return validity is None or subkey.key_created + validity > now


def _may_encrypt(signature: Packet) -> bool:
    flags = signature.key_flags
    return flags is not None and (flags.transport_encryption or flags.storage_encryption)


# ---------------------------------------------------------------------------------------------
# Mail


def send_mail(
    server: MailServer,
    *,
    recipient: str,
    subject: str,
    body: str,
    message_id: str,
    openpgp_key: str | None = None,
) -> None:
    """Hand one notice to the mail server; returns once the server has accepted it.

    With `openpgp_key` the notice goes as PGP/MIME (RFC 3156) and only the fixed subject
    "Daylight notice" is readable on the way. Raises DeliveryFailed on any failure, and never
    falls back to sending in the clear when the key cannot be used.
    """
    if not _HEADER_TOKEN_PATTERN.fullmatch(message_id):
        raise ValueError("message_id must be a short token of letters, digits and ._~+=-")
    try:
        parse_mail_address(recipient, what="recipient")
    except ValueError:
        raise DeliveryFailed("recipient address not valid", permanent=True) from None
    message = _notice_message(server, recipient=recipient, subject=subject, body=body, message_id=message_id)
    if openpgp_key is not None:
        try:
            member_cert = _checked_encryption_cert(openpgp_key, now=utc_now())
        except ValueError:
            raise DeliveryFailed("member's OpenPGP key not usable", permanent=True) from None
        message = _encrypted_notice(message, member_cert)
    _deliver(server, recipient=recipient, message=message)


def _notice_message(
    server: MailServer, *, recipient: str, subject: str, body: str, message_id: str
) -> EmailMessage:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = server.sender
    message["To"] = recipient
    message["Subject"] = subject
    # UTC: a local offset in the Date header would tell the reader where the server runs.
    message["Date"] = email.utils.format_datetime(utc_now())
    # The sender's own domain: already in From, so it tells nothing new, and mail filters
    # look less kindly on a Message-ID from a domain that is not the sender's.
    message["Message-ID"] = f"<{message_id}@{parse_mail_address(server.sender, what='sender').domain}>"
    # RFC 3834: an automatic message; vacation responders and list software must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body, charset="utf-8")
    return message


def _encrypted_notice(plain: EmailMessage, member_cert: pysequoia.Cert) -> EmailMessage:
    # The inner part carries the real Subject (and the other headers a reader's client shows)
    # marked `protected-headers="v1"`, the convention RFC 9788 grew out of and that Thunderbird
    # reads, so that the member's client shows the real subject once decrypted.
    inner = EmailMessage(policy=email.policy.SMTP)
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        inner[name] = str(plain[name])
    inner.set_content(plain.get_content(), charset="utf-8", cte="quoted-printable")
    inner.set_param("protected-headers", "v1")
    del inner["MIME-Version"]
    ciphertext = pysequoia.encrypt(inner.as_bytes(policy=email.policy.SMTP), recipients=[member_cert])

    version_part = EmailMessage(policy=email.policy.SMTP)
    version_part.set_content(b"Version: 1\r\n", maintype="application", subtype="pgp-encrypted", cte="7bit")
    del version_part["MIME-Version"]
    ciphertext_part = EmailMessage(policy=email.policy.SMTP)
    ciphertext_part.set_content(
        ciphertext,
        maintype="application",
        subtype="octet-stream",
        cte="7bit",
        disposition="inline",
        filename="encrypted.asc",
    )
    del ciphertext_part["MIME-Version"]

    outer = EmailMessage(policy=email.policy.SMTP)
    for name in ("From", "To", "Date", "Message-ID", "Auto-Submitted"):
        outer[name] = str(plain[name])
    outer["Subject"] = ENCRYPTED_NOTICE_SUBJECT
    outer["MIME-Version"] = "1.0"
    outer["Content-Type"] = 'multipart/encrypted; protocol="application/pgp-encrypted"'
    outer.set_payload([version_part, ciphertext_part])
    return outer


SmtpStage = Literal["connect", "starttls", "login", "send"]


def _deliver(server: MailServer, *, recipient: str, message: EmailMessage) -> None:
    tls_context = _tls_context(server.ca_file) if server.security != "plain" else None
    try:
        client = _connect_smtp(server, tls_context)
    except OSError as error:
        raise _smtp_failure(error, "connect") from None
    stage: SmtpStage = "connect"
    try:
        if server.security == "starttls":
            stage = "starttls"
            # smtplib raises when the server does not offer STARTTLS: never a silent downgrade
            # to plain text by a network attacker who strips the capability from EHLO.
            client.starttls(context=tls_context)
        if server.username is not None and server.password is not None:
            stage = "login"
            client.login(server.username, server.password)
        stage = "send"
        client.send_message(message, from_addr=server.sender, to_addrs=[recipient])
    except OSError as error:  # smtplib's and ssl's exceptions are all OSErrors
        client.close()
        raise _smtp_failure(error, stage) from None
    except UnicodeError:
        # smtplib sends AUTH credentials as ASCII only.
        client.close()
        if stage == "login":
            raise DeliveryFailed("SMTP user name or password not ASCII", permanent=True) from None
        raise DeliveryFailed("message could not be encoded", permanent=True) from None
    # The server has taken the message: a failing QUIT must not turn it into a failure, which
    # the sender would retry and deliver twice.
    try:
        client.quit()
    except OSError:
        client.close()


def _connect_smtp(server: MailServer, tls_context: ssl.SSLContext | None) -> smtplib.SMTP:
    if server.security == "tls":
        return smtplib.SMTP_SSL(
            server.host,
            server.port,
            local_hostname=SMTP_LOCAL_HOSTNAME,
            timeout=server.timeout_seconds,
            context=tls_context,
        )
    return smtplib.SMTP(
        server.host, server.port, local_hostname=SMTP_LOCAL_HOSTNAME, timeout=server.timeout_seconds
    )


def _smtp_failure(error: OSError, stage: SmtpStage) -> DeliveryFailed:
    # `from None` at the raise and a fixed reason here: smtplib's messages carry the server's
    # banner and, for refusals, the recipient's address.
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return DeliveryFailed(
            "recipient refused", permanent=bool(codes) and all(code >= 500 for code in codes)
        )
    if isinstance(error, smtplib.SMTPSenderRefused):
        return DeliveryFailed("sender refused", permanent=error.smtp_code >= 500)
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return DeliveryFailed("authentication refused", permanent=error.smtp_code >= 500)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        missing = {"starttls": "STARTTLS", "login": "authentication"}.get(stage)
        if missing:
            return DeliveryFailed(f"server does not offer {missing}", permanent=True)
        return DeliveryFailed("server cannot take this message", permanent=True)
    if isinstance(error, smtplib.SMTPConnectError):
        return DeliveryFailed("server refused the connection")
    if isinstance(error, smtplib.SMTPHeloError):
        return DeliveryFailed("server refused the greeting")
    if isinstance(error, smtplib.SMTPDataError):
        return DeliveryFailed("server refused the message", permanent=error.smtp_code >= 500)
    if isinstance(error, smtplib.SMTPResponseException):
        return DeliveryFailed(f"server answered {error.smtp_code}", permanent=error.smtp_code >= 500)
    if isinstance(error, smtplib.SMTPServerDisconnected):
        # smtplib turns a timeout or a reset while reading a reply into "disconnected"; the
        # network error it came from says more.
        if isinstance(error.__context__, OSError):
            return _network_failure(
                error.__context__, refused="connection refused", unreachable="connection lost"
            )
        return DeliveryFailed("server closed the connection")
    if isinstance(error, smtplib.SMTPException):
        # login() found no mechanism both sides know, and the like.
        return DeliveryFailed("no authentication method in common" if stage == "login" else "SMTP error")
    return _network_failure(error, refused="connection refused", unreachable="server unreachable")


def _network_failure(error: object, *, refused: str, unreachable: str) -> DeliveryFailed:
    if isinstance(error, ssl.SSLCertVerificationError):
        return DeliveryFailed("TLS certificate not trusted")
    if isinstance(error, ssl.SSLError):
        return DeliveryFailed("TLS handshake failed")
    if isinstance(error, TimeoutError):
        return DeliveryFailed("timed out")
    if isinstance(error, ConnectionRefusedError):
        return DeliveryFailed(refused)
    if isinstance(error, socket.gaierror):
        return DeliveryFailed("host name not found")
    return DeliveryFailed(unreachable)


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    # Certificate and host name verified (the default context's CERT_REQUIRED and
    # check_hostname); `ca_file`, when given, replaces the system CAs for a private CA.
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    except (OSError, ValueError):
        raise DeliveryFailed("CA file unreadable", permanent=True) from None


# ---------------------------------------------------------------------------------------------
# Webhook


def webhook_signature(signing_key: bytes, timestamp: int, body: bytes) -> str:
    """The Daylight-Signature header: "t=<timestamp>,v1=<hex HMAC-SHA256>" over "<timestamp>."
    followed by the body. The timestamp is signed so that a receiver can refuse a replay of an
    old request by its age."""
    digest = hmac.new(signing_key, f"{int(timestamp)}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={int(timestamp)},v1={digest}"


def check_webhook_url(url: str) -> str:
    """Validate the admin's webhook address; returns it unchanged.

    https:// required; http:// only to this machine (a bridge on loopback), since the payload
    and its signature would otherwise be readable on the way. No user:password@ (credentials
    would sit in the settings page and logs; the signature authenticates us), no fragment.
    """
    if len(url) > MAX_WEBHOOK_URL_LENGTH:
        raise ValueError(f"the webhook URL must be at most {MAX_WEBHOOK_URL_LENGTH} characters")
    if _CONTROL_CHARACTERS.search(url):
        raise ValueError("the webhook URL must not contain spaces or control characters")
    if not url.isascii():
        # An HTTP request line is ASCII: a non-ASCII path would fail at every send, never here.
        raise ValueError("the webhook URL must be ASCII (percent-encode other characters)")
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise ValueError("the webhook URL is malformed (check the host and port)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise ValueError("the webhook URL must start with https://")
    if not host or not _HOST_PATTERN.fullmatch(host):
        raise ValueError("the webhook URL has no valid host")
    if port == 0:
        raise ValueError("the webhook URL has an invalid port")
    if scheme == "http" and not is_loopback_host(host):
        raise ValueError("the webhook URL must use https:// (http:// is only allowed to this machine)")
    if "@" in parts.netloc:
        raise ValueError("the webhook URL must not contain a user name or password")
    if parts.fragment or url.endswith("#"):
        raise ValueError("the webhook URL must not have a #fragment")
    return url


def send_webhook(
    url: str,
    *,
    signing_key: bytes,
    payload: Mapping[str, object],
    idempotency_key: str,
    timeout_seconds: float = 10.0,
    ca_file: Path | None = None,
    now: Callable[[], float] = time.time,
) -> None:
    """POST the payload as signed JSON; returns on a 2xx answer, raises DeliveryFailed otherwise.

    Redirects are not followed (a 3xx is a permanent failure): following one would send the
    signed payload wherever the receiver, or whoever took over its address, points.
    """
    if not _HEADER_TOKEN_PATTERN.fullmatch(idempotency_key):
        raise ValueError("idempotency_key must be a short token of letters, digits and ._~+=-")
    if len(signing_key) < MIN_WEBHOOK_SIGNING_KEY_BYTES:
        # A short key makes the signature guessable offline from one captured request.
        raise ValueError(f"the webhook signing key must be at least {MIN_WEBHOOK_SIGNING_KEY_BYTES} bytes")
    try:
        check_webhook_url(url)
    except ValueError:
        # Checked again here, not only in the admin's form: a stored URL is data, and this is
        # the last point before a request leaves.
        raise DeliveryFailed("webhook address not allowed", permanent=True) from None
    body = json.dumps(
        payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - the scheme was checked: https, or http to loopback
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Daylight-Signature": webhook_signature(signing_key, int(now()), body),
            "Idempotency-Key": idempotency_key,
            "User-Agent": WEBHOOK_USER_AGENT,
        },
    )
    opener = _webhook_opener(_tls_context(ca_file))
    try:
        with opener.open(request, timeout=timeout_seconds) as response:
            # Drained so the connection ends cleanly; bounded so a receiver cannot make us
            # read without end.
            response.read(MAX_WEBHOOK_RESPONSE_BYTES)
    except urllib.error.HTTPError as error:
        status = error.code
        error.close()
        raise _webhook_status_failure(status) from None
    except urllib.error.URLError as error:
        raise _network_failure(
            error.reason, refused="webhook unreachable", unreachable="webhook unreachable"
        ) from None
    except http.client.HTTPException:
        raise DeliveryFailed("webhook answer not understood") from None
    except OSError as error:
        raise _network_failure(
            error, refused="webhook unreachable", unreachable="webhook unreachable"
        ) from None


def _webhook_opener(tls_context: ssl.SSLContext) -> urllib.request.OpenerDirector:
    # Built by hand rather than with build_opener: no redirect handler (see send_webhook), no
    # file:, ftp: or data: handlers, and proxies from the environment ignored, so that an
    # HTTPS_PROXY left in the service's environment cannot see who is notified.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=tls_context),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _webhook_status_failure(status: int) -> DeliveryFailed:
    if 300 <= status < 400:
        return DeliveryFailed("webhook redirected", permanent=True)
    # 408 and 429 ask to come back later; any other 4xx will not change by itself.
    permanent = 400 <= status < 500 and status not in (408, 429)
    return DeliveryFailed(f"webhook answered {status}", permanent=permanent)
