"""Generated demo reports, for `daylight demo --reports N`: a staff desk with realistic volume.

Every report is made of a few first-person sentences written in the report's own language (English,
Simplified and Traditional Chinese, Uyghur in Arabic script), each sentence standing for one tactic,
so a report's tactics match what it says. Every narrative starts with "(Demo) ": nobody may take one
for a real report. The same count and seed give the same reports (on the same day: incident dates
reach back from today, never into the future).

Whatever the count, from 100 on at least 10 reports are in Uyghur, urgent and about pressure on
family, and at least 20 Simplified Chinese narratives use the word 劝返 (persuasion to return):
the browser tests search for both.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from app.intake.schemas import TipSubmission
from app.kit.clock import today
from app.kit.taxonomy import ContactPreference, Language, Perpetrator, ReferralConsent, Tactic

DEMO_PREFIX = "(Demo) "
DEFAULT_SEED = 2026

# The guarantees of the module docstring, for any count from GUARANTEED_FROM on.
GUARANTEED_FROM = 100
UYGHUR_URGENT_FAMILY_PRESSURE = 10
PERSUADE_TO_RETURN_WORD = "劝返"
PERSUADE_TO_RETURN_NARRATIVES = 20


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence of a narrative, the tactic it describes and who it names, in four languages."""

    tactic: Tactic
    perpetrator: Perpetrator
    text: Mapping[Language, str]


E, S, T, U = (
    Language.ENGLISH,
    Language.SIMPLIFIED_CHINESE,
    Language.TRADITIONAL_CHINESE,
    Language.UYGHUR,
)

