"""Punctuation belongs to the language: no Latin comma or colon right beside Chinese or Tibetan
text, and no Latin comma or semicolon beside Uyghur, in any page a submitter sees (issue 20).
Joined labels are one translatable format string each, so each language writes its own
punctuation: Chinese its full-width ， and ：, Uyghur the Arabic comma ، and semicolon ؛. (Arabic
script has no colon of its own: Uyghur writes U+003A, which is therefore allowed beside it.)"""

from __future__ import annotations

import re
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.intake.models import MessageAuthor, Tip, TipStatus
from app.intake.service import add_message
from app.kit.server_secrets import ServerSecrets
from app.stations.models import Station, StationStatus
from tests.conftest import Organisation
from tests.intake.factories import make_tip
from tests.intake.test_pages import ANSWERS, _as_form, hidden_fields, post_step

CJK_AND_TIBETAN = r"\u3000-\u303F\u3400-\u4DBF\u4E00-\u9FFF\uFF00-\uFFEF\u0F00-\u0FFF"
ARABIC = r"\u0600-\u06FF"
# A Latin mark touching (or one space from) a character of these scripts.
LATIN_PUNCTUATION_BESIDE = re.compile(
    rf"[{CJK_AND_TIBETAN}] ?[,:]|[,:] ?[{CJK_AND_TIBETAN}]|[{ARABIC}] ?[,;]|[,;] ?[{ARABIC}]"
)


def visible_text(html: str) -> str:
    """What a reader sees: no tags, no attribute values (URLs keep their "https:")."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S | re.I)
    return unescape(re.sub(r"<[^>]+>", "\n", html))


def offences(html: str) -> list[str]:
    text = visible_text(html)
    return [
        text[max(0, m.start() - 12) : m.end() + 12].strip() for m in LATIN_PUNCTUATION_BESIDE.finditer(text)
    ]


def test_the_check_finds_what_it_should() -> None:
    assert offences("<p>بىزدىن, 2026-12-06</p>")
    assert offences("<p>第 5 步，共 6 步: 联系</p>")
    assert not offences('<a href="https://example.org">链接</a><p>第 5 步，共 6 步：联系</p>')


@pytest.mark.parametrize("lang", ["zh-Hans", "zh-Hant", "ug", "bo"])
def test_no_page_puts_latin_punctuation_beside_the_language(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    lang: str,
) -> None:
    # A station, so that the "who" step and the review name one ("city, country").
    db_session.add(
        Station(
            city="Dublin",
            city_key="dublin",
            country="IE",
            operating_bureau="Fuzhou PSB",
            status=StationStatus.REPORTED,
            latitude=53.35,
            longitude=-6.26,
        )
    )
    db_session.commit()
    pages: dict[str, str] = {}
    page = intake_client.get(f"/?lang={lang}").text
    for step in ("what", "where", "who", "story", "contact"):
        pages[step] = page
        page = post_step(intake_client, [*hidden_fields(page), *ANSWERS[step], ("go", "next")], lang).text
    pages["review"] = page
    refused = post_step(
        intake_client, [*hidden_fields(pages["where"]), ("host_country", "ZZ"), ("go", "next")], lang
    )
    pages["step with errors"] = refused.text
    sent = intake_client.post(f"/report?lang={lang}", data=_as_form(hidden_fields(page)))
    assert sent.status_code == 201
    pages["receipt"] = sent.text
    tip_id, receipt = make_tip(db_session, server_secrets)
    tip = db_session.get_one(Tip, tip_id)
    add_message(
        db_session,
        tip,
        "Which month?",
        author=MessageAuthor.STAFF,
        server_secrets=server_secrets,
        author_account_id=organisation[Role.CASEWORKER].account.id,
    )
    tip.status = TipStatus.NEEDS_INFO
    db_session.commit()
    assert intake_client.post(
        f"/followup/reply?lang={lang}", data={"receipt": receipt, "body": "March"}
    ).status_code in (200, 201, 303)
    pages["follow-up"] = intake_client.post(f"/followup?lang={lang}", data={"receipt": receipt}).text
    pages["duress code"] = intake_client.post(f"/followup/duress?lang={lang}", data={"receipt": receipt}).text
    pages["follow-up, no such receipt"] = intake_client.post(
        f"/followup?lang={lang}", data={"receipt": "x"}
    ).text
    for path in ("/followup", "/safety"):
        pages[path] = intake_client.get(f"{path}?lang={lang}").text
    browser = {"accept": "text/html"}
    pages["404"] = intake_client.get(f"/nowhere?lang={lang}", headers=browser).text
    pages["405"] = intake_client.get(f"/report/step?lang={lang}", headers=browser).text
    found = {name: hits for name, html in pages.items() if (hits := offences(html))}
    assert not found, found
