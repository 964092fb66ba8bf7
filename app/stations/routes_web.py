"""The registry's staff page for leads: importing a station file.

The pages that show figures from cases (the station list and page, the map, the statistics)
are in app.reporting.routes_web.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from app.auth.deps import StationManager
from app.kit.errors import AppError
from app.stations import registry
from app.web.context import Context, DbSession
from app.web.forms import read_form
from app.web.pages import render_staff_page

router = APIRouter()


@router.post("/stations/import", response_class=HTMLResponse)
async def import_page(
    request: Request, principal: StationManager, session: DbSession, context: Context
) -> HTMLResponse:
    """Pasted CSV or JSON: a dry run, or the import with "apply"; all or nothing either way."""
    fields = await read_form(request, context.settings, csrf_token=principal.csrf_token)
    file_format = fields.get("format", "csv")

    def run() -> HTMLResponse:
        try:
            rows = registry.parse(fields.get("content", "").encode(), file_format)
            apply = fields.get("apply") == "yes"
            result = registry.apply(session, rows, principal.actor) if apply else registry.plan(session, rows)
        except AppError as exc:
            problems = [field["message"] for field in exc.fields] if hasattr(exc, "fields") else []
            return render_staff_page(
                request,
                "staff/station_import.html",
                principal=principal,
                error=exc.public_message,
                problems=problems,
                result=None,
                content=fields.get("content", ""),
                status_code=exc.status,
            )
        return render_staff_page(
            request,
            "staff/station_import.html",
            principal=principal,
            error=None,
            problems=[],
            result=result,
            applied=apply,
            content=fields.get("content", ""),
        )

    return await run_in_threadpool(run)