SENTENCES: tuple[Sentence, ...] = (
    Sentence(
        Tactic.FAMILY_PRESSURE,
        Perpetrator.POLICE,
        {
            E: "Police in my hometown phoned my parents and told them to make me stop posting online.",
            S: "老家的派出所给我父母打电话，让他们叫我别再在网上发帖。",
            T: "老家的派出所給我父母打電話，讓他們叫我別再在網上發文。",
            U: "يۇرتۇمدىكى ساقچىلار ئاتا-ئانامغا تېلېفون قىلىپ، مېنى تورغا يازما يوللىماسلىققا "
            "ئۈندەشنى تەلەپ قىلدى.",
        },
    ),
    Sentence(
        Tactic.FAMILY_PRESSURE,
        Perpetrator.POLICE,
        {
            E: "My brother was detained for two weeks and only released after my mother promised "
            "that I would call the police.",
            S: "我哥哥被拘留了两个星期，直到我妈妈答应让我给警察打电话才被放出来。",
            T: "我哥哥被拘留了兩個星期，直到我媽媽答應讓我給警察打電話才被放出來。",
            U: "ئاكام ئىككى ھەپتە تۇتۇپ تۇرۇلدى، ئاپام مېنىڭ ساقچىغا تېلېفون قىلىدىغانلىقىمغا ۋەدە "
            "بەرگەندىن كېيىنلا قويۇپ بېرىلدى.",
        },
    ),
    Sentence(
        Tactic.FAMILY_PRESSURE,
        Perpetrator.UNKNOWN,
        {
            E: "Since I spoke to a journalist I cannot reach my relatives at home, and a neighbour "
            "said they were taken away.",
            S: "自从我接受记者采访后，就联系不上国内的亲人，邻居说他们被带走了。",
            T: "自從我接受記者採訪後，就聯繫不上國內的親人，鄰居說他們被帶走了。",
            U: "مۇخبىرنىڭ زىيارىتىنى قوبۇل قىلغاندىن كېيىن يۇرتتىكى تۇغقانلىرىم بىلەن ئالاقىلىشالمىدىم، "
            "قوشنىمىز ئۇلارنىڭ ئېلىپ كېتىلگەنلىكىنى ئېيتتى.",
        },
    ),
    Sentence(
        Tactic.PERSUADE_TO_RETURN,
        Perpetrator.SERVICE_STATION,
        {
            E: "A caller urged me to go back to China 'to clear up a misunderstanding' and promised "
            "that nothing would happen to me.",
            S: "有人打电话对我进行劝返，说只要回国把“误会”说清楚就不会有事。",
            T: "有人打電話對我進行勸返，說只要回國把「誤會」說清楚就不會有事。",
            U: "بىرى تېلېفون قىلىپ، مېنى ۋەتەنگە قايتىشقا دەۋەت قىلدى، قايتىپ كېلىپ «ئۇقۇشماسلىق»نى "
            "ئېنىقلىۋالسام ھېچ ئىش بولمايدىغانلىقىنى ئېيتتى.",
        },
    ),
    Sentence(
        Tactic.PERSUADE_TO_RETURN,
        Perpetrator.POLICE,
        {
            E: "My father called in tears: the police visit him every day, and he begged me to come "
            "home soon.",
            S: "我父亲哭着给我打电话，说警察天天上门，要他配合劝返，求我尽快回国。",
            T: "我父親哭著給我打電話，說警察天天上門，要他配合勸返，求我盡快回國。",
            U: "دادام يىغلاپ تېلېفون قىلدى، ساقچىلار ھەر كۈنى ئۆيگە كېلىدىكەن، مېنى تېزرەك قايتىپ "
            "كېلىشكە يالۋۇردى.",
        },
    ),
    Sentence(
        Tactic.STATION_CONTACT,
        Perpetrator.ASSOCIATION,
        {
            E: "Two 'volunteers' from a hometown association came to my flat and asked where I work.",
            S: "两个自称同乡会“志愿者”的人来到我的住处，问我在哪里工作。",
            T: "兩個自稱同鄉會「志工」的人來到我的住處，問我在哪裡工作。",
            U: "ئۆزىنى بىر جەمئىيەتنىڭ «پىدائىيسى» دەپ تونۇشتۇرغان ئىككى كىشى ئۆيۈمگە كېلىپ، قەيەردە "
            "ئىشلەيدىغانلىقىمنى سورىدى.",
        },
    ),
    Sentence(
        Tactic.STATION_CONTACT,
        Perpetrator.SERVICE_STATION,
        {
            E: "The 'service station' asked me to come in to renew my driving licence, then asked "
            "about my friends.",
            S: "“服务站”让我去办驾照换证，结果一直在问我朋友的情况。",
            T: "「服務站」叫我去辦駕照換證，結果一直在問我朋友的情況。",
            U: "«مۇلازىمەت پونكىتى» مېنى شوپۇرلۇق كىنىشكامنى يېڭىلاشقا چاقىرىپ، كېيىن دوستلىرىم "
            "توغرىسىدا سوئال سورىدى.",
        },
    ),
    Sentence(
        Tactic.SURVEILLANCE,
        Perpetrator.UNKNOWN,
        {
            E: "A man photographed me at the protest outside the embassy, and later the photo was sent "
            "to my family.",
            S: "我在大使馆外参加抗议时被一名男子拍照，后来照片被发给了我的家人。",
            T: "我在大使館外參加抗議時被一名男子拍照，後來照片被發給了我的家人。",
            U: "ئەلچىخانا ئالدىدىكى نامايىشتا بىر ئەر مېنى رەسىمگە تارتىۋالدى، كېيىن بۇ رەسىم "
            "ئائىلەمگە ئەۋەتىلىپتۇ.",
        },
    ),
    Sentence(
        Tactic.SURVEILLANCE,
        Perpetrator.UNKNOWN,
        {
            E: "The same car was parked outside my building three evenings in a row.",
            S: "同一辆车连续三个晚上停在我住的楼下。",
            T: "同一輛車連續三個晚上停在我住的樓下。",
            U: "ئوخشاش بىر ماشىنا ئۈچ كەچ ئارقا-ئارقىدىن تۇرالغۇ بىنايىمىزنىڭ ئالدىدا توختاپ تۇردى.",
        },
    ),
    Sentence(
        Tactic.DIGITAL_THREATS,
        Perpetrator.PERSON_ONLINE,
        {
            E: "A stranger on WeChat sent me my home address and wrote that I had better be careful.",
            S: "一个陌生人在微信上发来我的家庭住址，说我最好小心一点。",
            T: "一個陌生人在微信上傳來我的家庭住址，說我最好小心一點。",
            U: "ۋىچاتتا بىر ناتونۇش ئادەم ئۆيۈمنىڭ ئادرېسىنى ئەۋەتىپ، ئېھتىيات قىلغىنىڭ ياخشى دەپ يازدى.",
        },
    ),
    Sentence(
        Tactic.DIGITAL_THREATS,
        Perpetrator.PERSON_ONLINE,
        {
            E: "After I shared an article my WeChat account was blocked, and a new account keeps "
            "sending me threats.",
            S: "我转发了一篇文章后微信账号被封，之后一个新账号不停地给我发威胁信息。",
            T: "我轉發了一篇文章後微信帳號被封，之後一個新帳號不停地傳威脅訊息給我。",
            U: "بىر ماقالىنى ھەمبەھىرلىگەندىن كېيىن ۋىچات ھېساباتىم تاقالدى، ئاندىن يېڭى بىر "
            "ھېساباتتىن توختىماي تەھدىت ئۇچۇرلىرى كېلىۋاتىدۇ.",
        },
    ),
    Sentence(
        Tactic.DOCUMENT_DENIAL,
        Perpetrator.EMBASSY_OR_CONSULATE,
        {
            E: "The consulate refused to renew my passport and said I must apply in person in China.",
            S: "领事馆拒绝给我续办护照，说必须本人回国办理。",
            T: "領事館拒絕為我換發護照，說必須本人回國辦理。",
            U: "كونسۇلخانا پاسپورتۇمنى يېڭىلاپ بېرىشنى رەت قىلدى، چوقۇم ئۆزۈم جۇڭگوغا قايتىپ "
            "بىجىرىشىم كېرەكلىكىنى ئېيتتى.",
        },
    ),
    Sentence(
        Tactic.LEGAL_COERCION,
        Perpetrator.POLICE,
        {
            E: "They said a case has been opened against me at home and that a warrant will be issued "
            "if I do not cooperate.",
            S: "对方说国内已经对我立案，如果我不配合就会发出逮捕令。",
            T: "對方說國內已經對我立案，如果我不配合就會發出逮捕令。",
            U: "ئۇلار يۇرتتا ماڭا قارىتا دېلو تۇرغۇزۇلغانلىقىنى، ھەمكارلاشمىسام قولغا ئېلىش بۇيرۇقى "
            "چىقىرىلىدىغانلىقىنى ئېيتتى.",
        },
    ),
    Sentence(
        Tactic.PHYSICAL,
        Perpetrator.UNKNOWN,
        {
            E: "Someone followed me home, pushed me against the door and said next time would be worse.",
            S: "有人一路跟着我回家，把我推到门上，说下次就没这么客气了。",
            T: "有人一路跟著我回家，把我推到門上，說下次就沒這麼客氣了。",
            U: "بىرى مېنى ئۆيگىچە ئەگىشىپ كېلىپ، ئىشىككە ئىتتىرىۋەتتى ۋە كېلەر قېتىم بۇنىڭدىنمۇ "
            "يامان بولىدۇ دېدى.",
        },
    ),
    Sentence(
        Tactic.OTHER,
        Perpetrator.ASSOCIATION,
        {
            E: "They want me to report every month on what other students in my university's "
            "association say and do.",
            S: "他们要我每个月汇报学校学生学者联合会里其他同学的言行。",
            T: "他們要我每個月匯報學校學生學者聯合會裡其他同學的言行。",
            U: "ئۇلار مەندىن ھەر ئايدا ئۇنىۋېرسىتېتتىكى باشقا ئوقۇغۇچىلارنىڭ ئەھۋالىنى مەلۇم قىلىپ "
            "تۇرۇشنى تەلەپ قىلدى.",
        },
    ),
)

