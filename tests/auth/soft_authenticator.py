"""A WebAuthn authenticator in software, for the HTTP tests of passkeys (the browser tests use
Chromium's virtual authenticator instead).

It makes what a platform authenticator makes with attestation "none": an ES256 key pair per
credential, authenticator data with the user-present and user-verified flags, and signatures
over authenticator data and the client data's hash. The origin it writes into the client data
is whatever the test says the browser was on, which is how a phishing relay is simulated.
"""

from __future__ import annotations

import base64
import hashlib
import html as html_module
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_USER_PRESENT = 0x01
FLAG_USER_VERIFIED = 0x04
FLAG_ATTESTED_CREDENTIAL = 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def options_from_page(html: str) -> dict[str, Any]:
    """The ceremony options a page hands its passkey script (data-passkey-options)."""
    match = re.search(r'data-passkey-options="([^"]+)"', html)
    assert match, "the page offers no passkey ceremony"
    return json.loads(html_module.unescape(match.group(1)))


@dataclass
class SoftAuthenticator:
    origin: str
    rp_id: str
    user_verified: bool = True
    sign_count: int = 0
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    user_handle: bytes = b""

    def _flags(self, extra: int = 0) -> bytes:
        return bytes([FLAG_USER_PRESENT | (FLAG_USER_VERIFIED if self.user_verified else 0) | extra])

    def _cose_public_key(self) -> bytes:
        numbers = self.private_key.public_key().public_numbers()
        return cbor2.dumps(
            {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin or self.origin, "crossOrigin": False}
        ).encode()

    def create(self, options: dict[str, Any], *, origin: str | None = None) -> str:
        """The registration response (JSON) to ``options`` (from the page)."""
        self.user_handle = from_b64url(options["user"]["id"])
        attested = (
            bytes(16)
            + len(self.credential_id).to_bytes(2, "big")
            + self.credential_id
            + self._cose_public_key()
        )
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + self._flags(FLAG_ATTESTED_CREDENTIAL)
            + self.sign_count.to_bytes(4, "big")
            + attested
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation),
                    "transports": ["internal"],
                },
            }
        )

    def get(self, options: dict[str, Any], *, origin: str | None = None) -> str:
        """The assertion (JSON) for ``options``; the counter advances as a real one does."""
        self.sign_count += 1
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest() + self._flags() + self.sign_count.to_bytes(4, "big")
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                    "userHandle": b64url(self.user_handle),
                },
            }
        )

    def clone(self) -> SoftAuthenticator:
        """A copy of this authenticator's key with its own counter from zero: what an attacker
        who extracted the key holds."""
        return SoftAuthenticator(
            origin=self.origin,
            rp_id=self.rp_id,
            sign_count=0,
            credential_id=self.credential_id,
            private_key=self.private_key,
            user_handle=self.user_handle,
        )
