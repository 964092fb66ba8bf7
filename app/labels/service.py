"""An organisation's label vocabulary: created and retired by leads, names sealed like content.

A label's name is sealed exactly as a case title is (app.cases.service.create_case): a fresh data
key sealed to the current, MAC-checked intake public key, the name under that data key, both bound
to the label's id and key version. Only key holders read names; everything here that shows a name
decrypts it with the caller's own unlocked intake keys, and a label whose version the caller does
not hold does not exist for them. Attaching labels to reports and cases is app.triage.labelling.
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.crypto.errors import DecryptionError
from app.custody.service import current_intake_key, trusted_intake_public_key
from app.kit.clock import today
from app.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.kit.server_secrets import ServerSecrets
from app.labels.models import LABEL_RECORD, Label
from app.web.visible_text import is_deceptive

NAME_MAX_CHARS = 64
# Serialises label creation on PostgreSQL, so that two leads cannot both create "Dublin" at
# once: names are sealed, so no unique index can refuse the second. (SQLite runs one writer at
# a time.) Any constant distinct from the other advisory locks (audit, purge, queue counts).
LABEL_CREATION_LOCK_KEY = 0x6461796C6C61626C

logger = logging.getLogger("daylight.labels")


class DuplicateLabel(Conflict):
    code = "duplicate_label"
    public_message = "A label with this name already exists."


class RetiredLabel(Conflict):
    code = "label_retired"
    public_message = "This label is retired: it stays where it was put but is not added any more."


@dataclass(frozen=True, slots=True)
class LabelView:
    id: uuid.UUID
    name: str
    retired: bool


def _require_lead(principal: Principal) -> None:
    if not principal.can(Permission.LEAD_TRIAGE):
        raise Forbidden("Only a lead creates or retires labels.")


def _folded(name: str) -> str:
    return name.casefold()


def clean_name(name: str) -> str:
    """The name as stored: NFC, trimmed, 1 to 64 characters, nothing invisible or controlling.

    A label is one line read at a glance; a hidden character would make two labels that look the
    same but are not (app.web.visible_text), so it is refused rather than shown as a marker."""
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned or len(cleaned) > NAME_MAX_CHARS:
        raise InvalidInput(
            f"A label's name is 1 to {NAME_MAX_CHARS} characters.",
            fields=[{"field": "name", "message": f"1 to {NAME_MAX_CHARS} characters"}],
        )
    if any(unicodedata.category(char) == "Cc" or is_deceptive(char) for char in cleaned):
        raise InvalidInput(
            "A label's name cannot hold control or invisible characters.",
            fields=[{"field": "name", "message": "control or invisible characters"}],
        )
    return cleaned


def readable_versions(principal: Principal) -> list[int]:
    """The intake key versions whose labels the caller can read (none without content access)."""
    if not principal.can(Permission.READ_TIP_CONTENT):
        return []
    return sorted(principal.keys.intake)


def label_name(principal: Principal, label: Label) -> str:
    """The label's name, opened with the caller's intake key of its version (NotFound without it)."""
    intake_private = principal.intake_private_key(label.intake_key_version)
    if intake_private is None:
        raise NotFound
    return LABEL_RECORD.open(
        intake_private,
        label.sealed_data_key,
        label.name_encrypted,
        row_id=str(label.id),
        intake_version=label.intake_key_version,
        content_version=label.content_key_version,
    ).decode()


def _views(principal: Principal, labels: Iterable[Label]) -> list[LabelView]:
    views = []
    for label in labels:
        try:
            name = label_name(principal, label)
        except (DecryptionError, UnicodeDecodeError):
            # A damaged or planted row (labels carry no row MAC) is left out, never fatal: every
            # queue, tip and case page lists labels.
            logger.error("integrity alert: a label's sealed name did not open; it is not shown")
            continue
        views.append(LabelView(id=label.id, name=name, retired=label.retired_on is not None))
    return sorted(views, key=lambda view: (_folded(view.name), str(view.id)))


def readable_label(
    session: Session, principal: Principal, label_id: uuid.UUID, *, lock: bool = False, share: bool = False
) -> Label:
    """A label the caller can read, or NotFound. ``lock`` takes its row for update (retiring),
    ``share`` for share (attaching, so that a retirement is decided before or after, not during)."""
    statement = select(Label).where(
        Label.id == label_id, Label.intake_key_version.in_(readable_versions(principal))
    )
    if lock or share:
        statement = statement.with_for_update(read=share and not lock).execution_options(
            populate_existing=True
        )
    label = session.scalars(statement).first()
    if label is None:
        raise NotFound
    return label


def label_views(session: Session, principal: Principal, *, include_retired: bool = True) -> list[LabelView]:
    """Every label the caller can read, by name; empty for a caller without keys."""
    versions = readable_versions(principal)
    if not versions:
        return []
    statement = select(Label).where(Label.intake_key_version.in_(versions))
    if not include_retired:
        statement = statement.where(Label.retired_on.is_(None))
    return _views(principal, session.scalars(statement))


def views_of(session: Session, principal: Principal, label_ids: Collection[uuid.UUID]) -> list[LabelView]:
    """These labels (attached to something the caller has already found), those the caller can
    read, by name."""
    versions = readable_versions(principal)
    if not versions or not label_ids:
        return []
    return _views(
        principal,
        session.scalars(
            select(Label).where(Label.id.in_(list(label_ids)), Label.intake_key_version.in_(versions))
        ),
    )


def create_label(session: Session, principal: Principal, name: str, server_secrets: ServerSecrets) -> Label:
    """A new label, sealed to the current intake key: a lead who holds that key only."""
    _require_lead(principal)
    cleaned = clean_name(name)
    intake_key = current_intake_key(session)
    if intake_key is None or intake_key.version not in principal.keys.intake:
        raise Forbidden("Creating a label needs the current intake key: ask a lead to grant it, then log in.")
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(LABEL_CREATION_LOCK_KEY)))
    # Among the labels this lead can read: after a rotation every label is under the new key.
    if any(
        _folded(view.name) == _folded(cleaned)
        for view in label_views(session, principal, include_retired=False)
    ):
        raise DuplicateLabel
    intake_public = trusted_intake_public_key(intake_key, server_secrets.key_integrity_key)
    label_id, version = uuid.uuid4(), intake_key.version
    sealed_key, sealed_name = LABEL_RECORD.seal(intake_public, version, str(label_id), cleaned.encode())
    label = Label(
        id=label_id,
        created_on=today(),
        created_by_id=principal.account_id,
        retired_on=None,
        intake_key_version=version,
        content_key_version=version,
        sealed_data_key=sealed_key,
        name_encrypted=sealed_name,
    )
    session.add(label)
    session.flush()
    # Never the name: the audit log is read by auditors, who hold no key.
    audit.record(session, principal.actor, "label.create", object_type="label", object_id=label.id)
    return label


def retire_label(session: Session, principal: Principal, label_id: uuid.UUID) -> None:
    """Offered no more for new attachments; it stays on the reports and cases that carry it."""
    _require_lead(principal)
    label = readable_label(session, principal, label_id, lock=True)
    if label.retired_on is not None:
        raise Conflict("This label is already retired.")
    label.retired_on = today()
    session.flush()
    audit.record(session, principal.actor, "label.retire", object_type="label", object_id=label.id)
