"""Importing and exporting the station registry (CSV and JSON).

An import is all or nothing: every row is validated first and any error, with
its line number, means nothing is written. Without ``apply`` it only reports
what would change. Rows are matched to stations by country, city and operating
bureau, so importing the same file twice changes nothing the second time.
Stations missing from a file are left alone: an import adds and updates, it
never deletes. A status change is kept in the station's history with the
row's first source.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.kit import clock
from app.kit.errors import InvalidInput
from app.kit.taxonomy import COUNTRY_CODES
from app.stations.models import Station, StationSource, StationStatus, StationStatusChange

CSV_COLUMNS = (
    "city",
    "country",
    "operating_bureau",
    "status",
    "first_reported",
    "latitude",
    "longitude",
    "source",
)
OPTIONAL_CSV_COLUMNS = ("notes",)
MAX_ROWS = 10_000
SOURCE_SEPARATOR = " | "
MAX_TEXT = 500
# A city, not an address: a house number, a postcode or a street before a comma has no
# place in the registry (any kind of digit, Roman numerals included).
_ADDRESS_LIKE = re.compile(r"[\d,\u2160-\u2188]")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FORMULA_STARTS = frozenset("=+-@")
_URL = re.compile(r"https?://[^\s\"<>]{1,480}")


@dataclass(frozen=True, slots=True)
class SourceRow:
    title: str
    publisher: str | None = None
    published_on: dt.date | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class StationRow:
    line: int
    city: str
    country: str
    operating_bureau: str
    status: StationStatus
    first_reported: dt.date | None
    latitude: float
    longitude: float
    sources: tuple[SourceRow, ...]
    notes: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.country, city_key(self.city), self.operating_bureau)


def city_key(city: str) -> str:
    return " ".join(city.casefold().split())


class ImportRefused(InvalidInput):
    code = "import_refused"
    public_message = "The file was refused; nothing was written."


@dataclass
class ImportPlan:
    created: list[StationRow] = field(default_factory=list)
    updated: list[tuple[StationRow, list[str]]] = field(default_factory=list)
    unchanged: list[StationRow] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.created)} new, {len(self.updated)} changed, {len(self.unchanged)} unchanged"


class _Errors:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, line: int, message: str) -> None:
        if len(self.messages) < 100:  # enough to fix a file; a hostile one does not flood the answer
            self.messages.append(f"line {line}: {message}")

    def raise_if_any(self) -> None:
        if self.messages:
            raise ImportRefused(fields=[{"field": "file", "message": message} for message in self.messages])


def _text(
    errors: _Errors, line: int, name: str, value: object, *, required: bool = True, limit: int = 100
) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if value is not None and not isinstance(value, str):
        errors.add(line, f"{name} must be text")
    elif required and not text:
        errors.add(line, f"{name} is missing")
    elif len(text) > limit:
        errors.add(line, f"{name} is longer than {limit} characters")
    elif _CONTROL.search(text):
        errors.add(line, f"{name} holds control characters")
    elif text[:1] in _FORMULA_STARTS:
        # A spreadsheet would run it as a formula when the exported CSV is opened.
        errors.add(line, f"{name} must not start with {text[0]!r}")
    return text


def _month(errors: _Errors, line: int, value: object, today: dt.date) -> dt.date | None:
    if value in (None, ""):
        return None
    match = _MONTH.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 12:
        errors.add(line, "first_reported must be YYYY-MM")
        return None
    if not 1990 <= int(match.group(1)) <= today.year:
        errors.add(line, "first_reported must be a month between 1990 and now")
        return None
    month = dt.date(int(match.group(1)), int(match.group(2)), 1)
    if month > today:
        errors.add(line, "first_reported must be a month between 1990 and now")
    return month


def _coordinate(errors: _Errors, line: int, name: str, value: object, bound: float) -> float:
    try:
        number = (
            float(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else math.nan
        )
    except (ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number):
        errors.add(line, f"{name} must be a number")
        return 0.0
    if not -bound <= number <= bound:
        errors.add(line, f"{name} must be between -{bound:g} and {bound:g}")
    # City precision, about a kilometre: finer coordinates would point at a building.
    return round(number, 2)


def _source(errors: _Errors, line: int, value: object) -> SourceRow | None:
    if isinstance(value, str):
        title = _text(errors, line, "source", value, limit=MAX_TEXT)
        return SourceRow(title=title) if title else None
    if not isinstance(value, dict):
        errors.add(line, "each source is a text or an object with a title")
        return None
    unknown = set(value) - {"title", "publisher", "date", "url"}
    if unknown:
        errors.add(line, f"unknown source fields: {', '.join(sorted(map(str, unknown)))}")
    title = _text(errors, line, "source title", value.get("title"), limit=MAX_TEXT)
    publisher = _text(errors, line, "source publisher", value.get("publisher"), required=False, limit=200)
    published_on = None
    if value.get("date") not in (None, ""):
        try:
            published_on = dt.date.fromisoformat(str(value["date"]))
        except ValueError:
            errors.add(line, "source date must be YYYY-MM-DD")
    url = _text(errors, line, "source url", value.get("url"), required=False, limit=MAX_TEXT)
    if url and not _URL.fullmatch(url):
        errors.add(line, "source url must be an http(s) address")
    return SourceRow(title=title, publisher=publisher or None, published_on=published_on, url=url or None)


def _row(errors: _Errors, line: int, raw: dict[str, Any], today: dt.date) -> StationRow | None:
    before = len(errors.messages)
    city = _text(errors, line, "city", raw.get("city"))
    if city and _ADDRESS_LIKE.search(city):
        errors.add(line, "city must be a city name, not an address")
    elif len(city_key(city)) > 100:  # folding can lengthen it ("ß" becomes "ss")
        errors.add(line, "city is longer than 100 characters")
    raw_country = _text(errors, line, "country", raw.get("country"), limit=2)
    country = raw_country.upper() if re.fullmatch(r"[A-Za-z]{2}", raw_country) else raw_country
    if raw_country and country not in COUNTRY_CODES:
        errors.add(line, f"unknown country code {raw_country[:2]!r}")
    bureau = _text(errors, line, "operating_bureau", raw.get("operating_bureau"))
    if bureau and _ADDRESS_LIKE.search(bureau):
        errors.add(line, "operating_bureau must be a name, not an address")
    status_text = _text(errors, line, "status", raw.get("status"), limit=32)
    status = None
    if status_text:
        try:
            status = StationStatus(status_text)
        except ValueError:
            errors.add(line, f"unknown status {status_text[:32]!r} (one of: {', '.join(StationStatus)})")
    first_reported = _month(errors, line, raw.get("first_reported"), today)
    latitude = _coordinate(errors, line, "latitude", raw.get("latitude"), 90)
    longitude = _coordinate(errors, line, "longitude", raw.get("longitude"), 180)
    raw_sources = raw.get("sources") if "sources" in raw else raw.get("source")
    if isinstance(raw_sources, str):
        # In CSV, several citations share the column, separated by " | " (a citation's own
        # text may hold commas and semicolons; JSON carries them structured).
        raw_sources = [part for part in raw_sources.split(SOURCE_SEPARATOR) if part.strip()]
    if not isinstance(raw_sources, list) or not raw_sources:
        errors.add(line, "at least one source is required")
        raw_sources = []
    sources = tuple(source for item in raw_sources if (source := _source(errors, line, item)) is not None)
    notes = _text(errors, line, "notes", raw.get("notes", ""), required=False, limit=2000)
    if len(errors.messages) > before or status is None:
        return None
    return StationRow(
        line, city, country, bureau, status, first_reported, latitude, longitude, sources, notes
    )


def parse(content: bytes, file_format: str, *, today: dt.date | None = None) -> list[StationRow]:
    """Every row, validated; ImportRefused naming each bad line otherwise."""
    today = today or clock.today()
    errors = _Errors()
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRefused("The file is not UTF-8 text; nothing was written.") from None
    records: list[tuple[int, dict[str, Any]]] = []
    if file_format == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = reader.fieldnames or []
        missing = [name for name in CSV_COLUMNS if name not in columns]
        unknown = [name for name in columns if name not in (*CSV_COLUMNS, *OPTIONAL_CSV_COLUMNS)]
        if missing or unknown:
            problems = ([f"missing columns: {', '.join(missing)}"] if missing else []) + (
                [f"unknown columns: {', '.join(unknown)}"] if unknown else []
            )
            raise ImportRefused("The header row is wrong: " + "; ".join(problems) + ". Nothing was written.")
        try:
            for raw in reader:
                if None in raw:  # more cells than columns
                    errors.add(reader.line_num, "more values than columns")
                    continue
                records.append((reader.line_num, dict(raw)))
                if len(records) > MAX_ROWS:
                    raise ImportRefused(f"More than {MAX_ROWS} rows; nothing was written.")
        except csv.Error as exc:
            raise ImportRefused(f"The CSV could not be read ({exc}); nothing was written.") from None
    elif file_format == "json":
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            raise ImportRefused("The JSON could not be read; nothing was written.") from None
        items = document.get("stations") if isinstance(document, dict) else document
        if not isinstance(items, list) or len(items) > MAX_ROWS:
            raise ImportRefused(f'Expected a list of at most {MAX_ROWS} stations (or {{"stations": [...]}}).')
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                errors.add(number, "each station is an object")
                continue
            unknown_fields = set(item) - {*CSV_COLUMNS, *OPTIONAL_CSV_COLUMNS, "sources"}
            if unknown_fields:
                errors.add(number, f"unknown fields: {', '.join(sorted(map(str, unknown_fields)))}")
            records.append((number, item))
    else:
        raise ImportRefused("Import CSV or JSON.")
    rows = [row for number, raw in records if (row := _row(errors, number, raw, today)) is not None]
    seen: dict[tuple[str, str, str], int] = {}
    for row in rows:
        if row.key in seen:
            errors.add(row.line, f"duplicates line {seen[row.key]} (same city, country and bureau)")
        seen.setdefault(row.key, row.line)
    if not records:
        errors.add(1, "the file has no stations")
    errors.raise_if_any()
    return rows


def _source_tuple(source: StationSource | SourceRow) -> tuple[str, str | None, dt.date | None, str | None]:
    return (source.title, source.publisher, source.published_on, source.url)


def _differences(station: Station, row: StationRow) -> list[str]:
    changed = [
        name
        for name in ("city", "status", "first_reported", "latitude", "longitude", "notes")
        if getattr(station, name) != getattr(row, name)
    ]
    if [_source_tuple(s) for s in station.sources] != [_source_tuple(s) for s in row.sources]:
        changed.append("sources")
    return changed


def _existing(session: Session) -> dict[tuple[str, str, str], Station]:
    return {(s.country, s.city_key, s.operating_bureau): s for s in session.scalars(select(Station))}


def plan(session: Session, rows: Iterable[StationRow]) -> ImportPlan:
    existing = _existing(session)
    result = ImportPlan()
    for row in rows:
        station = existing.get(row.key)
        if station is None:
            result.created.append(row)
        elif changes := _differences(station, row):
            result.updated.append((row, changes))
        else:
            result.unchanged.append(row)
    return result


def apply(session: Session, rows: Sequence[StationRow], actor: audit.Actor) -> ImportPlan:
    """Write the plan, in the caller's transaction, with one audit event."""
    result = plan(session, rows)
    existing = _existing(session)
    today = clock.today()
    for row in [*result.created, *(row for row, _ in result.updated)]:
        station = existing.get(row.key)
        previous = station.status if station is not None else None
        if station is None:
            station = Station(
                city_key=city_key(row.city), country=row.country, operating_bureau=row.operating_bureau
            )
            session.add(station)
        station.city, station.status, station.first_reported = row.city, row.status, row.first_reported
        station.latitude, station.longitude, station.notes = row.latitude, row.longitude, row.notes
        station.sources = [
            StationSource(
                position=position,
                title=source.title,
                publisher=source.publisher,
                published_on=source.published_on,
                url=source.url,
            )
            for position, source in enumerate(row.sources)
        ]
        session.flush()
        if previous is not row.status:
            session.add(
                StationStatusChange(
                    station_id=station.id,
                    from_status=previous.value if previous else None,
                    to_status=row.status.value,
                    actor_id=actor.id,
                    changed_on=today,
                    source=row.sources[0].title if row.sources else None,
                )
            )
    audit.record(
        session,
        actor,
        "stations.import",
        object_type="station_registry",
        details={
            "created": len(result.created),
            "updated": len(result.updated),
            "unchanged": len(result.unchanged),
        },
    )
    session.flush()
    return result


