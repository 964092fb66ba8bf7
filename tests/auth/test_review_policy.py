"""The review policy: who may be the second person of the two-person rule, kept in the audit log,
set by an admin, and the warning for an organisation whose single lead would stall it.

(The services that apply it: tests/triage/test_review_policy.py, tests/cases/test_station_link_policy.py.)
"""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log.models import AuditEvent
from app.auth.models import Role
from app.auth.principal import Principal, UnlockedKeys
from app.auth.review_policy import (
    POLICY_EVENT,
    ReviewPolicy,
    SecondPerson,
    current_review_policy,
    may_confirm,
    set_review_policy,
    single_lead_warning,
)
from app.crypto import sealing
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import make_member
from tests.conftest import Client, Organisation

LEAD_ONLY = ReviewPolicy(SecondPerson.LEAD)
KEY_HOLDERS = ReviewPolicy(SecondPerson.KEY_HOLDER)


def member(role: Role, *, holds_key: bool = True) -> Principal:
    keys = {1: sealing.generate_private_key()} if holds_key else {}
    return Principal(
        account_id=uuid.uuid4(),
        username=f"{role.value}-x",
        role=role,
        session_id=uuid.uuid4(),
        keys=UnlockedKeys(personal=sealing.generate_private_key(), intake=keys),
        reauthenticated_at=dt.datetime.now(dt.UTC),
        csrf_token="",
    )


