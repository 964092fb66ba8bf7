"""The notification channels against real servers: what a mail server, a member's mail client
and a webhook endpoint receive, and what an admin is told when delivery fails."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import hmac
import json
import re
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import pysequoia
import pytest

from app.notify import channels
from app.notify.channels import DeliveryFailed, MailServer
from tests.notify.conftest import (
    SMTP_PASSWORD,
    SMTP_USERNAME,
    OpenPgpMemberKey,
    RecordingSmtpServer,
    RecordingWebhookReceiver,
    generate_member_key,
)

SENDER = "daylight@news.example.org"
RECIPIENT = "editor@example.org"
SUBJECT = "Daylight: 2 new reports"
BODY = "There are 2 new reports waiting in Daylight.\n"
PASSWORD = "Hunter2-Secret/Ü"
# As it appears in a URL: percent-encoded, the "/" and the "Ü" included.
URL_PASSWORD = quote(PASSWORD, safe="")


def assert_says_nothing_of_the_password(error: BaseException) -> None:
    assert PASSWORD not in str(error)
    assert URL_PASSWORD not in str(error)
    assert "Hunter2" not in repr(error)
    assert_no_chained_text(error)


def assert_no_chained_text(error: BaseException) -> None:
    # Raised `from None`, or with nothing before it: a parser's or a server's own message,
    # which may quote a URL, a password or an address, is not chained for a log to print.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def text_of(message: EmailMessage) -> str:
    """The body as written: SMTP carries lines ending in CRLF."""
    return str(message.get_content()).replace("\r\n", "\n")


def mail_server_for(
    smtp: RecordingSmtpServer, *, url: str | None = None, trust_test_ca: bool = True
) -> MailServer:
    return channels.parse_smtp_url(
        url or smtp.url,
        sender=SENDER,
        ca_file=smtp.ca_file if trust_test_ca else None,
        timeout_seconds=5.0,
    )


def send_notice(
    server: MailServer,
    *,
    recipient: str = RECIPIENT,
    subject: str = SUBJECT,
    body: str = BODY,
    openpgp_key: str | None = None,
) -> None:
    channels.send_mail(
        server,
        recipient=recipient,
        subject=subject,
        body=body,
        message_id="notice-0001",
        openpgp_key=openpgp_key,
    )


def payload_bytes(part: EmailMessage) -> bytes:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def encrypted_parts(message: EmailMessage) -> tuple[EmailMessage, EmailMessage]:
    version_part, ciphertext_part = message.iter_parts()
    assert isinstance(version_part, EmailMessage)
    assert isinstance(ciphertext_part, EmailMessage)
    return version_part, ciphertext_part


# --- parse_smtp_url --------------------------------------------------------------------------


class TestParseSmtpUrl:
    def test_starttls_with_percent_encoded_login_and_default_port(self) -> None:
        server = channels.parse_smtp_url(
            f"smtp+starttls://notify%40example.org:{URL_PASSWORD}@mail.example.org",
            sender=SENDER,
        )
        assert (server.host, server.port, server.security) == ("mail.example.org", 587, "starttls")
        assert (server.username, server.password) == ("notify@example.org", PASSWORD)
        assert server.sender == SENDER

    def test_smtps_default_port(self) -> None:
        server = channels.parse_smtp_url("smtps://user:pw@mail.example.org", sender=SENDER)
        assert (server.port, server.security) == (465, "tls")

    def test_explicit_port_and_options_kept(self) -> None:
        ca_file = Path("/etc/daylight/ca.pem")
        server = channels.parse_smtp_url(
            "SMTPS://mail.example.org:2465", sender=SENDER, ca_file=ca_file, timeout_seconds=3.5
        )
        assert (server.port, server.username, server.password) == (2465, None, None)
        assert (server.ca_file, server.timeout_seconds) == (ca_file, 3.5)

    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.0.0.2"])
    def test_plain_smtp_to_loopback(self, host: str) -> None:
        server = channels.parse_smtp_url(f"smtp://{host}", sender=SENDER)
        assert (server.security, server.port) == ("plain", 25)

    @pytest.mark.parametrize(
        "url",
        ["smtp://mail.example.org:25", f"smtp://user:{URL_PASSWORD}@mail.example.org", "smtp://10.0.0.5"],
    )
    def test_plain_smtp_over_the_network_is_refused(self, url: str) -> None:
        with pytest.raises(ValueError, match=r"smtp\+starttls:// or smtps://") as refused:
            channels.parse_smtp_url(url, sender=SENDER)
        assert_says_nothing_of_the_password(refused.value)

    @pytest.mark.parametrize(
        "url",
        [
            f"https://user:{URL_PASSWORD}@mail.example.org",
            f"smtps://user:{URL_PASSWORD}@",
            f"smtps://user:{URL_PASSWORD}@mail.example.org:99999",
            f"smtps://user:{URL_PASSWORD}@mail.example.org:0",
            f"smtps://user:{URL_PASSWORD}@mail.example.org:port",
            f"smtps://user:{URL_PASSWORD}@[::1",
            f"smtps://user:{URL_PASSWORD}@mail.example.org/inbox",
            f"smtps://user:{URL_PASSWORD}@mail.example.org?x=1",
            f"smtps://:{URL_PASSWORD}@mail.example.org",
            "smtps://user@mail.example.org",
            f"smtps://user:{URL_PASSWORD}@mail example.org",
            f"smtps://user:{URL_PASSWORD}@mail.example.org\r\nRCPT TO:<x@y>",
        ],
    )
    def test_malformed_urls_are_refused_without_echoing_the_password(self, url: str) -> None:
        with pytest.raises(ValueError, match="SMTP URL") as refused:
            channels.parse_smtp_url(url, sender=SENDER)
        assert_says_nothing_of_the_password(refused.value)

    def test_sender_must_be_an_address(self) -> None:
        with pytest.raises(ValueError, match="sender"):
            channels.parse_smtp_url("smtps://mail.example.org", sender="Daylight\r\nBcc: x@y.z")

    def test_password_is_not_in_repr(self) -> None:
        server = channels.parse_smtp_url(f"smtps://user:{URL_PASSWORD}@mail.example.org", sender=SENDER)
        assert server.password == PASSWORD
        assert PASSWORD not in repr(server)
        assert "Hunter2" not in repr(server)


# --- mail in the clear over loopback, STARTTLS and implicit TLS -------------------------------


def assert_is_the_notice(received_raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(received_raw, policy=email.policy.default)
    assert message["From"] == SENDER
    assert message["To"] == RECIPIENT
    assert message["Subject"] == SUBJECT
    assert text_of(message) == BODY
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == "<notice-0001@news.example.org>"
    assert message["Date"].datetime.utcoffset() == dt.timedelta(0)
    return message


def test_mail_over_loopback_carries_exactly_the_notice(smtp_server: RecordingSmtpServer) -> None:
    send_notice(mail_server_for(smtp_server))

    [received] = smtp_server.messages
    assert received.envelope_from == SENDER
    assert received.recipients == [RECIPIENT]
    message = assert_is_the_notice(received.raw)
    # Nothing but what was passed: no X-Mailer naming a library version, no host name.
    assert sorted(name.lower() for name in message) == [
        "auto-submitted",
        "content-transfer-encoding",
        "content-type",
        "date",
        "from",
        "message-id",
        "mime-version",
        "subject",
        "to",
    ]
    assert smtp_server.helo_names == ["localhost"]


def test_mail_keeps_non_ascii_subject_and_body(smtp_server: RecordingSmtpServer) -> None:
    send_notice(mail_server_for(smtp_server), subject="Nouveaux signalements : 2 — ü", body="Grüße, 日本\n")

    message = smtp_server.messages[0].message
    assert message["Subject"] == "Nouveaux signalements : 2 — ü"
    assert text_of(message) == "Grüße, 日本\n"


def test_mail_over_starttls(tls_smtp_server: RecordingSmtpServer) -> None:
    send_notice(mail_server_for(tls_smtp_server))

    [received] = tls_smtp_server.messages
    assert_is_the_notice(received.raw)
    # EHLO again after STARTTLS, and never this machine's name.
    assert tls_smtp_server.helo_names == ["localhost", "localhost"]


def test_mail_over_implicit_tls(smtps_server: RecordingSmtpServer) -> None:
    send_notice(mail_server_for(smtps_server))

    [received] = smtps_server.messages
    assert_is_the_notice(received.raw)


def test_login_over_starttls(authenticating_smtp_server: RecordingSmtpServer) -> None:
    url = authenticating_smtp_server.url_with_login(SMTP_USERNAME, SMTP_PASSWORD)

    send_notice(mail_server_for(authenticating_smtp_server, url=url))

    [received] = authenticating_smtp_server.messages
    assert_is_the_notice(received.raw)


def test_wrong_password_is_authentication_refused(authenticating_smtp_server: RecordingSmtpServer) -> None:
    url = authenticating_smtp_server.url_with_login(SMTP_USERNAME, "Hunter2-wrong")

    with pytest.raises(DeliveryFailed) as failed:
        send_notice(mail_server_for(authenticating_smtp_server, url=url))

    assert failed.value.reason == "authentication refused"
    assert failed.value.permanent
    assert "Hunter2" not in str(failed.value)
    assert_no_chained_text(failed.value)
    assert authenticating_smtp_server.messages == []


def test_non_ascii_password_is_a_configuration_error(authenticating_smtp_server: RecordingSmtpServer) -> None:
    # smtplib sends AUTH credentials as ASCII only: a permanent failure the admin must fix,
    # not an exception the sender does not expect.
    url = authenticating_smtp_server.url_with_login(SMTP_USERNAME, PASSWORD)

    with pytest.raises(DeliveryFailed) as failed:
        send_notice(mail_server_for(authenticating_smtp_server, url=url))

    assert failed.value.reason == "SMTP user name or password not ASCII"
    assert failed.value.permanent
    assert_says_nothing_of_the_password(failed.value)
    assert authenticating_smtp_server.messages == []


def test_untrusted_certificate_stops_delivery(tls_smtp_server: RecordingSmtpServer) -> None:
    # No ca_file: the system CAs, which did not issue the test server's certificate.
    with pytest.raises(DeliveryFailed) as failed:
        send_notice(mail_server_for(tls_smtp_server, trust_test_ca=False))

    assert failed.value.reason == "TLS certificate not trusted"
    assert tls_smtp_server.messages == []


def test_untrusted_certificate_on_implicit_tls(smtps_server: RecordingSmtpServer) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        send_notice(mail_server_for(smtps_server, trust_test_ca=False))

    assert failed.value.reason == "TLS certificate not trusted"
    assert smtps_server.messages == []


def test_starttls_missing_from_the_server_is_not_a_downgrade(smtp_server: RecordingSmtpServer) -> None:
    # What a network attacker stripping STARTTLS from the EHLO answer looks like to the client.
    server = MailServer(
        host=smtp_server.host,
        port=smtp_server.port,
        security="starttls",
        username=None,
        password=None,
        sender=SENDER,
        timeout_seconds=5.0,
    )

    with pytest.raises(DeliveryFailed) as failed:
        send_notice(server)

    assert failed.value.reason == "server does not offer STARTTLS"
    assert smtp_server.messages == []


def test_server_down_then_back(smtp_server: RecordingSmtpServer) -> None:
    server = mail_server_for(smtp_server)
    smtp_server.stop()

    with pytest.raises(DeliveryFailed) as failed:
        send_notice(server)
    assert failed.value.reason == "connection refused"
    assert not failed.value.permanent
    assert RECIPIENT not in str(failed.value)

    smtp_server.start()
    send_notice(server)
    assert_is_the_notice(smtp_server.messages[0].raw)


def test_silent_server_times_out(silent_server: tuple[str, int]) -> None:
    host, port = silent_server
    server = MailServer(
        host=host,
        port=port,
        security="plain",
        username=None,
        password=None,
        sender=SENDER,
        timeout_seconds=0.3,
    )

    with pytest.raises(DeliveryFailed) as failed:
        send_notice(server)

    assert failed.value.reason == "timed out"


def test_refused_recipient_is_permanent_and_not_echoed(smtp_server: RecordingSmtpServer) -> None:
    smtp_server.refuse_recipient(RECIPIENT)

    with pytest.raises(DeliveryFailed) as failed:
        send_notice(mail_server_for(smtp_server))

    assert failed.value.reason == "recipient refused"
    assert failed.value.permanent
    # The server's 550 names the address; the reason shown to admins and audited must not.
    assert RECIPIENT not in str(failed.value)
    assert_no_chained_text(failed.value)
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    "recipient", [f"{RECIPIENT}, other@example.org", f"{RECIPIENT}\r\nBcc: spy@example.org", "not an address"]
)
def test_recipient_that_is_not_one_address_is_refused(
    smtp_server: RecordingSmtpServer, recipient: str
) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        send_notice(mail_server_for(smtp_server), recipient=recipient)

    assert failed.value.reason == "recipient address not valid"
    assert failed.value.permanent
    assert smtp_server.messages == []


# --- PGP/MIME ---------------------------------------------------------------------------------


def test_encrypted_mail_shows_nothing_but_the_fact_of_a_notice(
    smtp_server: RecordingSmtpServer, openpgp_member_key: OpenPgpMemberKey
) -> None:
    send_notice(mail_server_for(smtp_server), openpgp_key=openpgp_member_key.public_armored)

    [received] = smtp_server.messages
    assert SUBJECT.encode() not in received.raw
    assert b"new reports" not in received.raw
    outer = received.message
    assert outer["Subject"] == "Daylight notice"
    assert (outer["From"], outer["To"], outer["Auto-Submitted"]) == (SENDER, RECIPIENT, "auto-generated")
    assert outer.get_content_type() == "multipart/encrypted"
    assert outer.get_param("protocol") == "application/pgp-encrypted"
    version_part, ciphertext_part = encrypted_parts(outer)
    assert version_part.get_content_type() == "application/pgp-encrypted"
    assert payload_bytes(version_part).strip() == b"Version: 1"
    assert ciphertext_part.get_content_type() == "application/octet-stream"
    armored = payload_bytes(ciphertext_part)
    assert armored.startswith(b"-----BEGIN PGP MESSAGE-----")

    inner = email.message_from_bytes(openpgp_member_key.decrypt(armored), policy=email.policy.default)
    assert inner.get_content_type() == "text/plain"
    assert inner["Subject"] == SUBJECT
    assert inner.get_param("protected-headers") == "v1"
    assert text_of(inner) == BODY


def test_encrypted_mail_over_starttls_decrypts(
    tls_smtp_server: RecordingSmtpServer, openpgp_member_key: OpenPgpMemberKey
) -> None:
    send_notice(
        mail_server_for(tls_smtp_server), openpgp_key=openpgp_member_key.public_armored, body="Grüße\n"
    )

    _, ciphertext_part = encrypted_parts(tls_smtp_server.messages[0].message)
    inner = email.message_from_bytes(
        openpgp_member_key.decrypt(payload_bytes(ciphertext_part)), policy=email.policy.default
    )
    assert text_of(inner) == "Grüße\n"


def test_unusable_key_is_never_a_fall_back_to_clear_text(
    smtp_server: RecordingSmtpServer, openpgp_member_key: OpenPgpMemberKey
) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        send_notice(mail_server_for(smtp_server), openpgp_key=revoked(openpgp_member_key))

    assert failed.value.reason == "member's OpenPGP key not usable"
    assert failed.value.permanent
    assert smtp_server.messages == []


# --- read_openpgp_key -------------------------------------------------------------------------


def revoked(member_key: OpenPgpMemberKey) -> str:
    revocation = member_key.public_cert.revoke(member_key.secret_key.certifier())
    return str(pysequoia.Cert.from_bytes(bytes(member_key.public_cert) + bytes(revocation)))


def without_encryption_subkey(member_key: OpenPgpMemberKey) -> str:
    packets = list(pysequoia.packet.PacketPile.from_bytes(bytes(member_key.public_cert)))
    last_subkey = max(
        i for i, packet in enumerate(packets) if packet.tag == pysequoia.packet.Tag.PublicSubkey
    )
    assert packets[last_subkey + 1].key_flags.transport_encryption  # the generated layout
    return str(pysequoia.Cert.from_packets(packets[:last_subkey] + packets[last_subkey + 2 :]))


def test_public_key_gives_its_fingerprint(openpgp_member_key: OpenPgpMemberKey) -> None:
    fingerprint = channels.read_openpgp_key(openpgp_member_key.public_armored)

    assert fingerprint == openpgp_member_key.fingerprint
    assert re.fullmatch(r"[0-9A-F]{40}", fingerprint)


def test_rfc9580_key_is_accepted() -> None:
    member_key = generate_member_key(profile=pysequoia.Profile.RFC9580)

    assert re.fullmatch(r"[0-9A-F]{64}", channels.read_openpgp_key(member_key.public_armored))


def test_key_with_surrounding_whitespace_and_crlf_is_accepted(openpgp_member_key: OpenPgpMemberKey) -> None:
    pasted = "\r\n  " + openpgp_member_key.public_armored.replace("\n", "\r\n") + "\r\n\r\n"

    assert channels.read_openpgp_key(pasted) == openpgp_member_key.fingerprint


def test_private_key_is_refused(openpgp_member_key: OpenPgpMemberKey) -> None:
    with pytest.raises(ValueError, match="paste the public key, not the private key"):
        channels.read_openpgp_key(openpgp_member_key.secret_armored)


def test_revoked_key_is_refused(openpgp_member_key: OpenPgpMemberKey) -> None:
    with pytest.raises(ValueError, match="revoked"):
        channels.read_openpgp_key(revoked(openpgp_member_key))


def test_key_without_encryption_subkey_is_refused(openpgp_member_key: OpenPgpMemberKey) -> None:
    with pytest.raises(ValueError, match="encryption subkey"):
        channels.read_openpgp_key(without_encryption_subkey(openpgp_member_key))


def test_expired_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    member_key = generate_member_key(validity_seconds=24 * 3600)
    assert channels.read_openpgp_key(member_key.public_armored) == member_key.fingerprint

    two_days_on = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    monkeypatch.setattr(channels, "utc_now", lambda: two_days_on)
    with pytest.raises(ValueError, match="expired"):
        channels.read_openpgp_key(member_key.public_armored)


def test_renewed_key_with_expired_encryption_subkey_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # The common slip: the primary key's expiry extended, the encryption subkey's not.
    # pysequoia.encrypt alone would fall back to the expired subkey.
    member_key = generate_member_key(validity_seconds=24 * 3600)
    renewed = member_key.public_cert.set_expiration(
        dt.datetime.now(dt.UTC) + dt.timedelta(days=365), member_key.secret_key.certifier()
    )
    assert channels.read_openpgp_key(str(renewed)) == member_key.fingerprint

    two_days_on = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    monkeypatch.setattr(channels, "utc_now", lambda: two_days_on)
    with pytest.raises(ValueError, match="no valid encryption subkey"):
        channels.read_openpgp_key(str(renewed))


def test_expired_key_stops_encrypted_mail(
    monkeypatch: pytest.MonkeyPatch, smtp_server: RecordingSmtpServer
) -> None:
    member_key = generate_member_key(validity_seconds=24 * 3600)
    two_days_on = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    monkeypatch.setattr(channels, "utc_now", lambda: two_days_on)

    with pytest.raises(DeliveryFailed, match="OpenPGP key not usable"):
        send_notice(mail_server_for(smtp_server), openpgp_key=member_key.public_armored)
    assert smtp_server.messages == []


def test_two_keys_are_refused(openpgp_member_key: OpenPgpMemberKey) -> None:
    keyring = openpgp_member_key.public_armored + generate_member_key().public_armored

    with pytest.raises(ValueError, match="exactly one"):
        channels.read_openpgp_key(keyring)


@pytest.mark.parametrize(
    "pasted",
    [
        "",
        "   \n",
        "not a key at all",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3pmIE0+PdpfLlvMoXgwMhQzx0I1W7WTjcbpgp3L2n5 member@laptop",
    ],
)
def test_garbage_is_refused(pasted: str) -> None:
    with pytest.raises(ValueError, match="OpenPGP public key") as refused:
        channels.read_openpgp_key(pasted)
    # Sequoia's own error text (with a Rust backtrace) is not chained into what a page shows.
    assert_no_chained_text(refused.value)


def test_encrypted_message_is_not_a_key(openpgp_member_key: OpenPgpMemberKey) -> None:
    message = pysequoia.encrypt(b"hello", recipients=[openpgp_member_key.public_cert]).decode()

    with pytest.raises(ValueError, match="not an OpenPGP public key"):
        channels.read_openpgp_key(message)


def test_oversized_paste_is_refused_before_parsing(openpgp_member_key: OpenPgpMemberKey) -> None:
    padded = openpgp_member_key.public_armored + " " * (64 * 1024)

    with pytest.raises(ValueError, match="64 KiB"):
        channels.read_openpgp_key(padded)


# --- webhooks ---------------------------------------------------------------------------------

SIGNING_KEY = bytes.fromhex("8f" * 32)
PAYLOAD: dict[str, object] = {"mode": "digest", "counts": {"new_reports": 2}, "id": "abc", "text": "Grüße"}
FIXED_TIME = 1_800_000_000.75


def deliver_webhook(receiver: RecordingWebhookReceiver, *, trust_test_ca: bool = True) -> None:
    channels.send_webhook(
        receiver.url,
        signing_key=SIGNING_KEY,
        payload=PAYLOAD,
        idempotency_key="idem-0001",
        timeout_seconds=5.0,
        ca_file=receiver.ca_file if trust_test_ca else None,
        now=lambda: FIXED_TIME,
    )


def test_signature_known_answer() -> None:
    # Computed apart from Python: printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
    assert channels.webhook_signature(b"key", 1700000000, b'{"a":1}') == (
        "t=1700000000,v1=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
    )


def test_webhook_posts_signed_compact_json(webhook_receiver: RecordingWebhookReceiver) -> None:
    deliver_webhook(webhook_receiver)

    [request] = webhook_receiver.requests
    assert request.path == "/hook"
    assert (
        request.body
        == json.dumps(PAYLOAD, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    )
    assert request.body.startswith(b'{"counts":{"new_reports":2},"id":"abc"')
    assert json.loads(request.body) == PAYLOAD
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "Daylight-Notify"
    assert request.headers["idempotency-key"] == "idem-0001"

    # The receiver's side of the contract: parse the header, recompute, compare in constant time.
    fields = dict(item.split("=", 1) for item in request.headers["daylight-signature"].split(","))
    assert fields["t"] == "1800000000"
    expected = hmac.new(SIGNING_KEY, f"{fields['t']}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert not hmac.compare_digest(
        fields["v1"], channels.webhook_signature(b"other key", 1800000000, request.body)
    )


def test_webhook_over_https(tls_webhook_receiver: RecordingWebhookReceiver) -> None:
    deliver_webhook(tls_webhook_receiver)

    assert len(tls_webhook_receiver.requests) == 1


def test_webhook_with_untrusted_certificate(tls_webhook_receiver: RecordingWebhookReceiver) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        deliver_webhook(tls_webhook_receiver, trust_test_ca=False)

    assert failed.value.reason == "TLS certificate not trusted"
    assert tls_webhook_receiver.requests == []


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(500, False), (503, False), (404, True), (401, True), (408, False), (429, False)],
)
def test_webhook_error_status(
    webhook_receiver: RecordingWebhookReceiver, status: int, permanent: bool
) -> None:
    webhook_receiver.status = status

    with pytest.raises(DeliveryFailed) as failed:
        deliver_webhook(webhook_receiver)

    assert failed.value.reason == f"webhook answered {status}"
    assert failed.value.permanent is permanent


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_webhook_redirect_is_not_followed(webhook_receiver: RecordingWebhookReceiver, status: int) -> None:
    webhook_receiver.status = status

    with pytest.raises(DeliveryFailed) as failed:
        deliver_webhook(webhook_receiver)

    assert failed.value.reason == "webhook redirected"
    assert failed.value.permanent
    assert [request.path for request in webhook_receiver.requests] == ["/hook"]


def test_webhook_unreachable(closed_port: int) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        channels.send_webhook(
            f"http://127.0.0.1:{closed_port}/hook",
            signing_key=SIGNING_KEY,
            payload=PAYLOAD,
            idempotency_key="k",
        )

    assert failed.value.reason == "webhook unreachable"
    assert not failed.value.permanent


def test_webhook_silent_receiver_times_out(silent_server: tuple[str, int]) -> None:
    host, port = silent_server

    with pytest.raises(DeliveryFailed) as failed:
        channels.send_webhook(
            f"http://{host}:{port}/hook",
            signing_key=SIGNING_KEY,
            payload=PAYLOAD,
            idempotency_key="k",
            timeout_seconds=0.3,
        )

    assert failed.value.reason == "timed out"


def test_webhook_ignores_proxies_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, webhook_receiver: RecordingWebhookReceiver, closed_port: int
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{closed_port}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)

    deliver_webhook(webhook_receiver)

    assert len(webhook_receiver.requests) == 1


def test_webhook_to_a_disallowed_address_is_not_sent() -> None:
    with pytest.raises(DeliveryFailed) as failed:
        channels.send_webhook(
            "http://hooks.example.org/x", signing_key=SIGNING_KEY, payload=PAYLOAD, idempotency_key="k"
        )

    assert failed.value.reason == "webhook address not allowed"
    assert failed.value.permanent


def test_webhook_refuses_a_short_signing_key(webhook_receiver: RecordingWebhookReceiver) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        channels.send_webhook(
            webhook_receiver.url, signing_key=b"short", payload=PAYLOAD, idempotency_key="k"
        )
    assert webhook_receiver.requests == []


class TestCheckWebhookUrl:
    @pytest.mark.parametrize(
        "url",
        [
            "https://hooks.example.org/daylight?channel=desk",
            "https://hooks.example.org:8443/x",
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]:9000/hook",
        ],
    )
    def test_accepted(self, url: str) -> None:
        assert channels.check_webhook_url(url) == url

    @pytest.mark.parametrize(
        ("url", "complaint"),
        [
            ("http://hooks.example.org/x", "https://"),
            ("http://10.0.0.8/x", "https://"),
            ("ftp://hooks.example.org/x", "https://"),
            ("file:///etc/passwd", "https://"),
            ("javascript:alert(1)", "https://"),
            ("hooks.example.org/x", "https://"),
            ("https://user:pw@hooks.example.org/x", "user name or password"),
            ("https://token@hooks.example.org/x", "user name or password"),
            ("https://hooks.example.org/x#part", "fragment"),
            ("https://hooks.example.org/x#", "fragment"),
            ("https://", "host"),
            ("https://hooks.example.org:99999/x", "malformed"),
            ("https://hooks.example.org/a b", "spaces or control characters"),
            ("https://hooks.example.org/x\r\nX: y", "spaces or control characters"),
            ("https://hooks.example.org/" + "a" * 480, "at most 500"),
        ],
    )
    def test_refused(self, url: str, complaint: str) -> None:
        with pytest.raises(ValueError, match=re.escape(complaint)):
            channels.check_webhook_url(url)
