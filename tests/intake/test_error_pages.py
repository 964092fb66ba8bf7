"""DESIGN 8 (December): a browser whose intake request fails gets a page in its language, with the
quick exit and the way back to the form; API clients keep the JSON error model."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.entrypoints.apps import create_intake_app, create_staff_app
from app.kit.config import Settings
from app.kit.taxonomy import Language
from app.web.error_pages import ERROR_PAGE_TEXTS
from app.web.i18n import translations
from tests.test_faults import UNREACHABLE_POSTGRES, VALID

BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
DIRECTIONS = {"en": "ltr", "zh-Hans": "ltr", "zh-Hant": "ltr", "ug": "rtl", "bo": "ltr"}


def assert_error_page(response: object, status: int, lang: str, *, form_page: bool = False) -> None:
    """``form_page``: the form's own page with its errors, which the form's routes already show."""
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]
    html: str = response.text  # type: ignore[attr-defined]
    assert f'<html lang="{lang}" dir="{DIRECTIONS[lang]}">' in html
    assert 'class="quick-exit"' in html
    assert f'href="/?lang={lang}"' in html
    assert "<script" not in html.lower()
    if form_page:
        assert 'role="alert"' in html or 'class="error' in html
        return
    heading = translations(Language(lang)).gettext(ERROR_PAGE_TEXTS[status][0])
    assert f"<h1>{heading}</h1>" in html, html[html.find("<main") : html.find("</main>")]
    if lang != "en":
        assert heading != ERROR_PAGE_TEXTS[status][0], f"{lang} has no translation of the heading"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")  # type: ignore[attr-defined]


@pytest.mark.usefixtures("organisation")
@pytest.mark.parametrize("lang", list(DIRECTIONS))
def test_browser_refusals_are_pages_in_the_submitters_language(intake_client: TestClient, lang: str) -> None:
    assert_error_page(intake_client.get(f"/nowhere?lang={lang}", headers=BROWSER), 404, lang)
    not_allowed = intake_client.get(f"/report/step?lang={lang}", headers=BROWSER)
    assert_error_page(not_allowed, 405, lang)
    assert "POST" in not_allowed.headers["allow"]
    assert_error_page(
        intake_client.post(
            f"/report/step?lang={lang}", content=b"x", headers={**BROWSER, "content-type": "text/plain"}
        ),
        415,
        lang,
        form_page=True,
    )
    assert_error_page(
        intake_client.post(
            f"/api/v1/followup?lang={lang}", content=b"x", headers={**BROWSER, "content-type": "text/plain"}
        ),
        415,
        lang,
    )
    assert_error_page(
        intake_client.post(f"/api/v1/tips?lang={lang}", json={"narrative": 5}, headers=BROWSER), 422, lang
    )
    too_big = intake_client.post(
        f"/followup?lang={lang}",
        content=b"receipt=" + b"A" * (2 * 1024 * 1024),
        headers={**BROWSER, "content-type": "application/x-www-form-urlencoded"},
    )
    assert_error_page(too_big, 413, lang, form_page=True)
    too_big_for_admission = intake_client.post(
        f"/api/v1/tips?lang={lang}",
        content=b'{"narrative": "' + b"A" * (2 * 1024 * 1024) + b'"}',
        headers={**BROWSER, "content-type": "application/json"},
    )
    assert_error_page(too_big_for_admission, 413, lang)


@pytest.mark.usefixtures("organisation")
def test_api_clients_keep_json(intake_client: TestClient) -> None:
    for headers in (
        {},
        {"accept": "application/json"},
        {"accept": "*/*"},
        {"accept": "text/html, application/json"},
    ):
        response = intake_client.get("/report/step", headers=headers)
        assert response.status_code == 405
        assert response.json()["error"] == "method_not_allowed"
    assert intake_client.get("/nowhere").json()["error"] == "not_found"


def test_a_busy_service_is_a_page_that_says_to_reload(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={"database_url": SecretStr(UNREACHABLE_POSTGRES), "database_timeout_seconds": 1.0}
    )
    with TestClient(
        create_intake_app(unreachable, pool_size=2),
        base_url="https://testserver",
        raise_server_exceptions=False,
    ) as client:
        busy = client.post("/report?lang=zh-Hant", data={"narrative": "x", "step": "review"}, headers=BROWSER)
        assert_error_page(busy, 503, "zh-Hant")
        assert int(busy.headers["retry-after"]) >= 1
        assert re.search(r"<p>[^<]+</p>", busy.text)
        api = client.post("/api/v1/tips", json=VALID)
        assert api.status_code == 503
        assert set(api.json()) == {"error", "detail"}


def test_a_body_over_the_outer_limit_is_a_page_with_the_security_headers(settings: Settings) -> None:
    """The outer body-size limit answers in plain text outside every middleware; the page wraps it
    too (the most likely 413: two long recordings on the review step)."""
    small = settings.model_copy(update={"max_request_bytes": 4096})
    with TestClient(
        create_intake_app(small), base_url="https://testserver", raise_server_exceptions=False
    ) as client:
        too_big = client.post(
            "/report?lang=bo",
            files=[("files", ("call.m4a", b"\x00" * 8192, "audio/mp4"))],
            data={"step": "review"},
            headers=BROWSER,
        )
        assert_error_page(too_big, 413, "bo")
        assert too_big.headers["cache-control"] == "no-store"
        api = client.post("/api/v1/tips", content=b"x" * 8192, headers={"content-type": "application/json"})
        assert api.status_code == 413


@pytest.mark.usefixtures("organisation")
def test_a_head_request_gets_the_page_headers_and_no_body(intake_client: TestClient) -> None:
    response = intake_client.head("/nowhere?lang=ug", headers=BROWSER)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert response.content == b""


def test_the_staff_apps_size_limit_answer_carries_the_security_headers(settings: Settings) -> None:
    small = settings.model_copy(update={"max_request_bytes": 4096})
    with TestClient(
        create_staff_app(small), base_url="https://testserver", raise_server_exceptions=False
    ) as client:
        refused = client.post(
            "/api/v1/auth/login", content=b"x" * 8192, headers={"content-type": "application/json"}
        )
        assert refused.status_code == 413
        assert refused.headers["content-security-policy"].startswith("default-src 'none'")
        assert refused.headers["cache-control"] == "no-store"
