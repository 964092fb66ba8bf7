"""What every request may depend on, as typed dependency aliases."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.kit.blobs import BlobStorage
from app.kit.config import Settings
from app.kit.db import Database, commit, undo
from app.kit.server_secrets import ServerSecrets
from app.web.admission import admit, release_admission


@dataclass(frozen=True, slots=True)
class AppContext:
    settings: Settings
    database: Database
    secrets: ServerSecrets
    blobs: BlobStorage
    # Uploads streaming at once in this app (settings.max_concurrent_uploads).
    upload_slots: asyncio.Semaphore


def context_of(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


async def app_context(request: Request) -> AppContext:
    """``async`` so that FastAPI runs it in the event loop: a plain ``def`` dependency costs a
    worker-thread hop per request, and under load a wait for a free thread."""
    return context_of(request)


async def request_session(request: Request) -> AsyncIterator[Session]:
    """The request's one transaction: committed after the handler returns, before the
    response is sent (scope="function"), rolled back if anything raised.

    Opened in the event loop (a session takes no connection until its first
    statement) and committed in one worker-thread call: a request holds its
    connection from its first statement to its commit, and admission control
    (app.web.admission) keeps the number of such requests within the pool: the
    database slot is taken here, before anything can use the session.
    """
    await admit(request)
    async with _session_released_at_end(request) as session:
        yield session


async def upload_request_session(request: Request) -> AsyncIterator[Session]:
    """As ``request_session``, for a route that streams an upload first: the route takes its
    database slot itself once the body has arrived (``admission.admit``), so that a slow
    upload does not hold one while it streams. Only for routes that do so."""
    async with _session_released_at_end(request) as session:
        yield session


@contextlib.asynccontextmanager
async def _session_released_at_end(request: Request) -> AsyncIterator[Session]:
    try:
        session = context_of(request).database.session_factory()
        async with finishing(session):
            yield session
    finally:
        release_admission(request)


@contextlib.asynccontextmanager
async def finishing(session: Session) -> AsyncIterator[Session]:
    """Commit ``session`` when the block ends, roll it back (with its cleanups) if it raised;
    either way in a worker thread, shielded from cancellation so that a client hanging up
    cannot leave a transaction open or a blob behind."""
    try:
        yield session
    except BaseException:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(undo, session)
        raise
    with anyio.CancelScope(shield=True):
        await run_in_threadpool(commit, session)


Context = Annotated[AppContext, Depends(app_context)]
DbSession = Annotated[Session, Depends(request_session, scope="function")]
UploadDbSession = Annotated[Session, Depends(upload_request_session, scope="function")]
