"""The station registry on both databases: the seed imports cleanly and again as a no-op; every bad
file is refused with line numbers and nothing written; exports read back as the same registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import Role
from app.entrypoints import cli
from app.entrypoints.demo import SEED_FILE
from app.stations import registry
from app.stations.models import Station, StationSource, StationStatusChange
from tests.conftest import Client, Organisation

SEED = SEED_FILE.read_bytes()
HEADER = "city,country,operating_bureau,status,first_reported,latitude,longitude,source\n"
GOOD = "Dublin,IE,Fuzhou PSB,reported,2022-09,53.35,-6.26,Safeguard Defenders report\n"


def count(session: Session, model: type[Station] | type[StationStatusChange]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_the_seed_imports_cleanly_and_again_as_a_no_op(db_session: Session) -> None:
    rows = registry.parse(SEED, "csv")
    assert len(rows) == 9
    first = registry.apply(db_session, rows, audit.SYSTEM)
    assert (len(first.created), len(first.updated), len(first.unchanged)) == (9, 0, 0)
    dublin = db_session.scalars(select(Station).where(Station.city == "Dublin")).one()
    assert (dublin.country, dublin.status.value, dublin.latitude, dublin.longitude) == (
        "IE",
        "ordered_closed",
        53.35,
        -6.26,
    )
    assert dublin.sources[0].title.startswith("Dail Eireann")
    assert count(db_session, StationStatusChange) == 9
    again = registry.apply(db_session, registry.parse(SEED, "csv"), audit.SYSTEM)
    assert (len(again.created), len(again.updated), len(again.unchanged)) == (0, 0, 9)
    assert count(db_session, StationStatusChange) == 9


def test_a_status_change_is_kept_in_the_history_with_its_source(db_session: Session) -> None:
    registry.apply(db_session, registry.parse((HEADER + GOOD).encode(), "csv"), audit.SYSTEM)
    changed = HEADER + GOOD.replace("reported,", "confirmed,").replace(
        "Safeguard", "Police statement | Safeguard"
    )
    plan = registry.apply(db_session, registry.parse(changed.encode(), "csv"), audit.SYSTEM)
    assert plan.updated[0][1] == ["status", "sources"]
    history = db_session.scalars(select(StationStatusChange).order_by(StationStatusChange.to_status)).all()
    assert [(h.from_status, h.to_status, h.source) for h in history] == [
        ("reported", "confirmed", "Police statement"),
        (None, "reported", "Safeguard Defenders report"),
    ]
    assert db_session.scalar(select(func.count()).select_from(StationSource)) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEADER + GOOD.replace(",IE,", ",QQ,"), "line 2: unknown country code 'QQ'"),
        (HEADER + GOOD.replace("reported", "rumoured"), "line 2: unknown status 'rumoured'"),
        (HEADER + GOOD.replace("53.35", "91.5"), "line 2: latitude must be between -90 and 90"),
        (HEADER + GOOD.replace("-6.26", "east"), "line 2: longitude must be a number"),
        (HEADER + GOOD + GOOD, "line 3: duplicates line 2"),
        (
            HEADER + GOOD.replace("Dublin", "12 Parnell Street"),
            "line 2: city must be a city name, not an address",
        ),
        (HEADER + GOOD.replace("2022-09", "2022-13"), "line 2: first_reported must be YYYY-MM"),
        (HEADER + GOOD.replace("Safeguard Defenders report", ""), "line 2: at least one source is required"),
        (HEADER + GOOD + GOOD.replace("Dublin", "Cork").replace(",IE,", ",ZZ,"), "line 3: unknown country"),
        (HEADER + GOOD.replace("Dublin", '"Rue de la Loi, Brussels"'), "line 2: city must be a city name"),
        (HEADER + GOOD.replace("Dublin", "=HYPERLINK(1)"), "line 2: city must not start with '='"),
        (HEADER + GOOD.replace("Dublin", "Dub\x01lin"), "line 2: city holds control characters"),
        (HEADER + GOOD.replace("2022-09", "0000-01"), "line 2: first_reported must be a month between"),
        (HEADER + GOOD.replace(",IE,", ",ß,"), "line 2: unknown country code"),
        (HEADER + GOOD.replace("Dublin", "Straße" * 17), "line 2: city is longer than 100"),
    ],
)
def test_every_bad_row_is_named_by_line_and_nothing_is_written(
    db_session: Session, text: str, expected: str
) -> None:
    with pytest.raises(registry.ImportRefused) as refused:
        registry.parse(text.encode(), "csv")
    messages = [field["message"] for field in refused.value.fields]
    assert any(message.startswith(expected) for message in messages), messages
    assert count(db_session, Station) == 0


@pytest.mark.parametrize(
    ("content", "file_format"),
    [
        (b"\xff\xfe not utf-8", "csv"),
        (b"name,place\nx,y\n", "csv"),
        (b"", "csv"),
        (HEADER.encode(), "csv"),
        (b"{not json", "json"),
        (b'{"stations": "all of them"}', "json"),
        (b'[{"city": "Dublin", "country": "IE", "planted": 1}]', "json"),
        (b"<stations/>", "xml"),
    ],
)
def test_malformed_files_are_refused_cleanly(content: bytes, file_format: str) -> None:
    with pytest.raises(registry.ImportRefused):
        registry.parse(content, file_format)


def test_exports_read_back_as_the_same_registry(db_session: Session) -> None:
    registry.apply(db_session, registry.parse(SEED, "csv"), audit.SYSTEM)
    structured = json.dumps(
        [
            {
                "city": "Glasgow",
                "country": "GB",
                "operating_bureau": "Fuzhou PSB",
                "status": "reported_closed",
                "first_reported": "2022-09",
                "latitude": 55.86,
                "longitude": -4.25,
                "sources": [
                    {
                        "title": "Security Minister statement",
                        "publisher": "UK Parliament",
                        "date": "2023-06-06",
                        "url": "https://hansard.parliament.uk/",
                    },
                    "A second report",
                ],
            }
        ]
    )
    registry.apply(db_session, registry.parse(structured.encode(), "json"), audit.SYSTEM)
    stations = registry.all_stations(db_session)
    as_json = registry.export_json(stations).encode()
    again = registry.plan(db_session, registry.parse(as_json, "json"))
    assert (len(again.created), len(again.updated)) == (0, 0)
    seed_only = [station for station in stations if len(station.sources) == 1]
    as_csv = registry.export_csv(seed_only).encode()
    assert (len(registry.plan(db_session, registry.parse(as_csv, "csv")).updated)) == 0


def test_the_cli_dry_runs_then_applies_and_refuses_bad_files(
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    committed_database_url: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if committed_database_url:
        monkeypatch.setenv("DAYLIGHT_DATABASE_URL", committed_database_url)
    assert cli.main(["init", "--data-dir", str(data_dir / "org")]) == 0
    org = str(data_dir / "org")
    assert cli.main(["stations", "import", str(SEED_FILE), "--data-dir", org]) == 0
    assert "dry run, nothing written (add --apply): 9 new, 0 changed, 0 unchanged" in capsys.readouterr().out
    assert cli.main(["stations", "import", str(SEED_FILE), "--data-dir", org, "--apply"]) == 0
    assert "imported: 9 new" in capsys.readouterr().out
    assert cli.main(["stations", "import", str(SEED_FILE), "--data-dir", org, "--apply"]) == 0
    assert "imported: 0 new, 0 changed, 9 unchanged" in capsys.readouterr().out
    bad = data_dir / "bad.csv"
    bad.write_text(HEADER + GOOD.replace(",IE,", ",QQ,"))
    assert cli.main(["stations", "import", str(bad), "--data-dir", org, "--apply"]) == 1
    assert "line 2: unknown country code 'QQ'" in capsys.readouterr().err
    out = data_dir / "out.json"
    assert cli.main(["stations", "export", "--data-dir", org, "--format", "json", "--output", str(out)]) == 0
    assert len(json.loads(out.read_text())["stations"]) == 9


def test_the_registry_api_lists_and_only_leads_import_or_export(
    signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    lead = signed_in(organisation[Role.LEAD])
    dry = lead.post("/api/v1/stations/import", content=SEED, headers={"content-type": "text/csv"})
    assert dry.status_code == 200
    assert (dry.json()["applied"], len(dry.json()["created"])) == (False, 9)
    assert count(db_session, Station) == 0
    applied = lead.post(
        "/api/v1/stations/import?apply=true", content=SEED, headers={"content-type": "text/csv"}
    )
    assert applied.status_code == 200
    refused = lead.post(
        "/api/v1/stations/import?apply=true",
        content=(HEADER + GOOD.replace("IE", "QQ")).encode(),
        headers={"content-type": "text/csv"},
    )
    assert refused.status_code == 422
    assert "line 2" in refused.text
    caseworker = signed_in(organisation[Role.CASEWORKER])
    listed = caseworker.get("/api/v1/stations", params={"country": "nl"}).json()["items"]
    assert sorted(item["city"] for item in listed) == ["Amsterdam", "Rotterdam"]
    assert (
        caseworker.post(
            "/api/v1/stations/import", content=SEED, headers={"content-type": "text/csv"}
        ).status_code
        == 403
    )
    exported = lead.get("/api/v1/stations/export", params={"format": "csv"})
    assert exported.headers["content-disposition"].startswith("attachment")
    assert exported.text.count("\n") == 10


def test_demo_imports_the_seed(data_dir: Path) -> None:
    assert cli.main(["demo", "--data-dir", str(data_dir / "demo")]) == 0
    assert (
        cli.main(
            [
                "stations",
                "export",
                "--data-dir",
                str(data_dir / "demo"),
                "--output",
                str(data_dir / "demo.csv"),
            ]
        )
        == 0
    )
    assert (data_dir / "demo.csv").read_text().count("\n") == 10


def test_a_huge_number_or_a_nul_is_a_clean_refusal(signed_in: Client, organisation: Organisation) -> None:
    huge = (
        '[{"city": "Cork", "country": "IE", "operating_bureau": "x", "status": "reported", '
        '"latitude": 1' + "0" * 400 + ', "longitude": 1, "source": "s"}]'
    )
    with pytest.raises(registry.ImportRefused):
        registry.parse(huge.encode(), "json")
    caseworker = signed_in(organisation[Role.CASEWORKER])
    assert caseworker.get("/api/v1/stations", params={"bureau": "a\x00b"}).status_code == 422
    assert caseworker.get("/api/v1/stations", params={"country": "\x00"}).status_code == 422
    assert caseworker.get("/stations", params={"bureau": "a\x00b"}).status_code == 200
