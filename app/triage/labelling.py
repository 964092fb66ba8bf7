"""Putting labels on reports and cases, and reading them back, as far as the caller may see.

A restricted case, and every report in it, exists only for its members: attaching, listing and
counting all go through the scoped queries of app.cases.repository, so a label's count or list
never shows a non-member that such a report or case exists. Names come from app.labels.service,
decrypted with the caller's own keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.cases.models import Case
from app.cases.repository import (
    case_readable_by,
    cases_visible_to,
    tip_readable_by,
    tips_readable_by,
    tips_visible_to,
)
from app.intake.models import Tip
from app.kit.errors import Forbidden, NotFound
from app.labels import service as labels
from app.labels.models import CaseLabel, Label, TipLabel
from app.labels.schemas import LabelSummary
from app.labels.service import LabelView, RetiredLabel

LabelTable = type[TipLabel] | type[CaseLabel]


def _attach(session: Session, model: LabelTable, values: dict[str, uuid.UUID]) -> bool:
    """Insert the link unless it is there already; whether it was added. One statement, so that
    two members adding the same label at once both succeed (no unique-key error for the second)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(model).values(**values).on_conflict_do_nothing()
    return session.execute(statement.returning(model.label_id)).first() is not None


def _readable_tip(session: Session, principal: Principal, tip_id: uuid.UUID) -> Tip:
    """A tip the caller may read, its row held for share (a purge deletes it before or after)."""
    if not principal.can(Permission.TRIAGE_TIPS):
        raise Forbidden
    tip = session.scalars(tip_readable_by(principal, tip_id).with_for_update(read=True, of=Tip)).first()
    if tip is None:
        raise NotFound
    return tip


def _readable_case(session: Session, principal: Principal, case_id: uuid.UUID) -> Case:
    if not principal.can(Permission.WORK_CASES):
        raise Forbidden
    case = session.scalars(case_readable_by(principal, case_id).with_for_update(read=True, of=Case)).first()
    if case is None:
        raise NotFound
    return case


def _offered_label(session: Session, principal: Principal, label_id: uuid.UUID) -> uuid.UUID:
    label = labels.readable_label(session, principal, label_id, share=True)
    if label.retired_on is not None:
        raise RetiredLabel
    return label.id


@dataclass(frozen=True, slots=True)
class _Owner:
    """What a label can be put on: reports or cases, each with its link table and its loader."""

    kind: str  # "tip" or "case": the audit actions and object type
    links: LabelTable
    owner_column: str
    load: Callable[[Session, Principal, uuid.UUID], Tip | Case]


_TIPS = _Owner("tip", TipLabel, "tip_id", _readable_tip)
_CASES = _Owner("case", CaseLabel, "case_id", _readable_case)


def _label(
    session: Session, principal: Principal, owner: _Owner, owner_id: uuid.UUID, label_id: uuid.UUID
) -> None:
    row = owner.load(session, principal, owner_id)
    label = _offered_label(session, principal, label_id)
    if _attach(session, owner.links, {owner.owner_column: row.id, "label_id": label}):
        audit.record(
            session,
            principal.actor,
            f"{owner.kind}.label",
            object_type=owner.kind,
            object_id=row.id,
            details={"label": str(label)},
        )


def _unlabel(
    session: Session, principal: Principal, owner: _Owner, owner_id: uuid.UUID, label_id: uuid.UUID
) -> None:
    row = owner.load(session, principal, owner_id)
    label = labels.readable_label(session, principal, label_id)
    links = owner.links
    removed = session.execute(
        delete(links)
        .where(getattr(links, owner.owner_column) == row.id, links.label_id == label.id)
        .returning(links.label_id)
    ).first()
    if removed is not None:
        audit.record(
            session,
            principal.actor,
            f"{owner.kind}.unlabel",
            object_type=owner.kind,
            object_id=row.id,
            details={"label": str(label.id)},
        )


def label_tip(session: Session, principal: Principal, tip_id: uuid.UUID, label_id: uuid.UUID) -> None:
    """Put a label on a report the caller can read; adding it twice changes nothing."""
    _label(session, principal, _TIPS, tip_id, label_id)


def unlabel_tip(session: Session, principal: Principal, tip_id: uuid.UUID, label_id: uuid.UUID) -> None:
    """Take a label (retired or not) off a report; one it does not carry changes nothing."""
    _unlabel(session, principal, _TIPS, tip_id, label_id)


