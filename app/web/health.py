"""Liveness and readiness, answered outside admission control (app.web.admission)."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.kit.errors import error_body

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness only: says nothing about the data, the keys or the version.

    ``async`` on purpose: it runs in the event loop, so it never waits for a worker
    thread behind a queue of requests."""
    return {"status": "ok"}


# At most one probe at a time per process, its answer reused for this long: /readyz is
# reachable by anyone who reaches the app, and must not become a way to open connections.
READINESS_SECONDS = 1.0


class _Readiness:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.checked_at = -READINESS_SECONDS
        self.ready = False


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Whether this process can serve now: its database answers a query on a connection of
    its own. 503 with Retry-After otherwise, so a load balancer sends requests elsewhere."""
    state: _Readiness = request.app.state.__dict__.setdefault("readiness", _Readiness())
    async with state.lock:
        now = asyncio.get_running_loop().time()
        if now - state.checked_at >= READINESS_SECONDS:
            state.ready = await run_in_threadpool(request.app.state.context.database.answers)
            state.checked_at = asyncio.get_running_loop().time()
    if state.ready:
        return JSONResponse({"status": "ready"})
    # Retry-After is added to every 503 by app.web.admission.
    return JSONResponse(error_body("unavailable", "The database does not answer."), status_code=503)
