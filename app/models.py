"""Every feature's models, imported once so the metadata is complete (Alembic, tests)."""

from app.auth.models import StaffAccount, StaffSession
from app.intake.models import Tip, TipAttachment, TipMessage
from app.keys.models import IntakeKey, IntakeKeyGrant

__all__ = ["IntakeKey", "IntakeKeyGrant", "StaffAccount", "StaffSession", "Tip",
           "TipAttachment", "TipMessage"]
