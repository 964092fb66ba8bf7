"""The tamper-evident audit log: events, an RFC 9162 Merkle tree over them, signed checkpoints."""
