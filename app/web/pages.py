"""Server-rendered pages: Jinja2 with autoescaping, and the language chosen by link."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from app.intake.taxonomy import Language

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
)
_BY_CODE = {option.code: option for option in LANGUAGE_OPTIONS}

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def language_for(request: Request) -> LanguageOption:
    """The language named by the page's link (?lang=); no cookie, no Accept-Language sniffing."""
    return _BY_CODE.get(request.query_params.get("lang", ""), LANGUAGE_OPTIONS[0])


def render_page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _environment.get_template(template).render(
        language=language_for(request), languages=LANGUAGE_OPTIONS, **context
    )
    return HTMLResponse(html, status_code=status_code)
