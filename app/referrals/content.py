"""What a referral hands over: its items, built from a case and a selection, with redactions
applied, and the submitters' consent enforced.

Every text item is rebuilt from the stored content whenever it is needed (preview, approval,
bundle) and must hash to what was proposed: what leaves is exactly what the approver saw, or
nothing. Files leave as stored (after metadata cleaning at intake): redaction works on text
only, so a file whose content identifies the submitter is left out, not redacted.

Consent (the submitter's answers `referral_consent` and `referral_form`, DESIGN 4):
- no answer, "no" → the report is never included;
- "partner organisations only" → never to a recipient of kind "authority";
- "as I wrote it" → text and files;
- "without details that could identify me", or no answer to that question → no files, no city,
  and its narrative and messages only once the proposer has marked the identifying details
  redacted (which the approving lead checks in the preview).
Contact details never leave, whatever the answer.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.auth.principal import Principal
from app.cases.reading import read_case
from app.cases.schemas import CaseDetail, StationLinkView
from app.intake.models import ATTACHMENT_BLOB, Tip, TipAttachment
from app.kit.blobs import BlobStorage
from app.kit.errors import InvalidInput
from app.kit.taxonomy import ReferralConsent, ReferralForm
from app.referrals.models import RecipientKind
from app.triage import reading as tip_reading
from app.triage.schemas import TipDetail

REDACTION_MARK = "[REDACTED]"
MAX_REDACTIONS = 200
REDACTION_MAX_CHARS = 500
COVER_NOTE_MAX_CHARS = 20_000
# Report fields a referral can include (whole-field redaction is leaving one out).
REPORT_FIELDS = ("answers", "narrative", "messages", "notes")
# Whom each answer to "May we pass on your report?" allows. The form names partner organisations
# and the authorities, never journalists: no report goes to one.
ALLOWED_KINDS: dict[ReferralConsent, frozenset[RecipientKind]] = {
    ReferralConsent.PARTNERS_ONLY: frozenset({RecipientKind.PARTNER}),
    ReferralConsent.AUTHORITIES_AND_PARTNERS: frozenset({RecipientKind.PARTNER, RecipientKind.AUTHORITY}),
    ReferralConsent.NONE: frozenset(),
}


@dataclass(frozen=True)
class ReportSelection:
    tip_id: uuid.UUID
    fields: tuple[str, ...]
    attachment_ids: tuple[uuid.UUID, ...] = ()
    # The proposer's word that the narrative and messages no longer identify the submitter
    # (required when the submitter asked for that form).
    identifying_details_redacted: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "tip_id": str(self.tip_id),
            "fields": list(self.fields),
            "attachment_ids": [str(attachment_id) for attachment_id in self.attachment_ids],
            "identifying_details_redacted": self.identifying_details_redacted,
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> ReportSelection:
        return cls(
            tip_id=uuid.UUID(str(raw["tip_id"])),
            fields=tuple(str(name) for name in raw["fields"]),  # type: ignore[attr-defined]
            attachment_ids=tuple(uuid.UUID(str(value)) for value in raw["attachment_ids"]),  # type: ignore[attr-defined]
            identifying_details_redacted=bool(raw["identifying_details_redacted"]),
        )


@dataclass(frozen=True)
class Selection:
    """What a member chose to hand over from a case."""

    recipient_ids: tuple[uuid.UUID, ...]
    reports: tuple[ReportSelection, ...]
    station_link_ids: tuple[uuid.UUID, ...] = ()
    case_summary: bool = False
    redactions: tuple[str, ...] = ()
    cover_note: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "recipient_ids": [str(value) for value in self.recipient_ids],
            "reports": [report.to_json() for report in self.reports],
            "station_link_ids": [str(value) for value in self.station_link_ids],
            "case_summary": self.case_summary,
            "redactions": list(self.redactions),
            "cover_note": self.cover_note,
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> Selection:
        return cls(
            recipient_ids=tuple(uuid.UUID(str(value)) for value in raw["recipient_ids"]),  # type: ignore[attr-defined]
            reports=tuple(ReportSelection.from_json(report) for report in raw["reports"]),  # type: ignore[attr-defined]
            station_link_ids=tuple(uuid.UUID(str(value)) for value in raw["station_link_ids"]),  # type: ignore[attr-defined]
            case_summary=bool(raw["case_summary"]),
            redactions=tuple(str(value) for value in raw["redactions"]),  # type: ignore[attr-defined]
            cover_note=str(raw["cover_note"]),
        )


@dataclass
class Item:
    """One file of the bundle: text built here, or an attachment streamed from the blob store."""

    path: str
    kind: str  # cover_note, case, report, messages, notes, attachment
    source: dict[str, str]
    text: str | None = None  # shown in the preview
    chunks: Callable[[], Iterable[bytes]] = field(default=lambda: ())
    size: int = 0
    sha256: str = ""
    redaction_count: int = 0

    def listing(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "kind": self.kind,
            "source": self.source,
        }


@dataclass
class Contents:
    items: list[Item]
    cover_note: str  # redacted, as its item
    consent: list[dict[str, object]]
    withheld: list[dict[str, object]]
    station_links: list[dict[str, str]]
    case_ref: str


def folded(text: str) -> tuple[str, list[int]]:
    """The view of ``text`` that phrases are matched in, and for each of its characters the index
    of the character of ``text`` it comes from.

    Threat: a name that escapes redaction because it is written differently from the phrase the
    member typed: composed or decomposed accents (NFKD on both sides), full-width or other
    compatibility forms (the K of NFKD), letter case (casefold, so "STRASSE" finds "Straße"),
    invisible format characters inside it (zero-width spaces and joiners, soft hyphens: dropped),
    and any run of spaces, non-breaking spaces or line breaks between its words (one space)."""
    view: list[str] = []
    origin: list[int] = []
    in_space = False
    for index, character in enumerate(text):
        if unicodedata.category(character) == "Cf":
            continue
        if character.isspace():
            if not in_space:
                view.append(" ")
                origin.append(index)
            in_space = True
            continue
        in_space = False
        for piece in unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", character).casefold()):
            view.append(piece)
            origin.append(index)
    return "".join(view), origin


class Redactor:
    """Replaces every occurrence of each phrase, as `folded` sees them, with the mark, counting
    the spans replaced. Occurrences that overlap (two phrases sharing a word) are merged into one
    span, so that no fragment of either survives between two marks."""

    def __init__(self, phrases: Sequence[str]) -> None:
        self._phrases = sorted(
            {folded(phrase)[0].strip() for phrase in phrases} - {""}, key=len, reverse=True
        )

    def _spans(self, text: str) -> list[tuple[int, int]]:
        view, origin = folded(text)
        spans: list[tuple[int, int]] = []
        for phrase in self._phrases:
            start = view.find(phrase)
            while start != -1:
                spans.append((origin[start], origin[start + len(phrase) - 1] + 1))
                start = view.find(phrase, start + 1)
        merged: list[tuple[int, int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def apply(self, text: str) -> tuple[str, int]:
        count = 0
        # Again until nothing is found: a mark next to what was around a span cannot make a new
        # occurrence out of the phrases typed, but the check costs little and proves it.
        for _ in range(4):
            spans = self._spans(text)
            if not spans:
                return text, count
            for start, end in reversed(spans):
                text = text[:start] + REDACTION_MARK + text[end:]
            count += len(spans)
        raise InvalidInput("The phrases to redact keep matching what their redaction leaves: shorten them.")


def clean_redactions(lines: Iterable[str]) -> tuple[str, ...]:
    phrases = tuple(dict.fromkeys(line.strip() for line in lines if line.strip()))
    if len(phrases) > MAX_REDACTIONS or any(len(phrase) > REDACTION_MAX_CHARS for phrase in phrases):
        raise InvalidInput(
            f"At most {MAX_REDACTIONS} phrases to redact, each up to {REDACTION_MAX_CHARS} characters.",
            fields=[{"field": "redactions", "message": "too many or too long"}],
        )
    if any(len(phrase) < 2 for phrase in phrases):
        raise InvalidInput(
            "A phrase to redact is at least 2 characters: one letter would redact every word with it.",
            fields=[{"field": "redactions", "message": "at least 2 characters"}],
        )
    return phrases


def _refuse(message: str, field_name: str = "reports") -> InvalidInput:
    return InvalidInput(message, fields=[{"field": field_name, "message": message}])


def check_consent(tip: TipDetail, report: ReportSelection, recipient_kinds: Iterable[RecipientKind]) -> None:
    """InvalidInput (422) when the submitter's consent does not allow the selection."""
    consent = tip.referral_consent
    if consent not in (ReferralConsent.PARTNERS_ONLY, ReferralConsent.AUTHORITIES_AND_PARTNERS):
        raise _refuse(f"Report {tip.ref} cannot be passed on: its submitter did not agree to it.")
    refused_kinds = set(recipient_kinds) - ALLOWED_KINDS[ReferralConsent(consent)]
    if RecipientKind.JOURNALIST in refused_kinds:
        raise _refuse(
            f"Report {tip.ref} cannot go to a journalist: submitters are asked about partner "
            "organisations and the authorities only."
        )
    if refused_kinds:
        raise _refuse(
            f"Report {tip.ref} cannot go to the authorities: "
            "its submitter agreed to partner organisations only."
        )
    if tip.referral_form != ReferralForm.AS_SENT:
        if report.attachment_ids:
            raise _refuse(
                f"Report {tip.ref} may be passed on only without details that identify its submitter: "
                "its files cannot be included."
            )
        # Notes too: they quote the submitter and the relatives they wrote about.
        if {"narrative", "messages", "notes"} & set(
            report.fields
        ) and not report.identifying_details_redacted:
            raise _refuse(
                f"Report {tip.ref} may be passed on only without details that identify its submitter: "
                "redact them, then mark its text as checked."
            )


