"""Cases linked to stations: proposing and confirming a link.

A link (relation, confidence, evidence) is proposed by a member working on the
case and confirmed by a different member whom the organisation's review policy
allows (app.auth.review_policy: a lead, or any key holder); only confirmed
links count in the figures (app.reporting.figures). Evidence is content, sealed
under the case's data key.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.principal import Principal
from app.auth.review_policy import (
    ReviewPolicy,
    may_confirm,
    second_person_policy,
)
from app.cases import service as case_service
from app.cases.models import Case
from app.cases.repository import case_readable_by
from app.cases.service import link_row_id
from app.kit import clock
from app.kit.errors import Conflict, InvalidInput, NotFound
from app.outbox import events as outbox
from app.outbox.models import Audience, NoticeKind
from app.stations.models import LINK_EVIDENCE, CaseStationLink, Confidence, LinkRelation, Station


class SameMemberConfirms(Conflict):
    code = "two_person_rule"
    public_message = "A link must be confirmed by a different member than the one who proposed it."


def propose_link(
    session: Session,
    principal: Principal,
    case_id: uuid.UUID,
    station_id: uuid.UUID,
    relation: LinkRelation,
    confidence: Confidence,
    evidence: str,
) -> CaseStationLink:
    case, data_key = case_service.load_case(session, principal, case_id, for_update=True)
    station = session.get(Station, station_id)
    if station is None:
        raise InvalidInput(
            "Choose a station from the registry.",
            fields=[{"field": "station_id", "message": "not in the registry"}],
        )
    duplicate = session.scalar(
        select(CaseStationLink.id).where(
            CaseStationLink.case_id == case.id,
            CaseStationLink.station_id == station.id,
            CaseStationLink.relation == relation,
        )
    )
    if duplicate is not None:
        raise Conflict("This case is already linked to that station in that way.")
    link_id = uuid.uuid4()
    link = CaseStationLink(
        id=link_id,
        case_id=case.id,
        station_id=station.id,
        relation=relation,
        confidence=confidence,
        evidence_encrypted=LINK_EVIDENCE.seal(
            data_key,
            evidence.encode(),
            row_id=link_row_id(case.id, link_id),
            key_version=case.content_key_version,
        ),
        proposed_by_id=principal.account_id,
        proposed_on=clock.today(),
    )
    session.add(link)
    session.flush()
    audit.record(
        session,
        principal.actor,
        "case.station_link_propose",
        object_type="case",
        object_id=case.id,
        details={"station": str(station.id), "relation": relation.value},
    )
    outbox.notify(
        session,
        NoticeKind.VERIFICATION_WAITING,
        Audience.CONFIRMERS,
        audience_id=case.id,
        excluded_id=principal.account_id,
    )
    return link


def confirm_link(session: Session, principal: Principal, case_id: uuid.UUID, link_id: uuid.UUID) -> None:
    case, _ = case_service.load_case(session, principal, case_id, for_update=True)
    policy = second_person_policy(session, principal, "a link to a station")
    # Locked and read again: two leads confirming at once are decided one after the other.
    link = session.scalars(
        select(CaseStationLink)
        .where(CaseStationLink.id == link_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if link is None or link.case_id != case.id:
        raise NotFound
    if link.confirmed_on is not None:
        raise Conflict("This link is already confirmed.")
    if not may_confirm(policy, principal, link.proposed_by_id):
        raise SameMemberConfirms
    link.confirmed_by_id, link.confirmed_on = principal.account_id, clock.today()
    session.flush()
    audit.record(
        session,
        principal.actor,
        "case.station_link_confirm",
        object_type="case",
        object_id=case.id,
        details={"station": str(link.station_id), "relation": link.relation.value},
    )


def links_confirmable_by(
    session: Session, principal: Principal, case_id: uuid.UUID, policy: ReviewPolicy
) -> frozenset[uuid.UUID]:
    """The unconfirmed links of a case the caller may read that ``confirm_link`` would let the
    caller confirm: the case page offers a confirm button for exactly these."""
    readable = case_readable_by(principal, case_id).with_only_columns(Case.id)
    return frozenset(
        link_id
        for link_id, proposer_id in session.execute(
            select(CaseStationLink.id, CaseStationLink.proposed_by_id).where(
                CaseStationLink.case_id.in_(readable), CaseStationLink.confirmed_on.is_(None)
            )
        )
        if may_confirm(policy, principal, proposer_id)
    )
