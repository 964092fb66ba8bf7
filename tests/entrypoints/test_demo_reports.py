"""`daylight demo --reports N`: generated demo reports are reproducible, valid, varied, written in
their own language, and hold what the browser tests search for; the command makes N tips in all
and refuses a count out of range."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
import unicodedata
import uuid
from pathlib import Path

import pytest

from app.entrypoints.demo import DEMO_REPORT_DAYS, DEMO_TIPS
from app.entrypoints.demo_reports import (
    CITIES,
    DEMO_PREFIX,
    LANGUAGE_WEIGHTS,
    PERSUADE_TO_RETURN_WORD,
    SENTENCES,
    generated_reports,
)
from app.intake.schemas import TipSubmission
from app.kit.taxonomy import Language, Tactic
from tests.conftest import CHEAP_ARGON2

DAY = dt.date(2026, 12, 7)


def test_the_same_seed_gives_the_same_reports_and_another_seed_others() -> None:
    assert generated_reports(200, on=DAY) == generated_reports(200, on=DAY)
    assert generated_reports(200, on=DAY) != generated_reports(200, seed=7, on=DAY)


def test_every_report_validates_and_says_it_is_a_demo() -> None:
    for report in generated_reports(500, on=DAY):
        assert TipSubmission.model_validate(report.model_dump()) == report
        assert report.narrative.startswith(DEMO_PREFIX)
        assert 1 <= len(report.tactics) <= 3
        assert report.incident_year is None or report.incident_year <= DAY.year
        assert report.contact_details is None or report.contact_details.startswith(DEMO_PREFIX)


def test_every_tactic_is_told_in_the_narrative_in_the_report_language() -> None:
    for report in generated_reports(500, on=DAY):
        for tactic in report.tactics:
            assert any(
                s.text[report.language] in report.narrative for s in SENTENCES if s.tactic is tactic
            ), (tactic, report.narrative)


def test_each_language_has_its_own_script() -> None:
    reports = generated_reports(500, on=DAY)
    # Every language the demo has sentences in (Tibetan demo text awaits a writer who reads it).
    assert {report.language for report in reports} == set(LANGUAGE_WEIGHTS)
    assert set(LANGUAGE_WEIGHTS) == set(Language) - {Language.TIBETAN}
    for report in reports:
        letters = [c for c in report.narrative.removeprefix(DEMO_PREFIX) if c.isalpha()]
        scripts = {unicodedata.name(c).split()[0] for c in letters}
        expected = {
            Language.ENGLISH: {"LATIN"},
            Language.SIMPLIFIED_CHINESE: {"CJK"},
            Language.TRADITIONAL_CHINESE: {"CJK"},
            Language.UYGHUR: {"ARABIC"},
        }[report.language]
        assert scripts == expected, report.narrative
    for sentence in SENTENCES:
        assert sentence.text[Language.SIMPLIFIED_CHINESE] != sentence.text[Language.TRADITIONAL_CHINESE]


@pytest.mark.parametrize("count", [100, 500, 5000])
def test_what_the_browser_tests_search_for_is_there(count: int) -> None:
    reports = generated_reports(count, on=DAY)
    uyghur_urgent_family = [
        r
        for r in reports
        if r.language is Language.UYGHUR and r.urgent and Tactic.FAMILY_PRESSURE in r.tactics
    ]
    assert len(uyghur_urgent_family) >= 10
    persuaded = [
        r
        for r in reports
        if r.language is Language.SIMPLIFIED_CHINESE
        and PERSUADE_TO_RETURN_WORD in r.narrative
        # Inside a sentence, not set apart by spaces.
        and f" {PERSUADE_TO_RETURN_WORD}" not in r.narrative
        and f"{PERSUADE_TO_RETURN_WORD} " not in r.narrative
    ]
    assert len(persuaded) >= 20


def test_about_one_report_in_ten_is_urgent_and_the_cities_vary() -> None:
    reports = generated_reports(500, on=DAY)
    assert 0.05 <= sum(r.urgent for r in reports) / len(reports) <= 0.15
    assert len({r.host_country for r in reports}) >= 10
    assert len({r.host_city for r in reports if r.host_city}) >= 12


def test_a_report_about_a_station_in_a_city_with_one_names_it() -> None:
    stations = {place: uuid.uuid4() for language in CITIES for place in CITIES[language]}
    reports = generated_reports(300, stations=stations, on=DAY)
    named = [r for r in reports if r.station_id is not None]
    assert named
    for report in named:
        assert report.host_country is not None
        assert report.host_city is not None
        assert report.station_id == stations[(report.host_country, report.host_city)]
        assert {Tactic.STATION_CONTACT, Tactic.PERSUADE_TO_RETURN} & set(report.tactics)
    assert all(r.station_id is None for r in generated_reports(300, on=DAY))


def run_demo(data_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """As the browser tests run it (tests/browser/conftest.py): a subprocess, on SQLite."""
    env = {
        **os.environ,
        "DAYLIGHT_ARGON2__TIME_COST": str(CHEAP_ARGON2.time_cost),
        "DAYLIGHT_ARGON2__MEMORY_COST_KIB": str(CHEAP_ARGON2.memory_cost_kib),
    }
    env.pop("DAYLIGHT_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "app", "demo", "--data-dir", str(data_dir), *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_demo_holds_as_many_reports_as_asked(tmp_path: Path) -> None:
    data_dir = tmp_path / "org"
    created = run_demo(data_dir, "--reports", "40")
    assert created.returncode == 0, created.stderr
    assert "Demo reports: 40" in created.stdout
    with sqlite3.connect(data_dir / "daylight.sqlite3") as database:
        dates = database.execute("SELECT received_on, last_activity_on FROM tips").fetchall()
        messages = database.execute("SELECT count(*) FROM tip_messages").fetchone()[0]
    database.close()
    assert len(dates) == 40
    assert messages == 1  # the hand-written first tip's, as without --reports
    today = dt.datetime.now(dt.UTC).date()
    for received, last_activity in dates:
        received_on, last_activity_on = dt.date.fromisoformat(received), dt.date.fromisoformat(last_activity)
        assert today - dt.timedelta(days=DEMO_REPORT_DAYS) <= received_on <= last_activity_on <= today
    assert len({received for received, _ in dates}) > 10  # spread over the days, not all today


@pytest.mark.parametrize("count", [str(len(DEMO_TIPS) - 1), "5001", "many"])
def test_a_count_out_of_range_is_refused_before_anything_is_made(tmp_path: Path, count: str) -> None:
    data_dir = tmp_path / "org"
    refused = run_demo(data_dir, "--reports", count)
    assert refused.returncode == 2
    assert "--reports" in refused.stderr
    assert not data_dir.exists()
