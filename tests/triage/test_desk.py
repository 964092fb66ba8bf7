"""The caseworker's desk on both databases: filters and search over every report (opened or not),
summaries for key holders only, restricted cases hidden everywhere, keyed indexes that show
nothing at rest, bulk steps all or nothing, saved views sealed and private, sorting and paging."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log.models import AuditEvent
from app.auth.models import Role
from app.crypto import sealing
from app.crypto.binding import bind
from app.entrypoints.demo import SEED_FILE
from app.intake.models import MessageAuthor, Tip, TipStatus
from app.intake.service import add_message
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from app.labels.models import TipLabel
from app.stations import registry
from app.stations.models import Station
from app.triage import search, tags
from app.triage.models import SavedView, TipSearchTerm, TipTag
from tests.auth.factories import StaffMember, make_member
from tests.cases.conftest import create_case
from tests.conftest import Client, Organisation
from tests.intake.factories import make_tip
from tests.labels.factories import create_label

NO_COUNTS = {status.value: 0 for status in TipStatus}

# --- Helpers ---


@pytest.fixture
def lead(signed_in: Client, organisation: Organisation) -> TestClient:
    return signed_in(organisation[Role.LEAD])


@pytest.fixture
def caseworker(signed_in: Client, organisation: Organisation) -> TestClient:
    return signed_in(organisation[Role.CASEWORKER])


@pytest.fixture
def second_lead(
    db_session: Session, settings: Settings, server_secrets: ServerSecrets, organisation: Organisation
) -> StaffMember:
    """A lead holding the key, a member of no case."""
    member = make_member(db_session, settings, server_secrets, Role.LEAD, grant=organisation.intake)
    db_session.commit()
    return member


@pytest.fixture
def second_caseworker(
    db_session: Session, settings: Settings, server_secrets: ServerSecrets, organisation: Organisation
) -> StaffMember:
    member = make_member(db_session, settings, server_secrets, Role.CASEWORKER, grant=organisation.intake)
    db_session.commit()
    return member


def new_tip(
    db_session: Session, server_secrets: ServerSecrets, narrative: str = "A report for tests.", **fields: Any
) -> uuid.UUID:
    tip_id, _ = make_tip(db_session, server_secrets, narrative=narrative, **fields)
    db_session.commit()
    return tip_id


def verified_tip(db_session: Session, server_secrets: ServerSecrets, **fields: Any) -> uuid.UUID:
    tip_id = new_tip(db_session, server_secrets, **fields)
    db_session.get_one(Tip, tip_id).status = TipStatus.VERIFIED
    db_session.commit()
    return tip_id


def tip_row(db_session: Session, tip_id: uuid.UUID) -> Tip:
    db_session.expire_all()
    return db_session.get_one(Tip, tip_id)


def ref_of(db_session: Session, tip_id: uuid.UUID) -> str:
    return tip_row(db_session, tip_id).ref


def queue(client: TestClient, **params: str) -> dict[str, Any]:
    response = client.get("/api/v1/tips", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


def found(client: TestClient, query: str) -> set[str]:
    return set(ids(queue(client, q=query)))


def counts(**by_status: int) -> dict[str, int]:
    return {**NO_COUNTS, **by_status}


def audit_details(db_session: Session, action: str) -> list[dict[str, Any]]:
    rows = db_session.scalars(
        select(AuditEvent.details).where(AuditEvent.action == action).order_by(AuditEvent.seq)
    )
    return [json.loads(details) for details in rows]


def audited_objects(db_session: Session, action: str) -> list[str]:
    return [
        str(object_id)
        for object_id in db_session.scalars(
            select(AuditEvent.object_id).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        )
    ]


def events(db_session: Session, action: str) -> int:
    return (
        db_session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))
        or 0
    )


def csrf(client: TestClient, page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(page).text)
    assert match
    return match.group(1)


def refs_on_page(html: str) -> set[str]:
    return set(re.findall(r'data-ref="([^"]+)"', html))


def raw_values(db_session: Session, table: str) -> list[bytes]:
    """Every column of every row of a table, as the bytes a database copy would show."""
    values: list[bytes] = []
    for row in db_session.execute(text(f"SELECT * FROM {table}")):
        for value in row:
            if isinstance(value, bytes | bytearray | memoryview):
                values.append(bytes(value))
            elif value is not None:
                values.append(str(value).encode())
    return values


def assert_nowhere(values: Iterable[bytes], forbidden: Iterable[bytes]) -> None:
    values = list(values)
    for secret in forbidden:
        leaked = [value for value in values if secret in value]
        assert not leaked, f"{secret!r} readable at rest"


# --- 1. Filters on every report, opened or not ---


def test_filters_find_every_matching_report_unopened_and_count_them(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    def made(language: str, urgent: bool, tactics: list[str], country: str) -> uuid.UUID:
        return new_tip(
            db_session,
            server_secrets,
            language=language,
            urgent=urgent,
            tactics=tactics,
            host_country=country,
        )

    wanted_new = made("ug", True, ["family_pressure"], "KZ")
    wanted_in_review = made("ug", True, ["surveillance", "family_pressure"], "TR")
    tip_row(db_session, wanted_in_review).status = TipStatus.IN_REVIEW
    db_session.commit()
    calm = made("ug", False, ["family_pressure"], "KZ")
    made("ug", True, ["surveillance"], "KZ")
    simplified = made("zh-Hans", True, ["family_pressure"], "KZ")
    traditional = made("zh-Hant", True, ["family_pressure"], "TW")
    english = made("en", True, ["family_pressure"], "GB")

    page = queue(lead, language="ug", urgent="true", tactic="family_pressure")
    assert set(ids(page)) == {str(wanted_new), str(wanted_in_review)}
    assert page["counts"] == counts(new=1, in_review=1)
    assert page["unindexed"] == 0
    # A status narrows the page, never the counts beside it.
    only_new = queue(lead, language="ug", urgent="true", tactic="family_pressure", status="new")
    assert ids(only_new) == [str(wanted_new)]
    assert only_new["counts"] == counts(new=1, in_review=1)
    for language, expected in (("zh-Hans", simplified), ("zh-Hant", traditional), ("en", english)):
        other = queue(lead, language=language, urgent="true", tactic="family_pressure")
        assert ids(other) == [str(expected)], language
        assert other["counts"] == counts(new=1), language
    # Tactic and country alone go through the trigger-kept counters: the same answer.
    kazakhstan = queue(lead, country="kz", tactic="family_pressure")
    assert set(ids(kazakhstan)) == {str(wanted_new), str(calm), str(simplified)}
    assert kazakhstan["counts"] == counts(new=3)


def test_the_station_filter_finds_the_reports_naming_that_station(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    registry.apply(db_session, registry.parse(SEED_FILE.read_bytes(), "csv"), audit.SYSTEM)
    db_session.commit()
    tokyo = db_session.scalars(select(Station).where(Station.city == "Tokyo")).one()
    new_york = db_session.scalars(select(Station).where(Station.city == "New York")).one()
    at_tokyo = {
        new_tip(db_session, server_secrets, station_id=str(tokyo.id), urgent=urgent)
        for urgent in (True, False)
    }
    at_new_york = new_tip(db_session, server_secrets, station_id=str(new_york.id))
    new_tip(db_session, server_secrets)

    page = queue(lead, station=str(tokyo.id))
    assert set(ids(page)) == {str(tip_id) for tip_id in at_tokyo}
    assert page["counts"] == counts(new=2)
    assert ids(queue(lead, station=str(new_york.id))) == [str(at_new_york)]
    assert ids(queue(lead, station=str(tokyo.id), urgent="false")) == [
        item["id"] for item in page["items"] if not item["urgent"]
    ]
    nowhere = queue(lead, station=str(uuid.uuid4()))
    assert (nowhere["items"], nowhere["counts"]) == ([], NO_COUNTS)


def test_the_queue_indexes_each_report_once_as_one_event_and_reads_none(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    made = [new_tip(db_session, server_secrets, language="ug", tactics=["surveillance"]) for _ in range(3)]
    assert len(queue(lead, language="ug")["items"]) == 3
    assert audit_details(db_session, "tips.index") == [{"count": 3}]
    for tip_id in made:
        row = tip_row(db_session, tip_id)
        assert (row.indexed, row.search_indexed) == (True, True)
    queue(lead, language="ug")
    queue(lead, q="report")
    assert audit_details(db_session, "tips.index") == [{"count": 3}]
    assert events(db_session, "tip.read") == 0


# --- 2. Summaries ---


def test_a_key_holders_queue_summarises_each_report(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    narrative = "They   called my\nmother. " + "They came back again and again. " * 10
    tip_id = new_tip(
        db_session,
        server_secrets,
        narrative=narrative,
        language="zh-Hant",
        tactics=["family_pressure", "surveillance"],
        host_country="NL",
        host_city="Rotterdam",
    )
    short = new_tip(db_session, server_secrets, narrative="Short and plain.")
    # The API is metadata unless asked (DESIGN 8); asked, a key holder gets the summaries.
    assert all(item["summary"] is None for item in queue(lead)["items"])
    items = {item["id"]: item for item in queue(lead, summaries="true")["items"]}
    summary = items[str(tip_id)]["summary"]
    assert summary["language"] == "zh-Hant"
    assert summary["tactics"] == ["family_pressure", "surveillance"]
    assert (summary["host_country"], summary["host_city"]) == ("NL", "Rotterdam")
    assert len(summary["excerpt"]) <= 160
    assert summary["excerpt"].startswith("They called my mother. They came back")
    assert summary["excerpt"].endswith("…")
    assert items[str(short)]["summary"]["excerpt"] == "Short and plain."
    assert events(db_session, "tip.read") == 0


def test_a_member_without_the_key_sees_no_summary_and_no_content(
    signed_in: Client,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    new_tip(
        db_session,
        server_secrets,
        narrative="Zanzibarcanary visited my brother.",
        language="ug",
        tactics=["family_pressure"],
        host_country="NL",
        host_city="Groningencanary",
    )
    lead_page = queue(signed_in(organisation[Role.LEAD]), summaries="true")
    assert lead_page["items"][0]["summary"] is not None  # indexed, too
    keyless = make_member(db_session, settings, server_secrets, Role.CASEWORKER)
    db_session.commit()
    client = signed_in(keyless)
    response = client.get("/api/v1/tips", params={"summaries": "true"})
    assert response.status_code == 200
    [item] = response.json()["items"]
    assert item["summary"] is None
    for secret in ("Zanzibarcanary", "zanzibarcanary", "Groningencanary", "visited", "family_pressure"):
        assert secret not in response.text
    # Nor do the filters or the page answer with content for them.
    assert queue(client, language="ug")["items"] == []
    page = client.get("/tips")
    assert page.status_code == 200
    assert "Zanzibarcanary" not in page.text
    assert "Groningencanary" not in page.text


# --- 3. Search ---


def test_search_finds_a_latin_word_whatever_its_case_and_accents(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    cafe = new_tip(db_session, server_secrets, narrative="We met at the Café Lumière every Friday.")
    new_tip(db_session, server_secrets, narrative="Nothing about coffee here.")
    for query in ("cafe", "Café", "CAFÉ", "lumiere", "LUMIÈRE"):
        assert found(lead, query) == {str(cafe)}, query
    page = queue(lead, q="cafe")
    assert page["matches"] == 1
    assert page["counts"] == counts(new=1)
    assert found(lead, "caf") == set()


def test_search_finds_a_chinese_word_written_without_spaces(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    tip_id = new_tip(db_session, server_secrets, narrative="他们又来劝返我的父母", language="zh-Hans")
    assert found(lead, "劝返") == {str(tip_id)}
    assert found(lead, "父母") == {str(tip_id)}
    assert found(lead, "劝告") == set()
    assert queue(lead, q="劝告")["matches"] == 0


def test_search_finds_a_uyghur_word_in_arabic_script(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    tip_id = new_tip(db_session, server_secrets, narrative="ساقچىلار ئۆيىمىزگە كەلدى", language="ug")
    new_tip(db_session, server_secrets, narrative="ئۆيىمىزگە", language="ug")
    assert found(lead, "ساقچىلار") == {str(tip_id)}
    assert queue(lead, q="ساقچىلار")["matches"] == 1
    assert len(found(lead, "ئۆيىمىزگە")) == 2


def test_search_ranks_reports_holding_more_of_the_querys_words_first(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    # The weaker match is urgent and as new: only the number of words can put the other first.
    every_word = new_tip(db_session, server_secrets, narrative="The harbour, the fishing boats, a lantern.")
    two_words = new_tip(
        db_session, server_secrets, narrative="The harbour and its fishing nets.", urgent=True
    )
    new_tip(db_session, server_secrets, narrative="Only the harbour.", urgent=True)
    page = queue(lead, q="harbour fishing lantern")
    # Three words: a match holds at least two of them.
    assert ids(page) == [str(every_word), str(two_words)]
    assert page["matches"] == 2
    assert page["counts"] == counts(new=2)
    assert page["next_cursor"] is None


def test_a_submitters_follow_up_makes_the_report_findable_by_its_words(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    tip_id = new_tip(db_session, server_secrets, narrative="They phoned my sister.")
    assert found(lead, "kilimanjaro") == set()
    add_message(
        db_session,
        db_session.get_one(Tip, tip_id),
        "They also mentioned Kilimanjaro.",
        author=MessageAuthor.SUBMITTER,
        server_secrets=server_secrets,
    )
    db_session.commit()
    assert found(lead, "kilimanjaro") == {str(tip_id)}
    assert audit_details(db_session, "tips.index") == [{"count": 1}, {"count": 1}]


def test_a_staff_note_makes_the_report_findable_by_its_words(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    tip_id = new_tip(db_session, server_secrets, narrative="They phoned my sister.")
    assert found(lead, "okavango") == set()
    assert (
        lead.post(
            f"/api/v1/tips/{tip_id}/notes", json={"body": "Compare with the Okavango file."}
        ).status_code
        == 201
    )
    assert found(lead, "okavango") == {str(tip_id)}


def test_search_by_a_labels_name_finds_the_labelled_report(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    labelled = new_tip(db_session, server_secrets, narrative="They phoned my sister.")
    new_tip(db_session, server_secrets, narrative="They phoned my brother.")
    label_id = create_label(lead, "Kashgar relatives")
    assert lead.post(f"/api/v1/tips/{labelled}/labels", json={"label_id": str(label_id)}).status_code == 204
    assert found(lead, "kashgar") == {str(labelled)}
    assert queue(lead, q="Kashgar")["matches"] == 1


def test_search_by_a_labels_full_name_of_two_words_finds_the_labelled_report(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    labelled = new_tip(db_session, server_secrets, narrative="They phoned my sister.")
    label_id = create_label(lead, "Kashgar relatives")
    assert lead.post(f"/api/v1/tips/{labelled}/labels", json={"label_id": str(label_id)}).status_code == 204
    # Both words of the query are in the label's name: the report holds both.
    assert found(lead, "Kashgar relatives") == {str(labelled)}


def test_search_by_a_labels_name_ignores_accents_as_it_does_in_text(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    labelled = new_tip(db_session, server_secrets, narrative="They phoned my sister.")
    label_id = create_label(lead, "Café watch")
    assert lead.post(f"/api/v1/tips/{labelled}/labels", json={"label_id": str(label_id)}).status_code == 204
    # The label's own word, as it is written on the label.
    assert found(lead, "Café") == {str(labelled)}


def test_a_query_word_found_in_both_text_and_label_counts_once(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    two_words = new_tip(db_session, server_secrets, narrative="The harbour and its fishing nets.")
    one_word = new_tip(db_session, server_secrets, narrative="Only the harbour.", urgent=True)
    label_id = create_label(lead, "Harbour watch")
    assert lead.post(f"/api/v1/tips/{one_word}/labels", json={"label_id": str(label_id)}).status_code == 204
    # Three words: a match holds at least two; "harbour" twice is still one of them.
    page = queue(lead, q="harbour fishing lantern")
    assert ids(page) == [str(two_words)]
    assert page["matches"] == 1


# --- 4. Restricted cases ---


@dataclass(frozen=True)
class Restricted:
    secret_tip: uuid.UUID
    open_tip: uuid.UUID


def restricted_case(lead: TestClient, db_session: Session, server_secrets: ServerSecrets) -> Restricted:
    """The lead's restricted case of one verified report, beside a verified report like it in no
    case; both Uyghur, urgent, family pressure, and holding the word "marigoldcanary". The case's
    report carries the label "Marigold file". The lead's queue has indexed both."""
    answers = {"language": "ug", "urgent": True, "tactics": ["family_pressure"], "host_country": "KZ"}
    secret_tip = verified_tip(db_session, server_secrets, narrative="The marigoldcanary secret.", **answers)
    open_tip = verified_tip(db_session, server_secrets, narrative="The marigoldcanary open one.", **answers)
    create_case(lead, [secret_tip], restricted=True)
    label_id = create_label(lead, "Marigold file")
    assert lead.post(f"/api/v1/tips/{secret_tip}/labels", json={"label_id": str(label_id)}).status_code == 204
    queue(lead)
    return Restricted(secret_tip=secret_tip, open_tip=open_tip)


