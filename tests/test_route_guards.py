"""Deny by default: every route is either on an explicit public list or guarded.

Walks the route tables of both apps, so a new route cannot be added without
either a role guard or a conscious entry in a public allow-list.
"""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount

from app.auth.deps import current_principal
from app.auth.models import Role
from app.config import Settings
from app.db import Database
from app.entrypoints.apps import STAFF_PUBLIC_ROUTES, create_intake_app, create_staff_app
from tests.auth.factories import login
from tests.conftest import Organisation

INTAKE_PUBLIC_ROUTES = frozenset({
    ("GET", "/"), ("POST", "/report"), ("GET", "/healthz"), ("POST", "/api/v1/tips"),
    ("POST", "/api/v1/followup"), ("POST", "/api/v1/followup/messages"),
})
STATIC_MOUNT = "/static"

# Who may call each guarded staff route; every guarded route must be listed here.
EXPECTED_ACCESS: dict[tuple[str, str], frozenset[Role]] = {
    ("GET", "/api/v1/tips"): frozenset({Role.CASEWORKER, Role.LEAD}),
    ("GET", "/api/v1/tips/{tip_id}"): frozenset({Role.CASEWORKER, Role.LEAD}),
    ("GET", "/api/v1/tips/{tip_id}/attachments/{attachment_id}"): frozenset({Role.CASEWORKER, Role.LEAD}),
    ("GET", "/api/v1/auth/session"): frozenset(Role),
    ("POST", "/api/v1/auth/logout"): frozenset(Role),
}


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
    staff_only = set(route_table(staff)) - {("GET", "/healthz")}
    assert not staff_only & set(route_table(intake))
    assert not any(path.startswith("/api/v1/auth") for _, path in route_table(intake))


def test_every_staff_route_is_public_by_name_or_guarded(apps: tuple[FastAPI, FastAPI]) -> None:
    _, staff = apps
    for key, dependant in route_table(staff).items():
        guarded = depends_on(dependant, current_principal)
        if key in STAFF_PUBLIC_ROUTES:
            assert not guarded, f"{key} is listed public but guarded"
        else:
            assert guarded, f"{key} is neither public nor guarded"
            assert key in EXPECTED_ACCESS, f"{key} has no row in the authorization matrix"
    assert set(EXPECTED_ACCESS) <= set(route_table(staff))


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/api/v1/tips",
                                  "/api/v1/auth/login", "/api/v1/audit/events"])
def test_intake_app_has_no_docs_schema_or_staff_paths(intake_client: TestClient, path: str) -> None:
    assert intake_client.get(path).status_code in (404, 405)
    if path != "/api/v1/tips":  # POST /api/v1/tips is the public submission endpoint
        assert intake_client.post(path, json={}).status_code in (404, 405)


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_staff_app_has_no_docs_or_schema(staff_client: TestClient, path: str) -> None:
    assert staff_client.get(path).status_code == 404


def _concrete(path: str) -> str:
    return path.replace("{tip_id}", str(uuid.uuid4())).replace("{attachment_id}", str(uuid.uuid4()))


def test_authorization_matrix(staff_client: TestClient, organisation: Organisation) -> None:
    """Anonymous gets 401 everywhere guarded; each role gets through exactly where listed.

    "Through" means the guard let the request reach the handler: for routes
    on a random id that is a 404 from the scoped query, never a 401 or 403.
    """
    for method, path in EXPECTED_ACCESS:
        staff_client.cookies.clear()
        if path.endswith("/logout"):
            continue  # checked last, as it ends the session
        assert staff_client.request(method, _concrete(path)).status_code == 401, path
    for role in Role:
        staff_client.cookies.clear()
        member = organisation[role]
        assert login(staff_client, member).status_code == 200
        for (method, path), allowed in EXPECTED_ACCESS.items():
            if path.endswith("/logout"):
                continue
            status = staff_client.request(method, _concrete(path)).status_code
            if role in allowed:
                assert status in (200, 404), (role, path, status)
            else:
                assert status in (403, 404), (role, path, status)
        assert staff_client.post("/api/v1/auth/logout").status_code == 204
        assert staff_client.post("/api/v1/auth/logout").status_code == 401
