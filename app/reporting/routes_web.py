"""The staff pages that show figures from cases: the station list and page, the map, the
statistics page and its CSV export.

Every figure counts only the cases the viewer may see (app.reporting.figures). The figures that
leave the system, the statistics CSV and the printable report, withhold counts below
`statistics_min_count`.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlalchemy import select

from app.audit_log import events as audit
from app.auth.deps import CaseWorker, CurrentStaff
from app.auth.models import StaffAccount
from app.auth.permissions import Permission
from app.kit.errors import NotFound
from app.kit.taxonomy import COUNTRY_CODES
from app.reporting import charts, figures, world_map
from app.stations.models import Station, StationStatus, StationStatusChange
from app.web.context import Context, DbSession
from app.web.pages import render_staff_page

router = APIRouter()


@dataclass(frozen=True, slots=True)
class ChartSection:
    """One chart of the statistics page: its heading, the chart, and its figures as a table."""

    key: str  # in element ids
    heading: str
    category: str  # the table's first column
    svg: Markup
    bars: list[charts.Bar]


@router.get("/stations", response_class=HTMLResponse)
def stations_page(request: Request, principal: CurrentStaff, session: DbSession) -> HTMLResponse:
    country = request.query_params.get("country", "").upper()
    bureau = request.query_params.get("bureau", "")
    if re.search(r"[\x00-\x1f\x7f]", bureau):  # no bureau has one; the database would refuse it
        bureau = ""
    status = request.query_params.get("status", "")
    statement = select(Station).order_by(Station.country, Station.city_key)
    if country in COUNTRY_CODES:
        statement = statement.where(Station.country == country)
    if bureau:
        statement = statement.where(Station.operating_bureau == bureau[:100])
    if status in set(StationStatus):
        statement = statement.where(Station.status == StationStatus(status))
    stations = list(session.scalars(statement))
    counts = (
        figures.case_counts_by_station(session, principal) if principal.can(Permission.WORK_CASES) else {}
    )
    bureaus = sorted(set(session.scalars(select(Station.operating_bureau))))
    return render_staff_page(
        request,
        "staff/stations.html",
        principal=principal,
        stations=stations,
        counts=counts,
        bureaus=bureaus,
        statuses=[s.value for s in StationStatus],
        chosen={"country": country, "bureau": bureau, "status": status},
        can_manage=principal.can(Permission.MANAGE_STATIONS),
    )


# Declared before /stations/{station_id}: routes match in order, and "map" is no station id.
@router.get("/stations/map", response_class=HTMLResponse)
def map_page(request: Request, principal: CaseWorker, session: DbSession) -> HTMLResponse:
    counts = figures.case_counts_by_station(session, principal)
    markers = [
        world_map.MapMarker(
            label=f"{station.city}, {station.country}",
            latitude=station.latitude,
            longitude=station.longitude,
            count=counts.get(station.id, 0),
            href=f"/stations/{station.id}",
        )
        for station in session.scalars(select(Station))
    ]
    svg = world_map.render_world_map(markers, title="Stations, sized by linked cases")
    return render_staff_page(request, "staff/station_map.html", principal=principal, svg=svg)


@router.get("/stations/{station_id}", response_class=HTMLResponse)
def station_page(
    station_id: uuid.UUID, request: Request, principal: CurrentStaff, session: DbSession
) -> HTMLResponse:
    station = session.get(Station, station_id)
    if station is None:
        raise NotFound
    case_count, tactics = (
        figures.station_figures(session, principal, station.id)
        if principal.can(Permission.WORK_CASES)
        else (0, None)
    )
    history = session.execute(
        select(StationStatusChange, StaffAccount.username)
        .outerjoin(StaffAccount, StaffAccount.id == StationStatusChange.actor_id)
        .where(StationStatusChange.station_id == station.id)
        .order_by(StationStatusChange.changed_on, StationStatusChange.to_status)
    ).all()
    return render_staff_page(
        request,
        "staff/station.html",
        principal=principal,
        station=station,
        case_count=case_count,
        tactics=sorted((tactics or {}).items()),
        history=history,
        sees_cases=principal.can(Permission.WORK_CASES),
    )


@router.get("/statistics", response_class=HTMLResponse)
def statistics_page(
    request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> HTMLResponse:
    """Charts for staff; with ?print=1 the printable report, where small counts are withheld."""
    statistics = figures.case_statistics(session, principal)
    printable = request.query_params.get("print") == "1"
    threshold = context.settings.statistics_min_count
    if printable:
        audit.record(session, principal.actor, "statistics.report")

    def bars(pairs: list[tuple[str, int]]) -> list[charts.Bar]:
        # In the report, a category below the threshold is left out altogether: even "fewer than
        # 3" would say that a handful of cases exist in that country or month.
        return [
            charts.Bar(label.replace("_", " "), count)
            for label, count in pairs
            if not printable or figures.suppress(count, threshold) is not None
        ]

    suppressed_label = f"fewer than {threshold}"

    def section(key: str, heading: str, category: str, pairs: list[tuple[str, int]]) -> ChartSection:
        shown = bars(pairs)
        render = charts.render_month_chart if key == "month" else charts.render_bar_chart
        return ChartSection(
            key, heading, category, render(shown, title=heading, suppressed_label=suppressed_label), shown
        )

    sections = [
        section("tactic", "Cases by tactic", "Tactic", statistics.by_tactic),
        section("country", "Cases by host country", "Host country", statistics.by_country),
        section("month", "Cases opened by month", "Month", statistics.by_month),
    ]
    return render_staff_page(
        request,
        "staff/statistics.html",
        principal=principal,
        printable=printable,
        threshold=threshold,
        sections=sections,
    )


@router.get("/statistics.csv")
def statistics_export(principal: CaseWorker, session: DbSession, context: Context) -> Response:
    """The figures as CSV for use outside: every count below the threshold withheld."""
    statistics = figures.case_statistics(session, principal)
    threshold = context.settings.statistics_min_count
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["figure", "value", "cases"])
    for figure, pairs in (
        ("tactic", statistics.by_tactic),
        ("host_country", statistics.by_country),
        ("month", statistics.by_month),
    ):
        # Categories below the threshold are left out altogether: a row saying "<3" for one
        # country would itself say that a few cases exist there.
        for label, count in pairs:
            if figures.suppress(count, threshold) is not None:
                writer.writerow([figure, label, count])
    # Every station is listed, with or without cases, so "<3" does not tell 0 from 1 or 2.
    counts = figures.case_counts_by_station(session, principal)
    for station in session.scalars(select(Station).order_by(Station.country, Station.city_key)):
        shown = figures.suppress(counts.get(station.id, 0), threshold)
        writer.writerow(
            ["station", f"{station.city}, {station.country}", shown if shown is not None else f"<{threshold}"]
        )
    audit.record(session, principal.actor, "statistics.export", details={"threshold": threshold})
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="daylight-statistics.csv"'},
    )
