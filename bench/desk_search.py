"""Time the caseworker's desk in PostgreSQL at 100,000 reports: keyed filters, sorts and search.

    make bench        (or: .venv/bin/python bench/desk_search.py [--tips N] [--rounds N] [--explain])

Reports are loaded with COPY into a throwaway schema on
postgresql+psycopg://postgres@127.0.0.1:5432/test (or DAYLIGHT_TEST_POSTGRES_URL), already
indexed (``indexed``, ``search_indexed``), so no backfill runs. Each report is sealed for real to
intake key version 1 (its data key, narrative and answers: a key holder's page decrypts the
summaries of its 50 reports), and its keyed indexes are written with the real functions under
that version's keys: tags from ``tags.labels_of`` of its answers (language en / zh-Hans / zh-Hant
/ ug at 40 / 30 / 10 / 20 %, one to three tactics, a country among 15, a city, a station for a
quarter of them) and search terms equal to ``search.terms_of`` of its narrative and city (checked
for the first reports). A narrative is words drawn from a Zipf-like vocabulary of 50,000 (25,000
Latin, 15,000 Chinese character pairs, 2,500 single characters, 7,500 Uyghur words) until it has
80 to 160 distinct terms: English reports draw Latin words only, Chinese ones three quarters
Chinese, Uyghur ones 70 % Uyghur, so the commonest words are in most reports and the rarest in a
few. A rare word is planted in 50 reports, the pair 劝返 in 2 % of them (Chinese reports).
The search index is loaded without its indexes and foreign key, which are built after (as a
restore does); its size, and the tags', are printed. Then VACUUM ANALYZE, as autovacuum would
leave settled tables.

Each figure is the median and p95 of ``--rounds`` calls of ``triage.service.list_queue`` as a
key-holding caseworker (without the integrity key: no backfill), each call in its own
transaction, rolled back (the call appends an audit event). The calls go round robin through the
cases after a warm-up, so a busy moment of a shared machine falls on all of them alike; the
ratio to the unfiltered first page is the figure to compare between runs. Target: every call,
searches included, under 1 s at p95 (a FAIL line otherwise). ``--explain`` prints EXPLAIN
ANALYZE of the slowest statements of each search.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import random
import secrets
import statistics
import time
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import sessionmaker

# Run as a script, this file's directory is on sys.path: its neighbour lends what does not change
# with the desk (the cases' columns, progress lines, the server's address).
from triage_queue import CASE_COLUMNS, POSTGRES_URL, progress

from app.auth.models import Role, StaffAccount
from app.auth.principal import Principal, UnlockedKeys
from app.crypto import envelope, sealing
from app.custody.service import create_intake_key
from app.intake.models import TIP_ANSWERS, TIP_DATA_KEY, TIP_NARRATIVE, TipStatus
from app.kit.db import Database, create_database_engine, undo
from app.schema import upgrade_to_head
from app.triage import search, service, tags
from app.triage.repository import fold_queue_count_changes
from app.triage.schemas import QueueFilters, QueuePage, QueueSort

LIMIT_MS = 1000.0
COPY_ROWS = 10_000  # tips per COPY statement (and per commit)
WARM_UP = 2
CHECKED_TIPS = 20  # tips whose terms are checked against search.terms_of

LANGUAGES = {"en": 40, "zh-Hans": 30, "zh-Hant": 10, "ug": 20}
TACTICS = {
    "family_pressure": 30,
    "persuade_to_return": 15,
    "station_contact": 10,
    "surveillance": 15,
    "digital_threats": 12,
    "document_denial": 6,
    "legal_coercion": 4,
    "physical": 3,
    "other": 5,
}
# Country: (weight, cities, stations there).
COUNTRIES: dict[str, tuple[int, tuple[str, ...], int]] = {
    "TR": (18, ("Istanbul", "Kayseri", "Ankara"), 5),
    "US": (15, ("New York", "Washington", "Los Angeles", "Fairfax"), 6),
    "KZ": (10, ("Almaty", "Astana"), 3),
    "DE": (8, ("Munich", "Berlin", "Frankfurt"), 4),
    "NL": (6, ("Amsterdam", "Rotterdam", "The Hague"), 4),
    "GB": (6, ("London", "Manchester", "Birmingham"), 4),
    "CA": (6, ("Toronto", "Vancouver", "Montreal"), 3),
    "AU": (5, ("Sydney", "Melbourne", "Adelaide"), 3),
    "SE": (4, ("Stockholm", "Gothenburg"), 2),
    "JP": (4, ("Tokyo", "Osaka"), 2),
    "KG": (4, ("Bishkek", "Osh"), 2),
    "FR": (4, ("Paris", "Lyon"), 3),
    "BE": (3, ("Brussels", "Antwerp"), 2),
    "IE": (3, ("Dublin", "Cork"), 2),
    "NZ": (2, ("Auckland", "Wellington"), 1),
}
STATION_SHARE = 0.25
STATUS_WEIGHTS = {
    TipStatus.NEW: 8,
    TipStatus.IN_REVIEW: 6,
    TipStatus.NEEDS_INFO: 3,
    TipStatus.VERIFIED: 33,
    TipStatus.REJECTED: 50,
}
OTHER_CASEWORKERS = 10

LATIN_WORDS = 25_000
CHINESE_PAIRS = 15_000
CHINESE_CHARACTERS = 2_500
UYGHUR_WORDS = 7_500
ZIPF_EXPONENT = 1.0
TERMS_PER_TIP = (80, 160)
RARE_WORD = "qumulvpn"
RARE_TIPS = 50
PLANTED_PAIR = "劝返"
PAIR_SHARE = 0.02

# The head of each vocabulary, commonest first (split on spaces); the rest is made up.
LATIN_HEAD = (
    "police family phone called mother father brother sister return china embassy passport "
    "threatened wechat message visa consulate station uyghur xinjiang camp relatives pressure officer "
    "meeting photos student university work address home video told asked said back money job "
    "school friends community association report information documents contact account"
)
CHINESE_HEAD_PAIRS = (
    "警察 家人 电话 回国 威胁 护照 微信 父母 新疆 使馆 领事 学生 工作 朋友 视频 照片 国家 安全 公安 "
    "派出 联系 亲戚 母亲 父亲 哥哥 姐姐 弟弟 妹妹 签证 老家 社区 维吾 吾尔 监控 手机 信息 学校 孩子"
)
UYGHUR_HEAD = (
    "ساقچى ئائىلە تېلېفون ئانا ئاتا قايتىش تەھدىت پاسپورت ئەلچىخانا ۋىچات لاگېر ئۇيغۇر شىنجاڭ "
    "تۇغقان بېسىم خىزمەت ئوقۇغۇچى ساقچىخانا ئاكا ھەدە ئۇكا سىڭىل بالا مەكتەپ"
)
UYGHUR_WORD = "ساقچى"  # police: in most Uyghur reports
COMMON_WORD = "police"
THREE_WORDS = "passport embassy threatened"

TIP_COLUMNS = ", ".join(
    (
        "id",
        "ref",
        "status",
        "urgent",
        "received_on",
        "last_activity_on",
        "intake_key_version",
        "content_key_version",
        "sealed_data_key",
        "narrative_encrypted",
        "answers_encrypted",
        "receipt_lookup_hash",
        "receipt_public_key",
        "receipt_public_key_mac",
        "assignee_id",
        "indexed",
        "search_indexed",
        "submitter_activity",
    )
)


@dataclass(frozen=True)
class Vocabulary:
    words: list[str]
    cumulative: list[float]  # Zipf weights by rank, for random.choices

    @classmethod
    def zipf(cls, words: list[str]) -> Vocabulary:
        weights = (1.0 / rank**ZIPF_EXPONENT for rank in range(1, len(words) + 1))
        return cls(words, list(itertools.accumulate(weights)))

    def draw(self, rng: random.Random, count: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cumulative, k=count)


def _made_up(rng: random.Random, head: list[str], total: int, make: Any) -> list[str]:
    words = dict.fromkeys(head)
    while len(words) < total:
        word = make()
        if word not in (RARE_WORD, PLANTED_PAIR):
            words.setdefault(word, None)
    return list(words)


def vocabularies(rng: random.Random) -> dict[str, Vocabulary]:
    """Latin, Chinese (pairs and single characters) and Uyghur, each ranked for Zipf draws."""
    consonants, vowels = "bcdfghjklmnprstvwyz", "aeiou"

    def latin() -> str:
        return "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(2, 4)))

    head_pairs = CHINESE_HEAD_PAIRS.split()
    characters = list(dict.fromkeys("".join(head_pairs)))
    while len(characters) < CHINESE_CHARACTERS:
        character = chr(rng.randrange(0x4E00, 0x9FA6))
        if character not in characters:
            characters.append(character)

    def pair() -> str:
        return rng.choice(characters) + rng.choice(characters)

    uyghur_consonants, uyghur_vowels = "بپتجچخدرزسشغفقكگڭلمنھيۋ", "اەوۇۆۈېى"

    def uyghur() -> str:
        return "".join(
            rng.choice(uyghur_consonants) + rng.choice(uyghur_vowels) for _ in range(rng.randint(2, 4))
        )

    pairs = _made_up(rng, head_pairs, CHINESE_PAIRS, pair)
    # Single characters among the pairs, from rank 10 on: common ones are common words too.
    chinese_tail = pairs[10:] + characters
    rng.shuffle(chinese_tail)
    return {
        "latin": Vocabulary.zipf(_made_up(rng, LATIN_HEAD.split(), LATIN_WORDS, latin)),
        "chinese": Vocabulary.zipf(pairs[:10] + chinese_tail),
        "uyghur": Vocabulary.zipf(_made_up(rng, UYGHUR_HEAD.split(), UYGHUR_WORDS, uyghur)),
    }


# Per report language: which vocabularies its words come from, in which shares.
MIXES = {
    "en": (("latin", 1.0),),
    "zh-Hans": (("chinese", 0.75), ("latin", 0.25)),
    "zh-Hant": (("chinese", 0.75), ("latin", 0.25)),
    "ug": (("uyghur", 0.7), ("latin", 0.3)),
}


def copy_bytea(value: bytes) -> str:
    """A bytea in COPY's text format (the backslash doubled: COPY unescapes it once)."""
    return "\\\\x" + value.hex()


