"""Who hears of an outbox event: resolved when the sender runs, from the accounts of that moment.

A member who left, was deactivated or lost the key between the event and the sender's run is not
told; a member who joined meanwhile is. Restricted cases stay restricted: a proposal on one goes
only to those of its members the review policy lets confirm.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.confirmation import is_confirmed
from app.auth.models import Role, StaffAccount
from app.auth.permissions import KEY_HOLDING_ROLES
from app.auth.review_policy import SecondPerson, current_review_policy
from app.cases.models import Case, CaseMember, CaseTip
from app.custody.models import IntakeKey, IntakeKeyGrant
from app.outbox.models import Audience, NoticeKind, NotificationEvent


class AudienceResolver:
    """Resolves audiences for one sender run, each role's members read once."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._key_holders: set[uuid.UUID] | None = None
        self._leads: set[uuid.UUID] | None = None

    def key_holders(self) -> set[uuid.UUID]:
        """Active, confirmed caseworkers and leads holding the newest intake key."""
        if self._key_holders is None:
            newest = self._session.scalar(
                select(IntakeKey.version).order_by(IntakeKey.version.desc()).limit(1)
            )
            accounts = self._session.scalars(
                select(StaffAccount)
                .join(IntakeKeyGrant, IntakeKeyGrant.account_id == StaffAccount.id)
                .where(
                    IntakeKeyGrant.key_version == newest,
                    StaffAccount.is_active.is_(True),
                    StaffAccount.role.in_(sorted(KEY_HOLDING_ROLES)),
                )
            )
            self._key_holders = {account.id for account in accounts if is_confirmed(account)}
        return self._key_holders

    def leads(self) -> set[uuid.UUID]:
        """Active leads whose key pair a lead confirmed (as for key holders)."""
        if self._leads is None:
            accounts = self._session.scalars(
                select(StaffAccount).where(StaffAccount.role == Role.LEAD, StaffAccount.is_active.is_(True))
            )
            self._leads = {account.id for account in accounts if is_confirmed(account)}
        return self._leads

    def _active(self, account_ids: set[uuid.UUID]) -> set[uuid.UUID]:
        if not account_ids:
            return set()
        return set(
            self._session.scalars(
                select(StaffAccount.id).where(
                    StaffAccount.id.in_(sorted(account_ids)), StaffAccount.is_active.is_(True)
                )
            )
        )

    def _case_members(self, case_id: uuid.UUID | None) -> set[uuid.UUID]:
        if case_id is None:
            return set()
        return self._active(
            set(self._session.scalars(select(CaseMember.account_id).where(CaseMember.case_id == case_id)))
        )

    def _restricted_case(self, event: NotificationEvent) -> Case | None:
        if event.audience_id is None:
            return None
        audience = Audience(event.audience)
        if audience is Audience.KEY_HOLDERS:  # about a report: the restricted case holding it
            return self._session.scalars(
                select(Case)
                .join(CaseTip, CaseTip.case_id == Case.id)
                .where(CaseTip.tip_id == event.audience_id, Case.restricted.is_(True))
                .limit(1)
            ).first()
        if audience not in (Audience.CASE_MEMBERS, Audience.CONFIRMERS):
            return None
        case = self._session.get(Case, event.audience_id)
        return case if case is not None and case.restricted else None

    def concerns_restricted_case(self, event: NotificationEvent) -> bool:
        """Whether the event is about a restricted case: its members hear of it, the
        organisation's room (the webhook) does not."""
        return self._restricted_case(event) is not None

    def members_of(self, event: NotificationEvent) -> set[uuid.UUID]:
        audience = Audience(event.audience)
        if audience is Audience.KEY_HOLDERS:
            members = set(self.key_holders())
            restricted = self._restricted_case(event)
            if restricted is not None:
                members &= self._case_members(restricted.id)
        elif audience is Audience.LEADS:
            members = set(self.leads())
        elif audience is Audience.MEMBER:
            members = self._active({event.audience_id} if event.audience_id else set())
            if not members and NoticeKind(event.kind) is NoticeKind.SUBMITTER_ANSWERED:
                # The member it was assigned to has left: whoever holds the key hears instead.
                members = set(self.key_holders())
        elif audience is Audience.CASE_MEMBERS:
            members = self._case_members(event.audience_id)
        else:
            policy = current_review_policy(self._session)
            members = set(
                self.key_holders() if policy.second_person is SecondPerson.KEY_HOLDER else self.leads()
            )
            restricted = self._restricted_case(event)
            if restricted is not None:
                members &= self._case_members(restricted.id)
        if event.excluded_id is not None:
            members.discard(event.excluded_id)
        return members