DESK_QUERIES: tuple[dict[str, str], ...] = (
    {},
    {"q": "marigoldcanary"},
    {"language": "ug"},
    {"tactic": "family_pressure"},
    {"tactic": "family_pressure", "country": "KZ", "urgent": "true"},
    {"language": "ug", "urgent": "true", "tactic": "family_pressure", "q": "marigoldcanary"},
)
# Only the case's report carries the label this finds.
BY_LABEL = {"q": "marigold"}


def test_a_restricted_cases_report_is_nowhere_on_a_non_members_desk(
    lead: TestClient,
    signed_in: Client,
    organisation: Organisation,
    second_lead: StaffMember,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    case = restricted_case(lead, db_session, server_secrets)
    secret_ref = ref_of(db_session, case.secret_tip)
    for member in (second_lead, organisation[Role.CASEWORKER]):
        client = signed_in(member)
        for params in DESK_QUERIES:
            response = client.get("/api/v1/tips", params=params)
            assert response.status_code == 200, params
            page = response.json()
            assert ids(page) == [str(case.open_tip)], (member.username, params)
            assert page["counts"] == counts(verified=1), (member.username, params)
            if "q" in params:
                assert page["matches"] == 1, (member.username, params)
            assert secret_ref not in response.text
        by_label = queue(client, **BY_LABEL)
        assert (by_label["items"], by_label["matches"], by_label["counts"]) == ([], 0, NO_COUNTS)
        html = client.get("/tips", params={"q": "marigoldcanary"}).text
        assert secret_ref not in html


def test_a_restricted_cases_report_is_on_its_members_desk(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    case = restricted_case(lead, db_session, server_secrets)
    for params in DESK_QUERIES:
        page = queue(lead, **params)
        assert set(ids(page)) == {str(case.secret_tip), str(case.open_tip)}, params
        assert page["counts"] == counts(verified=2), params
        if "q" in params:
            assert page["matches"] == 2, params
    by_label = queue(lead, **BY_LABEL)
    assert (ids(by_label), by_label["matches"], by_label["counts"]) == (
        [str(case.secret_tip)],
        1,
        counts(verified=1),
    )


# --- 5. Nothing readable at rest ---

CHINESE, LATIN, UYGHUR = "劝返", "zanzibarcanary", "ساقچىلار"


def test_the_search_and_tag_indexes_hold_only_keyed_terms(
    lead: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    narrative = f"他们又来劝返我的父母. The {LATIN} came. {UYGHUR} ئۆيىمىزگە كەلدى"
    city = "Kashgarcity"
    tip_id = new_tip(
        db_session,
        server_secrets,
        narrative=narrative,
        language="ug",
        tactics=["family_pressure"],
        host_country="TR",
        host_city=city,
    )
    queue(lead)
    words = (CHINESE, LATIN, UYGHUR, city.casefold())
    forbidden = [
        secret
        for word in (*words, city)
        for secret in (
            word.encode(),
            hashlib.sha256(word.encode()).digest()[:16],
            hashlib.sha256(word.encode()).digest(),
        )
    ]
    forbidden += [
        b"family_pressure",
        hashlib.sha256(bind("language", "ug")).digest(),
        hashlib.sha256(bind("tactic", "family_pressure")).digest(),
    ]
    assert_nowhere(raw_values(db_session, "tip_search_terms"), forbidden)
    assert_nowhere(raw_values(db_session, "tip_tags"), forbidden)

    version = organisation.intake.key.version
    stored = set(db_session.scalars(select(TipSearchTerm.term).where(TipSearchTerm.tip_id == tip_id)))
    key = search.search_key(organisation.intake.private, version)
    assert {search.term(key, word) for word in words} <= stored
    # Presence only: one row per distinct word, no more.
    distinct = set(search.words_of(narrative)) | set(search.words_of(city))
    assert stored == {search.term(key, word) for word in distinct}
    assert len(stored) == len(distinct)
    # Keyed: the terms under another intake key's search key are none of these.
    other_key = search.search_key(sealing.generate_private_key(), version)
    assert not {search.term(other_key, word) for word in distinct} & stored
    stored_tags = set(db_session.scalars(select(TipTag.tag).where(TipTag.tip_id == tip_id)))
    assert tags.tag(tags.filter_key(organisation.intake.private, version), "language", "ug") in stored_tags
    other_filter_key = tags.filter_key(sealing.generate_private_key(), version)
    assert tags.tag(other_filter_key, "language", "ug") not in stored_tags


# --- 6. Bulk steps ---


def test_a_lead_assigns_several_reports_in_one_step(
    lead: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    made = [new_tip(db_session, server_secrets) for _ in range(3)]
    untouched = new_tip(db_session, server_secrets)
    assignee = organisation[Role.CASEWORKER].account.id
    response = lead.post(
        "/api/v1/tips/bulk",
        json={"action": "assign", "tip_ids": [str(tip_id) for tip_id in made], "assignee_id": str(assignee)},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"updated": 3}
    for tip_id in made:
        assert tip_row(db_session, tip_id).assignee_id == assignee
    assert tip_row(db_session, untouched).assignee_id is None
    assert sorted(audited_objects(db_session, "tip.assign")) == sorted(str(tip_id) for tip_id in made)
    assert audit_details(db_session, "tips.bulk") == [{"action": "assign", "count": 3}]


def test_a_batch_one_report_refuses_changes_nothing_and_names_that_report(
    caseworker: TestClient,
    signed_in: Client,
    second_caseworker: StaffMember,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    # The batch runs in id order: the refusing report comes last, after the others were claimed.
    *free, taken = sorted(new_tip(db_session, server_secrets) for _ in range(3))
    assert signed_in(second_caseworker).post(f"/api/v1/tips/{taken}/claim").status_code == 200
    refused = caseworker.post(
        "/api/v1/tips/bulk", json={"action": "claim", "tip_ids": [str(tip_id) for tip_id in (taken, *free)]}
    )
    assert refused.status_code == 409, refused.text
    assert ref_of(db_session, taken) in refused.json()["detail"]
    for tip_id in free:
        row = tip_row(db_session, tip_id)
        assert (row.status, row.assignee_id) == (TipStatus.NEW, None)
    assert tip_row(db_session, taken).assignee_id == second_caseworker.account.id
    assert audited_objects(db_session, "tip.claim") == [str(taken)]
    assert events(db_session, "tips.bulk") == 0


def test_a_batch_naming_an_original_the_caller_cannot_see_changes_nothing(
    lead: TestClient,
    signed_in: Client,
    second_lead: StaffMember,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    case = restricted_case(lead, db_session, server_secrets)
    first, second = sorted(new_tip(db_session, server_secrets) for _ in range(2))
    outsider = signed_in(second_lead)
    refused = outsider.post(
        "/api/v1/tips/bulk",
        json={
            "action": "reject_duplicate",
            "tip_ids": [str(first), str(second)],
            "duplicate_of": str(case.secret_tip),
        },
    )
    assert 400 <= refused.status_code < 500, refused.text
    assert ref_of(db_session, first) in refused.text
    assert ref_of(db_session, case.secret_tip) not in refused.text
    # A hidden report in the batch itself is refused without showing its reference.
    hidden = outsider.post(
        "/api/v1/tips/bulk", json={"action": "claim", "tip_ids": [str(first), str(case.secret_tip)]}
    )
    assert 400 <= hidden.status_code < 500, hidden.text
    assert ref_of(db_session, case.secret_tip) not in hidden.text
    for tip_id in (first, second):
        row = tip_row(db_session, tip_id)
        assert (row.status, row.assignee_id, row.duplicate_of_id) == (TipStatus.NEW, None, None)
    assert events(db_session, "tip.reject") == 0
    assert events(db_session, "tip.claim") == 0
    assert events(db_session, "tips.bulk") == 0


def test_a_caseworker_cannot_bulk_assign(
    caseworker: TestClient,
    second_caseworker: StaffMember,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    made = [new_tip(db_session, server_secrets) for _ in range(2)]
    refused = caseworker.post(
        "/api/v1/tips/bulk",
        json={
            "action": "assign",
            "tip_ids": [str(tip_id) for tip_id in made],
            "assignee_id": str(second_caseworker.account.id),
        },
    )
    assert refused.status_code == 403, refused.text
    for tip_id in made:
        assert tip_row(db_session, tip_id).assignee_id is None
    assert events(db_session, "tip.assign") == 0
    assert events(db_session, "tips.bulk") == 0


def test_bulk_label_puts_the_label_on_every_report(
    lead: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    made = [new_tip(db_session, server_secrets) for _ in range(2)]
    unlabelled = new_tip(db_session, server_secrets)
    label_id = create_label(lead, "Dublin calls")
    response = lead.post(
        "/api/v1/tips/bulk",
        json={"action": "label", "tip_ids": [str(tip_id) for tip_id in made], "label_id": str(label_id)},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"updated": 2}
    labelled = set(db_session.scalars(select(TipLabel.tip_id).where(TipLabel.label_id == label_id)))
    assert labelled == set(made)
    assert unlabelled not in labelled
    assert events(db_session, "tip.label") == 2
    assert set(ids(queue(lead, label=str(label_id)))) == {str(tip_id) for tip_id in made}


def test_the_bulk_form_assigns_the_ticked_reports_and_returns_to_the_queue(
    lead: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    made = [new_tip(db_session, server_secrets) for _ in range(2)]
    assignee = organisation[Role.CASEWORKER].account.id
    token = csrf(lead, "/tips")
    fields = {
        "action": "assign",
        "assignee_id": str(assignee),
        "tip_id": [str(tip_id) for tip_id in made],
        "back": "status=new&urgent=",
    }
    assert lead.post("/tips/bulk", data={**fields, "csrf_token": "forged"}).status_code == 403
    # A batch the first report refuses (an auditor cannot read reports) is shown, and undone.
    auditor = str(organisation[Role.AUDITOR].account.id)
    refused = lead.post("/tips/bulk", data={**fields, "assignee_id": auditor, "csrf_token": token})
    assert refused.status_code == 422
    assert ref_of(db_session, min(made)) in refused.text
    assert "Nothing was changed" in refused.text
    for tip_id in made:
        assert tip_row(db_session, tip_id).assignee_id is None
    done = lead.post("/tips/bulk", data={**fields, "csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/tips?status=new"
    for tip_id in made:
        assert tip_row(db_session, tip_id).assignee_id == assignee
    assert events(db_session, "tip.assign") == 2


# --- 7. Saved views ---

VIEW_NAME = "Urgent Uyghur desk"


def test_a_saved_view_is_sealed_private_to_its_owner_and_deleted_on_request(
    lead: TestClient,
    caseworker: TestClient,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    wanted = new_tip(db_session, server_secrets, language="ug", urgent=True)
    others = {
        new_tip(db_session, server_secrets, language="ug"),
        new_tip(db_session, server_secrets, language="en", urgent=True),
    }
    every_ref = {ref_of(db_session, tip_id) for tip_id in {wanted, *others}}
    token = csrf(lead, "/tips")
    saved = lead.post(
        "/views",
        data={"csrf_token": token, "name": VIEW_NAME, "q_language": "ug", "q_urgent": "true"},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    view_id = uuid.UUID(saved.headers["location"].removeprefix("/tips?view="))
    link = f'href="/tips?view={view_id}"'

    page = lead.get("/tips")
    assert link in page.text
    assert VIEW_NAME in page.text
    applied = lead.get("/tips", params={"view": str(view_id)})
    assert applied.status_code == 200
    assert refs_on_page(applied.text) == {ref_of(db_session, wanted)}

    # Another member neither sees nor uses it, nor deletes it.
    theirs = caseworker.get("/tips", params={"view": str(view_id)})
    assert theirs.status_code == 200
    assert refs_on_page(theirs.text) == every_ref
    assert link not in theirs.text
    assert VIEW_NAME not in theirs.text
    their_token = csrf(caseworker, "/tips")
    assert caseworker.post(f"/views/{view_id}/delete", data={"csrf_token": their_token}).status_code == 404

    assert_nowhere(
        raw_values(db_session, "saved_views"),
        [VIEW_NAME.encode(), b"Uyghur", b'"ug"', b"language", b"urgent", b"query"],
    )
    assert audited_objects(db_session, "view.save") == [str(view_id)]

    deleted = lead.post(f"/views/{view_id}/delete", data={"csrf_token": token}, follow_redirects=False)
    assert deleted.status_code == 303
    assert db_session.scalar(select(func.count()).select_from(SavedView)) == 0
    assert link not in lead.get("/tips").text
    assert audited_objects(db_session, "view.delete") == [str(view_id)]


# --- 8. Sorting and paging ---


@pytest.fixture
def dated_tips(db_session: Session, server_secrets: ServerSecrets) -> dict[str, uuid.UUID]:
    """Five reports: (received, last activity) days ago; three share their last activity."""
    days = {"a": (10, 1), "b": (5, 3), "c": (7, 1), "d": (1, 1), "e": (3, 8)}
    today = dt.date.today()
    made = {}
    for name, (received, active) in days.items():
        tip_id = new_tip(db_session, server_secrets, urgent=name == "e")
        row = db_session.get_one(Tip, tip_id)
        row.received_on = today - dt.timedelta(days=received)
        row.last_activity_on = today - dt.timedelta(days=active)
        made[name] = tip_id
    db_session.commit()
    return made


def expected_order(db_session: Session, made: dict[str, uuid.UUID], sort: str) -> list[str]:
    rows = [tip_row(db_session, tip_id) for tip_id in made.values()]
    if sort == "newest":
        rows.sort(key=lambda row: (row.received_on, row.id), reverse=True)
    elif sort == "oldest":
        rows.sort(key=lambda row: (row.received_on, row.id))
    else:
        rows.sort(key=lambda row: (row.last_activity_on, row.id), reverse=True)
    return [str(row.id) for row in rows]


def test_each_sort_returns_its_order(
    lead: TestClient, db_session: Session, dated_tips: dict[str, uuid.UUID]
) -> None:
    as_named = {str(tip_id): name for name, tip_id in dated_tips.items()}
    assert [as_named[tip_id] for tip_id in ids(queue(lead, sort="newest"))] == ["d", "e", "b", "c", "a"]
    assert [as_named[tip_id] for tip_id in ids(queue(lead, sort="oldest"))] == ["a", "c", "b", "e", "d"]
    for sort in ("newest", "oldest", "activity"):
        assert ids(queue(lead, sort=sort)) == expected_order(db_session, dated_tips, sort), sort
    assert ids(queue(lead))[0] == str(dated_tips["e"])  # urgency: the urgent one first


def test_paging_by_activity_visits_every_report_once(
    lead: TestClient, db_session: Session, dated_tips: dict[str, uuid.UUID]
) -> None:
    seen: list[str] = []
    params = {"sort": "activity", "limit": "2"}
    pages = 0
    while True:
        page = queue(lead, **params)
        pages += 1
        assert len(page["items"]) <= 2
        seen += ids(page)
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
        assert pages < 10
    assert pages == 3
    assert seen == expected_order(db_session, dated_tips, "activity")
    assert len(set(seen)) == len(dated_tips)


def test_a_cursor_is_refused_under_another_sort(lead: TestClient, dated_tips: dict[str, uuid.UUID]) -> None:
    by_activity = queue(lead, sort="activity", limit="2")["next_cursor"]
    by_urgency = queue(lead, limit="2")["next_cursor"]
    assert by_activity
    assert by_urgency
    for sort, cursor in (
        ("newest", by_activity),
        ("oldest", by_activity),
        ("urgency", by_activity),
        ("activity", by_urgency),
        ("newest", by_urgency),
    ):
        response = lead.get("/api/v1/tips", params={"sort": sort, "limit": "2", "cursor": cursor})
        assert response.status_code == 422, (sort, response.text)


def test_tibetan_words_are_whole_syllables_not_letters() -> None:
    """Vowel signs and subjoined letters are combining marks: a syllable must keep them, or every
    Tibetan report would match every Tibetan query on its single letters."""
    words = search.words_of("ཉེན་རྟོག་པས་ང་ལ་ཁ་པར་བཏང་། Police called")
    assert words[:3] == ["ཉེན", "རྟོག", "པས"]
    assert "ཉ" not in words
    assert search.query_words("ཉེན་རྟོག") == ["ཉེན", "རྟོག"]
