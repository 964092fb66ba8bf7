"""Cases linked to stations, and the figures the registry shows from them.

A link (relation, confidence, evidence) is proposed by a member working on the
case and confirmed by a different member who is a lead; only confirmed links
count. Evidence is content, sealed under the case's data key. Every figure
counts only cases the viewer may see: a restricted case adds nothing to a
non-member's station page, map or chart.

Figures that leave the system (the statistics export, the printable report)
go through `suppress`: a count below the threshold (default 3) is withheld, so
that a small community cannot be singled out by a number.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.permissions import Permission
from app.auth.service import Principal
from app.cases import service as case_service
from app.cases.models import Case, CaseTactic
from app.cases.repository import cases_visible_to
from app.cases.service import link_row_id
from app.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
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
        proposed_on=dt.datetime.now(dt.UTC).date(),
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
    return link


def confirm_link(session: Session, principal: Principal, case_id: uuid.UUID, link_id: uuid.UUID) -> None:
    if not principal.can(Permission.MANAGE_STATIONS):
        raise Forbidden("Only a lead confirms a link to a station.")
    case, _ = case_service.load_case(session, principal, case_id, for_update=True)
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
    if link.proposed_by_id == principal.account_id:
        raise SameMemberConfirms
    link.confirmed_by_id, link.confirmed_on = principal.account_id, dt.datetime.now(dt.UTC).date()
    session.flush()
    audit.record(
        session,
        principal.actor,
        "case.station_link_confirm",
        object_type="case",
        object_id=case.id,
        details={"station": str(link.station_id), "relation": link.relation.value},
    )


def _visible_confirmed_links(principal: Principal):  # type: ignore[no-untyped-def]  # a subquery
    visible = cases_visible_to(principal).with_only_columns(Case.id).subquery()
    return select(CaseStationLink.station_id, CaseStationLink.case_id).where(
        CaseStationLink.confirmed_on.is_not(None), CaseStationLink.case_id.in_(select(visible.c.id))
    )


def case_counts_by_station(session: Session, principal: Principal) -> dict[uuid.UUID, int]:
    """Distinct cases with a confirmed link, per station, among the cases the viewer may see."""
    links = _visible_confirmed_links(principal).subquery()
    rows = session.execute(
        select(links.c.station_id, func.count(func.distinct(links.c.case_id))).group_by(links.c.station_id)
    )
    return {station_id: int(count) for station_id, count in rows}


def station_figures(
    session: Session, principal: Principal, station_id: uuid.UUID
) -> tuple[int, Counter[str]]:
    """How many visible cases are confirmed-linked to the station, and their tactics."""
    links = _visible_confirmed_links(principal).where(CaseStationLink.station_id == station_id).subquery()
    case_ids = list(session.scalars(select(links.c.case_id).distinct()))
    tactics = Counter(session.scalars(select(CaseTactic.tactic).where(CaseTactic.case_id.in_(case_ids))))
    return len(case_ids), tactics


@dataclass(frozen=True, slots=True)
class CaseStatistics:
    by_tactic: list[tuple[str, int]]
    by_country: list[tuple[str, int]]
    by_month: list[tuple[str, int]]


def case_statistics(session: Session, principal: Principal) -> CaseStatistics:
    visible = (
        cases_visible_to(principal).with_only_columns(Case.id, Case.host_country, Case.created_on).subquery()
    )
    by_tactic = session.execute(
        select(CaseTactic.tactic, func.count())
        .where(CaseTactic.case_id.in_(select(visible.c.id)))
        .group_by(CaseTactic.tactic)
        .order_by(func.count().desc(), CaseTactic.tactic)
    ).all()
    by_country = session.execute(
        select(visible.c.host_country, func.count())
        .where(visible.c.host_country.is_not(None))
        .group_by(visible.c.host_country)
        .order_by(func.count().desc(), visible.c.host_country)
    ).all()
    months: Counter[str] = Counter(
        created.strftime("%Y-%m") for created in session.scalars(select(visible.c.created_on))
    )
    return CaseStatistics(
        by_tactic=[(str(t), int(c)) for t, c in by_tactic],
        by_country=[(str(k), int(c)) for k, c in by_country],
        by_month=sorted(months.items()),
    )


def suppress(count: int, threshold: int) -> int | None:
    """A count that may leave the system: None (withheld) below the threshold, so a figure of one
    or two cannot point at a handful of people in a small community."""
    return count if count >= threshold else None
