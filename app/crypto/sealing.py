"""HPKE (RFC 9180) sealing with the hybrid ML-KEM-768 + X25519 KEM, and key pairs.

Every asymmetric wrap in Daylight goes through `seal_to`: data keys to the
intake key, the intake key to a staff member's personal key, replies to a
receipt-derived key. One classical-only wrap would let a "harvest now, decrypt
later" adversary with a future quantum computer undo the rest, so there is no
other suite here.

The HPKE ``info`` always binds the purpose and the row the sealed value
belongs to; a sealed value moved to another row fails to open.

Key pairs are held as their seeds: the 64-byte ML-KEM-768 seed (FIPS 203
``d || z``) and the 32-byte X25519 private key, 96 bytes in all. Public keys
serialise as the 1184-byte ML-KEM encapsulation key followed by the 32-byte
X25519 public key.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.crypto.binding import BindingPart, bind
from app.crypto.errors import DecryptionError

SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
SEALED_MAGIC = b"DLH\x01"

MLKEM_SEED_BYTES = 64
X25519_BYTES = 32
PRIVATE_KEY_BYTES = MLKEM_SEED_BYTES + X25519_BYTES
MLKEM_PUBLIC_BYTES = 1184
PUBLIC_KEY_BYTES = MLKEM_PUBLIC_BYTES + X25519_BYTES
MIN_DERIVATION_SECRET_BYTES = 14  # 112 bits


@dataclass(frozen=True, slots=True)
class PublicKey:
    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != PUBLIC_KEY_BYTES:
            raise ValueError("hybrid public keys are 1216 bytes")

    def _hpke(self) -> hpke.MLKEM768X25519PublicKey:
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(self.raw[:MLKEM_PUBLIC_BYTES]),
            x25519.X25519PublicKey.from_public_bytes(self.raw[MLKEM_PUBLIC_BYTES:]),
        )


@dataclass(frozen=True, slots=True, repr=False)
class PrivateKey:
    """A hybrid private key; ``repr`` never shows the key material."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != PRIVATE_KEY_BYTES:
            raise ValueError("hybrid private keys are 96 bytes")

    def __repr__(self) -> str:
        return "PrivateKey(<redacted>)"

    def _components(self) -> tuple[mlkem.MLKEM768PrivateKey, x25519.X25519PrivateKey]:
        return (
            mlkem.MLKEM768PrivateKey.from_seed_bytes(self.raw[:MLKEM_SEED_BYTES]),
            x25519.X25519PrivateKey.from_private_bytes(self.raw[MLKEM_SEED_BYTES:]),
        )

    def _hpke(self) -> hpke.MLKEM768X25519PrivateKey:
        return hpke.MLKEM768X25519PrivateKey(*self._components())

    def public_key(self) -> PublicKey:
        kem_key, dh_key = self._components()
        return PublicKey(kem_key.public_key().public_bytes_raw() + dh_key.public_key().public_bytes_raw())


def generate_private_key() -> PrivateKey:
    kem_key = mlkem.MLKEM768PrivateKey.generate()
    dh_key = x25519.X25519PrivateKey.generate()
    return PrivateKey(kem_key.private_bytes_raw() + dh_key.private_bytes_raw())


def derive_private_key(secret: bytes, purpose: str) -> PrivateKey:
    """A deterministic key pair from a high-entropy secret (a receipt, the recovery key).

    One HKDF output gives both the ML-KEM seed (``MLKEM768PrivateKey.from_seed_bytes``)
    and the X25519 key, so the whole hybrid pair follows from the secret. The
    secret must carry at least 112 bits; HKDF is not a password hash.
    """
    if len(secret) < MIN_DERIVATION_SECRET_BYTES:
        raise ValueError("derivation secrets carry at least 112 bits")
    seed = HKDF(
        algorithm=hashes.SHA256(),
        length=PRIVATE_KEY_BYTES,
        salt=None,
        info=bind("daylight/keypair/v1", purpose),
    ).derive(secret)
    return PrivateKey(seed)


def seal_to(public_key: PublicKey, plaintext: bytes, *context: BindingPart) -> bytes:
    """Seal ``plaintext`` to ``public_key``; ``context`` (purpose, row ...) becomes the HPKE info."""
    return SEALED_MAGIC + SUITE.encrypt(plaintext, public_key._hpke(), info=bind(*context))


def open_sealed(private_key: PrivateKey, sealed: bytes, *context: BindingPart) -> bytes:
    if not sealed.startswith(SEALED_MAGIC):
        raise DecryptionError
    try:
        return SUITE.decrypt(sealed[len(SEALED_MAGIC) :], private_key._hpke(), info=bind(*context))
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError from exc
