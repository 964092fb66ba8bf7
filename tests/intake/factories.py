from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.intake import service
from app.intake.schemas import TipSubmission
from app.kit.server_secrets import ServerSecrets


def make_tip(session: Session, server_secrets: ServerSecrets, **fields: Any) -> tuple[uuid.UUID, str]:
    """A tip submitted through the intake service; returns its id and receipt."""
    submission = TipSubmission.model_validate({"narrative": "A report for tests.", **fields})
    draft = service.start_tip(session, server_secrets)
    receipt = service.finish_tip(session, draft, submission)
    return draft.id, receipt
