"""Reading cases: the case list and one case, in three steps each — query the rows the caller
may see, open the sealed content with the case's data key, present the view.

Keeping the steps apart keeps the rule in one place: every row comes from a query scoped to the
caller (app.cases.repository), and only rows already chosen are ever decrypted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.accounts import usernames
from app.auth.models import StaffAccount
from app.auth.principal import Principal
from app.cases.models import (
    CASE_NOTE_BODY,
    CASE_RESOLUTION,
    CASE_SUMMARY,
    CASE_TITLE,
    Case,
    CaseEvent,
    CaseMember,
    CaseNote,
    CaseTactic,
    CaseTip,
    case_note_row_id,
)
from app.cases.repository import cases_visible_to, tips_readable_by
from app.cases.schemas import (
    CaseDetail,
    CaseEventView,
    CaseNoteView,
    CaseSummary,
    CaseTipView,
    StationLinkView,
)
from app.cases.service import case_data_key, link_row_id, load_case
from app.intake.models import Tip, TipStatus
from app.stations.models import LINK_EVIDENCE, CaseStationLink, Station

# The new-case form offers at most this many verified reports, urgent first, then oldest.
NEW_CASE_CHOICES = 200


def _tactics(session: Session, case_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    found: dict[uuid.UUID, list[str]] = {case_id: [] for case_id in case_ids}
    for case_id, tactic in session.execute(
        select(CaseTactic.case_id, CaseTactic.tactic)
        .where(CaseTactic.case_id.in_(case_ids))
        .order_by(CaseTactic.tactic)
    ):
        found[case_id].append(tactic)
    return found


def _title(case: Case, data_key: bytes) -> str:
    return CASE_TITLE.open(
        data_key, case.title_encrypted, row_id=str(case.id), key_version=case.content_key_version
    ).decode()


def _summary(case: Case, title: str, tactics: list[str], tip_count: int) -> CaseSummary:
    return CaseSummary(
        id=case.id,
        ref=case.ref,
        title=title,
        status=case.status.value,
        restricted=case.restricted,
        tactics=tactics,
        host_country=case.host_country,
        tip_count=tip_count,
        created_on=case.created_on,
    )


def list_cases(session: Session, principal: Principal, limit: int = 200) -> list[CaseSummary]:
    """Newest first; titles decrypted for the rows shown only."""
    cases = list(
        session.scalars(
            cases_visible_to(principal)
            .where(Case.intake_key_version.in_(sorted(principal.keys.intake)))
            .order_by(Case.created_on.desc(), Case.ref)
            .limit(limit)
        )
    )
    audit.record(session, principal.actor, "cases.list", details={"count": len(cases)})
    ids = [case.id for case in cases]
    tactics = _tactics(session, ids)
    # Only the reports the viewer may see: one in a restricted case is not counted for a non-member.
    readable = tips_readable_by(principal).with_only_columns(Tip.id).subquery()
    counts = dict(
        session.execute(
            select(CaseTip.case_id, func.count())
            .where(CaseTip.case_id.in_(ids), CaseTip.tip_id.in_(select(readable.c.id)))
            .group_by(CaseTip.case_id)
        ).all()
    )
    # Already scoped by the query above: no second lookup per row.
    return [
        _summary(
            case, _title(case, case_data_key(principal, case)), tactics[case.id], int(counts.get(case.id, 0))
        )
        for case in cases
    ]


def verified_tips_to_group(session: Session, principal: Principal) -> list[Tip]:
    """The verified reports the caller may read, offered on the new-case form."""
    tips = list(
        session.scalars(
            tips_readable_by(principal)
            .where(Tip.status == TipStatus.VERIFIED)
            .order_by(Tip.urgent.desc(), Tip.received_on, Tip.id)
            .limit(NEW_CASE_CHOICES)
        )
    )
    audit.record(session, principal.actor, "tips.list", details={"count": len(tips)})
    return tips


@dataclass(frozen=True, slots=True)
class _CaseRows:
    """Step one: every row of one case the caller may see, nothing decrypted yet."""

    case: Case
    data_key: bytes
    tips: list[Tip]
    members: list[str]
    notes: list[CaseNote]
    timeline: list[CaseEvent]
    links: list[tuple[CaseStationLink, str, str, str | None]]
    names: dict[uuid.UUID, str]


def _case_rows(session: Session, principal: Principal, case_id: uuid.UUID) -> _CaseRows:
    case, data_key = load_case(session, principal, case_id)
    tips = session.scalars(
        tips_readable_by(principal)
        .join(CaseTip, CaseTip.tip_id == Tip.id)
        .where(CaseTip.case_id == case.id)
        .order_by(Tip.received_on)
    )
    members = session.scalars(
        select(StaffAccount.username)
        .join(CaseMember, CaseMember.account_id == StaffAccount.id)
        .where(CaseMember.case_id == case.id)
        .order_by(StaffAccount.username)
    )
    notes = list(
        session.scalars(
            select(CaseNote).where(CaseNote.case_id == case.id).order_by(CaseNote.written_on, CaseNote.id)
        )
    )
    timeline = list(
        session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.position))
    )
    links = session.execute(
        select(CaseStationLink, Station.city, Station.country, StaffAccount.username)
        .join(Station, Station.id == CaseStationLink.station_id)
        .outerjoin(StaffAccount, StaffAccount.id == CaseStationLink.proposed_by_id)
        .where(CaseStationLink.case_id == case.id)
        .order_by(Station.city)
    )
    return _CaseRows(
        case=case,
        data_key=data_key,
        tips=list(tips),
        members=list(members),
        notes=notes,
        timeline=timeline,
        links=[(link, city, country, proposer) for link, city, country, proposer in links],
        names=usernames(session, [note.author_id for note in notes] + [event.actor_id for event in timeline]),
    )


@dataclass(frozen=True, slots=True)
class _OpenedContent:
    """Step two: the case's sealed texts, opened with its data key."""

    title: str
    summary: str
    resolution_note: str | None
    notes: dict[uuid.UUID, str]
    evidence: dict[uuid.UUID, str]