def _text_item(path: str, kind: str, source: dict[str, str], text: str, redactor: Redactor) -> Item:
    redacted, count = redactor.apply(text)
    data = redacted.encode()
    return Item(
        path=path,
        kind=kind,
        source=source,
        text=redacted,
        chunks=lambda data=data: (data,),  # type: ignore[misc]
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        redaction_count=count,
    )


def _author(author: str) -> str:
    """A message's side, never a caseworker's name."""
    return "submitter" if author == "submitter" else "caseworker"


def _report_text(tip: TipDetail, fields: Sequence[str], identifying_allowed: bool) -> str:
    lines = [f"Report {tip.ref}", f"Received: {tip.received_on}", f"Language: {tip.language}"]
    if "answers" in fields:
        lines += [
            f"What happened: {', '.join(tip.tactics) or '-'}",
            f"Country: {tip.host_country or '-'}",
            f"City: {(tip.host_city or '-') if identifying_allowed else 'withheld'}",
            f"When: {tip.incident_month or '-'}/{tip.incident_year or '-'}"
            + (" (ongoing)" if tip.ongoing else ""),
            f"Who: {', '.join(tip.perpetrators) or '-'}",
        ]
    if "narrative" in fields:
        lines += ["", "In the submitter's words:", tip.narrative]
    return "\n".join(lines) + "\n"


