"""Referrals: proposed from a case by a member, approved by a different lead, sealed into a bundle
only the chosen recipients open (app.referrals.bundle), and accounted for in the audit log.

1. Propose: the selection (reports and their fields, files, station links, redactions, a cover
   note, recipients) is checked against each submitter's consent (app.referrals.content), its
   items are built and hashed, and the whole is sealed as the referral's spec.
2. Preview: the items rebuilt from the stored content, exactly as they will leave.
3. Approve (a lead, not the proposer): consent checked again, the items rebuilt and compared
   with the proposal's hashes (a message added since, a note edited, means propose again), the
   manifest completed (who approved, when) and its SHA-256 written in the `referral.approve`
   audit event, with the recipients' fingerprints.
4. Seal: once a signed checkpoint covers that event, the event's proof (app.audit_log.proofs)
   goes in the bundle with the manifest and the items, sealed to the recipients; the bundle is
   kept in the blob store (it is ciphertext to everyone here) and its SHA-256 recorded.
5. Download: audited each time. Revoke: recorded and shown; a bundle handed over cannot be
   recalled, and the pages say so.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log.checkpoint import VerifierKey
from app.audit_log.proofs import ProofUnavailable, prove_event
from app.audit_log.witnesses import registered_witnesses
from app.auth.accounts import usernames
from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.cases.models import CaseEvent
from app.cases.service import load_case
from app.custody.service import current_intake_key, trusted_intake_public_key
from app.kit.blobs import BlobStorage
from app.kit.clock import today
from app.kit.db import on_rollback
from app.kit.errors import AppError, Conflict, Forbidden, InvalidInput, NotFound
from app.kit.sequencing import next_position
from app.kit.server_secrets import ServerSecrets
from app.outbox import events as outbox
from app.outbox.models import Audience, NoticeKind
from app.referrals.bundle import MAX_RECIPIENTS, BundleItem, BundleItemChanged, write_bundle
from app.referrals.content import (
    COVER_NOTE_MAX_CHARS,
    Contents,
    Item,
    Selection,
    build_contents,
    canonical_json,
    redaction_summary,
)
from app.referrals.models import REFERRAL_RECORD, Referral, ReferralRecipient, ReferralStatus
from app.referrals.recipients import recipient_details, recipient_public_key, require_lead, usable_recipient

MANIFEST_FORMAT = "daylight-referral-manifest/v1"


class SameMemberApproves(Conflict):
    code = "two_person_rule"
    public_message = "A referral must be approved by a different lead than the member who proposed it."


class ContentChanged(Conflict):
    code = "referral_content_changed"
    public_message = (
        "What this referral would hand over has changed since it was proposed (a message, a note or "
        "a file). Revoke it and propose it again, so that the approver sees what leaves."
    )


class NotSealedYet(AppError):
    status = 409
    code = "referral_not_sealed_yet"
    public_message = (
        "The audit log has not signed a checkpoint covering this approval yet: the bundle carries "
        "that proof. Try again in a minute."
    )


@dataclass(frozen=True)
class ReferralView:
    id: uuid.UUID
    case_id: uuid.UUID
    case_ref: str
    status: ReferralStatus
    recipients: list[dict[str, str]]
    proposed_by: str | None
    proposed_on: dt.date
    approved_by: str | None
    approved_on: dt.date | None
    revoked_by: str | None
    revoked_on: dt.date | None
    manifest_sha256: str | None
    bundle_sha256: str | None
    bundle_size: int | None
    selection: Selection
    items: list[Item]
    manifest: dict[str, object]


@dataclass(frozen=True)
class SealingContext:
    """What sealing a bundle needs from the deployment."""

    blobs: BlobStorage
    server_secrets: ServerSecrets
    log_key: VerifierKey
    witnesses_required: int
    sender: str  # the audit log's origin: who the receiver checks the proof against


def _require_case_worker(principal: Principal) -> None:
    if not (principal.can(Permission.WORK_CASES) and principal.can(Permission.READ_TIP_CONTENT)):
        raise Forbidden("Only members who work on cases and read reports refer them.")


def _timeline(session: Session, principal: Principal, case_id: uuid.UUID, action: str, detail: str) -> None:
    session.add(
        CaseEvent(
            case_id=case_id,
            position=next_position(session, CaseEvent.position, CaseEvent.case_id == case_id),
            action=action,
            actor_id=principal.account_id,
            detail=detail[:64],
            happened_on=today(),
        )
    )
    outbox.notify(
        session,
        NoticeKind.CASE_CHANGED,
        Audience.CASE_MEMBERS,
        audience_id=case_id,
        excluded_id=principal.account_id,
    )


def _recipients(session: Session, ids: Sequence[uuid.UUID], integrity_key: bytes) -> list[ReferralRecipient]:
    if not ids or len(set(ids)) > MAX_RECIPIENTS:
        raise InvalidInput(
            f"Choose 1 to {MAX_RECIPIENTS} recipients.",
            fields=[{"field": "recipients", "message": f"1 to {MAX_RECIPIENTS}"}],
        )
    return [usable_recipient(session, recipient_id, integrity_key) for recipient_id in dict.fromkeys(ids)]


def _manifest(
    referral_id: uuid.UUID,
    contents: Contents,
    selection: Selection,
    recipients: Sequence[tuple[ReferralRecipient, dict[str, str]]],
    *,
    proposed_by: str,
    proposed_on: dt.date,
) -> dict[str, object]:
    return {
        "format": MANIFEST_FORMAT,
        "referral_id": str(referral_id),
        "case": {"ref": contents.case_ref},
        "recipients": [
            {"name": details["name"], "kind": recipient.kind.value, "fingerprint": recipient.fingerprint}
            for recipient, details in recipients
        ],
        "items": [item.listing() for item in contents.items],
        "consent": contents.consent,
        "withheld": contents.withheld,
        "redactions": redaction_summary(contents.items),
        "station_links": contents.station_links,
        "cover_note": contents.cover_note,
        "proposed_by": proposed_by,
        "proposed_on": proposed_on.isoformat(),
    }


def propose(
    session: Session,
    principal: Principal,
    case_id: uuid.UUID,
    selection: Selection,
    *,
    blobs: BlobStorage,
    server_secrets: ServerSecrets,
) -> Referral:
    _require_case_worker(principal)
    case, _ = load_case(session, principal, case_id)
    if len(selection.cover_note) > COVER_NOTE_MAX_CHARS:
        raise InvalidInput(
            f"The cover note is at most {COVER_NOTE_MAX_CHARS} characters.",
            fields=[{"field": "cover_note", "message": "too long"}],
        )
    recipients = _recipients(session, selection.recipient_ids, server_secrets.key_integrity_key)
    contents = build_contents(
        session,
        principal,
        case.id,
        selection,
        [recipient.kind for recipient in recipients],
        blobs=blobs,
        integrity_key=server_secrets.key_integrity_key,
    )
    intake_key = current_intake_key(session)
    if intake_key is None or intake_key.version not in principal.keys.intake:
        raise Forbidden("Proposing a referral needs the current intake key: log in again once it is granted.")
    referral_id = uuid.uuid4()
    manifest = _manifest(
        referral_id,
        contents,
        selection,
        [(recipient, recipient_details(principal, recipient)) for recipient in recipients],
        proposed_by=principal.username,
        proposed_on=today(),
    )
    spec = {"selection": selection.to_json(), "manifest": manifest}
    sealed_key, sealed_spec = REFERRAL_RECORD.seal(
        trusted_intake_public_key(intake_key, server_secrets.key_integrity_key),
        intake_key.version,
        str(referral_id),
        canonical_json(spec),
    )
    referral = Referral(
        id=referral_id,
        case_id=case.id,
        status=ReferralStatus.PROPOSED,
        proposed_by_id=principal.account_id,
        proposed_on=today(),
        intake_key_version=intake_key.version,
        content_key_version=intake_key.version,
        sealed_data_key=sealed_key,
        spec_encrypted=sealed_spec,
    )
    session.add(referral)
    session.flush()
    _timeline(session, principal, case.id, "referral_proposed", f"referral {referral.id.hex[:8]}")
    audit.record(
        session,
        principal.actor,
        "referral.propose",
        object_type="referral",
        object_id=referral.id,
        details={
            "case": str(case.id),
            "items": len(contents.items),
            "recipients": ",".join(recipient.fingerprint for recipient in recipients),
        },
    )
    return referral


def _spec(principal: Principal, referral: Referral) -> dict[str, object]:
    intake_private = principal.intake_private_key(referral.intake_key_version)
    if intake_private is None:
        raise NotFound
    spec: dict[str, object] = json.loads(
        REFERRAL_RECORD.open(
            intake_private,
            referral.sealed_data_key,
            referral.spec_encrypted,
            row_id=str(referral.id),
            intake_version=referral.intake_key_version,
            content_version=referral.content_key_version,
        )
    )
    return spec


def _store_spec(
    session: Session, referral: Referral, spec: dict[str, object], server_secrets: ServerSecrets
) -> None:
    intake_key = current_intake_key(session)
    if intake_key is None:
        raise NotFound
    referral.sealed_data_key, referral.spec_encrypted = REFERRAL_RECORD.seal(
        trusted_intake_public_key(intake_key, server_secrets.key_integrity_key),
        intake_key.version,
        str(referral.id),
        canonical_json(spec),
    )
    referral.intake_key_version = referral.content_key_version = intake_key.version


def _load(
    session: Session, principal: Principal, referral_id: uuid.UUID, *, for_update: bool = False
) -> Referral:
    """A referral of a case the caller may read; NotFound otherwise."""
    statement = select(Referral).where(Referral.id == referral_id)
    if for_update:
        statement = statement.with_for_update()
    referral = session.scalars(statement).first()
    if referral is None:
        raise NotFound
    load_case(session, principal, referral.case_id)  # NotFound when the case is not theirs to read
    return referral


def _rebuilt(
    session: Session,
    principal: Principal,
    referral: Referral,
    spec: dict[str, object],
    *,
    blobs: BlobStorage,
    integrity_key: bytes,
    hash_files: bool,
) -> tuple[Selection, Contents, list[ReferralRecipient]]:
    selection = Selection.from_json(spec["selection"])  # type: ignore[arg-type]
    recipients = [session.get_one(ReferralRecipient, value) for value in selection.recipient_ids]
    contents = build_contents(
        session,
        principal,
        referral.case_id,
        selection,
        [recipient.kind for recipient in recipients],
        blobs=blobs,
        integrity_key=integrity_key,
        hash_files=hash_files,
    )
    listed = {entry["path"]: entry for entry in spec["manifest"]["items"]}  # type: ignore[index]
    if [item.path for item in contents.items] != list(listed):
        raise ContentChanged
    for item in contents.items:
        if item.kind == "attachment" and not hash_files:
            item.size, item.sha256 = int(listed[item.path]["size"]), str(listed[item.path]["sha256"])
        elif (item.size, item.sha256) != (listed[item.path]["size"], listed[item.path]["sha256"]):
            raise ContentChanged
    return selection, contents, recipients


def read_referral(
    session: Session,
    principal: Principal,
    referral_id: uuid.UUID,
    *,
    blobs: BlobStorage,
    integrity_key: bytes,
) -> ReferralView:
    """The preview: every item rebuilt from the stored content, as it will leave (files by
    their proposal's hash; they are read again when sealed)."""
    _require_case_worker(principal)
    referral = _load(session, principal, referral_id)
    spec = _spec(principal, referral)
    selection, contents, recipients = _rebuilt(
        session, principal, referral, spec, blobs=blobs, integrity_key=integrity_key, hash_files=False
    )
    names = usernames(session, [referral.proposed_by_id, referral.approved_by_id, referral.revoked_by_id])
    audit.record(session, principal.actor, "referral.read", object_type="referral", object_id=referral.id)
    return ReferralView(
        id=referral.id,
        case_id=referral.case_id,
        case_ref=contents.case_ref,
        status=referral.status,
        recipients=[
            {
                **recipient_details(principal, recipient),
                "kind": recipient.kind.value,
                "fingerprint": recipient.fingerprint,
            }
            for recipient in recipients
        ],
        proposed_by=names.get(referral.proposed_by_id) if referral.proposed_by_id else None,
        proposed_on=referral.proposed_on,
        approved_by=names.get(referral.approved_by_id) if referral.approved_by_id else None,
        approved_on=referral.approved_on,
        revoked_by=names.get(referral.revoked_by_id) if referral.revoked_by_id else None,
        revoked_on=referral.revoked_on,
        manifest_sha256=referral.manifest_sha256,
        bundle_sha256=referral.bundle_sha256,
        bundle_size=referral.bundle_size,
        selection=selection,
        items=contents.items,
        manifest=spec["manifest"],  # type: ignore[arg-type]
    )


def referrals_of_case(session: Session, principal: Principal, case_id: uuid.UUID) -> list[Referral]:
    load_case(session, principal, case_id)
    return list(
        session.scalars(
            select(Referral).where(Referral.case_id == case_id).order_by(Referral.proposed_on, Referral.id)
        )
    )


def approve(
    session: Session,
    principal: Principal,
    referral_id: uuid.UUID,
    *,
    blobs: BlobStorage,
    server_secrets: ServerSecrets,
) -> Referral:
    require_lead(principal, "approves a referral")
    referral = _load(session, principal, referral_id, for_update=True)
    if referral.status is not ReferralStatus.PROPOSED:
        raise Conflict(f"This referral is {referral.status.value}, not waiting for approval.")
    if referral.proposed_by_id == principal.account_id:
        raise SameMemberApproves
    spec = _spec(principal, referral)
    # Consent and content checked again, files read again: the approver approves what leaves now.
    _, _, recipients = _rebuilt(
        session,
        principal,
        referral,
        spec,
        blobs=blobs,
        integrity_key=server_secrets.key_integrity_key,
        hash_files=True,
    )
    for recipient in recipients:
        usable_recipient(session, recipient.id, server_secrets.key_integrity_key)
        recipient_public_key(recipient, server_secrets.key_integrity_key)
    manifest = dict(spec["manifest"])  # type: ignore[call-overload]
    manifest["approved_by"] = principal.username
    manifest["approved_on"] = today().isoformat()
    manifest_bytes = canonical_json(manifest)
    spec["manifest"] = manifest
    _store_spec(session, referral, spec, server_secrets)
    referral.status = ReferralStatus.APPROVED
    referral.approved_by_id = principal.account_id
    referral.approved_on = today()
    referral.manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
    session.flush()
    _timeline(session, principal, referral.case_id, "referral_approved", f"referral {referral.id.hex[:8]}")
    referral.approval_seq = audit.record(
        session,
        principal.actor,
        "referral.approve",
        object_type="referral",
        object_id=referral.id,
        details={
            "manifest_sha256": referral.manifest_sha256,
            "recipients": [recipient.fingerprint for recipient in recipients],
            "items": len(manifest["items"]),
            "case": str(referral.case_id),
        },
    )
    session.flush()
    return referral


def seal(session: Session, principal: Principal, referral_id: uuid.UUID, sealing: SealingContext) -> Referral:
    """The bundle, built once a signed checkpoint covers the approval; NotSealedYet before."""
    _require_case_worker(principal)
    referral = _load(session, principal, referral_id, for_update=True)
    if referral.status is not ReferralStatus.APPROVED or referral.approval_seq is None:
        raise Conflict("Only an approved referral is sealed into a bundle.")
    if referral.bundle_blob_id is not None:
        return referral
    trusted, _ = registered_witnesses(session, sealing.server_secrets.key_integrity_key)
    try:
        proof = prove_event(
            session,
            referral.approval_seq,
            sealing.log_key,
            [witness.key for witness in trusted],
            sealing.witnesses_required,
        )
    except ProofUnavailable:
        raise NotSealedYet from None
    spec = _spec(principal, referral)
    manifest_bytes = canonical_json(spec["manifest"])
    for recipient_id in Selection.from_json(spec["selection"]).recipient_ids:  # type: ignore[arg-type]
        # Retired (or its confirmation undone) since the approval: nothing is sealed to it.
        usable_recipient(session, recipient_id, sealing.server_secrets.key_integrity_key)
    if hashlib.sha256(manifest_bytes).hexdigest() != referral.manifest_sha256:
        raise ContentChanged
    _, contents, recipients = _rebuilt(
        session,
        principal,
        referral,
        spec,
        blobs=sealing.blobs,
        integrity_key=sealing.server_secrets.key_integrity_key,
        hash_files=False,
    )
    blob_id = uuid.uuid4()
    # Registered before the first byte: a transaction that rolls back leaves no bundle behind.
    on_rollback(session, lambda: sealing.blobs.delete(blob_id))
    sink = sealing.blobs.create(blob_id)
    try:
        written = write_bundle(
            sink,  # type: ignore[arg-type]
            # Random, not the referral's id: the id is readable in the file, and must not match it to
            # the referral in an audit export (the manifest inside names the referral).
            bundle_id=uuid.uuid4(),
            manifest=manifest_bytes,
            proof=proof,
            items=[
                BundleItem(path=item.path, size=item.size, sha256=item.sha256, chunks=item.chunks)
                for item in contents.items
            ],
            recipients=[
                recipient_public_key(recipient, sealing.server_secrets.key_integrity_key)
                for recipient in recipients
            ],
        )
    except BundleItemChanged:
        sink.close()
        raise ContentChanged from None
    except BaseException:
        sink.close()
        raise
    sink.close()
    referral.bundle_blob_id = blob_id
    referral.bundle_sha256 = written.sha256
    referral.bundle_size = written.size
    session.flush()
    audit.record(
        session,
        principal.actor,
        "referral.seal",
        object_type="referral",
        object_id=referral.id,
        details={
            "bundle_sha256": written.sha256,
            "size": written.size,
            "checkpoint_size": int(proof["tree_size"]),
        },
    )
    return referral


def download(
    session: Session, principal: Principal, referral_id: uuid.UUID, sealing: SealingContext
) -> tuple[Referral, Iterator[bytes]]:
    """The bundle's bytes, sealed first if they are not yet; every download is audited."""
    referral = seal(session, principal, referral_id, sealing)
    assert referral.bundle_blob_id is not None  # noqa: S101 - seal() sets it or raises
    audit.record(
        session,
        principal.actor,
        "referral.download",
        object_type="referral",
        object_id=referral.id,
        details={"bundle_sha256": referral.bundle_sha256 or ""},
    )
    source = sealing.blobs.open(referral.bundle_blob_id)

    def chunks() -> Iterator[bytes]:
        with contextlib.closing(source):
            while chunk := source.read(1 << 16):
                yield chunk

    return referral, chunks()


def revoke(session: Session, principal: Principal, referral_id: uuid.UUID) -> Referral:
    """Recorded and shown; what was handed over cannot be recalled (the pages say so)."""
    require_lead(principal, "revokes a referral")
    referral = _load(session, principal, referral_id, for_update=True)
    if referral.status is ReferralStatus.REVOKED:
        raise Conflict("This referral is already revoked.")
    referral.status = ReferralStatus.REVOKED
    referral.revoked_by_id = principal.account_id
    referral.revoked_on = today()
    session.flush()
    _timeline(session, principal, referral.case_id, "referral_revoked", f"referral {referral.id.hex[:8]}")
    audit.record(
        session,
        principal.actor,
        "referral.revoke",
        object_type="referral",
        object_id=referral.id,
        details={"bundle_sha256": referral.bundle_sha256 or ""},
    )
    return referral