# How often each tactic is picked: the common forms of pressure far more than the rare ones.
TACTIC_WEIGHTS: Mapping[Tactic, int] = {
    Tactic.FAMILY_PRESSURE: 30,
    Tactic.PERSUADE_TO_RETURN: 25,
    Tactic.STATION_CONTACT: 12,
    Tactic.SURVEILLANCE: 10,
    Tactic.DIGITAL_THREATS: 14,
    Tactic.DOCUMENT_DENIAL: 10,
    Tactic.LEGAL_COERCION: 4,
    Tactic.PHYSICAL: 3,
    Tactic.OTHER: 3,
}
LANGUAGE_WEIGHTS: Mapping[Language, int] = {E: 25, S: 35, T: 15, U: 25}
# Between sentences: a space, but none in Chinese.
SEPARATOR: Mapping[Language, str] = {E: " ", S: "", T: "", U: " "}

# (country, city): real cities with diaspora communities, each language's more likely ones.
CITIES: Mapping[Language, tuple[tuple[str, str], ...]] = {
    E: (
        ("IE", "Dublin"),
        ("NL", "Amsterdam"),
        ("CA", "Toronto"),
        ("US", "New York"),
        ("GB", "London"),
        ("FR", "Paris"),
        ("SE", "Stockholm"),
        ("AU", "Sydney"),
        ("CZ", "Prague"),
    ),
    S: (
        ("IE", "Dublin"),
        ("NL", "Amsterdam"),
        ("NL", "Rotterdam"),
        ("CA", "Toronto"),
        ("US", "New York"),
        ("GB", "London"),
        ("FR", "Paris"),
        ("IT", "Milan"),
        ("ES", "Madrid"),
        ("CZ", "Prague"),
        ("JP", "Tokyo"),
    ),
    T: (
        ("CA", "Vancouver"),
        ("CA", "Toronto"),
        ("GB", "London"),
        ("GB", "Glasgow"),
        ("US", "New York"),
        ("AU", "Sydney"),
    ),
    U: (
        ("TR", "Istanbul"),
        ("KZ", "Almaty"),
        ("DE", "Munich"),
        ("NL", "Amsterdam"),
        ("SE", "Stockholm"),
        ("CA", "Toronto"),
        ("US", "New York"),
    ),
}
URGENT_SHARE = 0.09  # with the guaranteed urgent ones, about one report in ten

K = TypeVar("K")