def csrf_token(client: TestClient, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match
    return match.group(1)


# The pure rule: no database.


@pytest.mark.parametrize("policy", [LEAD_ONLY, KEY_HOLDERS])
@pytest.mark.parametrize("role", list(Role))
def test_the_proposer_never_confirms(policy: ReviewPolicy, role: Role) -> None:
    proposer = member(role)
    assert not may_confirm(policy, proposer, proposer.account_id)


def test_under_the_lead_policy_only_another_lead_confirms() -> None:
    proposer = uuid.uuid4()
    assert may_confirm(LEAD_ONLY, member(Role.LEAD), proposer)
    for role in (Role.CASEWORKER, Role.ADMIN, Role.AUDITOR):
        assert not may_confirm(LEAD_ONLY, member(role), proposer), role


def test_under_the_key_holder_policy_any_other_member_holding_the_key_confirms() -> None:
    proposer = uuid.uuid4()
    assert may_confirm(KEY_HOLDERS, member(Role.CASEWORKER), proposer)
    assert may_confirm(KEY_HOLDERS, member(Role.LEAD), proposer)
    # A caseworker whose login unlocked no intake key cannot read the report: not a key holder.
    assert not may_confirm(KEY_HOLDERS, member(Role.CASEWORKER, holds_key=False), proposer)
    for role in (Role.ADMIN, Role.AUDITOR):
        assert not may_confirm(KEY_HOLDERS, member(role), proposer), role


def test_a_proposal_by_a_former_member_is_confirmed_by_anyone_the_policy_allows() -> None:
    assert may_confirm(LEAD_ONLY, member(Role.LEAD), None)
    assert not may_confirm(LEAD_ONLY, member(Role.CASEWORKER), None)


# Kept in the audit log.


def test_the_default_is_a_different_lead(db_session: Session) -> None:
    assert current_review_policy(db_session) == ReviewPolicy()
    assert current_review_policy(db_session).second_person is SecondPerson.LEAD


def test_the_newest_policy_event_is_the_policy_in_force(db_session: Session) -> None:
    set_review_policy(db_session, KEY_HOLDERS, actor=audit.SYSTEM)
    assert current_review_policy(db_session) == KEY_HOLDERS
    set_review_policy(db_session, LEAD_ONLY, actor=audit.SYSTEM)
    assert current_review_policy(db_session) == LEAD_ONLY
    set_review_policy(db_session, KEY_HOLDERS, actor=audit.SYSTEM)
    assert current_review_policy(db_session) == KEY_HOLDERS
    # A refused attempt recorded under the same action is not a policy.
    audit.record(
        db_session,
        audit.SYSTEM,
        POLICY_EVENT,
        outcome=audit.Outcome.FAILURE,
        details={"second_person": "lead"},
    )
    db_session.flush()
    assert current_review_policy(db_session) == KEY_HOLDERS


def test_an_unknown_recorded_value_reads_as_the_strict_default(db_session: Session) -> None:
    audit.record(db_session, audit.SYSTEM, POLICY_EVENT, details={"second_person": "anyone"})
    db_session.flush()
    assert current_review_policy(db_session) == LEAD_ONLY


# The admin's page.


def test_the_admin_sets_the_policy_on_its_page_and_it_is_audited(
    signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    for role in (Role.CASEWORKER, Role.LEAD, Role.AUDITOR):
        assert signed_in(organisation[role]).get("/admin/review-policy").status_code == 403
    admin = signed_in(organisation[Role.ADMIN])
    page = admin.get("/admin/review-policy")
    assert 'data-nav="review_policy"' in page.text
    assert "a lead other than the proposer" in page.text
    saved = admin.post(
        "/admin/review-policy",
        data={"csrf_token": csrf_token(admin, "/admin/review-policy"), "second_person": "key_holder"},
        follow_redirects=False,
    )
    assert (saved.status_code, saved.headers["location"]) == (303, "/admin/review-policy")
    db_session.expire_all()
    assert current_review_policy(db_session) == KEY_HOLDERS
    [event] = db_session.scalars(select(AuditEvent).where(AuditEvent.action == POLICY_EVENT))
    assert event.actor_id == organisation[Role.ADMIN].account.id
    assert "any member who holds the intake key" in admin.get("/admin/review-policy").text


def test_an_unknown_choice_is_refused_and_changes_nothing(
    signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    admin = signed_in(organisation[Role.ADMIN])
    refused = admin.post(
        "/admin/review-policy",
        data={"csrf_token": csrf_token(admin, "/admin/review-policy"), "second_person": "anyone"},
    )
    assert refused.status_code == 422
    assert "Choose who may confirm." in refused.text
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).where(AuditEvent.action == POLICY_EVENT)) == 0


def test_the_policy_form_needs_the_session_csrf_token(
    signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    admin = signed_in(organisation[Role.ADMIN])
    refused = admin.post("/admin/review-policy", data={"csrf_token": "wrong", "second_person": "key_holder"})
    assert refused.status_code >= 400
    db_session.expire_all()
    assert current_review_policy(db_session) == LEAD_ONLY


# The single-lead warning.


def test_a_single_lead_organisation_is_warned_under_the_lead_policy(
    organisation: Organisation, db_session: Session, signed_in: Client
) -> None:
    lead = organisation[Role.LEAD].username
    warning = single_lead_warning(db_session, LEAD_ONLY)
    assert warning is not None
    assert lead in warning
    assert "cannot be confirmed" in warning
    assert "/admin/review-policy" in warning
    assert "second lead" in warning
    assert "data-single-lead-warning" in signed_in(organisation[Role.ADMIN]).get("/admin/review-policy").text


def test_no_warning_under_the_key_holder_policy(organisation: Organisation, db_session: Session) -> None:
    assert single_lead_warning(db_session, KEY_HOLDERS) is None


def test_no_warning_with_two_active_leads(
    organisation: Organisation, db_session: Session, settings: Settings, server_secrets: ServerSecrets
) -> None:
    second = make_member(db_session, settings, server_secrets, Role.LEAD, grant=organisation.intake)
    db_session.flush()
    assert single_lead_warning(db_session, LEAD_ONLY) is None
    # A deactivated second lead confirms nothing: the warning is back.
    second.account.is_active = False
    db_session.flush()
    assert single_lead_warning(db_session, LEAD_ONLY) is not None


def test_an_organisation_without_a_lead_is_warned_too(db_session: Session) -> None:
    warning = single_lead_warning(db_session, LEAD_ONLY)
    assert warning is not None
    assert "no active lead" in warning
