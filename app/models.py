"""Every feature's models, imported once so the metadata is complete (Alembic, tests)."""

from app.audit_log.models import AuditCheckpoint, AuditEvent, AuditNode
from app.auth.models import AccountLink, StaffAccount, StaffSession
from app.cases.models import Case, CaseEvent, CaseMember, CaseNote, CaseTactic, CaseTip
from app.custody.models import IntakeKey, IntakeKeyGrant
from app.intake.models import Tip, TipAttachment, TipMessage
from app.kit.blobs import BlobChunk
from app.labels.models import CaseLabel, Label, TipLabel
from app.notify.models import (
    ClockReminder,
    NotificationDelivery,
    NotificationPreference,
    NotificationSettings,
)
from app.outbox.models import NotificationEvent
from app.referrals.models import Referral, ReferralRecipient
from app.stations.models import CaseStationLink, Station, StationSource, StationStatusChange
from app.triage.models import SavedView, TipEvent, TipNote, TipSearchTerm, TipTag

__all__ = [
    "AccountLink",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditNode",
    "BlobChunk",
    "Case",
    "CaseEvent",
    "CaseLabel",
    "CaseMember",
    "CaseNote",
    "CaseStationLink",
    "CaseTactic",
    "CaseTip",
    "ClockReminder",
    "IntakeKey",
    "IntakeKeyGrant",
    "Label",
    "NotificationDelivery",
    "NotificationEvent",
    "NotificationPreference",
    "NotificationSettings",
    "Referral",
    "ReferralRecipient",
    "SavedView",
    "StaffAccount",
    "StaffSession",
    "Station",
    "StationSource",
    "StationStatusChange",
    "Tip",
    "TipAttachment",
    "TipEvent",
    "TipLabel",
    "TipMessage",
    "TipNote",
    "TipSearchTerm",
    "TipTag",
]
