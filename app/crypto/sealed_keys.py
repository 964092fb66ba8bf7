"""Every kind of row whose data key is sealed to the intake key, registered by the feature that owns it.

Key rotation re-seals each of these data keys to the new intake key and then destroys the old
one; the dormant-server test checks that none of them lies in the database in clear. Neither job
imports a feature (CONVENTIONS 17): each feature declares its rows here, next to its models and
crypto contracts, when its models module is imported, and a feature that must act on a row after
its data key is re-sealed (triage re-computes a tip's blind-index tags) registers a hook from its
own package. A sealed table missing here would keep its data keys sealed to a key that rotation
destroys: tests/crypto/test_sealed_key_registry.py fails on any mapped table with a
``sealed_data_key`` and an ``intake_key_version`` that is not registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.crypto import sealing
from app.crypto.contracts import RowId, SealedColumn

if TYPE_CHECKING:  # typing only: the crypto layer itself never opens a database session
    from sqlalchemy.orm import Session

# A hook run on a row right after its data key is re-sealed, in the rotation's transaction: the
# session, the row (``intake_key_version`` already the new version), its data key, and the new
# intake private key.
AfterReseal = Callable[["Session", Any, bytes, sealing.PrivateKey], None]

_REGISTERED: dict[str, SealedDataKeys] = {}
_AFTER_RESEAL: dict[str, list[AfterReseal]] = {}
# Tables that the hooks rewrite with material derived from the old key (blind-index tags).
_HOOK_SCRUBBED_TABLES: list[str] = []


@dataclass(frozen=True, slots=True)
class SealedDataKeys:
    """One kind of row with its own data key sealed to the intake key; registers itself.

    ``model`` is a mapped class with ``id``, ``intake_key_version`` and ``sealed_data_key``
    columns; a row whose ``intake_key_version`` is NULL has no data key of its own (a file sent
    with a tip uses the tip's). ``row_id`` gives the row id the sealed key is bound to
    (``contract``'s binding). Rotation locks and re-seals the kinds in ascending ``lock_order``
    (a tip before its messages and files, tips before cases): fixed in the declarations, so the
    order of its row locks and of its report never depends on which models were imported first. The
    contract's table is the one whose dead rows keep the old wraps after a rotation: it is
    compacted once the rotation ends.
    """

    name: str  # as counted in `daylight keys rotate`'s report and audit event
    model: Any
    contract: SealedColumn
    row_id: Callable[[Any], RowId]
    lock_order: int

    def __post_init__(self) -> None:
        if self.model.__tablename__ != self.contract.table:
            raise ValueError(f"{self.name}: {self.model.__name__} is not the table of {self.contract.table}")
        if self.name in _REGISTERED:
            raise ValueError(f"sealed data keys {self.name!r} are registered twice")
        if any(kind.model is self.model for kind in _REGISTERED.values()):
            raise ValueError(f"{self.model.__name__} is registered twice as sealed data keys")
        _REGISTERED[self.name] = self


def register_after_reseal(
    kind: SealedDataKeys, hook: AfterReseal, *, scrubbed_tables: tuple[str, ...] = ()
) -> None:
    """Run ``hook`` on each row of ``kind`` once its data key is re-sealed; ``scrubbed_tables``
    are the tables where the hook replaces rows derived from the old key."""
    _AFTER_RESEAL.setdefault(kind.name, []).append(hook)
    _HOOK_SCRUBBED_TABLES.extend(table for table in scrubbed_tables if table not in _HOOK_SCRUBBED_TABLES)


def sealed_data_keys() -> tuple[SealedDataKeys, ...]:
    """Every registered kind, in lock order; empty until the features' models are imported."""
    return tuple(sorted(_REGISTERED.values(), key=lambda kind: (kind.lock_order, kind.name)))


def after_reseal(kind: SealedDataKeys) -> tuple[AfterReseal, ...]:
    return tuple(_AFTER_RESEAL.get(kind.name, ()))


def tables_holding_sealed_keys() -> tuple[str, ...]:
    """The tables whose dead rows hold old wraps, or rows the hooks derived from the old key."""
    tables = [kind.contract.table for kind in sealed_data_keys()] + _HOOK_SCRUBBED_TABLES
    return tuple(dict.fromkeys(tables))
