"""Deny by default: every route is either on an explicit public list or guarded.

Walks the route tables of both apps, so a new route cannot be added without
either a role guard or a conscious entry in a public allow-list.
"""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount

from app.audit.routes_witness import witness_or_auditor
from app.auth.deps import current_principal
from app.auth.models import Role
from app.entrypoints.apps import STAFF_PUBLIC_ROUTES, create_intake_app, create_staff_app
from app.kit.config import Settings
from app.kit.db import Database
from tests.auth.factories import login
from tests.conftest import Organisation

INTAKE_PUBLIC_ROUTES = frozenset(
    {
        ("GET", "/"),
        ("POST", "/report/step"),
        ("POST", "/report"),
        ("POST", "/receipt"),
        ("GET", "/safety"),
        ("GET", "/followup"),
        ("POST", "/followup"),
        ("POST", "/followup/reply"),
        ("POST", "/followup/files"),
        ("POST", "/followup/delete"),
        ("POST", "/followup/duress"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("POST", "/api/v1/tips"),
        ("POST", "/api/v1/followup"),
        ("POST", "/api/v1/followup/messages"),
    }
)
STATIC_MOUNT = "/static"

ALL_ROLES = frozenset(Role)
KEY_HOLDERS = frozenset({Role.CASEWORKER, Role.LEAD})
AUDITORS = frozenset({Role.AUDITOR})
LEADS = frozenset({Role.LEAD})

# Who may call each guarded staff route, and what everyone else gets: 403
# from a role guard, or 404 where the scoped query makes the object not exist
# for them. Every guarded route must have a row here.
EXPECTED_ACCESS: dict[tuple[str, str], tuple[frozenset[Role], int]] = {
    ("GET", "/api/v1/tips"): (KEY_HOLDERS, 403),
    ("GET", "/api/v1/tips/{tip_id}"): (KEY_HOLDERS, 404),
    ("GET", "/api/v1/tips/{tip_id}/attachments/{attachment_id}"): (KEY_HOLDERS, 404),
    ("GET", "/api/v1/tips/{tip_id}/duplicates"): (KEY_HOLDERS, 404),
    ("POST", "/api/v1/tips/bulk"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/tips/{tip_id}/claim"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/tips/{tip_id}/release"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/tips/{tip_id}/assign"): (LEADS, 403),
    ("POST", "/api/v1/tips/{tip_id}/messages"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/tips/{tip_id}/verification"): (KEY_HOLDERS, 403),
    # Who may confirm follows the review policy (a lead, or any key holder): the service decides.
    ("POST", "/api/v1/tips/{tip_id}/verification/confirm"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/tips/{tip_id}/reject"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/tips/{tip_id}/notes"): (KEY_HOLDERS, 403),
    ("GET", "/api/v1/cases"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/cases"): (KEY_HOLDERS, 403),
    ("GET", "/api/v1/cases/{case_id}"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/cases/{case_id}/tips"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/cases/{case_id}/members"): (KEY_HOLDERS, 403),
    ("DELETE", "/api/v1/cases/{case_id}/members/{account_id}"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/cases/{case_id}/status"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/cases/{case_id}/restriction"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/cases/{case_id}/notes"): (KEY_HOLDERS, 403),
    ("POST", "/tips/{tip_id}/{action}"): (KEY_HOLDERS, 403),
    ("GET", "/api/v1/stations"): (ALL_ROLES, 403),
    ("POST", "/api/v1/stations/import"): (LEADS, 403),
    ("GET", "/api/v1/stations/export"): (LEADS, 403),
    ("POST", "/api/v1/cases/{case_id}/stations"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/cases/{case_id}/stations/{link_id}/confirm"): (KEY_HOLDERS, 403),
    ("GET", "/stations"): (ALL_ROLES, 403),
    ("GET", "/stations/map"): (KEY_HOLDERS, 403),
    ("GET", "/stations/{station_id}"): (ALL_ROLES, 403),
    ("POST", "/stations/import"): (LEADS, 403),
    ("GET", "/statistics"): (KEY_HOLDERS, 403),
    ("GET", "/statistics.csv"): (KEY_HOLDERS, 403),
    ("GET", "/cases"): (KEY_HOLDERS, 403),
    ("GET", "/cases/new"): (KEY_HOLDERS, 403),
    ("POST", "/cases"): (KEY_HOLDERS, 403),
    ("GET", "/cases/{case_id}"): (KEY_HOLDERS, 403),
    ("POST", "/cases/{case_id}/{action}"): (KEY_HOLDERS, 403),
    # Referrals: leads keep the recipients registry and approve; key holders working on cases build.
    ("GET", "/referrals/recipients"): (LEADS, 403),
    ("POST", "/referrals/recipients"): (LEADS, 403),
    ("POST", "/referrals/recipients/{recipient_id}/confirm"): (LEADS, 403),
    ("POST", "/referrals/recipients/{recipient_id}/retire"): (LEADS, 403),
    ("GET", "/cases/{case_id}/referrals/new"): (KEY_HOLDERS, 403),
    ("POST", "/cases/{case_id}/referrals"): (KEY_HOLDERS, 403),
    ("GET", "/cases/{case_id}/referrals"): (KEY_HOLDERS, 403),
    ("GET", "/referrals/{referral_id}"): (KEY_HOLDERS, 403),
    ("POST", "/referrals/{referral_id}/approve"): (LEADS, 403),
    ("POST", "/referrals/{referral_id}/revoke"): (LEADS, 403),
    ("GET", "/referrals/{referral_id}/bundle"): (KEY_HOLDERS, 403),
    # Labels: leads name and retire them; key holders put them on what they may read.
    ("GET", "/api/v1/labels"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/labels"): (LEADS, 403),
    ("POST", "/api/v1/labels/{label_id}/retire"): (LEADS, 403),
    ("POST", "/api/v1/tips/{tip_id}/labels"): (KEY_HOLDERS, 403),
    ("DELETE", "/api/v1/tips/{tip_id}/labels/{label_id}"): (KEY_HOLDERS, 403),
    ("POST", "/api/v1/cases/{case_id}/labels"): (KEY_HOLDERS, 403),
    ("DELETE", "/api/v1/cases/{case_id}/labels/{label_id}"): (KEY_HOLDERS, 403),
    ("GET", "/labels"): (KEY_HOLDERS, 403),
    ("POST", "/labels"): (LEADS, 403),
    ("POST", "/labels/{label_id}/retire"): (LEADS, 403),
    ("POST", "/tips/{tip_id}/labels"): (KEY_HOLDERS, 403),
    ("POST", "/cases/{case_id}/labels"): (KEY_HOLDERS, 403),
    ("GET", "/api/v1/auth/session"): (ALL_ROLES, 403),
    ("POST", "/api/v1/auth/step-up"): (ALL_ROLES, 403),
    ("POST", "/api/v1/auth/password"): (ALL_ROLES, 403),
    ("GET", "/api/v1/auth/sessions"): (ALL_ROLES, 403),
    ("POST", "/api/v1/auth/logout"): (ALL_ROLES, 403),
    ("POST", "/api/v1/auth/logout-everywhere"): (ALL_ROLES, 403),
    ("GET", "/api/v1/accounts"): (frozenset({Role.ADMIN}), 403),
    ("POST", "/api/v1/accounts"): (frozenset({Role.ADMIN}), 403),
    ("GET", "/api/v1/accounts/{account_id}"): (frozenset({Role.ADMIN}), 403),
    ("PATCH", "/api/v1/accounts/{account_id}"): (frozenset({Role.ADMIN}), 403),
    ("POST", "/api/v1/accounts/{account_id}/reset-password"): (frozenset({Role.ADMIN}), 403),
    ("POST", "/api/v1/accounts/{account_id}/reset-2fa"): (frozenset({Role.ADMIN}), 403),
    # Confirming a member's key pair: the leads who grant the key, not the admins who issue links.
    ("POST", "/api/v1/accounts/{account_id}/confirm"): (LEADS, 403),
    ("GET", "/api/v1/key-grants"): (frozenset({Role.LEAD}), 403),
    ("PUT", "/api/v1/key-grants/{account_id}"): (frozenset({Role.LEAD}), 403),
    ("DELETE", "/api/v1/key-grants/{account_id}"): (frozenset({Role.LEAD}), 403),
    ("GET", "/api/v1/audit/events"): (AUDITORS, 403),
    ("GET", "/api/v1/audit/verify"): (AUDITORS, 403),
    ("GET", "/api/v1/audit/checkpoint"): (AUDITORS, 403),
    ("POST", "/api/v1/audit/checkpoints"): (AUDITORS, 403),
    ("GET", "/api/v1/audit/events/{seq}/proof"): (AUDITORS, 403),
    ("GET", "/api/v1/audit/export"): (AUDITORS, 403),
    ("GET", "/api/v1/audit/events/{seq}/evidence"): (AUDITORS, 403),
    ("GET", "/api/v1/audit/consistency"): (AUDITORS, 403),
    # A witness's bearer token, or an auditor's session.
    ("GET", "/api/v1/audit/witness/add-checkpoint"): (AUDITORS, 403),
    ("POST", "/api/v1/audit/witness/cosignatures"): (AUDITORS, 403),
    ("GET", "/api/v1/audit/witnesses"): (frozenset({Role.AUDITOR, Role.ADMIN}), 403),
    ("POST", "/api/v1/audit/witnesses"): (frozenset({Role.ADMIN}), 403),
    ("DELETE", "/api/v1/audit/witnesses/{witness_id}"): (frozenset({Role.ADMIN}), 403),
    # Staff UI pages.
    ("GET", "/"): (ALL_ROLES, 403),
    ("POST", "/logout"): (ALL_ROLES, 403),
    ("GET", "/account"): (ALL_ROLES, 403),
    ("POST", "/account/password"): (ALL_ROLES, 403),
    ("POST", "/account/step-up"): (ALL_ROLES, 403),
    ("POST", "/account/passkeys"): (ALL_ROLES, 403),
    ("POST", "/account/passkeys/{passkey_id}/revoke"): (ALL_ROLES, 403),
    ("POST", "/account/logout-everywhere"): (ALL_ROLES, 403),
    ("GET", "/tips"): (KEY_HOLDERS, 403),
    ("POST", "/tips/bulk"): (KEY_HOLDERS, 403),
    ("POST", "/views"): (KEY_HOLDERS, 403),
    ("POST", "/views/{view_id}/delete"): (KEY_HOLDERS, 403),
    ("GET", "/tips/{tip_id}"): (KEY_HOLDERS, 404),
    ("GET", "/keys"): (frozenset({Role.LEAD}), 403),
    ("POST", "/keys/confirm/{account_id}"): (LEADS, 403),
    ("POST", "/keys/{account_id}/{action}"): (frozenset({Role.LEAD}), 403),
    ("GET", "/admin/accounts"): (frozenset({Role.ADMIN}), 403),
    ("POST", "/admin/accounts"): (frozenset({Role.ADMIN}), 403),
    ("GET", "/admin/accounts/{account_id}"): (frozenset({Role.ADMIN}), 403),
    ("POST", "/admin/accounts/{account_id}"): (frozenset({Role.ADMIN}), 403),
    ("GET", "/admin/witnesses"): (frozenset({Role.ADMIN}), 403),
    ("POST", "/admin/witnesses"): (frozenset({Role.ADMIN}), 403),
    ("POST", "/admin/witnesses/{witness_id}/revoke"): (frozenset({Role.ADMIN}), 403),
    ("GET", "/admin/login-policy"): (frozenset({Role.ADMIN}), 403),
    ("POST", "/admin/login-policy"): (frozenset({Role.ADMIN}), 403),
    ("GET", "/admin/review-policy"): (frozenset({Role.ADMIN}), 403),
    ("GET", "/admin/notifications"): (frozenset({Role.ADMIN}), 403),
    ("POST", "/admin/notifications"): (frozenset({Role.ADMIN}), 403),
    ("GET", "/account/notifications"): (ALL_ROLES, 403),
    ("POST", "/account/notifications"): (ALL_ROLES, 403),
    ("POST", "/admin/review-policy"): (frozenset({Role.ADMIN}), 403),
    ("POST", "/admin/accounts/{account_id}/reset-password"): (frozenset({Role.ADMIN}), 403),
    ("POST", "/admin/accounts/{account_id}/reset-2fa"): (frozenset({Role.ADMIN}), 403),
    ("GET", "/audit"): (AUDITORS, 403),
    ("POST", "/audit/verify"): (AUDITORS, 403),
    ("POST", "/audit/checkpoint"): (AUDITORS, 403),
}
# Routes that end the caller's session: exercised last for each role.
SESSION_ENDING = frozenset({("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/logout-everywhere")})


def route_table(app: FastAPI) -> dict[tuple[str, str], Dependant]:
    """Every (method, path) the app answers, with its dependency tree (included routers flattened)."""
    table = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            assert route.path == STATIC_MOUNT, f"unexpected mount {route.path}"
            continue
        assert isinstance(route, APIRoute), f"unexpected route type {route!r}"
        assert context.path is not None
        assert context.methods
        for method in context.methods:
            table[(method, context.path)] = context.dependant
    return table


def depends_on(dependant: Dependant, call: object) -> bool:
    return any(dep.call is call or depends_on(dep, call) for dep in dependant.dependencies)


@pytest.fixture
def apps(settings: Settings) -> tuple[FastAPI, FastAPI]:
    database = Database.from_settings(settings)  # never queried: only the route tables are read
    return create_intake_app(settings, database=database), create_staff_app(settings, database=database)


def test_intake_app_serves_only_its_public_routes(apps: tuple[FastAPI, FastAPI]) -> None:
    intake, _ = apps
    assert set(route_table(intake)) == INTAKE_PUBLIC_ROUTES


def test_intake_app_mounts_no_staff_route(apps: tuple[FastAPI, FastAPI]) -> None:
    intake, staff = apps
    # Both apps answer GET /healthz and /readyz, and GET / (the report form; the staff start page).
    staff_only = set(route_table(staff)) - {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/")}
    assert not staff_only & set(route_table(intake))
    assert not any(path.startswith("/api/v1/auth") for _, path in route_table(intake))


def test_every_staff_route_is_public_by_name_or_guarded(apps: tuple[FastAPI, FastAPI]) -> None:
    _, staff = apps
    for key, dependant in route_table(staff).items():
        # A witness's calls take its bearer token or else an auditor's session (current_principal).
        guarded = depends_on(dependant, current_principal) or depends_on(dependant, witness_or_auditor)
        if key in STAFF_PUBLIC_ROUTES:
            assert not guarded, f"{key} is listed public but guarded"
        else:
            assert guarded, f"{key} is neither public nor guarded"
            assert key in EXPECTED_ACCESS, f"{key} has no row in the authorization matrix"
    assert set(EXPECTED_ACCESS) <= set(route_table(staff))


@pytest.mark.parametrize(
    "path", ["/docs", "/redoc", "/openapi.json", "/api/v1/tips", "/api/v1/auth/login", "/api/v1/audit/events"]
)
def test_intake_app_has_no_docs_schema_or_staff_paths(intake_client: TestClient, path: str) -> None:
    assert intake_client.get(path).status_code in (404, 405)
    if path != "/api/v1/tips":  # POST /api/v1/tips is the public submission endpoint
        assert intake_client.post(path, json={}).status_code in (404, 405)


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_staff_app_has_no_docs_or_schema(staff_client: TestClient, path: str) -> None:
    assert staff_client.get(path).status_code == 404


def _concrete(path: str) -> str:
    return re.sub(
        r"\{[a-z_]+\}", lambda match: "grant" if match.group() == "{action}" else str(uuid.uuid4()), path
    )


def _call(client: TestClient, method: str, path: str) -> int:
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    response = client.request(method, _concrete(path), follow_redirects=False, **body)  # type: ignore[arg-type]
    return response.status_code


def _anonymous_status(path: str) -> int:
    # The API answers 401; a page sends the browser to the login page.
    return 401 if path.startswith("/api/") else 303


def test_authorization_matrix(staff_client: TestClient, organisation: Organisation) -> None:
    """Every guarded staff route, for anonymous and for each role: allowed or denied as listed.

    Anonymous gets 401 everywhere. An allowed role gets past the guard: any
    answer but 401 and 403 (a 404 for a random id, a 422 for an empty body).
    A denied role gets exactly the route's denial status.
    """
    staff_client.cookies.clear()
    for method, path in EXPECTED_ACCESS:
        assert _call(staff_client, method, path) == _anonymous_status(path), (method, path)
    for role in Role:
        member = organisation[role]
        staff_client.cookies.clear()
        # A code is accepted once per step: three logins use steps -1, 0 and +1.
        assert login(staff_client, member, otp=member.otp(-1)).status_code == 200
        for method, path in EXPECTED_ACCESS:
            if (method, path) not in SESSION_ENDING:
                _assert_access(staff_client, role, method, path)
        for step, (method, path) in enumerate(sorted(SESSION_ENDING)):
            _assert_access(staff_client, role, method, path)
            assert staff_client.get("/api/v1/auth/session").status_code == 401
            staff_client.cookies.clear()
            assert login(staff_client, member, otp=member.otp(step)).status_code == 200


def _assert_access(client: TestClient, role: Role, method: str, path: str) -> None:
    allowed, denied_status = EXPECTED_ACCESS[(method, path)]
    status = _call(client, method, path)
    if role in allowed:
        assert status not in (401, 403), (role, method, path, status)
    else:
        assert status == denied_status, (role, method, path, status)