@dataclass
class Seeder:
    """Generates tips, their tags and their term rows, as the intake and the indexing would."""

    rng: random.Random
    intake_public: sealing.PublicKey
    filter_key: bytes
    search_key: bytes
    vocabularies: dict[str, Vocabulary]
    stations: dict[str, list[uuid.UUID]]
    assignees: Sequence[uuid.UUID]

    def __post_init__(self) -> None:
        self._terms: dict[str, tuple[str, ...]] = {}
        self._tags: dict[tuple[str, str], bytes] = {}
        self._checked = self._planted_checked = 0
        self.term_rows = 0
        self.tag_rows = 0

    def terms(self, text_: str) -> tuple[str, ...]:
        """The COPY-ready terms of a text (a word, a city), computed once each."""
        found = self._terms.get(text_)
        if found is None:
            found = tuple(copy_bytea(search.term(self.search_key, word)) for word in search.words_of(text_))
            self._terms[text_] = found
        return found

    def tag(self, kind: str, value: str) -> bytes:
        found = self._tags.get((kind, value))
        if found is None:
            found = self._tags[(kind, value)] = tags.tag(self.filter_key, kind, value)
        return found

    def tip(self, language: str, planted: list[str]) -> tuple[tuple[object, ...], list[bytes], str]:
        """(tips row, its tags, its tip_search_terms rows in COPY text)."""
        rng = self.rng
        tip_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        country = rng.choices(list(COUNTRIES), [weight for weight, _, _ in COUNTRIES.values()])[0]
        city = rng.choice(COUNTRIES[country][1])
        station = rng.choice(self.stations[country]) if rng.random() < STATION_SHARE else None
        answers = {
            "language": language,
            "tactics": rng.sample(list(TACTICS), rng.randint(1, 3), counts=list(TACTICS.values())),
            "host_country": country,
            "host_city": city,
            "incident_month": rng.randint(1, 12),
            "incident_year": rng.choice((2023, 2024, 2025)),
            "ongoing": rng.random() < 0.5,
            "perpetrators": [],
            "station_id": str(station) if station else None,
            "contact_preference": "receipt_only",
            "contact_details": None,
            "referral_consent": None,
        }
        # sample() with counts may repeat a tactic: a report names each once.
        answers["tactics"] = list(dict.fromkeys(answers["tactics"]))
        tip_tags = list({self.tag(kind, value) for kind, value in tags.labels_of(answers)})

        terms = set(self.terms(city))
        for word in planted:
            terms.update(self.terms(word))
        words: list[str] = []
        target = rng.randint(*TERMS_PER_TIP)
        while len(terms) < target:
            # Words in the language's shares, until the report has its number of terms (a
            # Chinese pair brings its two characters too).
            need = target - len(terms)
            drawn = [
                word
                for name, share in MIXES[language]
                for word in self.vocabularies[name].draw(rng, max(1, round(need * share)))
            ]
            rng.shuffle(drawn)
            for word in drawn:
                words.append(word)
                terms.update(self.terms(word))
                if len(terms) >= target:
                    break
        for word in planted:
            words.insert(rng.randrange(len(words) + 1), word)
        narrative = " ".join(words)

        received = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randrange(3 * 365))
        activity = min(received + dt.timedelta(days=int(rng.expovariate(1 / 30))), dt.date(2025, 12, 31))
        status = rng.choices(list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values()))[0]
        assignee = None
        if status in (TipStatus.IN_REVIEW, TipStatus.NEEDS_INFO) and rng.random() < 0.3:
            assignee = rng.choice(self.assignees)
        row_id, data_key = str(tip_id), envelope.new_data_key()
        row = (
            tip_id,
            "T-" + tip_id.hex[:12].upper(),
            status.value,
            rng.random() < 0.05,
            received,
            activity,
            1,
            1,
            TIP_DATA_KEY.seal(self.intake_public, data_key, row_id=row_id, key_version=1),
            TIP_NARRATIVE.seal(data_key, narrative.encode(), row_id=row_id, key_version=1),
            TIP_ANSWERS.seal(data_key, json.dumps(answers).encode(), row_id=row_id, key_version=1),
            os.urandom(32),
            os.urandom(32),
            os.urandom(32),
            assignee,
            True,
            True,
            False,
        )
        if self._checked < CHECKED_TIPS or (planted and self._planted_checked < CHECKED_TIPS):
            # The indexing's own function over the same texts gives the same terms.
            expected = search.terms_of(self.search_key, [narrative, city])
            assert {copy_bytea(value) for value in expected} == terms, "terms differ from terms_of"
            self._checked += 1
            self._planted_checked += bool(planted)
        self.term_rows += len(terms)
        self.tag_rows += len(tip_tags)
        suffix = f"\t{tip_id}\n"
        return row, tip_tags, suffix.join(terms) + suffix


