"""Server-rendered pages: Jinja2 with autoescaping, and the language chosen by link."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from app.kit.security_headers import SCRIPT_NONCE_STATE
from app.kit.taxonomy import Language
from app.web.i18n import translations
from app.web.staff_words import STAFF_FILTERS
from app.web.visible_text import visible_html, visible_text

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True, slots=True)
class LanguageOption:
    code: str
    native_name: str
    direction: str


LANGUAGE_OPTIONS = (
    LanguageOption(Language.ENGLISH, "English", "ltr"),
    LanguageOption(Language.SIMPLIFIED_CHINESE, "简体中文", "ltr"),
    LanguageOption(Language.TRADITIONAL_CHINESE, "繁體中文", "ltr"),
    LanguageOption(Language.UYGHUR, "ئۇيغۇرچە", "rtl"),
    LanguageOption(Language.TIBETAN, "བོད་ཡིག", "ltr"),
)
_BY_CODE = {option.code: option for option in LANGUAGE_OPTIONS}


def _environment(language: Language) -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    # newstyle: `_("... %(name)s", name=value)` escapes the value and formats in one step.
    environment.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    # Text someone else wrote (a submitter above all) with every invisible or direction-changing
    # character shown as a named marker: `visible` in element content, `visible_plain` in an
    # attribute, an <option> or the <title> (app/web/visible_text.py).
    environment.filters["visible"] = visible_html
    environment.filters["visible_plain"] = visible_text
    environment.filters.update(STAFF_FILTERS)
    return environment


# One environment per language: the translations are bound when it is built, so a
# page can never be rendered with another request's language.
_ENVIRONMENTS = {language: _environment(language) for language in Language}
_STAFF_ENVIRONMENT = _ENVIRONMENTS[Language.ENGLISH]


def language_for(request: Request) -> LanguageOption:
    """The language named by the page's link (?lang=); no cookie, no Accept-Language sniffing.

    The choice is carried in every link and form action instead of a cookie: a
    cookie would outlive the visit on a shared device and tell whoever looks
    next that this browser used the service, and in which language.
    """
    return _BY_CODE.get(request.query_params.get("lang", ""), LANGUAGE_OPTIONS[0])


def render_page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A submitter's page in the language of its link."""
    html = render_language_page(request.query_params.get("lang", ""), template, **context)
    return HTMLResponse(html, status_code=status_code)


def render_language_page(code: str, template: str, **context: Any) -> str:
    """A submitter's page in the language ``code`` names (English for anything else)."""
    language = _BY_CODE.get(code, LANGUAGE_OPTIONS[0])
    return (
        _ENVIRONMENTS[Language(language.code)]
        .get_template(template)
        .render(language=language, languages=LANGUAGE_OPTIONS, **context)
    )


@dataclass(frozen=True, slots=True)
class NavItem:
    key: str
    label: str
    path: str
    permission: str | None  # None: every signed-in member


# What each role sees in the staff navigation: only the pages it may use.
STAFF_NAVIGATION = (
    NavItem("queue", "Queue", "/tips", "view_queue"),
    NavItem("cases", "Cases", "/cases", "work_cases"),
    NavItem("labels", "Labels", "/labels", "view_queue"),
    NavItem("stations", "Stations", "/stations", "work_cases"),
    NavItem("statistics", "Statistics", "/statistics", "work_cases"),
    NavItem("recipients", "Recipients", "/referrals/recipients", "lead_triage"),
    NavItem("keys", "Key grants", "/keys", "manage_key_grants"),
    NavItem("accounts", "Accounts", "/admin/accounts", "manage_accounts"),
    NavItem("witnesses", "Witnesses", "/admin/witnesses", "manage_accounts"),
    NavItem("login_policy", "Second factor", "/admin/login-policy", "manage_accounts"),
    NavItem("review_policy", "Two-person rule", "/admin/review-policy", "manage_accounts"),
    NavItem("notifications", "Notifications", "/admin/notifications", "manage_accounts"),
    NavItem("audit", "Audit log", "/audit", "read_audit_log"),
    NavItem("account", "My account", "/account", None),
)


def allow_page_script(request: Request) -> str:
    """A fresh nonce that lets this one response run our passkey script (and nothing else):
    app.kit.security_headers puts it in the page's CSP. Every other staff page stays
    script-free."""
    nonce = secrets.token_hex(16)
    setattr(request.state, SCRIPT_NONCE_STATE, nonce)
    return nonce


def render_staff_page(
    request: Request, template: str, *, principal: Any = None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A staff page; ``principal`` (when signed in) decides the navigation."""
    navigation = []
    if principal is not None:
        navigation = [
            {
                "key": item.key,
                "label": item.label,
                "path": item.path,
                "current": request.url.path.startswith(item.path),
            }
            for item in STAFF_NAVIGATION
            if item.permission is None or principal.can(item.permission)
        ]
    html = _STAFF_ENVIRONMENT.get_template(template).render(
        principal=principal,
        navigation=navigation,
        script_nonce=getattr(request.state, SCRIPT_NONCE_STATE, None),
        **context,
    )
    return HTMLResponse(html, status_code=status_code)
