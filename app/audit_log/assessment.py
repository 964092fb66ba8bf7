"""The whole verdict on the audit log: intact events, the signed coverage, and who witnessed it.

An intact chain of events is not enough. Events that no signed checkpoint covers can be edited
or deleted by whoever holds the database file, undetectably; so a log with events and no
checkpoint never passes, and neither does one whose unsigned tail is older than the signer's
allowed delay (a stopped or blocked signer is itself something an auditor must hear about).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.audit_log.checkpoint import VerifierKey
from app.audit_log.cosignature import WitnessKey
from app.audit_log.service import latest_checkpoint
from app.audit_log.signer import Coverage, SigningRefused, check_extends_memory, coverage
from app.audit_log.verification import VerifyReport, verify_database
from app.audit_log.witness import WitnessState
from app.audit_log.witnesses import Witnessing, witnessing


@dataclass
class LogAssessment:
    report: VerifyReport
    coverage: Coverage
    witnessing: Witnessing
    max_unsigned: dt.timedelta
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.problems

    @property
    def all_problems(self) -> list[str]:
        return [*self.report.problems, *self.problems]

    def summary(self) -> str:
        """One line for people: what is covered, what is not, and what is witnessed."""
        parts = [
            f"{self.report.size} events, root {self.report.root.hex()}, "
            f"{self.report.checkpoints_checked} signed checkpoints verified"
        ]
        if self.coverage.unsigned:
            since = self.coverage.oldest_unsigned_at
            parts.append(
                f"{self.coverage.unsigned} events not yet covered by a checkpoint"
                + (f" (since {since:%Y-%m-%dT%H:%M:%SZ})" if since else "")
            )
        else:
            parts.append("every event covered by a signed checkpoint")
        if self.witnessing.last_cosigned or self.witnessing.witnessed_size:
            parts.append(
                f"witnessed up to size {self.witnessing.witnessed_size} "
                f"({self.witnessing.required} cosignature(s) required)"
            )
        else:
            parts.append("no checkpoint witnessed yet")
        return "; ".join(parts)


def assess_log(
    session: Session,
    log_key: VerifierKey,
    *,
    max_unsigned: dt.timedelta,
    witness_keys: Sequence[WitnessKey] = (),
    witnesses_required: int = 1,
    signer_memory: WitnessState | None = None,
    now: dt.datetime | None = None,
) -> LogAssessment:
    report = verify_database(session.connection(), log_key.public_key, log_key.name)
    covered = coverage(session)
    assessment = LogAssessment(
        report=report,
        coverage=covered,
        witnessing=witnessing(session, log_key, witness_keys, witnesses_required),
        max_unsigned=max_unsigned,
    )
    if signer_memory is not None:
        # What the signer on this host remembers signing, kept outside the database: a log
        # rolled back or rewritten under it fails here too, not only at the next signature.
        try:
            check_extends_memory(session, latest_checkpoint(session), signer_memory, log_key)
        except SigningRefused as refusal:
            assessment.problems.append(f"the signer's memory disagrees with the database: {refusal}")
    if covered.events and not covered.signed_size:
        assessment.problems.append(
            f"no signed checkpoint covers any of the {covered.events} events: "
            "nothing proves they were not edited"
        )
    elif covered.oldest_unsigned_at is not None:
        age = (now or dt.datetime.now(dt.UTC)) - covered.oldest_unsigned_at
        if age > max_unsigned:
            assessment.problems.append(
                f"{covered.unsigned} events are not covered by a signed checkpoint; the oldest, "
                f"event {covered.signed_size + 1}, since {covered.oldest_unsigned_at:%Y-%m-%dT%H:%M:%SZ} "
                f"({int(age.total_seconds())} s, allowed {int(max_unsigned.total_seconds())} s): "
                "is the checkpoint signer running?"
            )
    return assessment
