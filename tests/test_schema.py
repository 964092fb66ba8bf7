"""Migrations are the schema: one head, date-prefixed files, and models that agree with them."""

from __future__ import annotations

import re

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import LargeBinary, inspect, text

import app.models  # noqa: F401 - every table on the metadata
from app.crypto.contracts import ENCRYPTED_COLUMNS
from app.kit.db import Base
from app.schema import MIGRATIONS_DIR, migration_heads
from tests.conftest import Backend

# Binary columns that hold no secret: public keys and their MACs, salts, one-way hashes.
# Every other binary column must be declared as an encrypted-column contract.
NON_SECRET_BINARY_COLUMNS = frozenset(
    {
        ("intake_keys", "public_key"),
        ("intake_keys", "public_key_mac"),
        ("intake_keys", "recovery_public_key"),
        ("staff_accounts", "password_salt"),
        ("staff_accounts", "login_verifier"),
        ("staff_accounts", "public_key"),
        ("staff_accounts", "public_key_mac"),
        ("referral_recipients", "public_key"),
        ("referral_recipients", "public_key_mac"),
        ("staff_sessions", "token_hash"),
        ("account_links", "token_hash"),
        ("audit_checkpoints", "root_hash"),
        ("audit_checkpoints", "compact_range"),
        ("audit_nodes", "hash"),
        # Keyed blind index: HMAC under a key derived from the intake private key (app.triage.tags).
        ("tip_tags", "tag"),
        # HMAC of a duress code under the receipt pepper, as tips.receipt_lookup_hash (app.intake.duress).
        ("duress_codes", "lookup_hash"),
        # Keyed search index: truncated HMACs of words under a key derived from the intake
        # private key (app.triage.search).
        ("tip_search_terms", "term"),
        # The same tags as keys of the queue counts (app.triage.models.TipQueueCount).
        ("tip_queue_counts", "first_tag"),
        ("tip_queue_counts", "second_tag"),
        ("tip_queue_count_changes", "first_tag"),
        ("tip_queue_count_changes", "second_tag"),
        # Attachment ciphertext (ATTACHMENT_BLOB, STREAM), when blobs live in the database.
        ("blob_chunks", "data"),
        ("tips", "receipt_lookup_hash"),
        ("tips", "receipt_public_key"),
        ("tips", "receipt_public_key_mac"),
        # Row MACs under the key-integrity key (app.crypto.integrity.row_mac): authenticity, no secret.
        ("tip_messages", "row_mac"),
        ("tip_attachments", "row_mac"),
        ("referral_recipients", "row_mac"),
        ("staff_sessions", "row_mac"),
        # A passkey's credential id and COSE public key (public by design), and its row MAC.
        ("staff_passkeys", "credential_id"),
        ("staff_passkeys", "public_key"),
        ("staff_passkeys", "row_mac"),
        ("intake_key_grants", "row_mac"),
        ("audit_witnesses", "registration_mac"),
        # SHA-256 of a witness's 32-byte random bearer token.
        ("audit_witnesses", "token_hash"),
        # A random salt: with the server's secret it derives the webhook's signing key.
        ("notification_settings", "webhook_key_salt"),
    }
)


def test_one_head() -> None:
    assert len(migration_heads()) == 1


def test_revision_files_are_date_prefixed() -> None:
    names = [path.name for path in (MIGRATIONS_DIR / "versions").glob("*.py")]
    assert names
    assert all(re.match(r"^\d{8}_[0-9a-f]+_\w+\.py$", name) for name in names), names


# Indexes on an expression (urgent DESC): Alembic's comparison cannot match them against
# their reflection, so they are checked by their stored definition instead (below).
EXPRESSION_INDEXES = frozenset({"ix_tips_queue_order", "ix_tips_status_queue_order"})


def _index_name(difference: object) -> str | None:
    if isinstance(difference, tuple) and difference[0] in ("add_index", "remove_index"):
        return str(difference[1].name)
    return None


def test_models_and_migrations_agree(backend: Backend) -> None:
    with backend.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert [d for d in differences if _index_name(d) not in EXPRESSION_INDEXES] == []


def test_the_queue_indexes_put_urgent_tips_first(backend: Backend) -> None:
    query = (
        "SELECT sql FROM sqlite_master WHERE name = :name"
        if backend.engine.dialect.name == "sqlite"
        # This run's schema only: other runs on the server have their own copies.
        else "SELECT indexdef FROM pg_indexes WHERE indexname = :name AND schemaname = current_schema()"
    )
    with backend.engine.connect() as connection:
        for name in EXPRESSION_INDEXES:
            definition = connection.execute(text(query), {"name": name}).scalar_one()
            assert "urgent DESC" in definition, definition


def test_every_binary_column_is_a_declared_contract_or_known_public() -> None:
    binary_columns = {
        (table.name, column.name)
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, LargeBinary)
    }
    contract_columns = {key for key in ENCRYPTED_COLUMNS if key[1] != "blob"}
    assert binary_columns - NON_SECRET_BINARY_COLUMNS == contract_columns
    assert not contract_columns & NON_SECRET_BINARY_COLUMNS


def test_no_column_stores_an_address_an_agent_or_a_submission_time(backend: Backend) -> None:
    """DESIGN 4/5: never an IP address, a User-Agent, or a submitter time finer than the day."""
    inspector = inspect(backend.engine)
    forbidden = re.compile(r"ip|addr|agent|user_agent|forwarded|remote|host_header", re.IGNORECASE)
    for table in ("tips", "tip_attachments", "tip_messages"):
        for column in inspector.get_columns(table):
            assert not forbidden.fullmatch(column["name"]), (table, column["name"])
            assert not re.search(r"(^|_)(ip|address|agent)($|_)", column["name"]), (table, column["name"])
            type_name = str(column["type"]).upper()
            assert "TIME" not in type_name or type_name == "DATE", (table, column["name"], type_name)