def label_case(session: Session, principal: Principal, case_id: uuid.UUID, label_id: uuid.UUID) -> None:
    """Put a label on a case the caller can read (members only, for a restricted one)."""
    _label(session, principal, _CASES, case_id, label_id)


def unlabel_case(session: Session, principal: Principal, case_id: uuid.UUID, label_id: uuid.UUID) -> None:
    _unlabel(session, principal, _CASES, case_id, label_id)


def _grouped(
    session: Session, principal: Principal, pairs: list[tuple[uuid.UUID, uuid.UUID]]
) -> dict[uuid.UUID, list[LabelView]]:
    views = {view.id: view for view in labels.views_of(session, principal, {label for _, label in pairs})}
    grouped: dict[uuid.UUID, list[LabelView]] = {}
    # views_of sorts by name: keep that order within each owner.
    order = {label_id: position for position, label_id in enumerate(views)}
    for owner, label in sorted(pairs, key=lambda pair: order.get(pair[1], -1)):
        if label in views:
            grouped.setdefault(owner, []).append(views[label])
    return grouped


def labels_by_tip(
    session: Session, principal: Principal, tip_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[LabelView]]:
    """The labels on each of these reports that the caller can read; a report they cannot read
    (a restricted case's, for a non-member) has no entry. Reports without labels have none either."""
    if not tip_ids:
        return {}
    readable = tips_readable_by(principal).with_only_columns(Tip.id).subquery()
    pairs = session.execute(
        select(TipLabel.tip_id, TipLabel.label_id).where(
            TipLabel.tip_id.in_(list(tip_ids)), TipLabel.tip_id.in_(select(readable.c.id))
        )
    )
    return _grouped(session, principal, [(tip_id, label_id) for tip_id, label_id in pairs])


def labels_by_case(
    session: Session, principal: Principal, case_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[LabelView]]:
    """As labels_by_tip, for cases the caller can read."""
    if not case_ids:
        return {}
    readable = (
        cases_visible_to(principal)
        .where(Case.intake_key_version.in_(sorted(principal.keys.intake)))
        .with_only_columns(Case.id)
        .subquery()
    )
    pairs = session.execute(
        select(CaseLabel.case_id, CaseLabel.label_id).where(
            CaseLabel.case_id.in_(list(case_ids)), CaseLabel.case_id.in_(select(readable.c.id))
        )
    )
    return _grouped(session, principal, [(case_id, label_id) for case_id, label_id in pairs])


def _counts(session: Session, links: LabelTable, owner: Any, visible: Any) -> dict[uuid.UUID, int]:
    rows = session.execute(
        select(links.label_id, func.count()).where(owner.in_(select(visible.c.id))).group_by(links.label_id)
    )
    return {label_id: int(count) for label_id, count in rows}


def label_counts(session: Session, principal: Principal) -> dict[uuid.UUID, int]:
    """How many of the reports the caller may see carry each label (a report hidden from them in
    a restricted case is not counted). Labels on no visible report are absent."""
    visible = tips_visible_to(principal).with_only_columns(Tip.id).subquery()
    return _counts(session, TipLabel, TipLabel.tip_id, visible)


def case_label_counts(session: Session, principal: Principal) -> dict[uuid.UUID, int]:
    """As label_counts, for the cases the caller may see."""
    visible = cases_visible_to(principal).with_only_columns(Case.id).subquery()
    return _counts(session, CaseLabel, CaseLabel.case_id, visible)


def tip_ids_with_label(label_id: uuid.UUID, principal: Principal) -> Select[uuid.UUID]:
    """The ids of the reports carrying a label the caller can read (none for a label of a key
    version they do not hold), for ``Tip.id.in_(...)`` in a query that is already scoped to the
    caller (it applies no visibility of its own)."""
    return (
        select(TipLabel.tip_id)
        .join(Label, Label.id == TipLabel.label_id)
        .where(
            TipLabel.label_id == label_id, Label.intake_key_version.in_(labels.readable_versions(principal))
        )
    )


def label_overview(session: Session, principal: Principal) -> list[LabelSummary]:
    """The labels page and list: every label the caller can read, retired ones too, with the
    number of visible reports and cases carrying each. Audited like the other lists."""
    views = labels.label_views(session, principal)
    audit.record(session, principal.actor, "labels.list", details={"count": len(views)})
    if not views:
        return []
    reports, cases = label_counts(session, principal), case_label_counts(session, principal)
    return [
        LabelSummary(
            id=view.id,
            name=view.name,
            retired=view.retired,
            reports=reports.get(view.id, 0),
            cases=cases.get(view.id, 0),
        )
        for view in views
    ]