def generated_reports(
    count: int,
    *,
    seed: int = DEFAULT_SEED,
    stations: Mapping[tuple[str, str], uuid.UUID] | None = None,
    on: dt.date | None = None,
) -> list[TipSubmission]:
    """``count`` demo reports, the same ones for the same arguments.

    ``stations`` maps (country, city) to a station of the registry: a report in that city about a
    station or its people names it. ``on`` is the day incident dates reach back from (today).
    """
    if count < 0:
        raise ValueError("count must not be negative")
    rng = random.Random(seed)  # noqa: S311 - demo data, reproducible on purpose
    day = on or today()
    uyghur_quota, return_quota = _quotas(count)
    chosen = rng.sample(range(count), uyghur_quota + return_quota)
    uyghur_family = set(chosen[:uyghur_quota])
    persuaded = set(chosen[uyghur_quota:])
    reports = []
    for index in range(count):
        if index in uyghur_family:
            language, must, urgent = U, Tactic.FAMILY_PRESSURE, True
        elif index in persuaded:
            language, must, urgent = S, Tactic.PERSUADE_TO_RETURN, rng.random() < URGENT_SHARE
        else:
            language, must, urgent = _weighted(rng, LANGUAGE_WEIGHTS), None, rng.random() < URGENT_SHARE
        reports.append(
            _report(rng, index, language, must=must, urgent=urgent, stations=stations or {}, day=day)
        )
    return reports


def _quotas(count: int) -> tuple[int, int]:
    """How many reports are made Uyghur-urgent-family-pressure, and Chinese about 劝返: the
    guaranteed floors from GUARANTEED_FROM on, and the same shares of a larger or smaller count."""
    uyghur = count // 50
    returns = count // 25
    if count >= GUARANTEED_FROM:
        uyghur = max(uyghur, UYGHUR_URGENT_FAMILY_PRESSURE)
        returns = max(returns, PERSUADE_TO_RETURN_NARRATIVES)
    return uyghur, returns


def _weighted(rng: random.Random, weights: Mapping[K, int]) -> K:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _tactics(rng: random.Random, must: Tactic | None) -> list[Tactic]:
    wanted = rng.choices((1, 2, 3), weights=(40, 40, 20))[0]
    tactics = [must] if must is not None else []
    while len(tactics) < wanted:
        tactic = _weighted(rng, TACTIC_WEIGHTS)
        if tactic not in tactics:
            tactics.append(tactic)
    return tactics


def _report(
    rng: random.Random,
    index: int,
    language: Language,
    *,
    must: Tactic | None,
    urgent: bool,
    stations: Mapping[tuple[str, str], uuid.UUID],
    day: dt.date,
) -> TipSubmission:
    tactics = _tactics(rng, must)
    # One sentence a tactic; a report about one thing alone sometimes tells two of its kind.
    each = 2 if len(tactics) == 1 and rng.random() < 0.5 else 1
    sentences = []
    for tactic in tactics:
        told = [sentence for sentence in SENTENCES if sentence.tactic is tactic]
        sentences += rng.sample(told, min(each, len(told)))
    narrative = DEMO_PREFIX + SEPARATOR[language].join(s.text[language] for s in sentences)
    country, place = rng.choice(CITIES[language])
    city = None if rng.random() < 0.1 else place
    named = list(dict.fromkeys(s.perpetrator for s in sentences))
    perpetrators = [] if rng.random() < 0.15 else sorted(named, key=list(Perpetrator).index)
    station_id = None
    if Perpetrator.SERVICE_STATION in named or Tactic.STATION_CONTACT in tactics:
        station_id = stations.get((country, city)) if city else None
    month, year = _incident(rng, day)
    reachable = rng.random() < 0.15
    return TipSubmission(
        narrative=narrative,
        language=language,
        tactics=tactics,
        host_country=country,
        host_city=city,
        incident_month=month,
        incident_year=year,
        ongoing=rng.random() < 0.3,
        perpetrators=perpetrators,
        station_id=station_id,
        urgent=urgent,
        contact_preference=ContactPreference.OTHER_CHANNEL if reachable else ContactPreference.RECEIPT_ONLY,
        # Not a real handle: nobody must be reached through a demo.
        contact_details=f"(Demo) Signal: demo-reporter-{index:04d}" if reachable else None,
        referral_consent=rng.choice((*ReferralConsent, None)),
    )


def _incident(rng: random.Random, day: dt.date) -> tuple[int | None, int | None]:
    """Month and year, 4 to 36 months before ``day`` (before the report arrived); a quarter of
    reports give no date, a tenth the year only."""
    roll = rng.random()
    if roll < 0.25:
        return None, None
    months = day.year * 12 + day.month - 1 - rng.randint(4, 36)
    year, month = divmod(months, 12)
    return (None if roll < 0.35 else month + 1), year
