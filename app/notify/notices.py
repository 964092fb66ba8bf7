"""What a notice says: the kind of event, a count and a link to the staff app. Nothing else.

Mail and chat providers are outside the trust boundary (SECURITY.md, "Notifications"), so no
notice names a report, a country, a tactic, a language, a station, a city or a word of text, and
no link carries a report's or a case's id. The text is fixed English (the staff UI's language);
`tests/notify` asserts it word for word and searches every delivered byte for a report's canaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.notify.models import DeliveryMode
from app.outbox.models import NoticeKind


@dataclass(frozen=True, slots=True)
class KindWords:
    one: str
    many: str
    path: str


KIND_WORDS: dict[NoticeKind, KindWords] = {
    NoticeKind.URGENT_REPORT: KindWords("1 urgent report arrived.", "{n} urgent reports arrived.", "/tips"),
    NoticeKind.NEW_REPORT: KindWords("1 new report arrived.", "{n} new reports arrived.", "/tips"),
    NoticeKind.SUBMITTER_ANSWERED: KindWords(
        "1 message from a submitter arrived.", "{n} messages from submitters arrived.", "/tips"
    ),
    NoticeKind.ASSIGNED: KindWords(
        "1 report was assigned to you.", "{n} reports were assigned to you.", "/tips?mine=true"
    ),
    NoticeKind.VERIFICATION_WAITING: KindWords(
        "1 proposal waits for a second person.", "{n} proposals wait for a second person.", "/tips"
    ),
    NoticeKind.CASE_CHANGED: KindWords(
        "1 change to a case you are a member of.", "{n} changes to cases you are a member of.", "/cases"
    ),
    NoticeKind.OVERDUE: KindWords(
        "1 report passed its response deadline.", "{n} reports passed their response deadline.", "/tips"
    ),
    NoticeKind.RETENTION: KindWords(
        "1 report will soon be deleted by the retention policy.",
        "{n} reports will soon be deleted by the retention policy.",
        "/tips?sort=oldest",
    ),
}

FOOTER = "This notice carries no report content. Sign in to Daylight to read it."
PREFERENCES_PATH = "/account/notifications"


@dataclass(frozen=True, slots=True)
class Notice:
    subject: str
    body: str
    counts: dict[str, int]
    mode: str


def render_notice(counts: Mapping[str, int], mode: str, *, staff_origin: str | None) -> Notice:
    """The notice for ``counts`` (kind -> count), kinds in a fixed order; unknown kinds are skipped."""
    origin = (staff_origin or "").rstrip("/")
    shown = {kind: counts[kind.value] for kind in KIND_WORDS if counts.get(kind.value, 0) > 0}
    paragraphs = []
    for kind, count in shown.items():
        words = KIND_WORDS[kind]
        line = words.one if count == 1 else words.many.format(n=count)
        paragraphs.append(f"{line}\n{origin}{words.path}")
    paragraphs.append(f"{FOOTER}\nTo change or stop these notices: {origin}{PREFERENCES_PATH}")
    if NoticeKind.URGENT_REPORT in shown:
        subject = "Daylight: urgent report"
    elif mode == DeliveryMode.DIGEST.value:
        subject = "Daylight digest"
    else:
        subject = "Daylight notice"
    return Notice(
        subject=subject,
        body="\n\n".join(paragraphs) + "\n",
        counts={kind.value: count for kind, count in shown.items()},
        mode=mode,
    )
