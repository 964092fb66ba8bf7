"""A referral received from another organisation, imported as a new case with its provenance.

`daylight referral import` (the receiving organisation's operator, with its recipient key) first
verifies the bundle as `referral verify` does, against the sender's verifier key; nothing is
imported from a bundle that does not verify. Then, in one transaction, each report of the
manifest becomes a report here, sealed to this organisation's intake key like a submission (its
text as the narrative, its messages and notes and files as its files: files are cleaned of their
metadata again on the way in), verified (the sender's two people verified it and approved the
referral; the case says so), and the reports become one case whose first member is a key holder
named by the operator, and whose summary records where it came from: the sender's log, the
referral, who proposed and approved it and when, the manifest's SHA-256 and the proven event.

The submitters' consent travels with their reports (the manifest's consent entries): a report
passed on "without identifying details" is passed on again no more freely than that. Items are
decrypted as they are stored and never written to disk in the clear. Audited as `referral.import`
(the system's event: the operator ran it) with the referral, the sender and the manifest hash.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import Role, StaffAccount
from app.auth.permissions import KEY_HOLDING_ROLES
from app.cases.models import Case, CaseEvent
from app.cases.schemas import CaseCreate
from app.cases.service import open_case
from app.custody.models import IntakeKeyGrant
from app.intake import service as intake_service
from app.intake.models import Tip, TipStatus
from app.intake.schemas import NARRATIVE_MAX_CHARS, TipSubmission
from app.kit.blobs import BlobStorage
from app.kit.clock import today
from app.kit.config import Settings
from app.kit.errors import InvalidInput
from app.kit.sequencing import next_position
from app.kit.server_secrets import ServerSecrets
from app.kit.taxonomy import ReferralConsent, ReferralForm
from app.referrals.bundle import BundleEntry, BundleReport

# A text item is read whole to become a narrative: more than this is kept as a file instead.
_TEXT_ITEM_MAX_BYTES = 256 * 1024
_TRUNCATED = "\n[… continued in the file report.txt]"


@dataclass
class _ImportedReport:
    ref: str
    draft: intake_service.TipDraft
    text: str = ""
    has_files: bool = False
    notes: list[str] = field(default_factory=list)


def member_for_import(session: Session, username: str) -> StaffAccount:
    """The key holder who becomes the imported case's first member."""
    account = session.scalars(select(StaffAccount).where(StaffAccount.username == username)).first()
    holds_key = account is not None and session.scalar(
        select(IntakeKeyGrant.account_id).where(IntakeKeyGrant.account_id == account.id).limit(1)
    )
    if (
        account is None
        or not account.is_active
        or Role(account.role) not in KEY_HOLDING_ROLES
        or not holds_key
    ):
        raise InvalidInput(f"{username!r} is not an active member holding the intake key.")
    return account


def _provenance(report: BundleReport, manifest: dict[str, Any], manifest_sha256: str) -> str:
    their_case = manifest.get("case")
    case_ref = their_case.get("ref", "?") if isinstance(their_case, dict) else "?"
    lines = [
        f"Imported from a referral by {report.origin}.",
        f"Referral {report.referral_id}, their case {case_ref}.",
        f"Proposed by {manifest.get('proposed_by', '?')} on {manifest.get('proposed_on', '?')}, "
        f"approved by {manifest.get('approved_by', '?')} on {manifest.get('approved_on', '?')} "
        f"(audit event of {report.approved_at}).",
        f"Manifest SHA-256 {manifest_sha256}.",
    ]
    if report.witnessed_by:
        lines.append(f"Witnessed by: {', '.join(report.witnessed_by)}.")
    cover = manifest.get("cover_note")
    if isinstance(cover, str) and cover:
        lines += ["", "Their cover note:", cover]
    links = manifest.get("station_links")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict):
            lines.append(
                f"Their link to the station in {link.get('station')}: {link.get('relation')}, "
                f"{link.get('confidence')} confidence. Source: {link.get('evidence')}"
            )
    return "\n".join(lines)


