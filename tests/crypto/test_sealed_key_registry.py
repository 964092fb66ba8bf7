"""The sealed-data-key registry is complete: key rotation re-seals what it lists and then destroys
the old key, so a sealed table left out of it would be lost (app.crypto.sealed_keys)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import app.models  # noqa: F401  (every feature's models: every registration)
from app.crypto.contracts import ENCRYPTED_COLUMNS, SealedColumn
from app.crypto.sealed_keys import SealedDataKeys, after_reseal, sealed_data_keys, tables_holding_sealed_keys
from app.intake.models import TIP_DATA_KEY, Tip, TipMessage
from app.kit.db import Base
from app.triage import tags


def registry_snapshot() -> dict[str, object]:
    return {
        "kinds": [kind.name for kind in sealed_data_keys()],
        "hooks": {
            kind.name: [f"{hook.__module__}.{hook.__qualname__}" for hook in after_reseal(kind)]
            for kind in sealed_data_keys()
        },
        "tables": list(tables_holding_sealed_keys()),
    }


def test_every_table_with_a_data_key_sealed_to_the_intake_key_is_registered() -> None:
    sealed_tables = {
        table.name
        for table in Base.metadata.tables.values()
        if {"sealed_data_key", "intake_key_version"} <= set(table.columns.keys())
    }
    registered = {kind.contract.table for kind in sealed_data_keys()}
    assert sealed_tables, "no sealed table found: the models were not imported"
    assert sealed_tables == registered


def test_each_kind_names_the_table_its_contract_seals() -> None:
    for kind in sealed_data_keys():
        table = Base.metadata.tables[kind.contract.table]
        assert kind.model.__table__ is table
        assert {"id", "sealed_data_key", "intake_key_version"} <= set(table.columns.keys())


def test_rotation_locks_tips_before_their_messages_and_files_then_cases_labels_views_and_referrals() -> None:
    assert [kind.name for kind in sealed_data_keys()] == [
        "tips",
        "messages",
        "files",
        "cases",
        "labels",
        "saved views",
        "referral recipients",
        "referrals",
    ]


def test_triage_reindexes_an_opened_tip_after_its_data_key_is_resealed() -> None:
    [tip_kind] = [kind for kind in sealed_data_keys() if kind.model is Tip]
    assert after_reseal(tip_kind) == (tags.reindex_after_reseal,)
    assert "tip_tags" in tables_holding_sealed_keys()


@pytest.mark.parametrize("entrypoint", ["app.entrypoints.cli", "app.entrypoints.apps"])
def test_what_drives_a_rotation_sees_the_whole_registry(entrypoint: str) -> None:
    """The CLI and the staff app (its keys routes) run rotations: importing either alone
    registers every kind and hook, not only the ones some test happened to import."""
    script = "\n".join(
        [
            f"import {entrypoint}",
            "import json",
            "from app.crypto.sealed_keys import after_reseal, sealed_data_keys, tables_holding_sealed_keys",
            inspect.getsource(registry_snapshot),
            "print(json.dumps(registry_snapshot()))",
        ]
    )
    imported_alone = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(imported_alone.stdout) == registry_snapshot()


def test_a_kind_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        SealedDataKeys("tips", Tip, TIP_DATA_KEY, row_id=lambda tip: str(tip.id), lock_order=10)
    with pytest.raises(ValueError, match="registered twice"):
        SealedDataKeys("tips_again", Tip, TIP_DATA_KEY, row_id=lambda tip: str(tip.id), lock_order=10)


def test_a_kind_whose_contract_is_on_another_table_is_refused() -> None:
    contract = SealedColumn("registry_test_elsewhere", "sealed_data_key")
    try:
        with pytest.raises(ValueError, match="not the table"):
            SealedDataKeys("registry_test", TipMessage, contract, row_id=str, lock_order=99)
    finally:
        ENCRYPTED_COLUMNS.pop((contract.table, contract.column))
    assert "registry_test" not in {kind.name for kind in sealed_data_keys()}
