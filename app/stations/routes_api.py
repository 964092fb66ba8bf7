"""The station registry over the staff API (DESIGN 8: GET /api/v1/stations)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from app.audit_log import events as audit
from app.auth.deps import CurrentStaff, StationManager
from app.kit.errors import UnsupportedMediaType, error_responses
from app.stations import registry
from app.stations.models import Station, StationStatus
from app.web.context import Context, DbSession
from app.web.request_body import media_type, read_bounded_body

router = APIRouter(prefix="/api/v1/stations", responses=error_responses(401, 403, 500, 503, 507))
IMPORT_TYPES = {"text/csv": "csv", "application/json": "json"}


@dataclass(frozen=True, slots=True)
class StationFile:
    content: bytes
    file_format: str


async def station_file(request: Request, context: Context) -> StationFile:
    """The file as the body (text/csv or application/json), whole, within the small-body bound."""
    file_format = IMPORT_TYPES.get(media_type(request))
    if file_format is None:
        raise UnsupportedMediaType("Send text/csv or application/json.")
    return StationFile(await read_bounded_body(request, context.settings), file_format)


# The file is parsed by app.stations.registry, not by a model: any text or JSON may arrive.
STATION_FILE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "city,country,operating_bureau,status,first_reported,latitude,longitude,source\n"
                "Dublin,IE,Fuzhou PSB,reported,2022-09,53.35,-6.26,Safeguard Defenders report\n",
            },
            "application/json": {"schema": {}},
        },
    }
}


@router.get("")
def list_stations(
    principal: CurrentStaff,
    session: DbSession,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$")] = None,
    bureau: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")] = None,
    status: StationStatus | None = None,
) -> dict[str, Any]:
    """The registry: public, sourced facts about stations; no case data."""
    statement = select(Station).order_by(Station.country, Station.city_key, Station.operating_bureau)
    if country:
        statement = statement.where(Station.country == country.upper())
    if bureau:
        statement = statement.where(Station.operating_bureau == bureau)
    if status:
        statement = statement.where(Station.status == status)
    return {
        "items": [
            {"id": str(station.id), **registry.station_document(station)}
            for station in session.scalars(statement)
        ]
    }


@router.post("/import", openapi_extra=STATION_FILE_BODY, responses=error_responses(400, 408, 413, 415, 422))
def import_stations(
    principal: StationManager,
    session: DbSession,
    file: Annotated[StationFile, Depends(station_file)],
    apply: bool = False,
) -> dict[str, Any]:
    """The file as the body (text/csv or application/json): a dry run unless ?apply=true."""
    rows = registry.parse(file.content, file.file_format)
    result = registry.apply(session, rows, principal.actor) if apply else registry.plan(session, rows)
    return {
        "applied": apply,
        "created": [f"{row.city}, {row.country}" for row in result.created],
        "updated": [
            {"station": f"{row.city}, {row.country}", "changes": changes} for row, changes in result.updated
        ],
        "unchanged": len(result.unchanged),
    }


EXPORT_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}, "application/json": {"schema": {}}}}
}


@router.get("/export", response_class=Response, responses=EXPORT_CONTENT)
def export_stations(
    principal: StationManager, session: DbSession, format: Literal["csv", "json"] = "csv"
) -> Response:
    stations = registry.all_stations(session)
    audit.record(session, principal.actor, "stations.export", details={"format": format})
    if format == "csv":
        return Response(
            registry.export_csv(stations),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="stations.csv"'},
        )
    return Response(
        registry.export_json(stations),
        media_type="application/json",
        headers={"content-disposition": 'attachment; filename="stations.json"'},
    )
