"""Saved views: a member's named queue filters, sealed to the intake key like content.

A saved filter says what the organisation is looking for ("urgent, unassigned, Uyghur"): a
database copy must not show it. Its name and query are one JSON document under the view's own
data key, sealed to the intake key (re-sealed by key rotation); only its owner lists or uses it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.principal import Principal
from app.crypto.errors import DecryptionError
from app.custody.service import current_intake_key, trusted_intake_public_key
from app.kit.clock import today
from app.kit.errors import Forbidden, InvalidInput, NotFound
from app.triage.models import SAVED_VIEW_RECORD, SavedView
from app.triage.schemas import filters_from_query

MAX_VIEWS_PER_MEMBER = 50
MAX_NAME_CHARACTERS = 64
# A view keeps what chooses reports, never where a page of them started.
NOT_SAVED = frozenset({"cursor", "limit", "view"})


@dataclass(frozen=True, slots=True)
class SavedViewItem:
    id: uuid.UUID
    name: str
    query: str  # the queue's query string, ready for a link


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_NAME_CHARACTERS or not cleaned.isprintable():
        raise InvalidInput(
            f"Name the view (1 to {MAX_NAME_CHARACTERS} characters).",
            fields=[{"field": "name", "message": "1 to 64 printable characters"}],
        )
    return cleaned


def _clean_query(query: dict[str, str]) -> dict[str, str]:
    kept = {name: value for name, value in query.items() if value != "" and name not in NOT_SAVED}
    try:
        filters_from_query(kept)
    except ValidationError:
        raise InvalidInput("Those filters were not understood; nothing was saved.") from None
    return dict(sorted(kept.items()))


def save_view(
    session: Session, principal: Principal, name: str, query: dict[str, str], *, key_integrity_key: bytes
) -> SavedView:
    intake_key = current_intake_key(session)
    if intake_key is None or intake_key.version not in principal.keys.intake:
        raise Forbidden("Saving a view needs the current intake key: log in again after a key rotation.")
    owned = session.scalars(select(SavedView.id).where(SavedView.account_id == principal.account_id)).all()
    if len(owned) >= MAX_VIEWS_PER_MEMBER:
        raise InvalidInput(f"You have {MAX_VIEWS_PER_MEMBER} saved views already: delete one first.")
    document = json.dumps({"name": _clean_name(name), "query": _clean_query(query)}).encode()
    intake_public = trusted_intake_public_key(intake_key, key_integrity_key)
    view_id, version = uuid.uuid4(), intake_key.version
    sealed_key, sealed_filters = SAVED_VIEW_RECORD.seal(intake_public, version, str(view_id), document)
    view = SavedView(
        id=view_id,
        account_id=principal.account_id,
        created_on=today(),
        intake_key_version=version,
        content_key_version=version,
        sealed_data_key=sealed_key,
        filters_encrypted=sealed_filters,
    )
    session.add(view)
    session.flush()
    audit.record(session, principal.actor, "view.save", object_type="saved_view", object_id=view.id)
    return view


def _open(principal: Principal, view: SavedView) -> dict[str, object] | None:
    private = principal.intake_private_key(view.intake_key_version)
    if private is None:
        return None
    opened = SAVED_VIEW_RECORD.open(
        private,
        view.sealed_data_key,
        view.filters_encrypted,
        row_id=str(view.id),
        intake_version=view.intake_key_version,
        content_version=view.content_key_version,
    )
    document: dict[str, object] = json.loads(opened)
    return document


def views_of(session: Session, principal: Principal) -> list[SavedViewItem]:
    """The caller's own saved views, by name; those under a key version they do not hold are left out."""
    items = []
    for view in session.scalars(select(SavedView).where(SavedView.account_id == principal.account_id)):
        try:
            document = _open(principal, view)
        except (DecryptionError, ValueError):
            # A view that does not open is not listed; it must not take its owner's queue down.
            continue
        if document is None:
            continue
        query = document.get("query")
        items.append(
            SavedViewItem(
                view.id, str(document.get("name", "")), urlencode(query if isinstance(query, dict) else {})
            )
        )
    return sorted(items, key=lambda item: item.name.casefold())


def delete_view(session: Session, principal: Principal, view_id: uuid.UUID) -> None:
    view = session.get(SavedView, view_id)
    if view is None or view.account_id != principal.account_id:
        raise NotFound
    session.delete(view)
    session.flush()
    audit.record(session, principal.actor, "view.delete", object_type="saved_view", object_id=view_id)
