"""The one clock: every time Daylight stores is UTC, and every date is a UTC calendar day.

Dates rather than times are stored where a time would say more than the workflow needs
(when a report arrived, when a case last moved): a second-precise time could be matched
against a network log to find a submitter.
"""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def today() -> dt.date:
    return utc_now().date()


def as_utc(moment: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes; every time Daylight stores is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
