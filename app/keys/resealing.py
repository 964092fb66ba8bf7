"""Re-sealing data keys from the old intake key version to the new one, a batch at a time.

The rows to visit are the ones features register in `app.crypto.sealed_keys`: rotation imports
no feature, and a feature that must act once a row is re-sealed (triage's blind-index tags)
registers a hook there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.crypto import sealing
from app.crypto.sealed_keys import SealedDataKeys, after_reseal, sealed_data_keys

DEFAULT_BATCH_SIZE = 200


class RotationRefused(Exception):
    """A rotation cannot start, resume or finish; the message says why and what to do."""


@dataclass(frozen=True, slots=True, repr=False)
class Rotation:
    """A rotation under way, with both private keys open (never shown by ``repr``)."""

    from_version: int
    to_version: int
    old_private: sealing.PrivateKey
    new_private: sealing.PrivateKey
    # Printed once when the rotation starts; None when it resumes.
    recovery_key: str | None

    def __repr__(self) -> str:
        return f"Rotation({self.from_version} -> {self.to_version})"


def registered_sealed_data_keys() -> tuple[SealedDataKeys, ...]:
    """Every registered kind of sealed data key; refused when none is.

    An empty registry (a process that imported no feature's models) would find nothing left at
    the old version, and `finish` would then destroy the old key with every data key still
    sealed to it: the whole database lost.
    """
    kinds = sealed_data_keys()
    if not kinds:
        raise RotationRefused(
            "no sealed data keys are registered in this process (the features' models were not "
            "imported): nothing may be re-sealed or destroyed"
        )
    return kinds


def remaining(session: Session, from_version: int) -> dict[str, int]:
    """How many rows of each kind still have their data key sealed to ``from_version``."""
    return {
        kind.name: session.scalar(
            select(func.count()).select_from(kind.model).where(kind.model.intake_key_version == from_version)
        )
        or 0
        for kind in registered_sealed_data_keys()
    }


def reseal_batch(
    session: Session, rotation: Rotation, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> dict[str, int]:
    """Re-seal up to ``batch_size`` data keys from the old version to the new; returns how many of
    each kind. Returns all zeros once nothing is left. Rows are locked first, as every writer does,
    kind after kind in the registry's lock order."""
    kinds = registered_sealed_data_keys()
    moved = {kind.name: 0 for kind in kinds}
    budget = batch_size
    for kind in kinds:
        if budget == 0:
            break
        rows = list(
            session.scalars(
                select(kind.model)
                .where(kind.model.intake_key_version == rotation.from_version)
                .order_by(kind.model.id)
                .limit(budget)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )
        hooks = after_reseal(kind)
        for row in rows:
            row_id = kind.row_id(row)
            data_key = kind.contract.open(
                rotation.old_private, row.sealed_data_key, row_id=row_id, key_version=rotation.from_version
            )
            row.sealed_data_key = kind.contract.seal(
                rotation.new_private.public_key(), data_key, row_id=row_id, key_version=rotation.to_version
            )
            row.intake_key_version = rotation.to_version
            for hook in hooks:
                hook(session, row, data_key, rotation.new_private)
        moved[kind.name] = len(rows)
        budget -= len(rows)
    session.flush()
    return moved
