"""Keyed blind index of a tip's answers, so the queue filters by tactic and country in SQL.

DESIGN 4 allows no submitter-derived plaintext but the urgency flag. A tag is
HMAC-SHA256 under a key derived from the intake private key of the tip's key
version: equal answers give equal tags (that is what a filter needs), but only
someone holding the intake key can compute the tag of "tactic:surveillance" to
look for it. A database or a seized dormant server shows which tips share an
answer, never which answer. Tags are written when a key holder opens a tip, and for
every other tip by the key holder's next queue or search (app.triage.indexing), so
filters cover every report. A key rotation writes a tip's tags again under the new
key (`reindex_after_reseal`) and leaves its search terms to be written again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.auth.principal import Principal
from app.crypto import sealing
from app.crypto.binding import bind
from app.crypto.sealed_keys import register_after_reseal
from app.intake.models import TIP_ANSWERS, TIP_SEALED_KEYS, Tip
from app.triage.models import TipSearchTerm, TipTag


def filter_key(intake_private: sealing.PrivateKey, version: int) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=bind("daylight/tip-filter-index/v1", version)
    ).derive(intake_private.raw)


def tag(key: bytes, kind: str, value: str) -> bytes:
    return hmac.new(key, bind(kind, value), hashlib.sha256).digest()


def normalized_city(city: str) -> str:
    return " ".join(city.casefold().split())


def labels_of(answers: Mapping[str, object]) -> list[tuple[str, str]]:
    """What a tip can be filtered or matched by: language, tactics, country, city, perpetrators,
    station."""
    labels: list[tuple[str, str]] = []
    if answers.get("language"):
        labels.append(("language", str(answers["language"])))
    for tactic in answers.get("tactics") or []:  # type: ignore[attr-defined]
        labels.append(("tactic", str(tactic)))
    for perpetrator in answers.get("perpetrators") or []:  # type: ignore[attr-defined]
        labels.append(("perpetrator", str(perpetrator)))
    if answers.get("host_country"):
        labels.append(("country", str(answers["host_country"])))
    if answers.get("host_city"):
        labels.append(("city", normalized_city(str(answers["host_city"]))))
    if answers.get("station_id"):
        labels.append(("station", str(answers["station_id"])))
    return labels


def index_tip(
    session: Session, tip: Tip, answers: Mapping[str, object], intake_private: sealing.PrivateKey
) -> None:
    """Write the tip's tags once, under its key version's filter key; tags from an older
    indexing (before a new kind of tag existed) are replaced."""
    if tip.indexed:
        return
    session.execute(delete(TipTag).where(TipTag.tip_id == tip.id))
    key = filter_key(intake_private, tip.intake_key_version)
    for value in {tag(key, kind, label) for kind, label in labels_of(answers)}:
        session.add(TipTag(tip_id=tip.id, tag=value))
    tip.indexed = True


def tags_for(principal: Principal, kind: str, values: Iterable[str]) -> list[bytes]:
    """The tags of these values under every intake key version the caller has unlocked."""
    found: list[bytes] = []
    for version, private in principal.keys.intake.items():
        key = filter_key(private, version)
        found.extend(tag(key, kind, value) for value in values)
    return found


def reindex_after_reseal(
    session: Session, tip: Tip, data_key: bytes, new_intake_private: sealing.PrivateKey
) -> None:
    """A tip's tags under the new key's filter key, once rotation re-sealed its data key: the old
    key's tags would match nothing once that key is gone, and are scrubbed with its wraps. A tip
    the backfill has not reached (it may carry tags from before the desk's migration) loses them,
    and the next key holder's queue tags it under the new key."""
    if not tip.indexed:
        session.execute(delete(TipTag).where(TipTag.tip_id == tip.id))
        session.execute(delete(TipSearchTerm).where(TipSearchTerm.tip_id == tip.id))
        tip.search_indexed = False
        return
    answers = json.loads(
        TIP_ANSWERS.open(
            data_key, tip.answers_encrypted, row_id=str(tip.id), key_version=tip.content_key_version
        )
    )
    tip.indexed = False
    index_tip(session, tip, answers, new_intake_private)
    # Search terms under the old key would match nothing either: the next key holder's queue
    # writes them under the new one (app.triage.indexing).
    session.execute(delete(TipSearchTerm).where(TipSearchTerm.tip_id == tip.id))
    tip.search_indexed = False


# The replaced tags and terms are HMACs under keys derived from the old intake key: compacted
# with the old wraps.
register_after_reseal(TIP_SEALED_KEYS, reindex_after_reseal, scrubbed_tables=("tip_tags", "tip_search_terms"))