def _month_text(value: dt.date | None) -> str:
    return value.strftime("%Y-%m") if value else ""


def export_csv(stations: Iterable[Station]) -> str:
    """The seed's columns (plus notes): what `parse` reads back as the same registry."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *OPTIONAL_CSV_COLUMNS])
    for station in stations:
        writer.writerow(
            [
                station.city,
                station.country,
                station.operating_bureau,
                station.status.value,
                _month_text(station.first_reported),
                f"{station.latitude:.2f}",
                f"{station.longitude:.2f}",
                SOURCE_SEPARATOR.join(source.title for source in station.sources),
                station.notes,
            ]
        )
    return buffer.getvalue()


def station_document(station: Station) -> dict[str, Any]:
    return {
        "city": station.city,
        "country": station.country,
        "operating_bureau": station.operating_bureau,
        "status": station.status.value,
        "first_reported": _month_text(station.first_reported),
        "latitude": station.latitude,
        "longitude": station.longitude,
        "notes": station.notes,
        "sources": [
            {
                "title": source.title,
                "publisher": source.publisher,
                "date": source.published_on.isoformat() if source.published_on else None,
                "url": source.url,
            }
            for source in station.sources
        ],
    }


def export_json(stations: Iterable[Station]) -> str:
    return json.dumps(
        {"stations": [station_document(station) for station in stations]}, ensure_ascii=False, indent=2
    )


def all_stations(session: Session) -> list[Station]:
    return list(
        session.scalars(select(Station).order_by(Station.country, Station.city_key, Station.operating_bureau))
    )