def _consent_of(manifest: dict[str, Any], ref: str) -> tuple[ReferralConsent | None, ReferralForm | None]:
    """The submitter's consent as the sender recorded it: it travels with the report."""
    entries = manifest.get("consent")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("report") == ref:
            try:
                consent = ReferralConsent(str(entry.get("referral_consent")))
                form = ReferralForm(str(entry.get("referral_form")))
            except ValueError:
                return None, None
            return consent, form
    return None, None


def import_referral(
    session: Session,
    report: BundleReport,
    items: Iterator[tuple[BundleEntry, Iterator[bytes]]],
    *,
    member: StaffAccount,
    settings: Settings,
    server_secrets: ServerSecrets,
    blobs: BlobStorage,
) -> Case:
    """The case made of a verified bundle's reports; raises (and the caller's transaction rolls
    back, files included) when the bundle holds no report or an item fails while read."""
    manifest = report.manifest or {}
    reports: dict[str, _ImportedReport] = {}
    for entry, chunks in items:
        parts = entry.path.split("/")
        if len(parts) < 3 or parts[0] != "reports":
            for _ in chunks:  # read to the end: the hash is checked there
                pass
            continue
        ref = parts[1]
        imported = reports.get(ref)
        if imported is None:
            imported = reports[ref] = _ImportedReport(ref, intake_service.start_tip(session, server_secrets))
        if parts[2] == "report.txt" and entry.size <= _TEXT_ITEM_MAX_BYTES:
            data = b"".join(chunks)
            imported.text = data.decode("utf-8", errors="replace")
            if len(imported.text) <= NARRATIVE_MAX_CHARS:
                continue
            # Too long for a narrative: its start is the narrative, the whole of it a file.
            imported.text = imported.text[: NARRATIVE_MAX_CHARS - len(_TRUNCATED)] + _TRUNCATED
            chunks = iter((data,))
        writer = imported.draft.open_attachment(
            session,
            blobs,
            settings=settings,
            content_type="text/plain" if parts[-1].endswith(".txt") else None,
        )
        try:
            for chunk in chunks:
                writer.write(chunk)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        imported.has_files = True
    if not reports:
        raise InvalidInput("The bundle holds no report to import.")
    tips: list[Tip] = []
    for imported in reports.values():
        consent, form = _consent_of(manifest, imported.ref)
        submission = TipSubmission(
            narrative=imported.text or f"Report {imported.ref} of a referral: see its files.",
            referral_consent=consent,
            referral_form=form,
        )
        intake_service.finish_tip(session, imported.draft, submission)
        tip = session.get_one(Tip, imported.draft.id)
        # Verified by the sender's two people, whose approval the bundle proves; the case says so.
        tip.status = TipStatus.VERIFIED
        tips.append(tip)
    session.flush()
    manifest_sha256 = report.manifest_sha256 or ""
    request = CaseCreate(
        title=f"Referral from {report.origin}"[:200],
        summary=_provenance(report, manifest, manifest_sha256),
        tip_ids=[tip.id for tip in tips],
    )
    case = open_case(session, tips, request, server_secrets, creator_id=member.id)
    session.add(
        CaseEvent(
            case_id=case.id,
            position=next_position(session, CaseEvent.position, CaseEvent.case_id == case.id),
            action="imported",
            actor_id=None,
            detail=f"referral {str(report.referral_id)[:8]}",
            happened_on=today(),
        )
    )
    audit.record(
        session,
        audit.SYSTEM,
        "referral.import",
        object_type="case",
        object_id=case.id,
        details={
            "referral": str(report.referral_id),
            "sender": str(report.origin),
            "manifest_sha256": manifest_sha256,
            "reports": len(tips),
            "member": str(member.id),
        },
    )
    session.flush()
    return case