def _attachment_item(
    session: Session,
    principal: Principal,
    tip_id: uuid.UUID,
    ref: str,
    attachment: TipAttachment,
    number: int,
    blobs: BlobStorage,
    integrity_key: bytes,
    *,
    hash_now: bool,
) -> Item:
    """A file of the bundle, decrypted from the blob store when its chunks are asked for; read
    once now for its hash and size when ``hash_now`` (else they are the proposal's)."""
    tip, data_key = tip_reading.open_tip(session, principal, tip_id)
    key, key_version = tip_reading.attachment_key(
        principal, tip, data_key, attachment, integrity_key=integrity_key
    )

    def chunks() -> Iterator[bytes]:
        source = blobs.open(attachment.id)
        try:
            yield from ATTACHMENT_BLOB.decrypt_chunks(
                source, key, row_id=str(attachment.id), key_version=key_version
            )
        finally:
            source.close()

    item = Item(
        path=f"reports/{ref}/files/{number:02d}",
        kind="attachment",
        source={"report": ref, "file": str(attachment.id)},
        chunks=chunks,
    )
    if hash_now:
        digest = hashlib.sha256()
        for chunk in chunks():
            digest.update(chunk)
            item.size += len(chunk)
        item.sha256 = digest.hexdigest()
    return item


def _link_view(link: StationLinkView, redactor: Redactor) -> dict[str, str]:
    return {
        "station": link.station,
        "relation": link.relation,
        "confidence": link.confidence,
        "evidence": redactor.apply(link.evidence)[0],
    }


