"""Liveness and readiness, answered outside admission control (app.web.admission)."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.errors import error_body, retry_after_seconds

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness only: says nothing about the data, the keys or the version.

    ``async`` on purpose: it runs in the event loop, so it never waits for a worker
    thread behind a queue of requests."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Whether this process can serve now: its database answers a query on a connection of
    its own. 503 with Retry-After otherwise, so a load balancer sends requests elsewhere."""
    database = request.app.state.context.database
    if await run_in_threadpool(database.answers):
        return JSONResponse({"status": "ready"})
    return JSONResponse(error_body("unavailable", "The database does not answer."), status_code=503,
                        headers={"Retry-After": str(retry_after_seconds(request))})
