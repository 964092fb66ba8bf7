"""The queue's age badges: a report left open, or a submitter's answer left unread, past the
thresholds the settings give, is marked in the row — as words a member reads, never codes."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy.orm import Session

from app.auth.models import Role
from app.intake.models import MessageAuthor, Tip
from app.intake.service import add_message
from app.kit.clock import today
from app.kit.server_secrets import ServerSecrets
from tests.conftest import Client, Organisation
from tests.intake.factories import make_tip


def row_of(page: str, ref: str) -> str:
    match = re.search(rf'<tr[^>]*data-row="{ref}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {ref}"
    return match.group(1)


def test_reports_left_open_or_unanswered_are_marked_by_age(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    # Defaults: ageing from 3 days, overdue from 7; an unread answer ageing from 1, overdue from 3.
    fresh_id, _ = make_tip(db_session, server_secrets)
    ageing_id, _ = make_tip(db_session, server_secrets)
    overdue_id, _ = make_tip(db_session, server_secrets)
    answered_id, _ = make_tip(db_session, server_secrets)
    for tip_id, days in ((ageing_id, 4), (overdue_id, 10), (answered_id, 30)):
        tip = db_session.get_one(Tip, tip_id)
        tip.received_on = tip.last_activity_on = today() - dt.timedelta(days=days)
    answered = db_session.get_one(Tip, answered_id)
    message = add_message(
        db_session, answered, "Here is more.", author=MessageAuthor.SUBMITTER, server_secrets=server_secrets
    )
    message.sent_on = today() - dt.timedelta(days=5)
    answered.submitter_activity = True
    db_session.commit()
    refs = {
        tip_id: db_session.get_one(Tip, tip_id).ref
        for tip_id in (fresh_id, ageing_id, overdue_id, answered_id)
    }

    page = signed_in(organisation[Role.CASEWORKER]).get("/tips")
    assert page.status_code == 200
    assert "age-" not in row_of(page.text, refs[fresh_id])
    assert 'class="age age-ageing"' in row_of(page.text, refs[ageing_id])
    assert "4 d" in row_of(page.text, refs[ageing_id])
    overdue = row_of(page.text, refs[overdue_id])
    assert 'class="age age-overdue"' in overdue
    assert "10 d · overdue" in overdue
    unread = row_of(page.text, refs[answered_id])
    assert "new answer" in unread
    # Received 30 days ago and an answer unread for 5: both overdue, each with its own count.
    assert "30 d · overdue" in unread
    assert "5 d · overdue" in unread