def _open_content(rows: _CaseRows) -> _OpenedContent:
    case, data_key = rows.case, rows.data_key
    row_id, version = str(case.id), case.content_key_version
    resolution = (
        CASE_RESOLUTION.open(data_key, case.resolution_encrypted, row_id=row_id, key_version=version).decode()
        if case.resolution_encrypted
        else None
    )
    return _OpenedContent(
        title=_title(case, data_key),
        summary=CASE_SUMMARY.open(
            data_key, case.summary_encrypted, row_id=row_id, key_version=version
        ).decode(),
        resolution_note=resolution,
        notes={
            note.id: CASE_NOTE_BODY.open(
                data_key, note.body_encrypted, row_id=case_note_row_id(case.id, note.id), key_version=version
            ).decode()
            for note in rows.notes
        },
        evidence={
            link.id: LINK_EVIDENCE.open(
                data_key, link.evidence_encrypted, row_id=link_row_id(case.id, link.id), key_version=version
            ).decode()
            for link, _, _, _ in rows.links
        },
    )


def _case_detail(rows: _CaseRows, opened: _OpenedContent, tactics: list[str]) -> CaseDetail:
    """Step three: the view, from rows and opened texts only."""
    case, names = rows.case, rows.names
    return CaseDetail(
        **_summary(case, opened.title, tactics, len(rows.tips)).model_dump(),
        summary=opened.summary,
        resolution_note=opened.resolution_note,
        closed_on=case.closed_on,
        tips=[
            CaseTipView(id=tip.id, ref=tip.ref, status=tip.status.value, received_on=tip.received_on)
            for tip in rows.tips
        ],
        members=rows.members,
        notes=[
            CaseNoteView(
                id=note.id,
                author=names.get(note.author_id) if note.author_id else None,
                written_on=note.written_on,
                body=opened.notes[note.id],
            )
            for note in rows.notes
        ],
        timeline=[
            CaseEventView(
                action=event.action,
                actor=names.get(event.actor_id) if event.actor_id else None,
                detail=event.detail,
                happened_on=event.happened_on,
            )
            for event in rows.timeline
        ],
        station_links=[
            StationLinkView(
                id=link.id,
                station_id=link.station_id,
                station=f"{city}, {country}",
                relation=link.relation.value,
                confidence=link.confidence.value,
                evidence=opened.evidence[link.id],
                proposed_by=proposer,
                confirmed=link.confirmed_on is not None,
            )
            for link, city, country, proposer in rows.links
        ],
    )


def read_case(session: Session, principal: Principal, case_id: uuid.UUID) -> CaseDetail:
    rows = _case_rows(session, principal, case_id)
    audit.record(session, principal.actor, "case.read", object_type="case", object_id=rows.case.id)
    return _case_detail(rows, _open_content(rows), _tactics(session, [rows.case.id])[rows.case.id])
