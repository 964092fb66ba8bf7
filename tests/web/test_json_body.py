"""Typed JSON bodies (app.web.json_body): the reader's guarantees on a staff route, in order, and
their place in the OpenAPI document."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from app.auth.models import Role
from app.entrypoints.apps import create_intake_app, create_staff_app
from app.kit.config import Settings
from app.kit.db import Database
from app.web.json_body import JsonBodyReader
from tests.auth.factories import login
from tests.conftest import Organisation

NOTE_PATH = f"/api/v1/tips/{uuid.uuid4()}/notes"
SECRET_NARRATIVE = "a narrative no error may echo"


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("text/plain", b'{"body": "note"}', 415, "unsupported_media_type"),
        ("application/json", b'{"body": ', 400, "malformed_body"),
        ("application/json", b'{"body": "\xff"}', 400, "malformed_body"),
        ("application/json", b'{"body": "\\ud800"}', 400, "malformed_body"),
        ("application/json", b'{"body": "' + b"x" * 2_000_000 + b'"}', 413, "payload_too_large"),
        (
            "application/json",
            b'{"body": 3, "extra": "' + SECRET_NARRATIVE.encode() + b'"}',
            422,
            "invalid_input",
        ),
    ],
)
def test_a_json_body_is_read_within_the_same_bounds_as_before(
    staff_client: TestClient,
    organisation: Organisation,
    content_type: str,
    body: bytes,
    status: int,
    code: str,
) -> None:
    # Without a session the guard answers first, whatever the body.
    anonymous = staff_client.post(NOTE_PATH, content=body, headers={"content-type": content_type})
    assert anonymous.status_code == 401
    login(staff_client, organisation[Role.LEAD])
    response = staff_client.post(NOTE_PATH, content=body, headers={"content-type": content_type})
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert SECRET_NARRATIVE not in response.text


def documents(settings: Settings, database: Database) -> list[tuple[FastAPI, dict[str, Any]]]:
    apps = [create_intake_app(settings, database=database), create_staff_app(settings, database=database)]
    return [(app, app.openapi()) for app in apps]


def test_every_json_body_is_documented_as_a_required_model(settings: Settings, database: Database) -> None:
    documented = 0
    for app, document in documents(settings, database):
        for route in iter_route_contexts(app.routes):
            dependencies = route.dependant.dependencies if hasattr(route, "dependant") else []
            readers = [dep.call for dep in dependencies if isinstance(dep.call, JsonBodyReader)]
            for reader, method in ((reader, method) for reader in readers for method in route.methods or ()):
                operation = document["paths"][route.path_format][method.lower()]
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                assert operation["requestBody"]["required"] is True
                assert schema == {"$ref": f"#/components/schemas/{reader.model.__name__}"}
                assert reader.model.__name__ in document["components"]["schemas"]
                assert {"400", "413", "415", "422"} <= set(operation["responses"])
                documented += 1
    assert documented >= 20


def test_errors_are_documented_in_the_one_error_model(settings: Settings, database: Database) -> None:
    for _app, document in documents(settings, database):
        assert "HTTPValidationError" not in document["components"]["schemas"]
        error_body = document["components"]["schemas"]["ErrorBody"]
        assert set(error_body["required"]) == {"error", "detail"}
        for operations in document["paths"].values():
            for operation in operations.values():
                for status, response in operation["responses"].items():
                    if status.startswith(("4", "5")) and "content" in response:
                        assert response["content"]["application/json"]["schema"] == {
                            "$ref": "#/components/schemas/ErrorBody"
                        }
