"""Roles and what they may do, in one table (DESIGN 2).

Admins manage accounts but cannot read tip content; auditors never see tip
content. Anything not listed here is denied.
"""

from __future__ import annotations

from enum import StrEnum

from app.auth.models import Role


class Permission(StrEnum):
    VIEW_QUEUE = "view_queue"
    READ_TIP_CONTENT = "read_tip_content"
    MANAGE_ACCOUNTS = "manage_accounts"
    MANAGE_KEY_GRANTS = "manage_key_grants"
    READ_AUDIT_LOG = "read_audit_log"
    # Claim, question, propose verification, reject, note: on tips assigned to oneself.
    TRIAGE_TIPS = "triage_tips"
    # Assign any tip to anyone, act on any tip, confirm another's verification (and, under the
    # default review policy, only this: app.auth.review_policy).
    LEAD_TRIAGE = "lead_triage"
    # Create cases from verified tips, and work on the cases one may see.
    WORK_CASES = "work_cases"
    # Import and export the station registry. (Confirming a case's link to a station follows the
    # review policy: app.auth.review_policy.)
    MANAGE_STATIONS = "manage_stations"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.CASEWORKER: frozenset(
        {Permission.VIEW_QUEUE, Permission.READ_TIP_CONTENT, Permission.TRIAGE_TIPS, Permission.WORK_CASES}
    ),
    Role.LEAD: frozenset(
        {
            Permission.VIEW_QUEUE,
            Permission.READ_TIP_CONTENT,
            Permission.TRIAGE_TIPS,
            Permission.LEAD_TRIAGE,
            Permission.WORK_CASES,
            Permission.MANAGE_KEY_GRANTS,
            Permission.MANAGE_STATIONS,
        }
    ),
    Role.ADMIN: frozenset({Permission.MANAGE_ACCOUNTS}),
    Role.AUDITOR: frozenset({Permission.READ_AUDIT_LOG}),
}

# Roles that may ever hold the intake key: a grant to anyone else is refused.
KEY_HOLDING_ROLES = frozenset({Role.CASEWORKER, Role.LEAD})


def role_has(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
