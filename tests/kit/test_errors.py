"""One error model: unexpected failures become a generic 500 with a request id, nothing more."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.entrypoints.apps import create_intake_app
from app.kit.config import Settings
from app.kit.db import Database


def test_an_unexpected_exception_reveals_nothing_to_the_client(settings: Settings) -> None:
    app = create_intake_app(settings, database=Database.from_settings(settings))

    @app.get("/explode")
    def explode() -> None:
        raise RuntimeError("secret-internal-detail /srv/daylight/app.py line 42")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/explode")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error"
    assert "secret-internal-detail" not in response.text
    assert "Traceback" not in response.text
    assert "request" in body["detail"]
    assert response.headers["cache-control"] == "no-store"
