"""Cryptographic building blocks, on `cryptography` and argon2-cffi only; no HTTP, no database.

- `binding`: the canonical encoding of the context every key, AAD and HPKE
  ``info`` is bound to.
- `envelope`: versioned, key-committing AES-256-GCM envelopes for field values.
- `sealing`: HPKE (RFC 9180) with the hybrid ML-KEM-768 + X25519 KEM, and key pairs.
- `streaming`: chunked streaming AEAD for attachments, in constant memory.
- `kdf`: Argon2id login derivation split by HKDF into a verifier and a key-encryption key.
"""

from app.crypto.errors import DecryptionError

__all__ = ["DecryptionError"]