def build_contents(
    session: Session,
    principal: Principal,
    case_id: uuid.UUID,
    selection: Selection,
    recipient_kinds: Sequence[RecipientKind],
    *,
    blobs: BlobStorage,
    integrity_key: bytes,
    hash_files: bool = True,
) -> Contents:
    """The items of a referral, consent checked, redactions applied. ``hash_files`` False lists
    the files without reading them (a preview reads the hashes the proposal recorded)."""
    case: CaseDetail = read_case(session, principal, case_id)
    case_tip_ids = {tip.id for tip in case.tips}
    redactor = Redactor(selection.redactions)
    items: list[Item] = []
    cover_note = redactor.apply(selection.cover_note.strip())[0]
    if cover_note:
        items.append(_text_item("cover-note.txt", "cover_note", {}, cover_note + "\n", redactor))
    links_by_id = {link.id: link for link in case.station_links if link.confirmed}
    if any(link_id not in links_by_id for link_id in selection.station_link_ids):
        raise _refuse("Choose station links this case has, confirmed.", "station_links")
    station_links = [_link_view(links_by_id[link_id], redactor) for link_id in selection.station_link_ids]
    case_lines = [f"Case {case.ref}"]
    if selection.case_summary:
        case_lines += [case.title, "", case.summary]
    for link in station_links:
        case_lines.append(
            f"Linked to the station in {link['station']}: {link['relation']}, "
            f"{link['confidence']} confidence. Source: {link['evidence']}"
        )
    items.append(_text_item("case.txt", "case", {"case": case.ref}, "\n".join(case_lines) + "\n", redactor))
    consent: list[dict[str, object]] = []
    withheld: list[dict[str, object]] = []
    if not selection.reports:
        raise _refuse("Choose at least one report of the case.")
    for report in selection.reports:
        if report.tip_id not in case_tip_ids:
            raise _refuse("Choose reports of this case.")
        if set(report.fields) - set(REPORT_FIELDS):
            raise _refuse("Choose fields from the list.")
        tip = tip_reading.read_tip(session, principal, report.tip_id, integrity_key=integrity_key)
        check_consent(tip, report, recipient_kinds)
        identifying_allowed = tip.referral_form == ReferralForm.AS_SENT
        consent.append(
            {
                "report": tip.ref,
                "referral_consent": tip.referral_consent,
                "referral_form": tip.referral_form or ReferralForm.WITHOUT_IDENTIFYING_DETAILS.value,
                "identifying_details_redacted": report.identifying_details_redacted,
            }
        )
        left_out = [name for name in REPORT_FIELDS if name not in report.fields] + ["contact_details"]
        if not identifying_allowed:
            left_out.append("city")
        withheld.append({"report": tip.ref, "fields": left_out})
        source = {"report": tip.ref}
        items.append(
            _text_item(
                f"reports/{tip.ref}/report.txt",
                "report",
                source,
                _report_text(tip, report.fields, identifying_allowed),
                redactor,
            )
        )
        if "messages" in report.fields and tip.messages:
            text = "\n\n".join(
                f"{message.sent_on}, {_author(message.author)}:\n{message.body}" for message in tip.messages
            )
            items.append(
                _text_item(f"reports/{tip.ref}/messages.txt", "messages", source, text + "\n", redactor)
            )
        if "notes" in report.fields and tip.notes:
            text = "\n\n".join(f"{note.written_on}:\n{note.body}" for note in tip.notes)
            items.append(_text_item(f"reports/{tip.ref}/notes.txt", "notes", source, text + "\n", redactor))
        if report.attachment_ids:
            stored = {
                attachment.id: attachment for attachment in session.get_one(Tip, report.tip_id).attachments
            }
            for number, attachment_id in enumerate(report.attachment_ids, start=1):
                if attachment_id not in stored:
                    raise _refuse(f"Choose files of report {tip.ref}.")
                items.append(
                    _attachment_item(
                        session,
                        principal,
                        report.tip_id,
                        tip.ref,
                        stored[attachment_id],
                        number,
                        blobs,
                        integrity_key,
                        hash_now=hash_files,
                    )
                )
    if selection.case_summary and any(
        entry["referral_form"] != ReferralForm.AS_SENT and not entry["identifying_details_redacted"]
        for entry in consent
    ):
        raise _refuse(
            "The case's title and summary may name a submitter who asked to be passed on without "
            "identifying details: redact them, and mark that report's text as checked.",
            "case_summary",
        )
    return Contents(
        items=items,
        cover_note=cover_note,
        consent=consent,
        withheld=withheld,
        station_links=station_links,
        case_ref=case.ref,
    )


def redaction_summary(items: Sequence[Item]) -> list[dict[str, object]]:
    """Where text was redacted and how often: never what (the phrases stay in the sealed spec)."""
    return [{"path": item.path, "spans": item.redaction_count} for item in items if item.redaction_count]


def canonical_json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ReportChoice:
    """A report of the case as the referral form offers it: what its submitter allowed."""

    tip: TipDetail
    may_be_shared: bool
    partners_only: bool
    as_sent: bool


def report_choices(
    session: Session, principal: Principal, case: CaseDetail, integrity_key: bytes
) -> list[ReportChoice]:
    choices = []
    for case_tip in case.tips:
        tip = tip_reading.read_tip(session, principal, case_tip.id, integrity_key=integrity_key)
        choices.append(
            ReportChoice(
                tip=tip,
                may_be_shared=tip.referral_consent
                in (ReferralConsent.PARTNERS_ONLY, ReferralConsent.AUTHORITIES_AND_PARTNERS),
                partners_only=tip.referral_consent == ReferralConsent.PARTNERS_ONLY,
                as_sent=tip.referral_form == ReferralForm.AS_SENT,
            )
        )
    return choices
