"""What every request may depend on, as typed dependency aliases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.blobs import BlobStorage
from app.config import Settings
from app.db import Database
from app.keys.server_secrets import ServerSecrets


@dataclass(frozen=True, slots=True)
class AppContext:
    settings: Settings
    database: Database
    secrets: ServerSecrets
    blobs: BlobStorage
    # Uploads streaming at once in this app (settings.max_concurrent_uploads).
    upload_slots: asyncio.Semaphore

def app_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


def request_session(request: Request) -> Iterator[Session]:
    """The request's one transaction: committed after the handler returns, before the
    response is sent (scope="function"), rolled back if anything raised."""
    with app_context(request).database.transaction() as session:
        yield session


Context = Annotated[AppContext, Depends(app_context)]
DbSession = Annotated[Session, Depends(request_session, scope="function")]
