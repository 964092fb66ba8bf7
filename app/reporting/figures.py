"""The figures the registry shows from cases: counts per station, tactics at a station, and
the statistics by tactic, host country and month.

Only confirmed links count, and only cases the viewer may see: a restricted case adds
nothing to a non-member's station page, map or chart.

Figures that leave the system (the statistics export, the printable report) go through
`suppress`: a count below the threshold (default 3) is withheld, so that a small community
cannot be singled out by a number.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.principal import Principal
from app.cases.models import Case, CaseTactic
from app.cases.repository import cases_visible_to
from app.stations.models import CaseStationLink


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