@dataclass(frozen=True)
class Seeded:
    tips: int
    generate_seconds: float
    copy_seconds: float
    index_seconds: float
    analyze_seconds: float
    term_rows: int
    tag_rows: int
    rare_tips: int
    pair_tips: int
    station: uuid.UUID


def _search_terms_keys(cursor: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """tip_search_terms' constraints and its other indexes: (name, definition) each."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'tip_search_terms'::regclass ORDER BY contype DESC"  # the primary key first
    )
    constraints = [(str(name), str(definition)) for name, definition in cursor.fetchall()]
    cursor.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = 'tip_search_terms'::regclass AND NOT EXISTS ("
        "SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
    )
    return constraints, [(str(name), str(definition)) for name, definition in cursor.fetchall()]


def populate(database: Database, count: int, seeder: Seeder, staff_lead: uuid.UUID) -> Seeded:
    rng = seeder.rng
    languages = rng.choices(list(LANGUAGES), list(LANGUAGES.values()), k=count)
    chinese = [index for index, language in enumerate(languages) if language.startswith("zh")]
    rare = set(rng.sample(range(count), min(RARE_TIPS, count // 20)))
    pair = set(rng.sample(chinese, min(len(chinese), round(count * PAIR_SHARE))))
    generating = copying = 0.0
    verified: list[uuid.UUID] = []
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        # Loaded bare, as a restore does, then indexed and checked once.
        constraints, indexes = _search_terms_keys(cursor)
        for name, _ in reversed(constraints):
            cursor.execute(f'ALTER TABLE tip_search_terms DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")
        raw.commit()
        for offset in range(0, count, COPY_ROWS):
            started = time.perf_counter()
            batch = []
            for index in range(offset, min(count, offset + COPY_ROWS)):
                planted = [
                    word for word, chosen in ((RARE_WORD, rare), (PLANTED_PAIR, pair)) if index in chosen
                ]
                batch.append(seeder.tip(languages[index], planted))
            generated = time.perf_counter()
            generating += generated - started
            with cursor.copy(f"COPY tips ({TIP_COLUMNS}) FROM STDIN") as copy:
                for row, _, _ in batch:
                    copy.write_row(row)
                    if row[2] == TipStatus.VERIFIED.value and len(verified) < count // 200:
                        verified.append(row[0])  # type: ignore[arg-type]
            with cursor.copy("COPY tip_tags (tip_id, tag) FROM STDIN") as copy:
                for row, tip_tags, _ in batch:
                    for tip_tag in tip_tags:
                        copy.write_row((row[0], tip_tag))
            with cursor.copy("COPY tip_search_terms (term, tip_id) FROM STDIN") as copy:
                for start in range(0, len(batch), 200):
                    copy.write("".join(terms for _, _, terms in batch[start : start + 200]))
            raw.commit()
            copying += time.perf_counter() - generated
            progress(f"{offset + len(batch):,} tips, {seeder.term_rows:,} terms")
        # Cases over verified tips, a tenth restricted to a lead: their tips are hidden from the
        # caseworker, as in bench/triage_queue.py.
        cases, case_tips, members = [], [], []
        for number in range(count // 1000):
            case_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            sealed = (os.urandom(64), os.urandom(64), os.urandom(64))
            opened_on = dt.date(2025, 1, 1)
            cases.append(
                (case_id, f"C-{number:08d}", "open", number % 10 == 0, opened_on, staff_lead, 1, 1, *sealed)
            )
            case_tips += [(case_id, tip_id) for tip_id in verified[number * 5 : (number + 1) * 5]]
            members.append((case_id, staff_lead))
        for table, columns, values in (
            ("cases", CASE_COLUMNS, cases),
            ("case_tips", "case_id, tip_id", case_tips),
            ("case_members", "case_id, account_id", members),
        ):
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for value in values:
                    copy.write_row(value)
        raw.commit()
        progress("indexing the search terms")
        started = time.perf_counter()
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for name, definition in constraints:
            cursor.execute(f'ALTER TABLE tip_search_terms ADD CONSTRAINT "{name}" {definition}')
        for _, definition in indexes:
            cursor.execute(definition)
        raw.commit()
        indexing = time.perf_counter() - started
    finally:
        raw.close()
    with database.transaction() as session:
        fold_queue_count_changes(session)
    progress("VACUUM ANALYZE")
    started = time.perf_counter()
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # This schema's tables only: the database is shared.
        for (table,) in connection.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).all():
            connection.exec_driver_sql(f'VACUUM ANALYZE "{table}"')
    analyzing = time.perf_counter() - started
    return Seeded(
        tips=count,
        generate_seconds=generating,
        copy_seconds=copying,
        index_seconds=indexing,
        analyze_seconds=analyzing,
        term_rows=seeder.term_rows,
        tag_rows=seeder.tag_rows,
        rare_tips=len(rare),
        pair_tips=len(pair),
        station=seeder.stations["NL"][0],
    )


def print_sizes(database: Database) -> None:
    with database.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT c.relname, c.reltuples, pg_relation_size(c.oid), pg_indexes_size(c.oid), "
            "pg_total_relation_size(c.oid) FROM pg_class c "
            "WHERE c.oid IN ('tip_search_terms'::regclass, 'tip_tags'::regclass, 'tips'::regclass) "
            "ORDER BY c.relname"
        ).all()
        indexes = connection.exec_driver_sql(
            "SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, pg_relation_size(i.indexrelid) "
            "FROM pg_index i WHERE i.indrelid IN ('tip_search_terms'::regclass, 'tip_tags'::regclass) "
            "ORDER BY 1, 2"
        ).all()
    mib = 1024 * 1024
    print(f"{'table':<20} {'rows':>12} {'table':>10} {'indexes':>10} {'total':>10}")
    for name, tuples, heap, index_bytes, total in rows:
        print(
            f"{name:<20} {int(tuples):>12,} {heap / mib:>6.0f} MiB {index_bytes / mib:>6.0f} MiB "
            f"{total / mib:>6.0f} MiB"
        )
    for table, index, size in indexes:
        print(f"  {table + ':':<18} {index.split('.')[-1]:<30} {size / mib:>6.0f} MiB")


def caseworker(account_id: uuid.UUID, intake_private: sealing.PrivateKey) -> Principal:
    return Principal(
        account_id=account_id,
        username="bench-caseworker",
        role=Role.CASEWORKER,
        session_id=uuid.uuid4(),
        keys=UnlockedKeys(personal=sealing.generate_private_key(), intake={1: intake_private}),
        reauthenticated_at=dt.datetime.now(dt.UTC),
        csrf_token="",
    )


class SqlClock:
    """Time spent in the database driver, statement by statement (the rest of a call is Python:
    building statements, decrypting the page's summaries)."""

    def __init__(self, database: Database) -> None:
        self.milliseconds = 0.0
        event.listen(database.engine, "before_cursor_execute", self._before)
        event.listen(database.engine, "after_cursor_execute", self._after)

    def _before(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        conn.info["bench_sql_started"] = time.perf_counter()

    def _after(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        self.milliseconds += (time.perf_counter() - conn.info.pop("bench_sql_started")) * 1e3


# Only a message of a tip waiting for the index would be checked with it, and none waits.
UNUSED_INTEGRITY_KEY = bytes(32)


def read_once(
    database: Database, clock: SqlClock, principal: Principal, filters: QueueFilters
) -> tuple[float, float, QueuePage]:
    """One list_queue call in a transaction of its own, rolled back: (milliseconds, of which in
    SQL, page)."""
    session = database.session_factory()
    try:
        clock.milliseconds = 0.0
        started = time.perf_counter()
        # As the route calls it: with the key-integrity key, so the call first asks for tips
        # waiting to be indexed (none here: the seed wrote every index), as every page does.
        # With the summaries the staff page shows (the API leaves them out unless asked).
        page = service.list_queue(
            session,
            principal,
            filters.model_copy(update={"summaries": True}),
            integrity_key=UNUSED_INTEGRITY_KEY,
        )
        return (time.perf_counter() - started) * 1e3, clock.milliseconds, page
    finally:
        undo(session)


def floor_once(database: Database) -> float:
    session = database.session_factory()
    try:
        started = time.perf_counter()
        session.execute(text("SELECT 1")).scalar_one()
        return (time.perf_counter() - started) * 1e3
    finally:
        undo(session)


def padded(name: str, width: int) -> str:
    """``name`` left-aligned in ``width`` terminal columns (a Chinese character takes two)."""
    wide = sum(unicodedata.east_asian_width(character) in "WF" for character in name)
    return name + " " * max(0, width - len(name) - wide)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def explain_slowest(database: Database, principal: Principal, filters: QueueFilters, top: int = 3) -> None:
    """EXPLAIN ANALYZE of the ``top`` slowest SELECTs one list_queue call runs, in its transaction."""
    statements: list[tuple[float, str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        elapsed = (time.perf_counter() - conn.info.pop("bench_started")) * 1e3
        if statement.lstrip().upper().startswith("SELECT") and "set_config" not in statement:
            statements.append((elapsed, statement, parameters))

    session = database.session_factory()
    event.listen(database.engine, "before_cursor_execute", before)
    event.listen(database.engine, "after_cursor_execute", after)
    try:
        service.list_queue(session, principal, filters)
    finally:
        event.remove(database.engine, "before_cursor_execute", before)
        event.remove(database.engine, "after_cursor_execute", after)
    try:
        total = sum(elapsed for elapsed, _, _ in statements)
        print(f"  {len(statements)} SELECTs, {total:.0f} ms in all; the slowest:")
        for elapsed, statement, parameters in sorted(statements, key=lambda found: -found[0])[:top]:
            print(f"\n  --- {elapsed:.1f} ms:\n  " + " ".join(statement.split())[:1500])
            plan = session.connection().exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            for (line,) in plan:
                print(f"    {line}")
    finally:
        undo(session)


def bench(admin_url: str, count: int, rounds: int, explain: bool, keep: bool) -> None:
    admin = create_engine(admin_url, connect_args={"connect_timeout": 3})
    schema = f"daylight_bench_desk_{secrets.token_hex(4)}"
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in admin_url else "?"
    engine = create_database_engine(f"{admin_url}{separator}options=-csearch_path%3D{schema}")
    database = Database(engine, sessionmaker(engine, expire_on_commit=False))
    rng = random.Random(2026)  # noqa: S311 - benchmark data, not secrets
    try:
        upgrade_to_head(engine)
        reader, lead = uuid.uuid4(), uuid.uuid4()
        others = [uuid.uuid4() for _ in range(OTHER_CASEWORKERS)]
        with database.transaction() as session:
            _, intake_private, _ = create_intake_key(session, key_integrity_key=os.urandom(32))
            session.add_all(
                [
                    StaffAccount(
                        id=reader,
                        username="bench-caseworker",
                        role=Role.CASEWORKER,
                        created_on=dt.date.today(),
                    ),
                    StaffAccount(id=lead, username="bench-lead", role=Role.LEAD, created_on=dt.date.today()),
                    *(
                        StaffAccount(
                            id=other,
                            username=f"bench-caseworker-{number}",
                            role=Role.CASEWORKER,
                            created_on=dt.date.today(),
                        )
                        for number, other in enumerate(others)
                    ),
                ]
            )
        stations = {
            country: [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(how_many)]
            for country, (_, _, how_many) in COUNTRIES.items()
        }
        seeder = Seeder(
            rng=rng,
            intake_public=intake_private.public_key(),
            filter_key=tags.filter_key(intake_private, 1),
            search_key=search.search_key(intake_private, 1),
            vocabularies=vocabularies(rng),
            stations=stations,
            assignees=[reader, *others],
        )
        progress(f"seeding {count:,} reports into schema {schema}")
        started = time.perf_counter()
        seeded = populate(database, count, seeder, lead)
        seeding = time.perf_counter() - started
        principal = caseworker(reader, intake_private)
        cases: list[tuple[str, QueueFilters]] = [
            ("first page (50, urgent then oldest)", QueueFilters()),
            (
                "language=ug + urgent + tactic=family_pressure",
                QueueFilters(language="ug", urgent=True, tactic="family_pressure"),
            ),
            ("country=NL + station", QueueFilters(country="NL", station=seeded.station)),
            ("sort=activity", QueueFilters(sort=QueueSort.ACTIVITY)),
            (f"q={COMMON_WORD} (commonest Latin word)", QueueFilters(q=COMMON_WORD)),
            (f"q={RARE_WORD} (planted, rare)", QueueFilters(q=RARE_WORD)),
            (f"q={PLANTED_PAIR} (planted pair)", QueueFilters(q=PLANTED_PAIR)),
            (f"q={UYGHUR_WORD} (commonest Uyghur word)", QueueFilters(q=UYGHUR_WORD)),
            (f"q={THREE_WORDS}", QueueFilters(q=THREE_WORDS)),
        ]
        clock = SqlClock(database)
        found: dict[str, int] = {}
        for name, filters in cases:  # warm-up, and how many reports each finds
            for _ in range(WARM_UP):
                _, _, page = read_once(database, clock, principal, filters)
            found[name] = page.matches if page.matches is not None else sum(page.counts.values())
        timings: dict[str, list[float]] = {name: [] for name, _ in cases}
        in_sql: dict[str, list[float]] = {name: [] for name, _ in cases}
        floor: list[float] = []
        progress(f"timing {len(cases)} calls x {rounds} rounds")
        for _ in range(rounds):  # round robin: a busy moment falls on every case alike
            floor.append(floor_once(database))
            for name, filters in cases:
                elapsed, sql, _ = read_once(database, clock, principal, filters)
                timings[name].append(elapsed)
                in_sql[name].append(sql)

        row_counts = f"{seeded.term_rows:,} term rows, {seeded.tag_rows:,} tag rows"
        print(f"\ncaseworker's desk over {count:,} reports (PostgreSQL)")
        print(
            f"  seeded in {seeding:.0f} s: {seeded.generate_seconds:.0f} s generating and sealing, "
            f"{seeded.copy_seconds:.0f} s COPY, {seeded.index_seconds:.0f} s building the search "
            f"index and its key, {seeded.analyze_seconds:.0f} s VACUUM ANALYZE; {row_counts} "
            f"({seeded.term_rows / count:.0f} terms a report); '{RARE_WORD}' in {seeded.rare_tips} "
            f"reports, '{PLANTED_PAIR}' in {seeded.pair_tips}"
        )
        print_sizes(database)
        first = statistics.median(timings[cases[0][0]])
        print(
            f"\n{'list_queue, one transaction each':<50} {'median':>10} {'p95':>10} {'x first':>8} "
            f"{'in SQL':>10} {'reports':>8}  limit {LIMIT_MS:.0f} ms"
        )
        print(
            f"  ({rounds} rounds after {WARM_UP} warm-up calls each; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; 'in SQL': the median call's time in "
            "the driver, the rest is Python, mostly decrypting the page's summaries)"
        )
        floor_ms = statistics.median(floor)
        print(f"{'transaction with SELECT 1 (floor)':<50} {floor_ms:>7.2f} ms {p95(floor):>7.2f} ms")
        failed = []
        for name, _ in cases:
            median, high = statistics.median(timings[name]), p95(timings[name])
            verdict = "ok" if high < LIMIT_MS else "FAIL"
            if verdict == "FAIL":
                failed.append(name)
            print(
                f"{padded(name, 50)} {median:>7.2f} ms {high:>7.2f} ms {median / first:>7.1f}x "
                f"{statistics.median(in_sql[name]):>7.2f} ms {found[name]:>8,}  {verdict}"
            )
        for name in failed:
            print(f"FAIL: {name}: p95 over {LIMIT_MS:.0f} ms at {count:,} reports")
        if explain:
            for name, filters in cases:
                print(f"\nEXPLAIN ANALYZE, {name}:")
                explain_slowest(database, principal, filters)
    finally:
        engine.dispose()
        if keep:
            print(f'\nschema kept: {schema} (DROP SCHEMA "{schema}" CASCADE when done)')
        else:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tips", type=int, default=100_000, help="reports to seed (default: 100000)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE each case's slowest SELECTs")
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards, to look at by hand")
    args = parser.parse_args()
    try:
        with create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3}).connect():
            pass
    except Exception as exc:  # no PostgreSQL: say so, do not fail the other benchmarks
        print(f"desk benchmark skipped: {POSTGRES_URL} is unreachable ({type(exc).__name__})")
        return 0
    bench(POSTGRES_URL, args.tips, args.rounds, args.explain, args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
